from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator

import pytest
import trio

from tests.interop._peers import NODE, NODE_DIR, NODE_HARD_TIMEOUT, NodeServer


@pytest.fixture
async def node_server(nursery: trio.Nursery) -> AsyncIterator[NodeServer]:
    """``node server.mjs`` on a free port of 127.0.0.1, killed at the end."""
    if NODE is None:
        pytest.skip("node is not on PATH (the interop tests run Node peers)")
    limit = str(int(NODE_HARD_TIMEOUT * 1000))
    process = await trio.lowlevel.open_process(
        [NODE, str(NODE_DIR / "server.mjs"), limit], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    server = NodeServer(process)
    nursery.start_soon(server.read)
    try:
        with trio.fail_after(10):
            (listening,) = await server.wait_for(lambda line: line.get("ev") == "listening")
        server.port = listening["port"]
        yield server
    finally:
        process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
