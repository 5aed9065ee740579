"""A refused handshake means the same whatever its body's framing (PROTOCOL.md 1b).

HTTP/1.1 frames a response body with ``Content-Length``, with chunked
transfer coding, or by closing the connection; a body may also be empty. Load
balancers and small servers send their 503s and 401s close-delimited, which
trio-websocket 0.12.2's reader loses (shared TRIO_NOTES): before the
workaround in ``_transport`` such a 503 read as "closed during the opening
handshake" (retried after the backoff's 0.1 s instead of ``Retry-After: 2``)
and such a 401 was retried instead of failing.

Each framing is served here by a server that writes the response bytes
itself: a raw TCP server on 127.0.0.1 (real sockets, real clock: the test
checks the delay the client chose), and the same bytes over the in-memory
network (virtual time: the next attempt comes exactly 2 s later).
"""

from __future__ import annotations

import functools

import pytest
import trio
import trio.testing

import trio_reconnect as tr
from trio_reconnect._transport import read_refusal
from trio_reconnect.testing import MemoryNetwork

REASONS = {401: b"Unauthorized", 503: b"Service Unavailable"}


def response(status: int, headers: list[bytes], body: bytes, framing: str) -> bytes:
    """The bytes of one refusal, framed as ``framing`` says."""
    head = [b"HTTP/1.1 %d %s" % (status, REASONS[status]), *headers]
    if framing == "content-length":
        head.append(b"Content-Length: %d" % len(body))
        payload = body
    elif framing == "chunked":
        head.append(b"Transfer-Encoding: chunked")
        payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    elif framing == "close-delimited":
        payload = body
    elif framing == "empty":
        head.append(b"Content-Length: 0")
        payload = b""
    elif framing == "close-delimited-empty":
        payload = b""
    else:
        raise AssertionError(framing)
    head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + payload


FRAMINGS = ["content-length", "chunked", "close-delimited", "empty", "close-delimited-empty"]
BUSY = (503, [b"Retry-After: 2"], b"busy, come back later")
DENIED = (401, [b"WWW-Authenticate: Bearer"], b"denied")


def expected_body(framing: str, body: bytes) -> bytes:
    return b"" if "empty" in framing else body


async def serve_bytes(stream: trio.abc.Stream, answers: list[bytes]) -> None:
    """Read the request head, write the next answer (or a 101 if none is left), close."""
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = await stream.receive_some()
        if not chunk:
            return
        request += chunk
    if answers:
        await stream.send_all(answers.pop(0))
    await trio.aclose_forcefully(stream)


async def raw_tcp_server(nursery: trio.Nursery, answers: list[bytes]) -> int:
    async def handler(stream: trio.SocketStream) -> None:
        await serve_bytes(stream, answers)

    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


@pytest.mark.parametrize("framing", FRAMINGS)
async def test_503_with_retry_after_over_tcp(nursery: trio.Nursery, framing: str) -> None:
    answers = [response(*BUSY, framing)]
    port = await raw_tcp_server(nursery, answers)
    waits: list[tr.Transition] = []
    waiting = trio.Event()

    def on_transition(transition: tr.Transition) -> None:
        if transition.state is tr.ConnectionState.BACKING_OFF:
            waits.append(transition)
            waiting.set()

    with trio.fail_after(10):
        async with tr.open_reconnecting_websocket(
            f"ws://127.0.0.1:{port}/",
            backoff=tr.Backoff(initial=0.1),
            on_transition=on_transition,
            ping_interval=None,
        ):
            await waiting.wait()
    assert waits[0].status_code == 503
    # Retry-After: 2, counted from the refusal's arrival (the teardown since is taken off).
    assert waits[0].delay is not None
    assert 1.9 < waits[0].delay <= 2.0
    assert waits[0].delay_source is tr.DelaySource.SERVER
    assert waits[0].close_code is None


@pytest.mark.parametrize("framing", FRAMINGS)
async def test_401_fails_at_once_over_tcp(nursery: trio.Nursery, framing: str) -> None:
    answers = [response(*DENIED, framing) for _ in range(10)]
    port = await raw_tcp_server(nursery, answers)
    with trio.fail_after(10), pytest.raises(tr.HandshakeRejectedError) as info:
        async with tr.open_reconnecting_websocket(
            f"ws://127.0.0.1:{port}/", backoff=tr.Backoff(initial=0.01), ping_interval=None
        ) as ws:
            await ws.wait_ready()
    error = info.value
    assert error.status_code == 401
    assert (b"www-authenticate", b"Bearer") in error.headers
    assert error.body == expected_body(framing, DENIED[2])
    assert len(answers) == 9  # one attempt, no retry
    assert len(error.history) == 1
    assert error.history[0].status_code == 401


@pytest.mark.parametrize("framing", FRAMINGS)
async def test_503_waits_exactly_the_hint_in_virtual_time(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, framing: str
) -> None:
    network = MemoryNetwork()
    listener = network.listen("server", 80)
    answers = [response(*BUSY, framing), response(*DENIED, framing)]
    accepted: list[float] = []

    async def accept_loop() -> None:
        while True:
            stream = await listener.accept()
            accepted.append(trio.current_time())
            nursery.start_soon(serve_bytes, stream, answers)

    nursery.start_soon(accept_loop)
    with trio.fail_after(60), pytest.raises(tr.HandshakeRejectedError) as info:
        async with tr.open_reconnecting_websocket(
            "ws://server/",
            open_stream=network.client("alice"),
            backoff=tr.Backoff(initial=0.1),
            ping_interval=None,
        ) as ws:
            await ws.wait_ready()
    assert accepted == [0.0, 2.0]
    assert [a.status_code for a in info.value.history] == [503, 401]
    assert info.value.history[0].delay == 2.0
    assert info.value.body == expected_body(framing, DENIED[2])


def test_read_refusal_reads_every_framing_and_truncation() -> None:
    for framing in FRAMINGS:
        refusal = read_refusal(response(*BUSY, framing))
        assert refusal is not None
        assert refusal.status_code == 503
        assert (b"retry-after", b"2") in refusal.headers
        assert refusal.body == expected_body(framing, BUSY[2])
    # A body cut short still has its head; the body is what arrived.
    cut = read_refusal(b"HTTP/1.1 503 x\r\nContent-Length: 10\r\nRetry-After: 2\r\n\r\nabc")
    assert cut is not None
    assert (cut.status_code, cut.body) == (503, b"abc")
    # No complete head: not a refusal.
    for data in (b"", b"HTTP/1.1 503 Service Unav", b"garbage\r\n\r\n", b"\x00" * 100):
        assert read_refusal(data) is None
    assert read_refusal(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n") is None
