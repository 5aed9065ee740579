"""trio-websocket's internals behind one module (trio_reconnect/_tws.py): probe and accesses."""

from __future__ import annotations

from typing import Any, cast

import trio
import trio.testing
import trio_websocket
import wsproto.connection
import wsproto.events

from trio_reconnect import _tws
from trio_reconnect._turn import Turn


async def open_pair(
    nursery: trio.Nursery,
) -> tuple[trio_websocket.WebSocketConnection, trio_websocket.WebSocketConnection]:
    """A client and a server websocket of trio-websocket over a memory stream pair."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    accepted: list[trio_websocket.WebSocketConnection] = []
    done = trio.Event()

    async def serve() -> None:
        request = await trio_websocket.wrap_server_stream(nursery, server_stream)
        accepted.append(await request.accept())
        done.set()

    nursery.start_soon(serve)
    client = await trio_websocket.wrap_client_stream(
        nursery, cast(trio.SocketStream, client_stream), "example.test", "/"
    )
    await done.wait()
    return client, accepted[0]


async def test_the_probe_finds_every_internal_of_this_trio_websocket(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(10):
        client, server = await open_pair(nursery)
        assert _tws.capable(client)
        assert _tws.capable(server)
        assert _tws.writable(client)
        assert _tws.close_reason(client) is None
        assert _tws.socket_stream(client) is None  # a memory stream, not TCP
        await client.aclose()
        assert not _tws.writable(client)
        assert _tws.close_reason(client) is not None
        assert not _tws.peer_started_close(client)  # we closed it
        with trio.fail_after(5):
            while _tws.close_reason(server) is None:
                await trio.sleep(0.01)
        assert _tws.peer_started_close(server)


async def test_without_an_internal_the_probe_says_no(nursery: trio.Nursery) -> None:
    assert not _tws.capable(object())
    with trio.fail_after(10):
        client, _ = await open_pair(nursery)
        del client._wsproto
        assert not _tws.capable(client)
    assert _tws.peer_started_close(object())  # unknown: taken as the peer's


async def test_the_send_lock_is_swapped_only_when_free_and_of_the_known_kind(
    nursery: trio.Nursery,
) -> None:
    with trio.fail_after(10):
        client, _ = await open_pair(nursery)
        original = _tws.send_lock(client)
        async with original:
            assert not _tws.swap_send_lock(client, Turn())
        turn = Turn()
        assert _tws.swap_send_lock(client, turn)
        assert _tws.send_lock(client) is turn
        assert not _tws.swap_send_lock(client, Turn())  # not the StrictFIFOLock any more
        assert _tws.capable(client)  # a lock of another kind still serves
        assert not _tws.swap_send_lock(object(), Turn())


async def test_a_batch_is_the_frames_send_message_would_write(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        client, server = await open_pair(nursery)
        await _tws.write_batch(server, ["a", b"b", "c"])
        assert [await client.get_message() for _ in range(3)] == ["a", b"b", "c"]


def test_replace_stream_only_replaces_the_stream_it_names() -> None:
    holder: Any = type("Holder", (), {})()
    old, new, other = (trio.testing.MemorySendStream() for _ in range(3))
    holder._stream = old
    _tws.replace_stream(holder, other, new)  # type: ignore[arg-type]
    assert holder._stream is old
    _tws.replace_stream(holder, old, new)  # type: ignore[arg-type]
    assert holder._stream is new


async def test_a_servers_text_frames_are_wsprotos_bytes(nursery: trio.Nursery) -> None:
    # Built without wsproto on a server (no extension, no fragment): the same
    # bytes, whatever the length class, also for non-ASCII text and when cached.
    with trio.fail_after(10):
        client, server = await open_pair(nursery)
    assert _tws.wsproto_frames(server._wsproto)
    assert not _tws.wsproto_frames(client._wsproto)  # a client masks: wsproto's path
    assert not _tws.wsproto_frames(object())
    texts = ["", "a" * 125, "b" * 126, "c" * 65535, "d" * 65536, "é€😀" * 50, "a" * 125]
    expected = b"".join(
        wsproto.connection.Connection(wsproto.connection.ConnectionType.SERVER).send(
            wsproto.events.TextMessage(data=text)
        )
        for text in texts
    )
    once = [f"once {number}" for number in range(3)]
    assert _tws.encode_messages(server, [*texts]) == expected
    assert _tws.encode_messages(server, once, cache=False) == b"".join(
        _tws.encode_messages(server, [text]) for text in once
    )
    assert "a" * 125 in _tws._FRAMES
    assert "once 0" in _tws._FRAMES  # the line above cached it; cache=False did not
    assert _tws.encode_messages(server, ["once more"], cache=False) == b"\x81\x09once more"
    assert "once more" not in _tws._FRAMES
    # Binary frames and a client's frames still take wsproto's path.
    assert _tws.encode_messages(server, [b"\x00"]) == b"\x82\x01\x00"
    masked = _tws.encode_messages(client, ["hi"])
    assert masked[:2] == b"\x81\x82"  # masked, two bytes of payload
    assert len(masked) == 8


async def test_a_clients_text_frames_are_masked_frames_a_server_reads(
    nursery: trio.Nursery,
) -> None:
    # Built without wsproto on a client: every length class, non-ASCII text,
    # binary frames through wsproto in between; each frame has its own key.
    with trio.fail_after(10):
        client, server = await open_pair(nursery)
    assert _tws.plain_frames(client._wsproto) == "client"
    assert _tws.plain_frames(server._wsproto) == "server"
    assert _tws.plain_frames(object()) is None
    texts: list[str | bytes] = ["", "a", "ab", "abc", "abcd", "a" * 125, "b" * 126]
    texts += ["c" * 65535, "d" * 65536, "é€😀" * 50, b"\x00\x01", "x" * 7]
    data = _tws.encode_messages(client, texts)
    reader = wsproto.connection.Connection(wsproto.connection.ConnectionType.SERVER)
    reader.receive_data(data)
    got: list[str | bytes] = []
    for event in reader.events():
        assert isinstance(event, wsproto.events.Message)
        assert event.message_finished
        got.append(event.data)
    assert got == texts
    first = _tws.encode_messages(client, ["hi"])
    assert first[:2] == b"\x81\x82"
    assert len(first) == 8
    keys = {_tws.encode_messages(client, ["hi"])[2:6] for _ in range(20)}
    assert len(keys) > 1  # a fresh key per frame


async def test_a_client_mid_fragment_takes_wsprotos_path(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        client, _ = await open_pair(nursery)
    client._wsproto.send(wsproto.events.TextMessage(data="part", message_finished=False))
    assert _tws.plain_frames(client._wsproto) is None
    frame = _tws.encode_messages(client, ["rest"])
    assert frame[0] == 0x80  # wsproto's continuation frame, final


async def open_client(
    nursery: trio.Nursery, queue_size: int
) -> tuple[trio_websocket.WebSocketConnection, trio_websocket.WebSocketConnection]:
    """As :func:`open_pair`, the client's message queue holding ``queue_size`` messages."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    accepted: list[trio_websocket.WebSocketConnection] = []
    done = trio.Event()

    async def serve() -> None:
        request = await trio_websocket.wrap_server_stream(nursery, server_stream)
        accepted.append(await request.accept())
        done.set()

    nursery.start_soon(serve)
    client = await trio_websocket.wrap_client_stream(
        nursery,
        cast(trio.SocketStream, client_stream),
        "example.test",
        "/",
        message_queue_size=queue_size,
    )
    await done.wait()
    return client, accepted[0]


async def test_eager_sends_queue_a_whole_write_before_the_reader_yields(
    nursery: trio.Nursery,
) -> None:
    # trio-websocket's own channel hands each message over with a pass of the
    # scheduler: the getter wakes after the first. Through EagerSend the reader
    # queues every message of the write first.
    texts = [f"m{n}" for n in range(20)]
    with trio.fail_after(10):
        client, server = await open_client(nursery, 100)
        queue = _tws.message_queue(client)
        original = client._send_channel
        await _tws.write_batch(server, texts[:10])
        assert await client.get_message() == "m0"
        assert queue.statistics().current_buffer_used < 9  # one at a time
        assert [await client.get_message() for _ in range(9)] == texts[1:10]
        with _tws.eager_message_sends(client):
            assert isinstance(client._send_channel, _tws.EagerSend)
            await _tws.write_batch(server, texts[10:])
            assert await client.get_message() == "m10"
            assert queue.statistics().current_buffer_used == 9
            assert [await client.get_message() for _ in range(9)] == texts[11:]
        assert client._send_channel is original
        assert _tws.capable(client)


async def test_eager_sends_keep_the_bound_and_the_order(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        client, server = await open_client(nursery, 2)
        queue = _tws.message_queue(client)
        with _tws.eager_message_sends(client):
            await _tws.write_batch(server, ["a", "b", "c", "d", "e"])
            await trio.testing.wait_all_tasks_blocked()  # the reader runs until the queue is full
            assert queue.statistics().current_buffer_used == 2
            assert queue.statistics().tasks_waiting_send == 1  # the third waits
            assert [await client.get_message() for _ in range(5)] == ["a", "b", "c", "d", "e"]


async def test_eager_sends_close_as_the_channel_does(nursery: trio.Nursery) -> None:
    with trio.fail_after(10):
        client, _ = await open_pair(nursery)
        with _tws.eager_message_sends(client):
            await client.aclose()  # trio-websocket closes its message channel
            try:
                await client.get_message()
            except trio_websocket.ConnectionClosed:
                pass
            else:  # pragma: no cover
                raise AssertionError("get_message after close")


def test_eager_sends_leave_other_objects_alone() -> None:
    holder: Any = type("Holder", (), {})()
    with _tws.eager_message_sends(holder):
        assert not hasattr(holder, "_send_channel")
    holder._send_channel = sentinel = object()
    with _tws.eager_message_sends(holder):
        assert holder._send_channel is sentinel
    # Something else replaced it inside the block: that one stays.
    send, _ = trio.open_memory_channel[str | bytes](1)
    holder._send_channel = send
    with _tws.eager_message_sends(holder):
        holder._send_channel = sentinel
    assert holder._send_channel is sentinel
