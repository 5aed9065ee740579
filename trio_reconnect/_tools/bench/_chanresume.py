"""The resume figure of ``python -m trio_reconnect bench``: resume-to-ready, 100 channels vs 1.

A ReconnectServer on a :class:`~trio_reconnect.server.redis.RedisChannelStore`
runs in a child process (``_fanout_server --kind redis --channels N``, on the
bench's redis-server). Every channel first gets one event, so each has a
position. Two clients of :func:`~trio_reconnect.open_reconnecting_websocket`
(pings off) then subscribe: one to ``channels`` channels, one to a single
other channel. Nothing is published after that, so every resume misses
nothing. A repetition calls :meth:`~trio_reconnect.ReconnectingWebSocket.reconnect_now`
on one client and times, with ``trio.current_time()``, two intervals to its
``on_transition`` to ``OPEN`` (after ``ready``), then the same for the other
client; the first repetition is a warm-up.

* **Resume to ready** (the figure): from its ``on_transition`` to
  ``RESUMING`` (the upgrade is done; the resume frame with every channel's
  position is sent next) to ``OPEN``: the resume frame, the server's one
  store read and its answer, and the client's processing of it.
* **Reconnect** (for information): from the ``reconnect_now()`` call (the
  close) to ``OPEN``, so the close, the TCP connect and the upgrade too: the
  same in both clients, they bring the ratio towards 1.

Each figure is the ratio of the medians, many channels / one.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import AsyncIterator, Sequence
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
    "ResumeTimes",
    "measure_resume",
    "publish_command",
    "resume_ratio",
]

#: Channels of the many-channel client.
DEFAULT_RESUME_CHANNELS: Final = 100
#: Timed reconnects of each client (after one warm-up each).
DEFAULT_RESUME_REPETITIONS: Final = 30


@attrs.frozen
class ResumeTimes:
    """Seconds of each timed resume, by client and interval."""

    #: ``RESUMING`` to ``OPEN``, the many-channel client.
    many: tuple[float, ...]
    #: ``RESUMING`` to ``OPEN``, the one-channel client.
    one: tuple[float, ...]
    #: ``reconnect_now()`` to ``OPEN``, the many-channel client.
    many_reconnect: tuple[float, ...]
    #: ``reconnect_now()`` to ``OPEN``, the one-channel client.
    one_reconnect: tuple[float, ...]


@attrs.define(eq=False)
class _Watch:
    """The client's last ``RESUMING`` and ``OPEN``, from ``on_transition``."""

    resuming_at: float | None = None
    opened_at: float | None = None
    opened: trio.Event = attrs.field(factory=trio.Event)

    def on_transition(self, transition: Transition) -> None:
        if transition.state is ConnectionState.RESUMING:
            self.resuming_at = transition.time
        elif transition.state is ConnectionState.OPEN:
            self.opened_at = transition.time
            self.opened.set()


async def _reconnect(ws: ReconnectingWebSocket, watch: _Watch) -> tuple[float, float]:
    """Seconds to ``OPEN`` again: ``(from RESUMING, from reconnect_now())``."""
    await ws.wait_ready()
    watch.opened = trio.Event()
    watch.resuming_at = None
    start = trio.current_time()
    ws.reconnect_now()
    with trio.move_on_after(STEP_TIMEOUT):
        await watch.opened.wait()
    if not watch.opened.is_set() or watch.opened_at is None:
        raise FanoutError(f"a resume did not reach ready within {STEP_TIMEOUT:g} s")
    if watch.resuming_at is None:
        raise FanoutError("a reconnect reached ready without a resume")
    return watch.opened_at - watch.resuming_at, watch.opened_at - start


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


async def measure_resume(server: _Server, *, channels: int, repetitions: int) -> ResumeTimes:
    """Seconds to ready of each timed resume, both intervals."""
    await publish_command(server, 0, channels + 1)  # one event in every channel used
    url = f"ws://127.0.0.1:{server.port}/bench"
    many: list[tuple[float, float]] = []
    one: list[tuple[float, float]] = []
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
    return ResumeTimes(
        many=tuple(m for m, _ in many),
        one=tuple(o for o, _ in one),
        many_reconnect=tuple(m for _, m in many),
        one_reconnect=tuple(o for _, o in one),
    )


def resume_ratio(many: Sequence[float], one: Sequence[float]) -> float:
    """The ratio of the medians, many channels / one."""
    return statistics.median(many) / statistics.median(one)
