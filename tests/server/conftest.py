"""Every server test runs twice: with trio-websocket's internals, and without.

``batched`` is the production path: the write loop writes the frames it
finds queued in one write, and the fan-out writes live events straight to an
idle client's socket (on real TCP). ``send_message`` is what a
trio-websocket without those internals gets: one ``send_message`` per frame,
every frame through the client's queue.
"""

from __future__ import annotations

import pytest

from trio_reconnect.server import _connection, _direct


@pytest.fixture(params=["batched", "send_message"], autouse=True)
def write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(_connection, "_BATCHED_WRITES", request.param == "batched")
    monkeypatch.setattr(_direct, "_DIRECT_WRITES", request.param == "batched")
    return str(request.param)
