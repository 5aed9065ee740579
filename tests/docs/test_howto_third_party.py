"""docs/howto/third-party.md: each sample runs as pasted against a third-party server.

The servers (``tests/support/howto_servers.py``, the ``websockets``
package) run as subprocesses on a free port; the only change to a sample is
that port. Each server drops the first connection, so every sample shows
``on_connect`` running again on the next one.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
PAGE = ROOT / "docs" / "howto" / "third-party.md"
SERVERS = Path(__file__).resolve().parent.parent / "support" / "howto_servers.py"
#: The address each sample uses, and the server that answers there.
KINDS = {"ws://127.0.0.1:8000/feed": "exchange", "ws://127.0.0.1:4000/graphql": "graphql"}


def samples() -> list[tuple[str, str]]:
    text = PAGE.read_text()
    return [
        (f"third-party.md:{text.count(chr(10), 0, m.start()) + 1}", m[1])
        for m in re.finditer(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    ]


SAMPLES = samples()


def test_the_page_has_its_three_samples() -> None:
    assert len(SAMPLES) == 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def start_server() -> Iterator[Any]:
    processes: list[subprocess.Popen[str]] = []

    def start(kind: str) -> int:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, str(SERVERS), kind, str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "serving"
        return port

    yield start
    for process in processes:
        process.kill()
        process.communicate(timeout=10)


@pytest.mark.parametrize(("name", "code"), SAMPLES, ids=[name for name, _ in SAMPLES])
def test_sample_runs_as_pasted(name: str, code: str, start_server: Any, tmp_path: Path) -> None:
    (url,) = [u for u in KINDS if u in code]
    port = start_server(KINDS[url])
    script = tmp_path / "sample.py"
    script.write_text(code.replace(url, url.replace(url.split(":")[2].split("/")[0], str(port))))
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    if KINDS[url] == "exchange":
        # Two trades from the first connection, then from the next one again.
        assert lines == ["trade: 100", "trade: 101", "trade: 100", "trade: 101"], lines
    else:
        assert lines == [
            "ticks -> {'tick': 1}",  # then the server drops the connection
            "ticks -> {'tick': 1}",
            "ticks -> {'tick': 2}",
            "ticks -> {'tick': 3}",
            "ticks complete",
        ], lines


def test_a_refused_token_is_fatal_at_once(start_server: Any, tmp_path: Path) -> None:
    code = SAMPLES[0][1]
    url = "ws://127.0.0.1:8000/feed"
    port = start_server("exchange")
    script = tmp_path / "sample.py"
    script.write_text(
        code.replace(url, f"ws://127.0.0.1:{port}/feed").replace(
            'TOKEN = "secret-token"', 'TOKEN = "bad"'
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "trio_reconnect._exceptions.ReconnectFailed: on_connect raised AuthRefused" in (
        done.stderr
    )
    assert "ExceptionGroup" not in done.stderr
