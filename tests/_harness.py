"""Pieces shared by the chaos (tests/_chaos.py) and soak (tests/_soak.py) harnesses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import attrs
import trio

from trio_reconnect.server import LoggedEvent, ReplayLog


class Recorder(Protocol):
    """Where :class:`RecordingLog` writes each append down."""

    def add(self, event_id: str, data: Any) -> None: ...


@attrs.define(eq=False)
class RecordingLog:
    """A :class:`ReplayLog` that records every append in a :class:`Recorder`.

    The record is made inside ``append``, before ``publish`` queues the event
    or yields, so the snapshot provider and the checks see exactly the log.
    """

    inner: ReplayLog
    published: Recorder

    def append(self, data: Any) -> str:
        event_id = self.inner.append(data)
        self.published.add(event_id, data)
        return event_id

    def after(self, event_id: str | None) -> Sequence[LoggedEvent] | None:
        return self.inner.after(event_id)

    def count_after(self, event_id: str | None) -> int | None:
        return self.inner.count_after(event_id)

    def holds(self, event_id: str) -> bool:
        return self.inner.holds(event_id)

    @property
    def newest(self) -> str | None:
        return self.inner.newest


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
