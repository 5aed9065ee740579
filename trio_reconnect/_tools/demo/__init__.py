"""``python -m trio_reconnect demo``: one process, or a rolling deploy of real nodes."""
