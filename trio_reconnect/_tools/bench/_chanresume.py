"""The resume figure of ``python -m trio_reconnect bench``: resume-to-ready, 100 channels vs 1.

A ReconnectServer on a :class:`~trio_reconnect.server.redis.RedisChannelStore`
runs in a child process (``_fanout_server --kind redis --channels N``, on the
bench's redis-server). Every channel first gets one event, so each has a
position. Two clients of :func:`~trio_reconnect.open_reconnecting_websocket`
(pings off) then subscribe: one to ``channels`` channels, one to a single
other channel. Nothing is published after that, so every resume misses
nothing. A repetition calls :meth:`~trio_reconnect.ReconnectingWebSocket.reconnect_now`
on one client and times, with ``trio.current_time()``, from that call (the
close) to its ``on_transition`` to ``OPEN`` (after ``ready``: the resume
frame with every channel's position, the server's one store read and its
answer, and the client's processing of it, all included), then the same for
the other client; the first repetition is a warm-up. The figure is the ratio
of the medians, many channels / one.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final

import attrs
import trio

from ... import ReconnectingWebSocket, open_reconnecting_websocket
from ..._state import ConnectionState, Transition
from ._chanserve import channel_name
from ._crowd import STEP_TIMEOUT, FanoutError

if TYPE_CHECKING:
    from ._fanout import _Server

__all__ = [
    "DEFAULT_RESUME_CHANNELS",
    "DEFAULT_RESUME_REPETITIONS",
    "measure_resume",
    "publish_command",
    "resume_ratio",
]

#: Channels of the many-channel client.
DEFAULT_RESUME_CHANNELS: Final = 100
#: Timed reconnects of each client (after one warm-up each).
DEFAULT_RESUME_REPETITIONS: Final = 30


@attrs.define(eq=False)
class _Watch:
    """The client's last ``OPEN``, from ``on_transition``."""

    opened_at: float | None = None
    opened: trio.Event = attrs.field(factory=trio.Event)

    def on_transition(self, transition: Transition) -> None:
        if transition.state is ConnectionState.OPEN:
            self.opened_at = transition.time
            self.opened.set()


async def _reconnect(ws: ReconnectingWebSocket, watch: _Watch) -> float:
    """Seconds from ``reconnect_now()`` to ``OPEN`` again."""
    await ws.wait_ready()
    watch.opened = trio.Event()
    start = trio.current_time()
    ws.reconnect_now()
    with trio.move_on_after(STEP_TIMEOUT):
        await watch.opened.wait()
    if not watch.opened.is_set() or watch.opened_at is None:
        raise FanoutError(f"a resume did not reach ready within {STEP_TIMEOUT:g} s")
    return watch.opened_at - start


@contextlib.asynccontextmanager
async def _client(url: str, channels: range) -> AsyncIterator[tuple[ReconnectingWebSocket, _Watch]]:
    watch = _Watch()
    async with (
        open_reconnecting_websocket(
            url, ping_interval=None, max_attempts=None, on_transition=watch.on_transition
        ) as ws,
        contextlib.AsyncExitStack() as stack,
    ):
        with trio.fail_after(STEP_TIMEOUT):
            for number in channels:
                await stack.enter_async_context(ws.subscribe(channel_name(number)))
        yield ws, watch


async def publish_command(server: _Server, start: int, count: int) -> float:
    """Have a channel server publish ``count`` events from channel ``start``; its stamp."""
    assert server.process.stdin is not None
    await server.process.stdin.send_all(f"publish {start} {count}\n".encode())
    line = await server.lines.line()
    if not line.startswith("T "):
        raise FanoutError(f"unexpected line from the {server.kind} channel server: {line!r}")
    return float(line[2:])


async def measure_resume(
    server: _Server, *, channels: int, repetitions: int
) -> tuple[list[float], list[float]]:
    """Seconds to ready of each timed resume: ``(many channels, one channel)``."""
    await publish_command(server, 0, channels + 1)  # one event in every channel used
    url = f"ws://127.0.0.1:{server.port}/bench"
    many: list[float] = []
    one: list[float] = []
    async with (
        _client(url, range(channels)) as (big, big_watch),
        _client(url, range(channels, channels + 1)) as (small, small_watch),
    ):
        for number in range(repetitions + 1):  # the first is a warm-up
            big_s = await _reconnect(big, big_watch)
            small_s = await _reconnect(small, small_watch)
            if number:
                many.append(big_s)
                one.append(small_s)
    return many, one


def resume_ratio(many: list[float], one: list[float]) -> float:
    """The ratio of the medians, many channels / one."""
    return statistics.median(many) / statistics.median(one)
