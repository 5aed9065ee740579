"""Refusals with odd framing: the verdict is the status's, whatever the bytes look like.

tests/client/test_transport_refusal_framing.py covers the three framings HTTP/1.1 allows.
These are the ones real servers get slightly wrong, each written byte for
byte by a raw server: HTTP/1.0, a ``Content-Length`` shorter or longer than
the body on a ``Connection: close`` response, a body over the 64 KiB the
client records, a head written one byte per TCP segment, garbage after the
body. A 503 must still wait its ``Retry-After`` and a 401 must still fail at
once. A response that never ends on a connection that stays open must time
out after ``connect_timeout``, and a bogus 101 followed by a close is retried.

Before the fix in ``_client._ReaderSpawner``, a ``Connection: close``
response with more body bytes than its ``Content-Length`` made
trio-websocket's reader raise (h11: "Got data when expecting EOF", then
wsproto refusing to reject a closed connection); that error left the
attempt before the recorded refusal was read, so the 503's hint was lost
and the 401 was retried.
"""

from __future__ import annotations

import email.utils
import functools

import pytest
import trio
import trio.testing

import trio_reconnect as tr
from trio_reconnect._transport import MAX_REFUSAL_BYTES
from trio_reconnect.testing import MemoryNetwork

BIG = b"x" * (MAX_REFUSAL_BYTES + 10_000)


def waited_2s(delay: float | None) -> bool:
    """Retry-After: 2, counted from the refusal's arrival (the real time since is taken off)."""
    return delay is not None and 1.9 < delay <= 2.0


def odd(status: int, framing: str) -> tuple[bytes, bytes]:
    """``(response bytes, the body the client should report)`` for one odd framing."""
    line = b"HTTP/1.1 %d %s" % (status, b"Unauthorized" if status == 401 else b"Busy")
    hint = b"Retry-After: 2\r\n" if status == 503 else b"WWW-Authenticate: Bearer\r\n"
    body = b"busy, come back later"
    if framing == "http/1.0 close-delimited":
        return line.replace(b"1.1", b"1.0", 1) + b"\r\n" + hint + b"\r\n" + body, body
    if framing == "http/1.0 content-length":
        head = line.replace(b"1.1", b"1.0", 1) + b"\r\n" + hint
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body, body
    if framing == "content-length shorter than the body":
        head = line + b"\r\n" + hint + b"Connection: close\r\nContent-Length: 4\r\n\r\n"
        return head + body, body[:4]
    if framing == "content-length longer than the body":
        head = line + b"\r\n" + hint + b"Connection: close\r\nContent-Length: 500\r\n\r\n"
        return head + body, body
    if framing == "close-delimited body over 64 KiB":
        head = line + b"\r\n" + hint + b"Connection: close\r\n\r\n"
        return head + BIG, BIG[: MAX_REFUSAL_BYTES - len(head)]
    if framing == "garbage after a content-length body":
        head = line + b"\r\n" + hint + b"Content-Length: %d\r\n\r\n" % len(body)
        return head + body + b"\x00\xff\r\n\r\nnot HTTP at all", body
    if framing == "garbage after a body, connection: close":
        head = (
            line + b"\r\n" + hint + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        return head + body + b"\x00\xff\r\n\r\nnot HTTP at all", body
    if framing == "chunked, cut short":
        head = line + b"\r\n" + hint + b"Transfer-Encoding: chunked\r\n\r\n"
        return head + b"100\r\n" + body, body
    if framing == "bare LF line ends":
        return (line + b"\n" + hint.replace(b"\r\n", b"\n") + b"Connection: close\n\n" + body), body
    raise AssertionError(framing)


ODD_FRAMINGS = [
    "http/1.0 close-delimited",
    "http/1.0 content-length",
    "content-length shorter than the body",
    "content-length longer than the body",
    "close-delimited body over 64 KiB",
    "garbage after a content-length body",
    "garbage after a body, connection: close",
    "chunked, cut short",
    "bare LF line ends",
]


async def answer(stream: trio.abc.Stream, data: bytes, *, bytewise: bool, stay_open: bool) -> None:
    """Read the request head, write ``data`` (one byte per write if ``bytewise``), close."""
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = await stream.receive_some()
        if not chunk:
            return
        request += chunk
    try:
        if bytewise:
            for i in range(len(data)):
                await stream.send_all(data[i : i + 1])
                await trio.sleep(0.0005)
        else:
            await stream.send_all(data)
        if stay_open:
            await trio.sleep_forever()
    except trio.BrokenResourceError:
        pass  # the client left (it read all it needed)
    finally:
        await trio.aclose_forcefully(stream)


async def raw_server(
    nursery: trio.Nursery, answers: list[bytes], *, bytewise: bool = False
) -> tuple[int, list[int]]:
    """A TCP server on 127.0.0.1 writing the next answer to each connection."""
    served: list[int] = []

    async def handler(stream: trio.SocketStream) -> None:
        served.append(len(served))
        await answer(
            stream, answers[min(len(served), len(answers)) - 1], bytewise=bytewise, stay_open=False
        )

    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1], served


async def first_wait(port: int) -> tr.Transition:
    """The first BACKING_OFF transition of a client of ``port``."""
    waits: list[tr.Transition] = []
    waiting = trio.Event()

    def on_transition(transition: tr.Transition) -> None:
        if transition.state is tr.ConnectionState.BACKING_OFF:
            waits.append(transition)
            waiting.set()

    with trio.fail_after(20):
        async with tr.open_reconnecting_websocket(
            f"ws://127.0.0.1:{port}/",
            backoff=tr.Backoff(initial=0.1),
            on_transition=on_transition,
            ping_interval=None,
        ):
            await waiting.wait()
    return waits[0]


@pytest.mark.parametrize("framing", ODD_FRAMINGS)
async def test_odd_503_waits_its_retry_after(nursery: trio.Nursery, framing: str) -> None:
    data, _ = odd(503, framing)
    port, _ = await raw_server(nursery, [data])
    wait = await first_wait(port)
    assert (wait.status_code, waited_2s(wait.delay), wait.delay_source) == (
        503,
        True,
        tr.DelaySource.SERVER,
    )


@pytest.mark.parametrize("framing", ODD_FRAMINGS)
async def test_odd_401_fails_at_once(nursery: trio.Nursery, framing: str) -> None:
    data, body = odd(401, framing)
    port, served = await raw_server(nursery, [data])
    with trio.fail_after(20), pytest.raises(tr.HandshakeRejectedError) as info:
        async with tr.open_reconnecting_websocket(
            f"ws://127.0.0.1:{port}/", backoff=tr.Backoff(initial=0.01), ping_interval=None
        ) as ws:
            await ws.wait_ready()
    assert info.value.status_code == 401
    assert (b"www-authenticate", b"Bearer") in info.value.headers
    assert info.value.body == body
    assert len(served) == 1


@pytest.mark.parametrize("status", [503, 401])
async def test_a_head_written_byte_by_byte(nursery: trio.Nursery, status: int) -> None:
    data, _ = odd(status, "garbage after a body, connection: close")
    port, served = await raw_server(nursery, [data], bytewise=True)
    if status == 503:
        wait = await first_wait(port)
        assert (wait.status_code, waited_2s(wait.delay)) == (503, True)
        return
    with trio.fail_after(20), pytest.raises(tr.HandshakeRejectedError) as info:
        async with tr.open_reconnecting_websocket(
            f"ws://127.0.0.1:{port}/", ping_interval=None
        ) as ws:
            await ws.wait_ready()
    assert info.value.status_code == 401
    assert len(served) == 1


STALLED = {
    "head never ends": b"HTTP/1.1 503 Busy\r\nRetry-After: 2\r\n",
    "content-length body never ends": (
        b"HTTP/1.1 503 Busy\r\nRetry-After: 2\r\nContent-Length: 100\r\n\r\nbusy"
    ),
    "close-delimited body, never closed": b"HTTP/1.1 401 No\r\nConnection: close\r\n\r\nno",
    "chunked body never ends": (
        b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n"
    ),
}


@pytest.mark.parametrize("name", list(STALLED))
async def test_a_response_that_never_ends_times_out(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, name: str
) -> None:
    network = MemoryNetwork()
    listener = network.listen("server", 80)
    accepted: list[float] = []

    async def accept_loop() -> None:
        while True:
            stream = await listener.accept()
            accepted.append(trio.current_time())
            nursery.start_soon(
                functools.partial(answer, stream, STALLED[name], bytewise=False, stay_open=True)
            )

    nursery.start_soon(accept_loop)
    waits: list[tr.Transition] = []
    with trio.fail_after(60), pytest.raises(tr.ReconnectFailed) as info:
        async with tr.open_reconnecting_websocket(
            "ws://server/",
            open_stream=network.client("alice"),
            connect_timeout=3.0,
            max_attempts=2,
            backoff=tr.Backoff(initial=1.0, jitter=tr.Jitter.NONE),
            ping_interval=None,
            on_transition=waits.append,
        ) as ws:
            await ws.wait_ready()
    assert accepted == [0.0, 4.0]  # 3 s of timeout, 1 s of backoff
    assert [type(a.error) for a in info.value.history] == [tr.ConnectTimeout] * 2
    assert all(a.status_code is None for a in info.value.history)


async def test_a_bogus_101_then_close_is_retried(nursery: trio.Nursery) -> None:
    bogus = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    port, served = await raw_server(nursery, [bogus])
    with trio.fail_after(20), pytest.raises(tr.ReconnectFailed) as info:
        async with tr.open_reconnecting_websocket(
            f"ws://127.0.0.1:{port}/",
            backoff=tr.Backoff(initial=0.01, max_delay=0.02),
            max_attempts=3,
            ping_interval=None,
        ) as ws:
            await ws.wait_ready()
    assert not isinstance(info.value, tr.HandshakeRejectedError)
    assert len(served) == 3
    assert all(a.status_code is None and a.close_code is None for a in info.value.history)


@pytest.mark.parametrize("form", ["imf-fixdate", "asctime without a zone"])
async def test_close_delimited_503_with_an_http_date(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    form: str,
) -> None:
    import trio_reconnect._supervisor as client_module

    wall = 1_800_000_000.0
    monkeypatch.setattr(client_module, "_wall_clock", lambda: wall)
    if form == "imf-fixdate":
        date = email.utils.formatdate(wall + 42, usegmt=True).encode()
    else:
        import time

        date = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(wall + 42)).encode()
    busy = b"HTTP/1.1 503 Busy\r\nRetry-After: " + date + b"\r\n\r\nlater"
    denied, _ = odd(401, "http/1.0 close-delimited")
    network = MemoryNetwork()
    listener = network.listen("server", 80)
    answers = [busy, denied]
    accepted: list[float] = []

    async def accept_loop() -> None:
        while True:
            stream = await listener.accept()
            accepted.append(trio.current_time())
            data = answers.pop(0)
            nursery.start_soon(
                functools.partial(answer, stream, data, bytewise=False, stay_open=False)
            )

    nursery.start_soon(accept_loop)
    with trio.fail_after(100), pytest.raises(tr.HandshakeRejectedError) as info:
        async with tr.open_reconnecting_websocket(
            "ws://server/", open_stream=network.client("alice"), ping_interval=None
        ) as ws:
            await ws.wait_ready()
    assert accepted == [0.0, 42.0]
    assert [a.status_code for a in info.value.history] == [503, 401]


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n",
        b"HTTP/1.1 100 Continue\n\n",
    ],
    ids=["100", "103 with a header", "100 then 103", "100 bare LF"],
)
async def test_an_interim_response_before_the_refusal(
    nursery: trio.Nursery, interim: bytes
) -> None:
    # RFC 9110 15.2: interim responses come before the final one and are skipped;
    # wsproto alone would read the 100 as the refusal ("HTTP 100", fatal).
    data, _ = odd(503, "http/1.0 close-delimited")
    port, _ = await raw_server(nursery, [interim + data])
    wait = await first_wait(port)
    assert (wait.status_code, waited_2s(wait.delay)) == (503, True)


async def test_an_interim_response_split_across_writes(nursery: trio.Nursery) -> None:
    data, _ = odd(503, "http/1.0 content-length")
    port, _ = await raw_server(nursery, [b"HTTP/1.1 100 Continue\r\n\r\n" + data], bytewise=True)
    wait = await first_wait(port)
    assert (wait.status_code, waited_2s(wait.delay)) == (503, True)
