"""The client's lifecycle: sends across reconnects, pings, closing, cancellation."""

from __future__ import annotations

import inspect
import json
import logging
import random
from typing import Any

import attrs
import pytest
import trio
import trio.testing
import trio_websocket

import trio_reconnect as tr
from tests.support.fake_server import (
    FakeServer,
    accept_and_resume,
    ready_forever,
    send_event,
    send_ready,
)


@attrs.define(eq=False)
class BlackHole(trio.abc.Stream):
    """A stream that can go half-open: bytes vanish both ways, no FIN."""

    inner: trio.abc.Stream
    down: bool = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.down:
            await trio.lowlevel.checkpoint()
            return
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        while True:
            data = await self.inner.receive_some(max_bytes)
            if not self.down or not data:
                return data

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_sends_held_until_ready_released_in_call_order(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    received: list[object] = []

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, frame = await accept_and_resume(request)
        received.append(frame)
        await trio.sleep(2)
        await send_ready(ws, None)
        while True:
            received.append(await ws.get_message())

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream
        ) as ws:
            done: list[float] = []

            async def send(i: int) -> None:
                await ws.send_message(f"m{i}")
                done.append(trio.current_time())

            async with trio.open_nursery() as senders:
                for i in range(20):
                    senders.start_soon(send, i)
                    await trio.sleep(0.01)
            await trio.sleep(1)
    first: Any = received[0]
    assert {k: first[k] for k in ("type", "lastEventId")} == {
        "type": "resume",
        "lastEventId": None,
    }
    assert received[1:] == [f"m{i}" for i in range(20)]
    assert min(done) >= 2.0


async def test_a_cancelled_sender_gives_its_turn_to_the_next(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Cancelled while it holds the turn (at the gate) or while it waits for
    it: its frame is not sent, and the others go out in call order."""
    received: list[object] = []

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await trio.sleep(2)
        await send_ready(ws, None)
        while True:
            received.append(await ws.get_message())

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream
        ) as ws:
            scopes = {name: trio.CancelScope() for name in "abcde"}

            async def send(name: str) -> None:
                with scopes[name]:
                    await ws.send_message(name)

            async with trio.open_nursery() as senders:
                for name in "abcde":
                    senders.start_soon(send, name)
                    await trio.sleep(0.01)
                scopes["a"].cancel()  # holds the turn, waiting at the gate
                scopes["c"].cancel()  # waits for the turn
                await trio.sleep(0.5)
                scopes["e"].cancel()  # waits for the turn, last
            await ws.send_message("f")  # after them all, on the ready connection
            await trio.sleep(1)
    assert received == ["b", "d", "f"]


async def test_send_during_outage_goes_out_on_next_connection(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    received: dict[int, list[object]] = {}

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        received[n] = []
        if n == 1:
            received[n].append(await ws.get_message())
            await ws.aclose(1012, json.dumps({"retryAfter": 3000}))
            return
        while True:
            received[n].append(await ws.get_message())

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream
        ) as ws:
            await ws.send_message("before")
            while ws.state is not tr.ConnectionState.BACKING_OFF:
                await trio.sleep(0.1)
            await ws.send_message("during")  # waits for the next ready connection
            assert trio.current_time() == pytest.approx(3.0, abs=0.11)
            await trio.sleep(1)
    assert received == {1: ["before"], 2: ["during"]}


async def test_ping_timeout_detects_half_open_link(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    holes: list[BlackHole] = []

    server = FakeServer(nursery, ready_forever)

    async def open_stream(target: tr.Target) -> trio.abc.Stream:
        hole = BlackHole(await server.open_stream(target))
        holes.append(hole)
        return hole

    transitions: list[tr.Transition] = []
    with trio.fail_after(200):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/",
            open_stream=open_stream,
            ping_interval=5.0,
            ping_timeout=3.0,
            backoff=tr.Backoff(jitter=tr.Jitter.NONE),
            on_transition=transitions.append,
        ) as ws:
            await ws.wait_ready()
            await trio.sleep(12)  # two good pings at 5 and 10
            holes[0].down = True  # at 12: the link goes half-open
            while len(server.connects) < 2:
                await trio.sleep(0.5)
            await ws.wait_ready()
    # ping at 15 gets no pong by 18: dead; first retry after 1 s (stable: up 18 s)
    lost = [t for t in transitions if t.state is tr.ConnectionState.BACKING_OFF]
    assert isinstance(lost[0].error, tr.PingTimeout)
    assert lost[0].time == 18.0
    assert server.connects == [0.0, 19.0]


async def test_slow_consumer_is_not_mistaken_for_dead_server(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        for i in range(500):
            await send_event(ws, str(i + 1), i)
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(500):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/",
            open_stream=server.open_stream,
            ping_interval=5.0,
            ping_timeout=3.0,
            max_queue=8,
        ) as ws:
            await ws.wait_ready()
            await trio.sleep(100)  # the application does not read for 100 s
            got = [await ws.get_message() for _ in range(500)]
            await trio.sleep(30)  # pings flow again once it has caught up
            assert ws.statistics().connects == 1
    assert got == [tr.ServerEvent(str(i + 1), i) for i in range(500)]
    assert len(server.connects) == 1


async def test_leaving_the_block_closes_with_1000(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    codes: list[int | None] = []

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        try:
            await ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            codes.append(exc.reason.code if exc.reason else None)

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream
        ) as ws:
            await ws.wait_ready()
        assert trio.current_time() == 0.0  # the close handshake did not wait for a timeout
        await trio.sleep(1)
    assert codes == [1000]
    assert len(server.connects) == 1
    with pytest.raises(tr.ClientClosedError):
        await ws.send_message("late")
    with pytest.raises(tr.ClientClosedError):
        await ws.get_message()
    with pytest.raises(tr.ClientClosedError):
        await ws.wait_ready()
    with pytest.raises(tr.ClientClosedError):
        ws.reconnect_now()
    assert [item async for item in ws] == []


async def test_close_is_bounded_by_close_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    holes: list[BlackHole] = []

    server = FakeServer(nursery, ready_forever)

    async def open_stream(target: tr.Target) -> trio.abc.Stream:
        hole = BlackHole(await server.open_stream(target))
        holes.append(hole)
        return hole

    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=open_stream, close_timeout=2.0
        ) as ws:
            await ws.wait_ready()
            holes[0].down = True  # the close handshake will never complete
    assert trio.current_time() == 2.0


# Cancellation at every stage: tests/client/test_cancellation.py.


async def test_body_errors_come_out_bare(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer(nursery, ready_forever)
    with trio.fail_after(100), pytest.raises(KeyError, match="boom"):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream
        ) as ws:
            await ws.wait_ready()
            raise KeyError("boom")


async def test_reconnect_now_skips_backoff_and_drops_connection(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        if n == 1:
            await ws.aclose(1012, json.dumps({"retryAfter": 100_000}))
            return
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream
        ) as ws:
            while ws.state is not tr.ConnectionState.BACKING_OFF:
                await trio.sleep(0.5)
            ws.reconnect_now()  # at 0.5 instead of 100
            await ws.wait_ready()
            await trio.sleep(1)
            ws.reconnect_now()  # drop a healthy connection: at once, not a failure
            while len(server.connects) < 3:
                await trio.sleep(0.1)
            await ws.wait_ready()
            stats = ws.statistics()
    assert server.connects == pytest.approx([0.0, 0.5, 1.5])
    assert stats.connects == 3
    # The 1012 with a hint after ready is a planned restart, not a failure.
    assert (stats.failed_attempts, stats.server_directed) == (0, 1)


async def test_factories_called_before_every_attempt(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    seen_headers: list[list[tuple[bytes, bytes]]] = []
    tokens = iter(["t1", "t2", "t3"])

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        seen_headers.append([h for h in request.headers if h[0] == b"authorization"])
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        if n == 1:
            await ws.aclose(1012, json.dumps({"retryAfter": 0}))
            return
        await trio.sleep_forever()

    async def headers() -> dict[str, str]:
        await trio.lowlevel.checkpoint()
        return {"Authorization": f"Bearer {next(tokens)}"}

    urls = iter(["ws://a.test/one", "ws://b.test:8080/two?x=1"])
    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            lambda: next(urls), open_stream=server.open_stream, headers=headers
        ) as ws:
            while len(server.connects) < 2:
                await trio.sleep(0.1)
            await ws.wait_ready()
    assert seen_headers == [[(b"authorization", b"Bearer t1")], [(b"authorization", b"Bearer t2")]]
    assert [(t.host, t.port, t.resource) for t in server.targets] == [
        ("a.test", 80, "/one"),
        ("b.test", 8080, "/two?x=1"),
    ]


async def test_credentials_never_logged(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_reconnect")

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        if n == 1:
            await request.reject(503, extra_headers=[(b"Retry-After", b"1")])
            return
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    transitions: list[tr.Transition] = []
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/feed?token=SECRET-Q",
            open_stream=server.open_stream,
            headers={"Authorization": "Bearer SECRET-H"},
            on_transition=transitions.append,
        ) as ws:
            await ws.wait_ready()
            assert "SECRET" not in repr(ws)
    assert "SECRET" not in caplog.text
    assert "example.test/feed" in caplog.text
    assert all("SECRET" not in repr(t) for t in transitions)


async def test_invalid_options_fail_fast() -> None:
    for bad in [
        {"max_attempts": 0},
        {"connect_timeout": 0},
        {"ping_interval": -1},
        {"give_up_after": float("nan")},
        {"max_queue": 0},
        {"dedupe_window": 0},
    ]:
        with pytest.raises(ValueError, match=r"\w"):
            tr.ReconnectingWebSocket("ws://example.test/", **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scheme"):
        tr.ReconnectingWebSocket("http://example.test/")
    with pytest.raises(TypeError):
        tr.ReconnectingWebSocket(42)  # type: ignore[arg-type]


async def test_send_rejects_non_text(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    async with tr.open_reconnecting_websocket(
        "ws://example.test/", open_stream=server.open_stream
    ) as ws:
        with pytest.raises(TypeError):
            await ws.send_message(42)  # type: ignore[arg-type]


async def test_hook_exception_does_not_crash_supervisor(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws, None)
        await trio.sleep_forever()

    def hook(t: tr.Transition) -> None:
        raise RuntimeError("bad hook")

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream, on_transition=hook
        ) as ws:
            await ws.wait_ready()
            assert ws.state is tr.ConnectionState.OPEN


async def test_resume_false_passes_raw_messages(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws = await request.accept()
        await ws.send_message(json.dumps({"type": "event", "id": "1", "data": 0}))
        await ws.send_message(await ws.get_message())
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream, resume=False
        ) as ws:
            await ws.send_message("echo me")
            first = await ws.get_message()
            second = await ws.get_message()
            assert ws.statistics().connects == 1
    assert first == json.dumps({"type": "event", "id": "1", "data": 0})
    assert second == "echo me"


async def test_random_default_and_repr(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    ws = tr.ReconnectingWebSocket("wss://example.test:8443/x?k=v", random=random.Random(1))
    assert repr(ws) == "<ReconnectingWebSocket wss://example.test:8443/x connecting>"


def test_the_entry_point_has_the_class_options_typed_and_keyword_only() -> None:
    """open_reconnecting_websocket spells out every option (mypy and IDEs see
    them) and takes exactly the class's, with the same defaults."""
    entry = inspect.signature(tr.open_reconnecting_websocket)
    cls = inspect.signature(tr.ReconnectingWebSocket)
    assert list(entry.parameters) == list(cls.parameters)
    for name, parameter in entry.parameters.items():
        theirs = cls.parameters[name]
        assert (parameter.kind, parameter.default, parameter.annotation) == (
            theirs.kind,
            theirs.default,
            theirs.annotation,
        ), name
        if name != "url":
            assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, name
            assert parameter.annotation not in ("Any", inspect.Parameter.empty), name
    assert len(entry.parameters) == 29  # url and 28 options
    documented = tr.open_reconnecting_websocket.__doc__ or ""
    assert all(f"{name}:" in documented for name in entry.parameters), "every option documented"


async def test_reconnect_now_from_the_connecting_hook_drops_that_attempt(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """on_transition runs when the attempt has begun: a reconnect_now() there
    drops that attempt (no failure), it is not lost."""
    server = FakeServer(nursery, ready_forever)
    transitions: list[tr.Transition] = []
    asked = False

    def hook(transition: tr.Transition) -> None:
        nonlocal asked
        transitions.append(transition)
        if transition.state is tr.ConnectionState.CONNECTING and not asked:
            asked = True
            ws.reconnect_now()

    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            "ws://example.test/", open_stream=server.open_stream, on_transition=hook
        ) as ws:
            await ws.wait_ready()
            ws.reconnect_now()  # the CONNECTING after this one calls it again
            await trio.sleep(1)
            await ws.wait_ready()
            states = [(t.state, t.delay_source) for t in transitions]
    backing = [source for state, source in states if state is tr.ConnectionState.BACKING_OFF]
    assert backing == [tr.DelaySource.IMMEDIATE, tr.DelaySource.IMMEDIATE]
    assert ws.statistics().failed_attempts == 0
    assert len(server.connects) == 3  # the dropped attempt got as far as opening its stream
