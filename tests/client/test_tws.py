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
    assert _tws.encode_messages(server, [*texts]) == expected
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
