"""The clients of ``python -m trio_reconnect bench`` and what they measure.

Three clients of the echo server (:mod:`trio_reconnect._tools.bench._server`)
take turns in every round (:func:`measure_throughput`): ``ours``
(:func:`~trio_reconnect.open_reconnecting_websocket`), ``raw`` (trio-websocket
with the resume handshake done by hand) and, when installed, ``websockets``.
Each measures sequential round trips and a pipelined burst, with the CPU
time of this process per message. :func:`measure_reconnects` times a drop and the
reconnect to ``ready`` against a fresh raw connection, alternately.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import attrs
import trio
import trio_websocket

from ..._client import ReconnectingWebSocket, open_reconnecting_websocket
from ..._protocol import ResumeHandshake
from ..._state import ConnectionState, DelaySource, Transition
from ._server import DROP, DROP_CODE

__all__ = ["BenchError", "Rates", "echo_payloads", "measure_reconnects", "measure_throughput"]

#: How long each reconnecting connection must have been ready before it is
#: dropped; the client's ``stable_after`` is half of it, so that every drop
#: is of a stable connection and the ``retryAfter: 0`` is honoured as is
#: (the no-hammering rule only floors hints after *failed* attempts).
_STABLE_FOR: Final = 0.002

Send = Callable[[str], Awaitable[None]]
Receive = Callable[[], Awaitable[object]]


class BenchError(RuntimeError):
    """The benchmark could not run (server did not start, a wrong echo ...)."""


def echo_payloads(count: int, size: int) -> list[str]:
    """``count`` distinct ASCII messages of ``size`` characters (not JSON)."""
    return [f"m{i:09d}".ljust(size, "x")[:size] for i in range(count)]


async def _sequential(send: Send, receive: Receive, payloads: Sequence[str]) -> tuple[float, float]:
    """Round trips per second (send one, wait for its echo, repeat), and CPU s per message."""
    cpu = time.process_time()
    start = trio.current_time()
    for payload in payloads:
        await send(payload)
        echo = await receive()
        if echo != payload:
            raise BenchError(f"wrong echo: sent {payload[:16]!r}..., got {echo!r:.40}")
    elapsed = trio.current_time() - start
    return len(payloads) / elapsed, (time.process_time() - cpu) / len(payloads)


async def _pipelined(send: Send, receive: Receive, payloads: Sequence[str]) -> tuple[float, float]:
    """Messages per second (one task sends them all while this one takes the
    echoes), and CPU s per message."""

    async def sender() -> None:
        for payload in payloads:
            await send(payload)

    cpu = time.process_time()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        for payload in payloads:
            echo = await receive()
            if echo != payload:
                raise BenchError(f"wrong echo: expected {payload[:16]!r}..., got {echo!r:.40}")
        elapsed = trio.current_time() - start
    return len(payloads) / elapsed, (time.process_time() - cpu) / len(payloads)


async def _resume_by_hand(send: Send, receive: Receive) -> None:
    """The resume handshake without our client: the frames come from :mod:`._protocol`."""
    handshake = ResumeHandshake(None)
    await send(handshake.frame())
    while handshake.result is None:
        message = await receive()
        if not isinstance(message, str | bytes):
            raise BenchError(f"not a websocket message: {message!r:.40}")
        handshake.receive(message)


async def _raw_resume(ws: trio_websocket.WebSocketConnection) -> None:
    """The resume handshake on a raw trio-websocket connection."""
    await _resume_by_hand(ws.send_message, ws.get_message)


@attrs.define(eq=False)
class Rates:
    """One client's figures, one entry per timed round: rates and CPU seconds per message."""

    seq: list[float] = attrs.field(factory=list)
    pipe: list[float] = attrs.field(factory=list)
    seq_cpu: list[float] = attrs.field(factory=list)
    pipe_cpu: list[float] = attrs.field(factory=list)


async def measure_throughput(
    url: str,
    *,
    messages: int,
    pipeline: int,
    rounds: int,
    size: int,
    websockets_connect: Callable[..., Any] | None,
) -> dict[str, Rates]:
    """Connect the clients; run the warm-up round and ``rounds`` timed ones; their figures."""
    seq_payloads = echo_payloads(messages, size)
    pipe_payloads = echo_payloads(pipeline, size)
    clients: dict[str, tuple[Send, Receive]] = {}
    async with contextlib.AsyncExitStack() as stack:
        ours = await stack.enter_async_context(open_reconnecting_websocket(url, ping_interval=None))
        await ours.wait_ready()
        clients["ours"] = (ours.send_message, ours.get_message)
        raw = await stack.enter_async_context(trio_websocket.open_websocket_url(url))
        await _raw_resume(raw)
        clients["raw"] = (raw.send_message, raw.get_message)
        if websockets_connect is not None:
            other = await stack.enter_async_context(
                websockets_connect(url, ping_interval=None, compression=None, proxy=None)
            )
            await _resume_by_hand(other.send, other.recv)
            clients["websockets"] = (other.send, other.recv)

        rates = {name: Rates() for name in clients}
        names = list(clients)
        for number in range(rounds + 1):  # round 0 is the warm-up
            shift = number % len(names)
            order = names[shift:] + names[:shift]
            for name in order:
                rate, cpu = await _sequential(*clients[name], seq_payloads)
                if number:
                    rates[name].seq.append(rate)
                    rates[name].seq_cpu.append(cpu)
            for name in order:
                rate, cpu = await _pipelined(*clients[name], pipe_payloads)
                if number:
                    rates[name].pipe.append(rate)
                    rates[name].pipe_cpu.append(cpu)
    return rates


# -- reconnect ---------------------------------------------------------------


@attrs.define(eq=False)
class _ReconnectWatch:
    """Timestamps from ``on_transition``: the last loss and the last ``OPEN``."""

    opened_at: float | None = None
    lost_at: float | None = None
    lost_close_code: int | None = None
    not_immediate: int = 0
    opened: trio.Event = attrs.field(factory=trio.Event)

    def on_transition(self, transition: Transition) -> None:
        if transition.state is ConnectionState.BACKING_OFF:
            self.lost_at = transition.time
            self.lost_close_code = transition.close_code
            if transition.delay != 0 or transition.delay_source is not DelaySource.SERVER:
                self.not_immediate += 1
        if transition.state is ConnectionState.OPEN:
            self.opened_at = transition.time
            self.opened.set()


async def _reconnect_once(ws: ReconnectingWebSocket, watch: _ReconnectWatch) -> tuple[float, float]:
    """Drop ``ws`` once; ``(close observed -> ready, drop sent -> ready)`` in seconds."""
    await ws.wait_ready()
    assert watch.opened_at is not None
    stable_at = watch.opened_at + _STABLE_FOR
    if trio.current_time() < stable_at:
        await trio.sleep_until(stable_at)
    watch.opened = trio.Event()
    watch.lost_at = None
    sent_at = trio.current_time()
    await ws.send_message(DROP)
    await watch.opened.wait()
    if watch.lost_at is None or watch.opened_at is None:
        raise BenchError("the reconnect was not observed")
    if watch.lost_close_code != DROP_CODE:
        raise BenchError(f"expected a {DROP_CODE} close, got {watch.lost_close_code}")
    return watch.opened_at - watch.lost_at, watch.opened_at - sent_at


async def _raw_connect_once(url: str, payload: str) -> float:
    """Seconds for a fresh trio-websocket connection: connect, resume, one echo."""
    start = trio.current_time()
    async with trio_websocket.open_websocket_url(url) as ws:
        await _raw_resume(ws)
        await ws.send_message(payload)
        echo = await ws.get_message()
        elapsed = trio.current_time() - start
    if echo != payload:
        raise BenchError(f"wrong echo: {echo!r:.40}")
    return elapsed


async def measure_reconnects(
    url: str, *, repetitions: int, size: int
) -> tuple[list[float], list[float], list[float], int]:
    """Drop ours and connect raw ``repetitions`` times, alternately (after one warm-up each).

    Returns ``(close observed -> ready, drop sent -> ready, raw connect -> echo,
    reconnects that did not follow retryAfter 0)``, in seconds.
    """
    watch = _ReconnectWatch()
    payload = echo_payloads(1, size)[0]
    ours: list[float] = []
    ours_from_drop: list[float] = []
    raw: list[float] = []
    async with open_reconnecting_websocket(
        url,
        ping_interval=None,
        stable_after=_STABLE_FOR / 2,
        max_attempts=None,
        on_transition=watch.on_transition,
    ) as ws:
        await ws.wait_ready()
        await _reconnect_once(ws, watch)  # warm-up, untimed
        await _raw_connect_once(url, payload)
        watch.not_immediate = 0
        for _ in range(repetitions):
            observed, from_drop = await _reconnect_once(ws, watch)
            ours.append(observed)
            ours_from_drop.append(from_drop)
            raw.append(await _raw_connect_once(url, payload))
    return ours, ours_from_drop, raw, watch.not_immediate
