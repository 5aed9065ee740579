"""Presence across two server nodes on one redis-server (PROTOCOL.md 4.4), real time.

A member hops from node A to node B within the grace: B's observer sees
nothing. Node A's owner dies (its process gone without a word: it stops
refreshing and never retires): exactly one leave reaches B's observer, within
``owner_ttl + owner_check_interval + grace + sweep_interval``.
"""

from __future__ import annotations

import random
from typing import Any

import trio

from tests.server.test_server_members import changes, join
from tests.support.server_clients import receive_json
from trio_reconnect.server import LogUnavailableError, ReconnectServer, ReplayLog
from trio_reconnect.server._membersplan import killed_node_bound
from trio_reconnect.server._sweeper import DEFAULT_OWNER_CHECK_INTERVAL, DEFAULT_SWEEP_INTERVAL
from trio_reconnect.server.redis import RedisChannelStore
from trio_reconnect.testing._redis_server import RedisServer

GRACE = 1.0
TTL = 1.0
BOUND = killed_node_bound(
    owner_ttl=TTL,
    owner_check_interval=DEFAULT_OWNER_CHECK_INTERVAL,
    grace=GRACE,
    sweep_interval=DEFAULT_SWEEP_INTERVAL,
)


def node(store: RedisChannelStore, name: str) -> ReconnectServer:
    return ReconnectServer(
        ReplayLog(start=1),
        channels=store,
        rng=random.Random(0),
        node=name,
        presence=("lobby*",),
        presence_grace=GRACE,
        announce_interval=0.2,
        announce_ttl=TTL,
    )


async def test_a_hop_within_the_grace_shows_nothing(
    redis_server: RedisServer, nursery: trio.Nursery
) -> None:
    with trio.fail_after(30):
        async with (
            RedisChannelStore(redis_server.url) as a_store,
            RedisChannelStore(redis_server.url) as b_store,
        ):
            a, b = node(a_store, "a"), node(b_store, "b")
            async with trio.open_nursery() as inner:
                observer, _, _ = await join(inner, b, "obs")
                _ada, stream, members = await join(inner, a, "ada")
                assert set(members) == {"obs", "ada"}
                assert await changes(observer, 0.5) == [("join", "ada")]
                await stream.aclose()  # ada's connection to A drops
                await trio.sleep(GRACE / 2)
                _again, _, members = await join(inner, b, "ada")
                assert set(members) == {"obs", "ada"}
                assert await changes(observer, GRACE * 3) == []
                inner.cancel_scope.cancel()


class Mortal:
    """A presence store that stops reaching Redis once ``dead``: a process gone without a word."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.dead = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                raise LogUnavailableError("this node is dead")
            return await attr(*args, **kwargs)

        return call


class MortalStore(RedisChannelStore):
    mortal: Mortal

    def presence_store(self) -> Any:
        self.mortal = Mortal(super().presence_store())
        return self.mortal


async def test_a_dead_owner_member_leaves_once_within_the_bound(
    redis_server: RedisServer, nursery: trio.Nursery
) -> None:
    with trio.fail_after(30):
        async with (
            MortalStore(redis_server.url) as a_store,
            RedisChannelStore(redis_server.url) as b_store,
        ):
            a, b = node(a_store, "a"), node(b_store, "b")
            async with trio.open_nursery() as inner:
                observer, _, _ = await join(inner, b, "obs")
                async with trio.open_nursery() as a_nursery:
                    await join(a_nursery, a, "ada")
                    assert await changes(observer, 0.5) == [("join", "ada")]
                    assert isinstance(a_store, MortalStore)
                    a_store.mortal.dead = True  # nothing of A reaches Redis from now on
                    killed = trio.current_time()
                    a_nursery.cancel_scope.cancel()
                with trio.fail_after(BOUND + 1):
                    frame = await receive_json(observer)
                left = trio.current_time() - killed
                assert frame == {"type": "leave", "channel": "lobby", "clientId": "ada"}
                assert (
                    GRACE + TTL - 0.5 <= left <= BOUND + 0.5
                )  # the last refresh was <= 0.2 s before
                assert await changes(observer, 2) == []
                inner.cancel_scope.cancel()
