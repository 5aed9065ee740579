"""The README's and the docs' code samples run as pasted, against a real ``serve``.

Every ``python`` block of the pages below is a complete program that talks to
``python -m trio_reconnect serve`` at its default address. Each runs here as a
subprocess, with a deadline, against a real ``serve`` subprocess; the only
change is the port (a free one instead of 8765, and for the Prometheus
sample's metrics instead of 9100, so that test runs do not collide with each
other or with a server a developer left running).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: The pages whose samples a newcomer pastes first.
PAGES = ["README.md", "docs/index.md", "docs/tutorial/client.md", "docs/howto/prometheus.md"]
#: Where the samples connect: ``serve``'s default address.
DEFAULT_URL = "ws://127.0.0.1:8765/"
#: The port the Prometheus sample serves its metrics on (here: any free port).
METRICS_PORT = "serve_metrics, 9100)"
#: Seconds one sample may take (each stops after a few events).
SAMPLE_TIMEOUT = 60
#: What a sample that runs until Ctrl-C says of itself (README's and the tutorial's first).
UNTIL_CTRL_C = "until Ctrl-C"


def samples() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = (ROOT / page).read_text()
        for match in re.finditer(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{page}:{line}", match[1]))
    return found


SAMPLES = samples()


def test_the_pages_have_samples() -> None:
    pages = {name.split(":")[0] for name, _ in SAMPLES}
    assert pages == set(PAGES)
    assert len(SAMPLES) >= 7


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def start_serve(port: int, *options: str) -> subprocess.Popen[str]:
    """``python -m trio_reconnect serve`` on ``port``, once it listens."""
    command = ["serve", "--port", str(port), "--interval", "0.05", *options]
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_reconnect", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    url = f"ws://127.0.0.1:{port}/"
    assert line.strip() == f"serving the reconnect protocol on {url}", line
    return process


@pytest.fixture
def serve_url() -> Iterator[str]:
    """A real ``python -m trio_reconnect serve`` on a free port, ticking fast.

    A fresh one for each sample, so that the samples do not share state
    (``serve`` starts a fresh client at its newest tick, however long it has
    been up: docs/explanation/design.md, "A fresh client of serve starts at the newest
    event").
    """
    port = free_port()
    command = ["serve", "--port", str(port), "--interval", "0.05"]
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_reconnect", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert process.stdout is not None
        url = f"ws://127.0.0.1:{port}/"
        line = process.stdout.readline()
        assert line.strip() == f"serving the reconnect protocol on {url}", line
        yield url
    finally:
        process.kill()
        process.communicate(timeout=10)


# The samples that run until Ctrl-C: test_a_live_sample_across_a_restart_of_serve.
ENDING = [(name, code) for name, code in SAMPLES if UNTIL_CTRL_C not in code]


@pytest.mark.parametrize(("name", "code"), ENDING, ids=[name for name, _ in ENDING])
def test_sample_runs_as_pasted(name: str, code: str, serve_url: str, tmp_path: Path) -> None:
    assert code.count(DEFAULT_URL) == 1, f"{name} should connect to {DEFAULT_URL}"
    script = tmp_path / "sample.py"
    script.write_text(
        code.replace(DEFAULT_URL, serve_url).replace(METRICS_PORT, "serve_metrics, 0)")
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env(),
        timeout=SAMPLE_TIMEOUT,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    # Each sample shows what it received (an event of the ticker) or, for the
    # transitions sample, the connection opening again.
    assert "'tick'" in done.stdout or done.stdout.count("-> open") == 2, done.stdout
    if "prometheus" in name:
        assert 'trio_reconnect_client_connects_total{client="feed"} 1.0' in done.stdout


LIVE_SAMPLES = [(name, code) for name, code in SAMPLES if UNTIL_CTRL_C in code]
#: A reconnect's line, as the live samples print it.
RECONNECTED = re.compile(
    r"^reconnected in (\d+\.\d\d) s \((\d+\.\d\d) s of it the server asked for\); (.*)$"
)


def test_the_first_samples_run_until_ctrl_c() -> None:
    firsts: dict[str, str] = {}
    for name, code in SAMPLES:
        firsts.setdefault(name.split(":")[0], code)
    assert UNTIL_CTRL_C in firsts["README.md"]
    assert UNTIL_CTRL_C in firsts["docs/tutorial/client.md"]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Lines:
    """A process's stdout, line by line, with a deadline on each wait."""

    def __init__(self, stream: Any) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = SAMPLE_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}: {self.seen}") from None
            if line is None:
                raise AssertionError(f"the sample ended before {pattern!r}: {self.seen}")
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def rest(self) -> list[str]:
        while (line := self._queue.get(timeout=SAMPLE_TIMEOUT)) is not None:
            self.seen.append(line)
        return self.seen


@pytest.mark.parametrize("restart", ["process", "in-process"])
@pytest.mark.parametrize(("name", "code"), LIVE_SAMPLES, ids=[name for name, _ in LIVE_SAMPLES])
def test_a_live_sample_across_a_restart_of_serve(
    name: str, code: str, restart: str, tmp_path: Path
) -> None:
    # What the README promises: run the sample, restart the server under it
    # (Ctrl-C and start it again, or ``--restart-every``), and the sample
    # says how long the reconnect took and what came back; Ctrl-C ends it
    # with no traceback.
    port = free_port()
    url = f"ws://127.0.0.1:{port}/"
    script = tmp_path / "sample.py"
    script.write_text(code.replace(DEFAULT_URL, url))
    options = ["--restart-every", "1"] if restart == "in-process" else []
    server = start_serve(port, *options)
    sample = subprocess.Popen(
        [sys.executable, "-u", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=tmp_path,
        # Ctrl-C as in a terminal, whatever this process does with SIGINT (a
        # child inherits an ignored SIGINT, and Python then never raises
        # KeyboardInterrupt; tests/tools/test_bench.py leaves it ignored).
        preexec_fn=_default_sigint,
    )
    try:
        lines = Lines(sample.stdout)
        lines.wait_for(f"^connected to {re.escape(url)}$")
        lines.wait_for(r"^event \d+ \{'tick': \d+")
        if restart == "process":
            server.send_signal(signal.SIGINT)  # Ctrl-C in the server's terminal
            server.communicate(timeout=SAMPLE_TIMEOUT)
            server = start_serve(port)  # ... and start it again
        line = lines.wait_for(RECONNECTED.pattern)
        lines.wait_for(r"^event \d+ \{'tick': \d+")  # live again
        sample.send_signal(signal.SIGINT)
        sample.wait(timeout=SAMPLE_TIMEOUT)
        seen = lines.rest()
        err = sample.stderr.read() if sample.stderr else ""
    finally:
        for process in (sample, server):
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
    assert sample.returncode == 0, err
    assert "Traceback" not in err, err
    found = RECONNECTED.match(line)
    assert found is not None
    took, asked, what = float(found[1]), float(found[2]), found[3]
    assert 0 <= asked <= took, line
    if restart == "in-process":  # the log lives on: the missed events come back
        assert re.fullmatch(r"missed events replayed: \d+", what), line
    else:  # a new in-memory log: the client is told, and gets a Gap
        assert what == "events were lost (a Gap follows)", line
        assert any(seen_line.startswith("resync: Gap(") for seen_line in seen), seen
    assert re.match(r"^median reconnect \d+\.\d\d s over \d+ reconnects?", seen[-1]), seen
    print("\n".join(seen[-8:]))
