"""docs/howto/channels.md: each sample runs as pasted against a small version 2 server.

The server (``tests/support/channel_server.py``) runs as a subprocess on a
free port; the only change to a sample is that port. It drops its clients
every 400 ms, so the first sample's subscription is resumed across a reconnect.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "howto" / "channels.md"
SERVER = ROOT / "tests" / "support" / "channel_server.py"
URL = "ws://127.0.0.1:8765/"


def samples() -> list[tuple[str, str]]:
    text = PAGE.read_text()
    return [
        (f"channels.md:{text.count(chr(10), 0, m.start()) + 1}", m[1])
        for m in re.finditer(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    ]


SAMPLES = samples()


def test_the_page_has_its_two_samples() -> None:
    assert len(SAMPLES) == 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server() -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    process = subprocess.Popen([sys.executable, str(SERVER), str(port)], env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        process.kill()
        process.wait()


def run(code: str, port: int, tmp_path: Path) -> str:
    assert URL in code
    script = tmp_path / "sample.py"
    script.write_text(code.replace(URL, f"ws://127.0.0.1:{port}/"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_subscribe_and_iterate_across_a_reconnect(server: int, tmp_path: Path) -> None:
    out = run(SAMPLES[0][1], server, tmp_path).splitlines()
    assert out[0] == "members: {'bot': {'user': 'bot'}}"
    events = [line for line in out if line.startswith("room:1 ")]
    assert len(events) == 10
    ids = [int(line.split()[1]) for line in events]
    assert ids == list(range(ids[0], ids[0] + 10))  # once each, in order, across the drop
    assert out[-1] == f"resume from {ids[-1]} next time"


def test_a_refusal(server: int, tmp_path: Path) -> None:
    out = run(SAMPLES[1][1], server, tmp_path)
    assert out == "refused: secret forbidden refused by the test\n"
