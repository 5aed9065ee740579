"""The command line as a user meets it: real ``python -m trio_reconnect`` processes.

Every bad input gives exactly one line on stderr and the right exit status
(2 usage, 1 runtime, 130 Ctrl-C, quiet), never a traceback. Ctrl-C is a real
SIGINT sent to the process.
"""

from __future__ import annotations

import http.server
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2]
#: A bound on every wait for a line or an exit (seconds; generous for a loaded machine).
WAIT = 30.0
STAMP = r"\[\d\d:\d\d:\d\d\.\d{3}\]"


def _env() -> dict[str, str]:
    # This checkout first on the path, whatever the caller's PYTHONPATH says.
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def _default_sigint() -> None:  # pragma: no cover - runs in the child
    # A shell starts background jobs with SIGINT ignored, and Python keeps an
    # ignored SIGINT ignored: undo that, so that the child gets Ctrl-C as a user's would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_reconnect", *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=WAIT,
        check=False,
    )


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in text
    return lines[0]


@attrs.define(eq=False)
class Running:
    """A running command, its stdout and stderr read line by line in threads."""

    process: subprocess.Popen[str]
    out: queue.Queue[str | None] = attrs.field(factory=queue.Queue)
    err: queue.Queue[str | None] = attrs.field(factory=queue.Queue)
    err_lines: list[str] = attrs.field(factory=list)
    readers: list[threading.Thread] = attrs.field(factory=list)

    def start_readers(self) -> None:
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            reader = threading.Thread(target=_pump, args=(stream, lines), daemon=True)
            reader.start()
            self.readers.append(reader)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=WAIT)
        for reader in self.readers:
            reader.join(timeout=WAIT)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def wait_for(self, lines: queue.Queue[str | None], pattern: str) -> str:
        deadline = time.monotonic() + WAIT
        while True:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, f"the process ended before a line matching {pattern!r}"
            if lines is self.err:
                self.err_lines.append(line)
            if re.search(pattern, line):
                return line

    def interrupt(self) -> tuple[int, list[str]]:
        """Send SIGINT; return the exit status and the stderr lines not read yet."""
        self.process.send_signal(signal.SIGINT)
        status = self.process.wait(timeout=WAIT)
        rest = []
        while (line := self.err.get(timeout=WAIT)) is not None:
            rest.append(line)
        return status, rest


def _pump(stream: object, lines: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line.rstrip("\n"))
    lines.put(None)


@pytest.fixture
def start() -> Iterator[object]:
    started: list[Running] = []

    def start(*args: str, stdin: int | None = subprocess.DEVNULL) -> Running:
        process = subprocess.Popen(
            [sys.executable, "-m", "trio_reconnect", *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            preexec_fn=_default_sigint,
        )
        running = Running(process)
        running.start_readers()
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- usage errors: exit 2, one line --------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["connect", "http://127.0.0.1:8765/"],
            "connect: url: 'http://127.0.0.1:8765/' is not a websocket URL:"
            " URL scheme must be ws or wss, got 'http'",
        ),
        (
            ["connect", "not a url"],
            "connect: url: 'not a url' is not a websocket URL: URL scheme must be ws or wss,"
            " got ''",
        ),
        (
            ["connect", "ws://127.0.0.1:99999/"],
            "connect: url: 'ws://127.0.0.1:99999/' is not a websocket URL:"
            " port out of range 0-65535",
        ),
        (
            ["connect", "ws:///path"],
            "connect: url: 'ws:///path' is not a websocket URL: URL has no host",
        ),
        (["connect"], "connect: the following arguments are required: url"),
        (
            ["connect", "ws://127.0.0.1:8765/", "--count", "0"],
            "connect: --count must be a positive integer, got 0",
        ),
        (["demo", "--clients", "0"], "demo: --clients must be a positive integer, got 0"),
        (["demo", "--clients", "-5"], "demo: --clients must be a positive integer, got -5"),
        (["demo", "--clients", "many"], "demo: --clients must be a positive integer, got 'many'"),
        (["demo", "--duration", "0"], "demo: --duration must be a positive finite number, got 0"),
        (["demo", "--rate", "0"], "demo: --rate must be a positive finite number, got 0"),
        (["demo", "--rate", "nan"], "demo: --rate must be a positive finite number, got nan"),
        (["demo", "--restarts", "-1"], "demo: --restarts must be a non-negative integer, got -1"),
        (["serve", "--port", "99999"], "serve: --port must be a port from 0 to 65535, got 99999"),
        (["serve", "--port", "-1"], "serve: --port must be a port from 0 to 65535, got -1"),
        (["serve", "--interval", "0"], "serve: --interval must be a positive finite number, got 0"),
        (["serve", "--bogus"], "serve: unrecognized arguments: --bogus"),
        (
            ["serve", "--dedupe-ttl", "0"],
            "serve: --dedupe-ttl must be a positive finite number, got 0",
        ),
        (["herd", "--clients", "0"], "herd: --clients must be a positive integer, got 0"),
        (["herd", "--clients", "x"], "herd: --clients must be a positive integer, got 'x'"),
        (["bench", "--messages", "0"], "bench: --messages must be a positive integer, got 0"),
        ([], "trio_reconnect: the following arguments are required: command"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv: Sequence[str], line: str) -> None:
    result = run_cli(*argv)
    assert (result.returncode, result.stdout) == (2, "")
    assert one_line(result.stderr) == line


# -- runtime errors: exit 1, one line naming the cause -------------------------------


def test_serve_on_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port))
    assert result.returncode == 1
    assert one_line(result.stderr) == f"serve: 127.0.0.1:{port}: address already in use"


def test_bench_that_runs_out_of_time() -> None:
    result = run_cli("bench", "--timeout", "0.3", "--no-websockets")
    assert result.returncode == 1
    assert one_line(result.stderr) == "bench: the run took longer than --timeout 0.3 s"


class _PlainPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>not a websocket server</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_connect_to_a_plain_http_server() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PlainPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"ws://127.0.0.1:{server.server_address[1]}/"
    try:
        result = run_cli("connect", url)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    # The library also logs what it raises until its logging change (issue 12,
    # "Library logging") lands; that line is the library's, not the command's.
    library = f"{url}: server refused the handshake with HTTP 200"
    lines = [line for line in result.stderr.splitlines() if line != library]
    assert lines == [
        f"connect: {url}: server refused the handshake with HTTP 200 (is it a websocket server?)"
    ]


def test_connect_refused_says_so_with_wall_clock_stamps_then_ctrl_c(start: object) -> None:
    port = free_port()  # nothing listens there now
    running = start("connect", f"ws://127.0.0.1:{port}/")  # type: ignore[operator]
    before = time.time()
    line = running.wait_for(running.err, "connection refused")
    assert re.fullmatch(
        STAMP + r" connecting -> backing_off  wait \d+\.\d{3}s \(backoff\)  connection refused",
        line,
    ), line
    stamp = time.mktime(time.strptime(time.strftime("%Y-%m-%d ") + line[1:9], "%Y-%m-%d %H:%M:%S"))
    assert before - 2 <= stamp <= time.time() + 1  # the wall clock, not trio's
    status, rest = running.interrupt()
    assert status == 130
    assert all(re.match(STAMP + " ", line) for line in rest), rest  # quiet: no traceback


# -- Ctrl-C: exit 130, quiet ---------------------------------------------------------


def test_ctrl_c_on_serve_drains_and_exits_0_quietly(start: object) -> None:
    # serve treats Ctrl-C as a graceful stop (as SIGTERM): it drains its clients
    # with spread hints and says so in one line on stdout; nothing on stderr.
    running = start("serve", "--port", "0", "--interval", "0.05")  # type: ignore[operator]
    running.wait_for(running.out, r"^serving the reconnect protocol on ws://127\.0\.0\.1:\d+/$")
    status, rest = running.interrupt()
    assert (status, running.err_lines + rest) == (0, [])
    running.wait_for(running.out, r"^serve: SIGINT: drained 0 clients")


def test_ctrl_c_on_demo_exits_130_quietly(start: object) -> None:
    running = start("demo", "--clients", "5", "--duration", "60", "--restarts", "1")  # type: ignore[operator]
    running.wait_for(running.err, r"^connected ")
    status, rest = running.interrupt()
    assert status == 130
    lines = running.err_lines + rest
    assert lines[0].startswith("demo: 5 clients on the embedded server at ws://127.0.0.1:")
    assert all(line.startswith("connected ") for line in lines[1:]), lines
    assert running.process.stdout is not None


# -- normal runs ---------------------------------------------------------------------


def test_connect_and_serve_a_normal_exit(start: object) -> None:
    server = start("serve", "--port", "0", "--interval", "0.05")  # type: ignore[operator]
    line = server.wait_for(server.out, r"^serving the reconnect protocol on ")
    url = line.rsplit(" ", 1)[1]
    result = run_cli("connect", url, "--count", "3")
    assert result.returncode == 0
    events = result.stdout.splitlines()
    assert len(events) == 3, events
    assert all(e.startswith("event ") for e in events), events
    transitions = result.stderr.splitlines()
    for text in transitions:
        assert re.match(STAMP + r" \w+ -> \w+", text), text
    shown = [t.split("] ", 1)[1] for t in transitions]
    assert shown[0] == "connecting -> resuming"
    # The 3 items may all be replayed before ready: closed from resuming or from open,
    # and without "error ClientClosedError(...)".
    assert shown[-1] in ("resuming -> closed", "open -> closed"), shown
    assert "Error" not in result.stderr
    assert server.interrupt()[0] == 0  # a graceful stop


def test_help_texts() -> None:
    serve = run_cli("serve", "--help").stdout
    assert re.search(r"--host HOST\s+address to listen on \(default 127\.0\.0\.1\)", serve)
    assert re.search(
        r"--port PORT\s+TCP port to listen on, 0 for any free port\s+\(default\s+8765\)", serve
    )
    connect = run_cli("connect", "--help").stdout
    assert re.search(
        r"url\s+the server's ws:// or wss:// URL, e\.g\.\s+ws://127\.0\.0\.1:8765/", connect
    )
