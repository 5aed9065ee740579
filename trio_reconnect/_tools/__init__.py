"""The command-line tools of ``python -m trio_reconnect``: connect, serve, demo, herd, bench.

They are user features built on the public API, but the library never needs
them: only :mod:`trio_reconnect.__main__` imports this package (an
import-linter contract in ``nox -s lint`` keeps it so).

* :mod:`._cli`: the parser and ``main``; :mod:`._policy`: argument types and
  one-line errors (pure); :mod:`._interrupt`: Ctrl-C as a clean cancellation.
* :mod:`._serve`: ``serve``; :mod:`._herd`: ``herd``, its tables and plots in
  :mod:`._herd_report` (the simulators are :mod:`trio_reconnect.testing`'s).
* :mod:`.demo`: ``demo`` (one process) and ``demo --nodes N`` (real processes).
* :mod:`.bench`: ``bench``: the runner and its options (``_run``), the
  result and its tables (``_report``), the echo clients (``_echo_clients``),
  the echo server (``_server``) and its child process (``_echo_process``),
  the fan-out driver (``_fanout``), its raw clients (``_crowd``) and its
  server program (``_fanout_server``).
"""
