"""Hostile servers cannot make the client hammer, park, or grow without bound.

* Anti-hammer: the exact attempt times against servers that drop every
  attempt at once (no hint, ``retryAfter: 0``, ``503 Retry-After: 0``), from
  the rule in trio_reconnect/_backoff.py (``SHORT_HINT_LIMIT``) and
  ``Backoff.delay`` with a seeded random; a property test of the same rule
  for any sequence of server behaviours; and the clamp of absurd hints.
* Memory: the receive buffer (``max_queue``, with backpressure reaching the
  server), the duplicate-id window (``dedupe_window``), the replay a client
  accepts (``max_replay``), ``max_message_size``, and the attempt history when
  ``max_attempts=None``.
"""

from __future__ import annotations

import json
import random
from typing import Any, Final

import attrs
import pytest
import trio
import trio.testing
import trio_websocket
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import trio_reconnect as tr
from tests.support.fake_server import FakeServer, Handler, accept_and_resume, send_event, send_ready

SEED: Final = 777
URL: Final = "ws://hostile.test/"

FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def draws(n: int, policy: tr.Backoff | None = None) -> list[float]:
    """``Backoff.delay(1..n)`` as the client draws them from its seeded random."""
    policy = policy or tr.Backoff()
    rng = random.Random(SEED)
    return [policy.delay(retry, rng) for retry in range(1, n + 1)]


def cumulative(waits: list[float]) -> list[float]:
    times = [0.0]
    for wait in waits:
        times.append(times[-1] + wait)
    return times


# --------------------------------------------------------------------------- anti-hammer


async def close_at_once(request: trio_websocket.WebSocketRequest, n: int) -> None:
    ws = await request.accept()
    await ws.aclose()  # 1000, no reason, before the resume frame is even read


async def drop_at_once(request: trio_websocket.WebSocketRequest, n: int) -> None:
    await request.accept()  # then the TCP connection goes (no close frame: 1006)


async def retry_after_zero(request: trio_websocket.WebSocketRequest, n: int) -> None:
    ws = await request.accept()
    await ws.aclose(1012, json.dumps({"retryAfter": 0}))


async def refuse_503_zero(request: trio_websocket.WebSocketRequest, n: int) -> None:
    await request.reject(503, extra_headers=[(b"Retry-After", b"0")])


ATTEMPTS: Final = 12


async def attempt_times(
    nursery: trio.Nursery, handler: Handler
) -> tuple[list[float], tr.ReconnectFailed]:
    server = FakeServer(nursery, handler)
    with trio.fail_after(10_000), pytest.raises(tr.ReconnectFailed) as info:
        async with tr.open_reconnecting_websocket(
            URL, open_stream=server.open_stream, random=random.Random(SEED), max_attempts=ATTEMPTS
        ):
            await trio.sleep_forever()
    assert type(info.value) is tr.ReconnectFailed  # gave up; no fatal verdict
    assert f"{ATTEMPTS} failed attempts" in str(info.value)
    return server.connects, info.value


@pytest.mark.parametrize("handler", [close_at_once, drop_at_once], ids=["close-1000", "drop"])
async def test_accept_then_close_without_a_hint_backs_off_every_time(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, handler: Handler
) -> None:
    connects, failure = await attempt_times(nursery, handler)
    # Accepting (even reaching the websocket) is no success: the backoff grows.
    assert connects == pytest.approx(cumulative(draws(ATTEMPTS - 1)), abs=1e-9)
    assert [a.delay_source for a in failure.history[:-1]] == [tr.DelaySource.BACKOFF] * (
        ATTEMPTS - 1
    )


@pytest.mark.parametrize(
    "handler", [retry_after_zero, refuse_503_zero], ids=["close-1012-retryAfter-0", "503-zero"]
)
async def test_zero_hints_get_exactly_the_short_hint_limit(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, handler: Handler
) -> None:
    connects, failure = await attempt_times(nursery, handler)
    limit = tr.SHORT_HINT_LIMIT
    backoff = draws(ATTEMPTS - 1)  # drawn for every wait, also when the hint wins
    # _backoff.py: the first SHORT_HINT_LIMIT - 1 short hints are honoured (0 s),
    # from the SHORT_HINT_LIMIT-th on the wait is max(hint, backoff) = backoff.
    waits = [0.0] * (limit - 1) + backoff[limit - 1 :]
    assert connects == pytest.approx(cumulative(waits), abs=1e-9)
    assert connects.count(0.0) == limit  # the first attempt and two immediate retries
    sources = [a.delay_source for a in failure.history[:-1]]
    assert sources == [tr.DelaySource.SERVER] * (limit - 1) + [tr.DelaySource.SERVER_FLOORED] * (
        ATTEMPTS - limit
    )
    assert all(a.delay == w for a, w in zip(failure.history, waits, strict=False))


@pytest.mark.parametrize(
    "handler_kind",
    [
        "close-1e9",
        "close-1e999",
        "close-huge-int",
        "503-1e9",
        "503-year-9999",
        "429-huge",
    ],
)
async def test_an_absurd_hint_waits_exactly_max_server_delay(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, handler_kind: str
) -> None:
    reasons = {
        "close-1e9": '{"retryAfter": 1e9}',
        "close-1e999": '{"retryAfter": 1e999}',
        "close-huge-int": '{"retryAfter": ' + "9" * 100 + "}",
    }
    headers = {
        "503-1e9": (503, b"1000000000"),
        "503-year-9999": (503, b"Fri, 31 Dec 9999 23:59:59 GMT"),
        "429-huge": (429, b"9" * 400),
    }

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        if n > 1:
            ws, _ = await accept_and_resume(request)
            await send_ready(ws)
            await trio.sleep_forever()
        if handler_kind in headers:
            status, value = headers[handler_kind]
            await request.reject(status, extra_headers=[(b"Retry-After", value)])
            return
        ws, _ = await accept_and_resume(request)
        await ws.aclose(1013, reasons[handler_kind])

    server = FakeServer(nursery, handler)
    transitions: list[tr.Transition] = []
    with trio.fail_after(10_000):
        async with tr.open_reconnecting_websocket(
            URL, open_stream=server.open_stream, on_transition=transitions.append
        ) as ws:
            await ws.wait_ready()
    assert server.connects == [0.0, tr.DEFAULT_MAX_SERVER_DELAY]
    (wait,) = [t for t in transitions if t.state is tr.ConnectionState.BACKING_OFF]
    assert wait.delay == tr.DEFAULT_MAX_SERVER_DELAY
    assert wait.delay_source is tr.DelaySource.SERVER


# A property test of the whole pacing rule: hypothesis picks what the server
# does on each attempt; the attempt times must be exactly those of the rule in
# _backoff.py's docstring, restated here independently of Pacer.

UP: Final = 12.0  # how long a "stable" connection stays up (stable_after is 10 s)
MAX_SERVER_DELAY: Final = 40.0


@attrs.frozen
class Behaviour:
    """What the server does with one attempt."""

    kind: str  # "close" (1012 + hint), "refuse" (503 + header), "plain" (1000), "stable"
    hint_ms: int | None = None

    @property
    def hint(self) -> float | None:
        if self.hint_ms is None or self.kind == "plain":
            return None
        if self.kind == "refuse":
            return float(self.hint_ms // 1000)  # Retry-After is whole seconds
        return self.hint_ms / 1000.0


_hint_ms = st.one_of(
    st.none(), st.integers(0, 999), st.integers(0, 5_000), st.sampled_from([0, 1000, 10**9])
)
_behaviours = st.builds(
    Behaviour, st.sampled_from(["close", "refuse", "plain", "stable"]), _hint_ms
)


def expected_schedule(behaviours: list[Behaviour]) -> tuple[list[float], list[tr.DelaySource]]:
    policy = tr.Backoff()
    rng = random.Random(SEED)
    retry = short = 0
    now = 0.0
    starts: list[float] = []
    sources: list[tr.DelaySource] = []
    for b in behaviours:
        starts.append(now)
        stable = b.kind == "stable"
        if stable:
            now += UP
            retry = short = 0  # only a stable connection resets the streak
        retry += 1
        backoff = policy.delay(retry, rng)
        hint = b.hint
        if hint is None:
            short, wait, source = 0, backoff, tr.DelaySource.BACKOFF
        else:
            hint = min(max(hint, 0.0), MAX_SERVER_DELAY)
            short = short + 1 if not stable and hint < policy.initial else 0
            if short >= tr.SHORT_HINT_LIMIT and backoff > hint:
                wait, source = backoff, tr.DelaySource.SERVER_FLOORED
            else:
                wait, source = hint, tr.DelaySource.SERVER
        sources.append(source)
        now += wait
    starts.append(now)
    return starts, sources


_short_hints = st.builds(Behaviour, st.sampled_from(["close", "refuse"]), st.integers(0, 999))
#: Any sequence, or a streak of short hints (the anti-hammer rule) then any.
_sequences = st.one_of(
    st.lists(_behaviours, min_size=1, max_size=8),
    st.builds(
        lambda streak, rest: [*streak, *rest],
        st.lists(_short_hints, min_size=tr.SHORT_HINT_LIMIT, max_size=6),
        st.lists(_behaviours, max_size=3),
    ),
)


@given(behaviours=_sequences)
@settings(FUZZ, max_examples=120)
def test_attempt_times_follow_the_pacing_rule(behaviours: list[Behaviour]) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        if n > len(behaviours):
            ws, _ = await accept_and_resume(request)
            await send_ready(ws)
            await trio.sleep_forever()
        b = behaviours[n - 1]
        reason = None if b.hint_ms is None else json.dumps({"retryAfter": b.hint_ms})
        if b.kind == "refuse":
            extra = [] if b.hint_ms is None else [(b"Retry-After", b"%d" % (b.hint_ms // 1000))]
            await request.reject(503, extra_headers=extra)
            return
        ws, _ = await accept_and_resume(request)
        if b.kind == "stable":
            await send_ready(ws)
            await trio.sleep(UP)
        if b.kind == "plain":
            await ws.aclose(1000, reason)  # a hint with 1000 is not read
        else:
            await ws.aclose(1012, reason)

    starts, sources = expected_schedule(behaviours)
    event(f"waits floored: {sources.count(tr.DelaySource.SERVER_FLOORED)}")
    connects: list[float] = []
    transitions: list[tr.Transition] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = FakeServer(nursery, handler)
            with trio.fail_after(10_000):
                async with tr.open_reconnecting_websocket(
                    URL,
                    open_stream=server.open_stream,
                    random=random.Random(SEED),
                    max_attempts=None,
                    max_server_delay=MAX_SERVER_DELAY,
                    ping_interval=None,
                    on_transition=transitions.append,
                ) as ws:
                    while len(server.connects) <= len(behaviours):
                        await trio.sleep(0.5)
                    await ws.wait_ready()
            connects.extend(server.connects)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert connects == pytest.approx(starts, abs=1e-9)
    waits = [t for t in transitions if t.state is tr.ConnectionState.BACKING_OFF]
    assert [t.delay_source for t in waits] == sources
    assert all(t.delay is not None and 0 <= t.delay <= MAX_SERVER_DELAY for t in waits)


# --------------------------------------------------------------------------- memory: max_queue


@attrs.define(eq=False)
class LockstepServer(FakeServer):
    """A FakeServer over lockstep streams: no buffer, so a client that stops
    reading stops the server's writes (backpressure is visible)."""

    async def open_stream(self, target: tr.Target) -> trio.abc.Stream:
        self.connects.append(trio.current_time())
        client, server = trio.testing.lockstep_stream_pair()
        self.nursery.start_soon(self._serve, server, len(self.connects))
        return client


async def test_flood_fills_max_queue_then_the_server_waits(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    max_queue, flood = 8, 400
    sent: list[int] = []

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws)
        for i in range(flood):
            await send_event(ws, str(i), i)
            sent.append(i)
        await trio.sleep_forever()

    server = LockstepServer(nursery, handler)
    with trio.fail_after(1000):
        async with tr.open_reconnecting_websocket(
            URL, open_stream=server.open_stream, max_queue=max_queue, ping_interval=None
        ) as ws:
            await ws.wait_ready()
            await trio.sleep(10)  # the application does not read
            assert len(ws._inbox) == max_queue
            stalled_at = len(sent)
            # What is in flight: our buffer only. trio-websocket's reader puts
            # each message into it and waits with none in hand (lockstep
            # streams: the server's next write waits for the reader's read).
            assert stalled_at <= max_queue + 1
            await trio.sleep(100)
            assert len(sent) == stalled_at  # the server is held up: backpressure
            got: list[tr.Item] = []
            while len(got) < flood:
                assert len(ws._inbox) <= max_queue
                got.append(await ws.get_message())
    assert got == [tr.ServerEvent(str(i), i) for i in range(flood)]
    assert len(server.connects) == 1


# --------------------------------------------------------------------------- memory: dedupe window


async def test_dedupe_window_stays_at_its_bound(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    window, distinct = 16, 1_000

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws)
        for i in range(distinct):
            await send_event(ws, f"e{i}", i)
        await send_event(ws, f"e{distinct - 1}", "dup")  # in the window: dropped
        await send_event(ws, f"e{distinct - window}", "dup")  # oldest in the window: dropped
        await send_event(ws, "e0", "again")  # long out of the window: delivered again
        await send_event(ws, "end", None)
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            URL, open_stream=server.open_stream, dedupe_window=window, ping_interval=None
        ) as ws:
            got: list[tr.Item] = []
            while tr.ServerEvent("end", None) not in got:
                got.append(await ws.get_message())
    # "e0" came back after 1,000 others: only `window` ids are remembered (the
    # memory bound itself is tested on the pure cursor, tests/client/test_cursor.py).
    assert got == [
        *(tr.ServerEvent(f"e{i}", i) for i in range(distinct)),
        tr.ServerEvent("e0", "again"),
        tr.ServerEvent("end", None),
    ]


@given(
    window=st.integers(1, 6),
    ids=st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=1), max_size=40),
)
@settings(FUZZ, max_examples=60)
def test_dedupe_matches_a_sliding_window(window: int, ids: list[str]) -> None:
    """Ids are opaque: an id among the last ``window`` delivered is dropped, any other is new."""
    expected: list[str] = []
    recent: list[str] = []
    for event_id in ids:
        if event_id not in recent:
            expected.append(event_id)
            recent = [*recent, event_id][-window:]
    got: list[str] = []

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws)
        for event_id in [*ids, "end"]:
            await send_event(ws, event_id, None)
        await trio.sleep_forever()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = FakeServer(nursery, handler)
            with trio.fail_after(100):
                async with tr.open_reconnecting_websocket(
                    URL, open_stream=server.open_stream, dedupe_window=window, ping_interval=None
                ) as ws:
                    while not got or got[-1] != "end":
                        item = await ws.get_message()
                        assert isinstance(item, tr.ServerEvent)
                        got.append(item.id)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert got[:-1] == expected


# --------------------------------------------------------------------------- memory: max_replay


def replaying_handler(per_attempt: int, resumes: list[Any]) -> Handler:
    """A server whose log has no end: every attempt replays ``per_attempt``
    new events after the client's lastEventId, and never sends ready."""

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, frame = await accept_and_resume(request)
        resumes.append(frame["lastEventId"])
        start = 0 if frame["lastEventId"] is None else int(frame["lastEventId"]) + 1
        for i in range(start, start + per_attempt):
            await send_event(ws, str(i), i)
        await trio.sleep_forever()

    return handler


async def test_replay_beyond_max_replay_fails_the_attempt_and_keeps_the_events(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    max_replay = 5
    resumes: list[Any] = []
    server = FakeServer(nursery, replaying_handler(max_replay + 3, resumes))
    got: list[tr.Item] = []
    with trio.fail_after(1000), pytest.raises(tr.ReconnectFailed) as info:
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            max_replay=max_replay,
            max_attempts=3,
            random=random.Random(SEED),
            ping_interval=None,
        ) as ws:
            while True:
                got.append(await ws.get_message())
    # Each attempt keeps max_replay events and resumes after them.
    assert resumes == [None, "4", "9"]
    assert got == [tr.ServerEvent(str(i), i) for i in range(3 * max_replay)]
    error = info.value.last_error
    assert isinstance(error, tr.ResumeProtocolError)
    assert "max_replay=5" in str(error)
    assert server.connects == pytest.approx(cumulative(draws(2)), abs=1e-9)


async def test_repeated_replays_do_not_grow_the_buffer_of_a_slow_application(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Every attempt replays max_replay new events and fails; the application
    reads nothing. The buffer must stay at max_queue plus one handshake's
    burst, not grow by max_replay on every attempt."""
    max_queue, max_replay = 4, 10
    resumes: list[Any] = []
    server = FakeServer(nursery, replaying_handler(max_replay + 1, resumes))
    with trio.fail_after(10_000):
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            max_queue=max_queue,
            max_replay=max_replay,
            max_attempts=None,
            random=random.Random(SEED),
            ping_interval=None,
        ) as ws:
            peak = 0
            for _ in range(400):
                await trio.sleep(1)
                peak = max(peak, len(ws._inbox))
            got = 0
            while len(ws._inbox):
                await ws.get_message()
                got += 1
            for _ in range(100):  # once the application reads, it goes on
                await trio.sleep(1)
                while len(ws._inbox):
                    await ws.get_message()
                    got += 1
    assert peak <= max_queue + max_replay + 2
    assert got > 2 * max_replay
    # Nothing was lost or skipped: every attempt resumed after the last event kept.
    assert resumes == [None, *(str(k * max_replay - 1) for k in range(1, len(resumes)))]


async def test_reconnect_now_while_the_application_is_behind(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """reconnect_now() cancels a reader that waits for the application; the
    next connection's reader must be able to wait in its turn (it used to fail
    every later connection with RuntimeError "single producer")."""
    max_queue, flood = 4, 50

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await send_ready(ws)
        for i in range(flood):
            await send_event(ws, f"{n}-{i}", i)
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    transitions: list[tr.Transition] = []
    with trio.fail_after(1000):
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            max_queue=max_queue,
            ping_interval=None,
            on_transition=transitions.append,
        ) as ws:
            await ws.wait_ready()
            await trio.sleep(1)
            assert ws._inbox.stalled
            ws.reconnect_now()
            await trio.sleep(100)  # still not reading
            assert ws.state is tr.ConnectionState.OPEN
            # A reader that finds the buffer full adds its one message, then waits.
            assert len(ws._inbox) == max_queue + 1
            got = [await ws.get_message() for _ in range(max_queue + flood)]
    assert len(server.connects) == 2
    waits = [t for t in transitions if t.state is tr.ConnectionState.BACKING_OFF]
    assert [(t.delay_source, t.error) for t in waits] == [(tr.DelaySource.IMMEDIATE, None)]
    assert got == [
        *(tr.ServerEvent(f"1-{i}", i) for i in range(max_queue)),
        *(tr.ServerEvent(f"2-{i}", i) for i in range(flood)),
    ]


# ------------------------------------------------------------------------ memory: max_message_size


@pytest.mark.parametrize("when", ["after-ready", "snapshot"])
@pytest.mark.parametrize("kind", ["text", "binary"])
async def test_oversized_frame_closes_1009_and_reconnects(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, when: str, kind: str
) -> None:
    limit = 1_000
    server_saw: list[int | None] = []
    big: str | bytes = "x" * (limit + 1) if kind == "text" else b"x" * (limit + 1)

    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        if n == 1:
            if when == "after-ready":
                await send_ready(ws)
            await ws.send_message(big)
            try:
                await ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                server_saw.append(exc.reason.code if exc.reason else None)
            return
        await send_ready(ws)
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    transitions: list[tr.Transition] = []
    with trio.fail_after(100):
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            max_message_size=limit,
            random=random.Random(SEED),
            on_transition=transitions.append,
        ) as ws:
            while len(server.connects) < 2:
                await trio.sleep(0.1)
            await ws.wait_ready()
    assert server_saw == [1009]  # the client told the server why
    (wait,) = [t for t in transitions if t.state is tr.ConnectionState.BACKING_OFF]
    assert wait.close_code == 1009
    assert wait.delay_source is tr.DelaySource.BACKOFF
    assert server.connects == pytest.approx(cumulative(draws(1)), abs=1e-9)


async def test_a_snapshot_always_too_big_ends_in_reconnect_failed_not_fatal(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        ws, _ = await accept_and_resume(request)
        await ws.send_message(json.dumps({"type": "snapshot", "id": "1", "data": "x" * 2_000}))
        await trio.sleep_forever()

    server = FakeServer(nursery, handler)
    with trio.fail_after(1000), pytest.raises(tr.ReconnectFailed) as info:
        async with tr.open_reconnecting_websocket(
            URL,
            open_stream=server.open_stream,
            max_message_size=1_000,
            max_attempts=4,
            random=random.Random(SEED),
        ):
            await trio.sleep_forever()
    assert type(info.value) is tr.ReconnectFailed
    assert [a.close_code for a in info.value.history] == [1009] * 4
    assert server.connects == pytest.approx(cumulative(draws(3)), abs=1e-9)


# --------------------------------------------------------------------------- memory: history


def refusing(n: int) -> OSError:
    return OSError(111, "connection refused")


async def test_give_up_error_carries_the_bounded_history(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def handler(request: trio_websocket.WebSocketRequest, n: int) -> None:
        raise AssertionError("never reached")

    server = FakeServer(nursery, handler, refuse=refusing)
    attempts = tr.MAX_HISTORY + 50
    with trio.fail_after(10**7), pytest.raises(tr.ReconnectFailed) as info:
        async with tr.open_reconnecting_websocket(
            URL, open_stream=server.open_stream, max_attempts=attempts, random=random.Random(SEED)
        ):
            await trio.sleep_forever()
    history = info.value.history
    assert len(server.connects) == attempts
    assert len(history) == tr.MAX_HISTORY
    assert [a.number for a in history] == list(range(attempts - tr.MAX_HISTORY + 1, attempts + 1))
    assert isinstance(info.value.last_error, OSError)
