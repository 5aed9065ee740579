"""``python -m trio_reconnect``: the command line (see :mod:`trio_reconnect._tools._cli`)."""

from __future__ import annotations

import sys

from ._tools._cli import main

if __name__ == "__main__":
    sys.exit(main())
