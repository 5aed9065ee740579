"""A ChannelStore wrapper that injects faults into ``publish`` (acknowledged publish tests).

It forwards everything to the store it wraps (memory or Redis), and for
``publish``:

* ``fail_next`` calls raise ``LogUnavailableError`` before anything is applied;
* ``unknown_next`` calls apply, then raise it (a connection lost mid-script:
  the outcome is unknown to the node);
* with ``hold`` set, a call applies, sets ``applied`` and waits for ``hold``
  before it returns (the test drops the connection in between: applied, never acked).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import attrs
import trio

from trio_reconnect.server import (
    ChannelEvent,
    ChannelRead,
    ChannelRequest,
    ChannelStore,
    LogUnavailableError,
    MemberChange,
    PublishRequest,
    PublishResult,
)


@attrs.define(eq=False)
class FaultyStore:
    inner: ChannelStore
    fail_next: int = 0
    unknown_next: int = 0
    hold: trio.Event | None = None
    applied: trio.Event = attrs.Factory(trio.Event)
    #: The size of every publish call, and the msgId-free keys it carried.
    calls: list[int] = attrs.Factory(list)

    async def read(
        self, requests: Sequence[ChannelRequest], *, max_replay: int
    ) -> Sequence[ChannelRead]:
        return await self.inner.read(requests, max_replay=max_replay)

    async def append(self, channel: str, data: Any) -> str:
        return await self.inner.append(channel, data)

    async def heads(self, channels: Sequence[str]) -> Mapping[str, str]:
        return await self.inner.heads(channels)

    def listen(
        self, *, wanted: Callable[[str], bool] | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[Sequence[ChannelEvent | MemberChange]]]:
        return self.inner.listen(wanted=wanted)

    async def publish(
        self, items: Sequence[PublishRequest], *, dedupe_ttl: float
    ) -> Sequence[PublishResult]:
        self.calls.append(len(items))
        if self.fail_next:
            self.fail_next -= 1
            await trio.lowlevel.checkpoint()
            raise LogUnavailableError("injected: the store is down")
        results = await self.inner.publish(items, dedupe_ttl=dedupe_ttl)
        if self.unknown_next:
            self.unknown_next -= 1
            raise LogUnavailableError("injected: the connection broke mid-call")
        if self.hold is not None:
            self.applied.set()
            await self.hold.wait()
        return results


async def log_of(store: ChannelStore, channel: str) -> list[tuple[str, Any]]:
    """Every event ``channel`` holds, ``(id, data)``, oldest first."""
    [read] = await store.read([ChannelRequest(channel, None, history=100_000)], max_replay=100_000)
    assert read.events is not None
    return [(e.id, e.data) for e in read.events]
