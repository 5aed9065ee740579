"""The client's own reading of plain text frames (trio_reconnect/_wsread.py) against wsproto's.

The same bytes, cut at the same points, go to a plain wsproto client
connection and to a :class:`FastTextReads` over another: they must make the
same events, in the same order, and end in the same state, whatever the
frames (fragments, control frames, binary, masked or reserved bits,
non-minimal lengths, invalid UTF-8, a close, garbage), however they are cut,
whether the events are read after every chunk or not, and whether the client
sent its close in between. Then trio-websocket's client over both: the same
messages and the same close.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
import trio
import trio.testing
import trio_websocket
import wsproto
import wsproto.frame_protocol
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio._core import _run as trio_run
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import AcceptConnection, CloseConnection, Event, Request, TextMessage
from wsproto.utilities import LocalProtocolError

import trio_reconnect as tr
from tests.support.fake_server import FakeServer, ready_forever
from trio_reconnect import _attempt, _tws
from trio_reconnect._wsread import FastTextReads, fast_reads, plain_text_frames

FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    wide: int = 0,
) -> bytes:
    """One frame's bytes; ``wide``: the length in 2 (16) or 8 (64) bytes even when shorter."""
    size = len(payload)
    mask_bit = 0x80 if mask is not None else 0
    head = bytes(((0x80 if fin else 0) | rsv << 4 | opcode,))
    if wide == 64 or (not wide and size > 65535):
        head += bytes((mask_bit | 127,)) + size.to_bytes(8, "big")
    elif wide == 16 or size > 125:
        head += bytes((mask_bit | 126,)) + size.to_bytes(2, "big")
    else:
        head += bytes((mask_bit | size,))
    if mask is not None:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def open_client() -> wsproto.WSConnection:
    """A wsproto client connection, open (its handshake made with a wsproto server)."""
    client = wsproto.WSConnection(ConnectionType.CLIENT)
    server = wsproto.WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="example.test", target="/")))
    assert [type(e) for e in server.events()] == [Request]
    client.receive_data(server.send(AcceptConnection()))
    assert [type(e) for e in client.events()] == [AcceptConnection]
    return client


_texts = st.text(max_size=40) | st.text(min_size=100, max_size=300)
_utf8 = _texts.map(str.encode)
_bad_utf8 = st.sampled_from([b"\xff", b"\xc3", b"a\xed\xa0\x80b", b"\xf0\x9f\x98", b"\x80abc"])


@st.composite
def _frames(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(
            ["text"] * 8
            + ["text16", "bad_text", "fragments", "binary", "ping", "pong", "close"]
            + ["masked", "rsv", "non_minimal", "opcode", "garbage", "huge", "empty"]
        )
    )
    if kind == "text":
        return frame(1, draw(_utf8))
    if kind == "text16":
        return frame(1, draw(st.text(min_size=42, max_size=60)).encode() * 3)
    if kind == "bad_text":
        return frame(1, draw(_utf8) + draw(_bad_utf8) + draw(_utf8))
    if kind == "fragments":
        parts = draw(st.lists(_utf8, min_size=2, max_size=3))
        first = draw(st.sampled_from([1, 2]))
        return b"".join(
            frame(first if i == 0 else 0, p, fin=i == len(parts) - 1) for i, p in enumerate(parts)
        )
    if kind == "binary":
        return frame(2, draw(st.binary(max_size=200)))
    if kind in ("ping", "pong"):
        return frame(9 if kind == "ping" else 10, draw(st.binary(max_size=125)))
    if kind == "close":
        return frame(8, (1000).to_bytes(2, "big") + draw(_texts).encode()[:100])
    if kind == "masked":
        return frame(1, draw(_utf8), mask=b"\x01\x02\x03\x04")
    if kind == "rsv":
        return frame(1, draw(_utf8), rsv=draw(st.sampled_from([1, 2, 4])))
    if kind == "non_minimal":
        return frame(1, draw(_utf8), wide=draw(st.sampled_from([16, 64])))
    if kind == "opcode":
        return frame(draw(st.sampled_from([3, 7, 0xB])), draw(_utf8))
    if kind == "huge":
        return frame(1, b"x" * 65536)
    if kind == "empty":
        return frame(1, b"")
    return draw(st.binary(min_size=1, max_size=12))


@st.composite
def _sessions(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bool, bool]]]:
    """The bytes, and per chunk: its end, read the events after it, the client closes after it."""
    data = b"".join(draw(st.lists(_frames(), max_size=12)))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=10))) | {len(data)})
    steps = [(cut, draw(st.booleans()), draw(st.integers(0, 9)) == 0) for cut in cuts]
    return data, steps


def _step(conn: wsproto.WSConnection, chunk: bytes) -> str | None:
    try:
        conn.receive_data(chunk)
    except LocalProtocolError as exc:
        return str(exc)
    return None


def _close(conn: wsproto.WSConnection) -> bytes | None:
    if conn.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
        return None
    return conn.send(CloseConnection(code=1000, reason="bye"))


@given(session=_sessions())
@settings(FUZZ, max_examples=600)
def test_the_same_events_as_wsprotos_for_any_frames_cut_anywhere(
    session: tuple[bytes, list[tuple[int, bool, bool]]],
) -> None:
    data, steps = session
    plain = open_client()
    fast = fast_reads(open_client())
    assert isinstance(fast, FastTextReads)
    plain_events: list[Event] = []
    fast_events: list[Event] = []
    start = 0
    for end, read, close in steps:
        chunk = data[start:end]
        start = end
        assert _step(fast, chunk) == _step(plain, chunk)
        if read:
            plain_events += plain.events()
            fast_events += fast.events()
            assert fast_events == plain_events
        if close:
            assert (_close(fast) is None) == (_close(plain) is None)
        assert fast.state is plain.state
    plain_events += plain.events()
    fast_events += fast.events()
    assert fast_events == plain_events
    assert fast.state is plain.state


def _resume_answer(channels: int) -> list[str]:
    frames = [
        f'{{"type": "subscribed", "channel": "room:{n}", "id": "17965265576473{n:02d}"}}'
        for n in range(channels)
    ]
    return [*frames, '{"type": "ready", "id": null, "lost": false, "channels": []}']


def _server_frames(texts: list[str]) -> bytes:
    return b"".join(frame(1, text.encode()) for text in texts)


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64, 97, 4096])
def test_a_resume_answer_read_in_chunks_of_any_size(size: int) -> None:
    texts = _resume_answer(100)
    data = _server_frames(texts)
    plain, fast = open_client(), fast_reads(open_client())
    assert fast is not None
    plain_events: list[Event] = []
    fast_events: list[Event] = []
    for chunk in _chunks(data, size):
        plain.receive_data(chunk)
        fast.receive_data(chunk)
        plain_events += plain.events()
        fast_events += fast.events()
    assert fast_events == plain_events
    messages = "".join(e.data for e in fast_events if isinstance(e, TextMessage))
    assert messages == "".join(texts)


def test_plain_text_frames_go_past_wsprotos_frame_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole point: wsproto's parser sees none of a resume answer read in 4 KiB chunks."""
    parsed: list[int] = []
    original = wsproto.frame_protocol.FrameDecoder.parse_header

    def counting(self: wsproto.frame_protocol.FrameDecoder) -> bool:
        done = original(self)
        if done:
            parsed.append(1)
        return done

    monkeypatch.setattr(wsproto.frame_protocol.FrameDecoder, "parse_header", counting)
    data = _server_frames(_resume_answer(100))
    fast = fast_reads(open_client())
    assert fast is not None
    events: list[Event] = []
    for chunk in _chunks(data, 4096):
        fast.receive_data(chunk)
        events += fast.events()
    # A frame cut by a chunk's end is wsproto's to finish (2 here), no other.
    assert len(parsed) <= len(data) // 4096
    assert sum(1 for e in events if isinstance(e, TextMessage) and e.message_finished) == 101


def test_plain_text_frames_stop_at_the_first_frame_of_another_kind() -> None:
    out: Any = __import__("collections").deque()
    data = frame(1, b"a") + frame(1, "é".encode()) + frame(9, b"") + frame(1, b"b")
    assert plain_text_frames(data, out) == 7
    assert list(out) == [TextMessage(data="a"), TextMessage(data="é")]
    out.clear()
    assert plain_text_frames(frame(1, b"\xff") + frame(1, b"a"), out) == 0
    assert plain_text_frames(frame(1, b"a" * 200)[:-1], out) == 0
    assert plain_text_frames(frame(1, b"a", wide=16), out) == 0
    assert not out


def test_only_an_open_client_of_this_wsproto_is_taken_over() -> None:
    assert fast_reads(object()) is None
    assert fast_reads(wsproto.WSConnection(ConnectionType.CLIENT)) is None  # not open yet
    server = wsproto.WSConnection(ConnectionType.SERVER)
    assert fast_reads(server) is None
    client = open_client()
    fast = fast_reads(client)
    assert fast is not None
    assert fast.connection is client.connection  # one connection, two faces
    assert fast_reads(fast) is None  # not twice
    broken = open_client()
    del broken.connection._proto._parse_more  # type: ignore[union-attr]
    assert fast_reads(broken) is None


# --------------------------------------------------------------------------- trio-websocket


async def _read_all(raw: bytes, cuts: list[int], fast: bool, max_message_size: int) -> list[Any]:
    """What trio-websocket's client makes of a server that writes ``raw`` cut at ``cuts``."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    server = wsproto.WSConnection(ConnectionType.SERVER)
    got: list[Any] = []

    async def serve() -> None:
        while True:
            server.receive_data(bytes(await server_stream.receive_some()))
            if any(isinstance(e, Request) for e in server.events()):
                break
        await server_stream.send_all(server.send(AcceptConnection()))
        start = 0
        for end in [*cuts, len(raw)]:
            if end > start:
                await server_stream.send_all(raw[start:end])
                await trio.sleep(0.001)  # one read each
            start = end
        # The client's close, if it sends one, then its end (not a race with ours).
        with trio.move_on_after(10):
            while await server_stream.receive_some():
                pass
        await server_stream.aclose()

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                cast(trio.SocketStream, client_stream),
                "example.test",
                "/",
                max_message_size=max_message_size,
            )
            if fast:
                assert _tws.fast_text_reads(ws)
            try:
                while True:
                    got.append(await ws.get_message())
            except trio_websocket.ConnectionClosed as closed:
                reason = closed.reason
                got.append(None if reason is None else (reason.code, reason.reason))
            nursery.cancel_scope.cancel()
    return got


@given(
    frames=st.lists(_frames(), max_size=8),
    cuts=st.lists(st.integers(0, 4000), max_size=6),
    max_message_size=st.sampled_from([2**20, 50]),
    seed=st.integers(0, 2**32),
)
@settings(FUZZ, max_examples=80)
def test_trio_websocket_gets_the_same_messages_and_close(
    frames: list[bytes], cuts: list[int], max_message_size: int, seed: int
) -> None:
    """Each in a run of its own, with trio's scheduler seeded alike (its order of ready tasks
    decides some closes: 1009 for a message too big, or a 1007 right after it)."""
    raw = b"".join(frames)
    cut_at = sorted(c for c in set(cuts) if c < len(raw))
    results = []
    for fast in (False, True):
        trio_run._r.seed(seed)
        results.append(
            trio.run(
                _read_all,
                raw,
                cut_at,
                fast,
                max_message_size,
                clock=trio.testing.MockClock(autojump_threshold=0),
            )
        )
    assert results[1] == results[0]


@pytest.mark.parametrize("fast", [True, False])
async def test_a_ready_connection_reads_through_fast_text_reads(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    fast: bool,
) -> None:
    monkeypatch.setattr(_attempt, "_FAST_TEXT_READS", fast)
    server = FakeServer(nursery, ready_forever)
    with trio.fail_after(10):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream, ping_interval=None
        ) as ws:
            await ws.wait_ready()
            connection = ws._run.ready_ws
            assert connection is not None
            protocol = connection._wsproto
            assert type(protocol) is (FastTextReads if fast else wsproto.WSConnection)
