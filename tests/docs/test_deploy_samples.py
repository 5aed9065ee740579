"""The deploy guide's samples run as pasted: real node processes, a real redis-server, SIGTERM.

docs/howto/deploy.md has three ``python`` blocks, each a complete program:
the Redis node (it reads ``REDIS_URL``, ``NODE_NAME`` and ``PORT`` from the
environment, so nothing in its text is changed here), the SO_REUSEPORT node
(run twice on one port), and the defaults calculation. The nodes are started
as subprocesses, a trio_reconnect client receives a live event from them,
and SIGTERM must drain them: exit status 0 and the summary line.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import trio_reconnect
from tests.support.redis_fixtures import redis_server  # noqa: F401  (the fixture)
from trio_reconnect.testing._redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "howto" / "deploy.md"
#: Seconds a node has to start, a client to get an event, a node to drain and exit.
STEP_TIMEOUT = 30


def _samples() -> list[str]:
    text = PAGE.read_text()
    return [m[1] for m in re.finditer(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)]


SAMPLES = _samples()
REDIS_NODE, REUSEPORT_NODE, DEFAULTS = SAMPLES


def test_the_page_has_its_three_samples() -> None:
    assert len(SAMPLES) == 3
    assert "serve_until_signal" in REDIS_NODE
    assert "SO_REUSEPORT" in REUSEPORT_NODE
    assert "DEFAULT_MAX_LEN" in DEFAULTS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _start(script: Path, env: dict[str, str], ready: str) -> tuple[trio.Process, bytes]:
    """Start ``script``; wait until ``ready`` appears on its stderr or stdout."""
    process = await trio.lowlevel.open_process(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    assert process.stdout is not None
    seen = b""
    with trio.fail_after(STEP_TIMEOUT):
        while ready.encode() not in seen:
            chunk = await process.stdout.receive_some(4096)
            assert chunk, f"the sample exited: {seen.decode(errors='replace')}"
            seen += chunk
    return process, seen


async def _stop(process: trio.Process, seen: bytes) -> str:
    """SIGTERM ``process``; its whole output once it exited with status 0."""
    assert process.stdout is not None
    process.send_signal(signal.SIGTERM)
    with trio.fail_after(STEP_TIMEOUT):
        while chunk := await process.stdout.receive_some(4096):
            seen += chunk
        await process.wait()
    output = seen.decode(errors="replace")
    assert process.returncode == 0, output
    assert "Traceback" not in output
    return output


async def _one_event(url: str) -> trio_reconnect.ServerEvent:
    with trio.fail_after(STEP_TIMEOUT):
        async with trio_reconnect.open_reconnecting_websocket(url) as ws:
            async for item in ws:
                if isinstance(item, trio_reconnect.ServerEvent):
                    return item
    raise AssertionError("no event")


async def test_the_redis_node_serves_and_drains_on_sigterm(
    redis_server: RedisServer,  # noqa: F811  (the fixture)
    tmp_path: Path,
) -> None:
    script = tmp_path / "node.py"
    script.write_text(REDIS_NODE)
    port = _free_port()
    env = {"REDIS_URL": redis_server.url, "NODE_NAME": "node-a", "PORT": str(port)}
    process, seen = await _start(script, env, "serving on")
    try:
        event = await _one_event(f"ws://127.0.0.1:{port}/")
        assert event.data["node"] == "node-a"
        output = await _stop(process, seen)
    finally:
        if process.returncode is None:
            process.kill()
    assert "node-a: SIGTERM: drained" in output


async def test_two_reuseport_nodes_share_a_port_and_drain(tmp_path: Path) -> None:
    if not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT on this platform")
    script = tmp_path / "reuseport.py"
    script.write_text(REUSEPORT_NODE)
    port = _free_port()
    env = {"PORT": str(port)}
    first, first_seen = await _start(script, env, "with SO_REUSEPORT")
    second, second_seen = await _start(script, env, "with SO_REUSEPORT")
    try:
        async with trio_reconnect.open_reconnecting_websocket(f"ws://127.0.0.1:{port}/") as ws:
            with trio.fail_after(STEP_TIMEOUT):
                await ws.wait_ready()
        for process, seen in ((first, first_seen), (second, second_seen)):
            assert "SIGTERM drained" in await _stop(process, seen)
    finally:
        for process in (first, second):
            if process.returncode is None:
                process.kill()


def test_the_defaults_sample_prints_the_constants(tmp_path: Path) -> None:
    script = tmp_path / "defaults.py"
    script.write_text(DEFAULTS)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=STEP_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    from trio_reconnect.server import DEFAULT_DRAIN_TIMEOUT
    from trio_reconnect.server.redis import DEFAULT_MAX_LEN

    assert f"drain_timeout {DEFAULT_DRAIN_TIMEOUT}" in done.stdout
    assert f"max_len {DEFAULT_MAX_LEN}" in done.stdout
    assert "-> max_replay, max_len = (" in done.stdout
