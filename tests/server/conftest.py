"""Every server test runs twice: batched writes through trio-websocket's internals, and without."""

from __future__ import annotations

import pytest

from trio_reconnect.server import _connection


@pytest.fixture(params=["batched", "send_message"], autouse=True)
def write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(_connection, "_BATCHED_WRITES", request.param == "batched")
    return str(request.param)
