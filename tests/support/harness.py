"""Pieces shared by the chaos (support/chaos.py) and soak (support/soak.py) harnesses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import attrs
import trio

from trio_reconnect.server import LoggedEvent, LogRead, ReplayLog


class Recorder(Protocol):
    """Where :class:`RecordingLog` writes each append down."""

    def add(self, event_id: str, data: Any) -> None: ...


@attrs.define(eq=False)
class RecordingLog:
    """A :class:`ReplayLog` that records every append in a :class:`Recorder`.

    The record is made inside ``append``, before ``publish`` returns or the
    fan-out can read the event back, so the snapshot provider and the checks
    see exactly the log.
    """

    inner: ReplayLog
    published: Recorder

    async def append(self, data: Any) -> str:
        event_id = await self.inner.append(data)
        self.published.add(event_id, data)
        return event_id

    async def read_after(self, event_id: str | None, *, limit: int) -> LogRead:
        return await self.inner.read_after(event_id, limit=limit)

    async def newest(self) -> str | None:
        return await self.inner.newest()

    async def tail(self, after: str | None, *, limit: int, block: float) -> Sequence[LoggedEvent]:
        return await self.inner.tail(after, limit=limit, block=block)


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``, exception groups flattened."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def live_tasks() -> dict[trio.lowlevel.Task, str]:
    """Every task of the current run (the root task's whole tree), with its name."""
    found: dict[trio.lowlevel.Task, str] = {}
    root = trio.lowlevel.current_root_task()
    stack = [root] if root is not None else []
    while stack:
        task = stack.pop()
        found[task] = task.name
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return found
