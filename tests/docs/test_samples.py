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
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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


@pytest.mark.parametrize(("name", "code"), SAMPLES, ids=[name for name, _ in SAMPLES])
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
