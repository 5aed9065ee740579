"""A memory log that a test can switch to "unavailable" or make "lose its data"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import trio

from trio_reconnect.server import LoggedEvent, LogRead, LogUnavailableError, ReplayLog


@attrs.define(eq=False)
class FaultyLog:
    """An :class:`~trio_reconnect.server.EventLog` over a :class:`ReplayLog`, with faults.

    * :meth:`go_down`: every call raises :class:`LogUnavailableError` (a tail
      read blocked at that moment raises at once, as a store's broken
      connection would) until :meth:`come_back`.
    * :meth:`lose_data`: the store restarts empty; its ids go on from
      ``restart_at`` (above every earlier one, as the clock start makes them).
    """

    inner: ReplayLog
    _down: bool = False
    #: Cancelled when a fault starts, so that blocked tail reads notice it.
    _blocked: set[trio.CancelScope] = attrs.field(factory=set)
    #: While set, a tail read that found events waits for it before returning
    #: (a fan-out that falls behind).
    hold_tail: trio.Event | None = None
    calls: int = 0
    failed: int = 0

    @property
    def down(self) -> bool:
        return self._down

    def go_down(self) -> None:
        self._down = True
        self._interrupt()

    def come_back(self) -> None:
        self._down = False

    def lose_data(self, restart_at: int) -> None:
        """Replace the log by an empty one that issues ids from ``restart_at``."""
        self.inner = ReplayLog(max_events=self.inner.max_events, start=restart_at)
        self._interrupt()

    def _interrupt(self) -> None:
        for scope in self._blocked:
            scope.cancel()

    def _check(self) -> None:
        self.calls += 1
        if self._down:
            self.failed += 1
            raise LogUnavailableError("the test store is down")

    async def append(self, data: Any) -> str:
        await trio.lowlevel.checkpoint()
        self._check()
        return await self.inner.append(data)

    async def read_after(self, event_id: str | None, *, limit: int) -> LogRead:
        await trio.lowlevel.checkpoint()
        self._check()
        return await self.inner.read_after(event_id, limit=limit)

    async def newest(self) -> str | None:
        await trio.lowlevel.checkpoint()
        self._check()
        return await self.inner.newest()

    async def tail(self, after: str | None, *, limit: int, block: float) -> Sequence[LoggedEvent]:
        await trio.lowlevel.checkpoint()
        self._check()
        inner = self.inner
        with trio.CancelScope() as scope:
            self._blocked.add(scope)
            try:
                events = await inner.tail(after, limit=limit, block=block)
                if events and self.hold_tail is not None:
                    await self.hold_tail.wait()
                return events
            finally:
                self._blocked.discard(scope)
        # A fault began while the read was blocked: report it as the store would.
        self._check()
        return await self.inner.tail(after, limit=limit, block=0)
