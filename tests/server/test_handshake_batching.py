"""A version 2 resume's answer goes out in ONE write (issue 18's resume cost).

The channels' answers (``refused``, replayed ``event`` frames, ``subscribed``)
are held and written with ``ready`` in one :meth:`ConnectedClient.send_frame`
of a list; a default-stream replay still goes after them and before ``ready``.
The write itself: one ``send_all`` on the batched path, one per frame on the
public one (every test runs both ways: ``write_path``, tests/server/conftest.py).
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from tests.server.test_connection_batching import make_client, pair
from tests.support.server_clients import connect, until_ready
from trio_reconnect import _tws
from trio_reconnect.server import MemoryChannelStore, ReconnectServer, ReplayLog
from trio_reconnect.server._connection import ConnectedClient


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every argument of ``ConnectedClient.send_frame``, in order."""
    calls: list[Any] = []
    original = ConnectedClient.send_frame

    async def recording(self: ConnectedClient, message: Any) -> None:
        calls.append(message)
        await original(self, message)

    monkeypatch.setattr(ConnectedClient, "send_frame", recording)
    return calls


def _resume(channels: dict[str, Any], last: str | None = None) -> str:
    frame = {"type": "resume", "lastEventId": last, "clientId": "c1", "channels": channels}
    return json.dumps(frame)


async def test_the_channels_answer_and_ready_are_one_send(
    autojump_clock: MockClock, nursery: trio.Nursery, sent: list[Any]
) -> None:
    store = MemoryChannelStore(start=1)
    for name in ("a", "b", "c"):
        store.append_nowait(name, name)
    store.append_nowait("a", "a2")
    server = ReconnectServer(ReplayLog(start=1), channels=store, rng=random.Random(0))
    with trio.fail_after(5):
        ws = await connect(nursery, server)
        await ws.send_message(_resume({"a": "1", "b": "1", "c": "1", "d": 5}))
        frames = await until_ready(ws)
    assert [f["type"] for f in frames] == [
        "refused",  # d's position is not a string
        "event",  # a's event 2
        "subscribed",
        "subscribed",
        "subscribed",
        "ready",
    ]
    assert [json.loads(text) for text in sent[0]] == frames
    assert sent[1:] in ([], sent[0])  # the public path sends the list's frames one by one


async def test_a_default_stream_replay_goes_between_them(
    autojump_clock: MockClock, nursery: trio.Nursery, sent: list[Any]
) -> None:
    log = ReplayLog(start=1)
    for i in range(3):
        await log.append(f"e{i}")
    store = MemoryChannelStore(start=1)
    store.append_nowait("a", "a1")
    server = ReconnectServer(log, channels=store, rng=random.Random(0))
    with trio.fail_after(5):
        ws = await connect(nursery, server)
        await ws.send_message(_resume({"a": "0"}, last="1"))
        frames = await until_ready(ws)
    assert [(f["type"], f.get("channel"), f.get("id")) for f in frames] == [
        ("event", "a", "1"),
        ("subscribed", "a", "1"),
        ("event", None, "2"),
        ("event", None, "3"),
        ("ready", None, "3"),
    ]
    # The channels' answer, then each replayed event, then ready alone.
    lists = [call for call in sent if isinstance(call, list)]
    assert [len(call) for call in lists] == [2, 1]
    assert sent.index(lists[1]) > sent.index(lists[0])


async def test_a_list_is_one_write_on_the_batched_path(
    write_path: str, nursery: trio.Nursery
) -> None:
    with trio.fail_after(10):
        server_ws, client_ws, recorder = await pair(nursery)
        client = make_client(server_ws)
        before = len(recorder.writes)
        await client.send_frame(["one", "two", "three"])
        assert [await client_ws.get_message() for _ in range(3)] == ["one", "two", "three"]
        assert len(recorder.writes) - before == (1 if write_path == "batched" else 3)
    # A handshake's answer is written once: it takes no place in the fan-out's frame cache.
    assert not {"one", "two", "three"} & set(_tws._FRAMES)
