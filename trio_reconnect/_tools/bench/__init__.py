"""``python -m trio_reconnect bench``: ratios against the raw library, in one run."""
