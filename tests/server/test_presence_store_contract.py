"""The PresenceStore contract (trio_reconnect/server/_presencebase.py), on every backend.

Each backend's presence store comes from its channel store's
``presence_store()``; its changes are read on that channel store's live
stream. Real time (a backend may be a real Redis): graces are a fraction of a
second, and every wait is under ``fail_after``.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import trio

from tests.support.redis_fixtures import redis_server  # noqa: F401  (the fixture)
from trio_reconnect.server import ChannelStore, MemberChange, PresenceStore

GUARD = 10.0
GRACE = 0.3
_names = itertools.count()


@asynccontextmanager
async def _memory(request: pytest.FixtureRequest) -> AsyncIterator[ChannelStore]:
    from trio_reconnect.server import MemoryChannelStore

    yield MemoryChannelStore()


@asynccontextmanager
async def _redis(request: pytest.FixtureRequest) -> AsyncIterator[ChannelStore]:
    from trio_reconnect.server.redis import RedisChannelStore

    server = request.getfixturevalue("redis_server")
    async with RedisChannelStore(server.url, prefix=f"t{next(_names)}") as store:
        yield store


STORES: dict[str, Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[ChannelStore]]] = {
    "memory": _memory,
    "redis": _redis,
}


class Watch:
    """The member changes a live stream delivered."""

    def __init__(self) -> None:
        self.changes: list[MemberChange] = []

    def of(self, channel: str) -> list[tuple[str, str]]:
        return [
            ("join" if c.info is not None else "leave", c.key)
            for c in self.changes
            if c.channel == channel
        ]

    async def settle(self) -> None:
        """Let the notifications in flight arrive."""
        await trio.sleep(0.2)


@pytest.fixture(params=sorted(STORES))
async def env(
    request: pytest.FixtureRequest, nursery: trio.Nursery
) -> AsyncIterator[tuple[PresenceStore, Watch]]:
    async with STORES[request.param](request) as store:
        watch = Watch()
        live = trio.Event()

        async def listen() -> None:
            async with store.listen() as stream:
                live.set()
                async for batch in stream:
                    watch.changes += [c for c in batch if isinstance(c, MemberChange)]

        nursery.start_soon(listen)
        with trio.fail_after(GUARD):
            await live.wait()
        yield store.presence_store(), watch  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()


async def test_join_list_leave(env: tuple[PresenceStore, Watch]) -> None:
    store, watch = env
    with trio.fail_after(GUARD):
        a = await store.join("lobby", "p", "a", {"user": "ada"}, "o\n1")
        await store.join("lobby", "p", "b", {}, "o\n2")
        listing = await store.members("lobby")
        assert listing.members == {"a": {"user": "ada"}, "b": {}}
        await store.release("lobby", a, grace=None)
        after = await store.members("lobby")
        assert after.members == {"b": {}}
        assert after.version == listing.version + 1
        await watch.settle()
        assert watch.of("lobby") == [("join", "a"), ("join", "b"), ("leave", "a")]
        assert [c.version for c in watch.changes] == [1, 2, 3]
        assert (await store.members("empty")).members == {}


async def test_two_holds_are_one_member(env: tuple[PresenceStore, Watch]) -> None:
    store, watch = env
    with trio.fail_after(GUARD):
        first = await store.join("lobby", "p", "a", {}, "o\n1")
        second = await store.join("lobby", "p", "a", {}, "o\n2")
        assert first != second
        await store.release("lobby", first, grace=None)
        await store.release("lobby", first, grace=None)  # idempotent
        assert set((await store.members("lobby")).members) == {"a"}
        await store.release("lobby", second, grace=None)
        await watch.settle()
        assert watch.of("lobby") == [("join", "a"), ("leave", "a")]


async def test_past_the_grace_one_leave(env: tuple[PresenceStore, Watch]) -> None:
    store, watch = env
    with trio.fail_after(GUARD):
        hold = await store.join("lobby", "p", "a", {}, "o\n1")
        await store.release("lobby", hold, grace=GRACE)
        assert await store.sweep(grace=GRACE, check_owners=False) == 0
        assert set((await store.members("lobby")).members) == {"a"}
        await trio.sleep(GRACE + 0.1)
        assert await store.sweep(grace=GRACE, check_owners=False) == 1
        assert await store.sweep(grace=GRACE, check_owners=False) == 0
        assert (await store.members("lobby")).members == {}
        await watch.settle()
        assert watch.of("lobby") == [("join", "a"), ("leave", "a")]


async def test_a_return_within_the_grace_changes_nothing(
    env: tuple[PresenceStore, Watch],
) -> None:
    store, watch = env
    with trio.fail_after(GUARD):
        hold = await store.join("lobby", "p", "a", {}, "o\n1")
        await store.release("lobby", hold, grace=GRACE)
        await store.join("lobby", "p", "a", {}, "other-node\n7")
        await trio.sleep(GRACE + 0.1)
        assert await store.sweep(grace=GRACE, check_owners=False) == 1
        assert set((await store.members("lobby")).members) == {"a"}
        await watch.settle()
        assert watch.of("lobby") == [("join", "a")]


async def test_a_release_now_after_a_hop_is_one_leave_at_once(
    env: tuple[PresenceStore, Watch],
) -> None:
    # The member's connection on a drained node is in its grace; it came back on
    # another node and unsubscribes there: one leave now, not when the grace ends.
    store, watch = env
    with trio.fail_after(GUARD):
        old = await store.join("lobby", "p", "a", {}, "o\n1")
        live = await store.join("lobby", "p", "b", {}, "o\n2")
        await store.release("lobby", old, grace=GRACE)
        new = await store.join("lobby", "p", "a", {}, "other-node\n7")
        await store.release("lobby", new, grace=None)
        assert set((await store.members("lobby")).members) == {"b"}
        await trio.sleep(GRACE + 0.1)
        assert await store.sweep(grace=GRACE, check_owners=False) == 0  # nothing left to settle
        # Two live holds stay one member: a release of one of them keeps it.
        twin = await store.join("lobby", "p", "b", {}, "other-node\n8")
        await store.release("lobby", twin, grace=None)
        assert set((await store.members("lobby")).members) == {"b"}
        await store.release("lobby", live, grace=None)
        await watch.settle()
        assert watch.of("lobby") == [("join", "a"), ("join", "b"), ("leave", "a"), ("leave", "b")]


async def test_a_client_id_of_another_principal_gets_its_own_key(
    env: tuple[PresenceStore, Watch],
) -> None:
    store, watch = env
    with trio.fail_after(GUARD):
        mine = await store.join("lobby", "p1", "c", {"n": 1}, "o\n1")
        theirs = await store.join("lobby", "p2", "c", {"n": 2}, "o\n2")
        again = await store.join("lobby", "p2", "c", {"n": 2}, "o\n3")
        members = (await store.members("lobby")).members
        assert len(members) == 2
        assert members["c"] == {"n": 1}
        [other] = [k for k in members if k != "c"]
        assert other.startswith("c~")
        assert mine.split("\n")[0] == "c"
        assert theirs.split("\n")[0] == again.split("\n")[0] == other
        await watch.settle()
        assert watch.of("lobby") == [("join", "c"), ("join", other)]


async def test_racing_sweepers_send_one_leave(env: tuple[PresenceStore, Watch]) -> None:
    store, watch = env
    removed: list[int] = []
    with trio.fail_after(GUARD):
        for serial in range(5):
            hold = await store.join("lobby", "p", f"m{serial}", {}, f"o\n{serial}")
            await store.release("lobby", hold, grace=GRACE)
        await trio.sleep(GRACE + 0.1)

        async def sweep() -> None:
            removed.append(await store.sweep(grace=GRACE, check_owners=True))

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(sweep)
        assert sum(removed) == 5
        await watch.settle()
        assert sorted(watch.of("lobby")) == sorted(
            [("join", f"m{i}") for i in range(5)] + [("leave", f"m{i}") for i in range(5)]
        )


async def test_a_dead_owner_holds_leave_once_after_the_grace(
    env: tuple[PresenceStore, Watch],
) -> None:
    store, watch = env
    with trio.fail_after(GUARD):
        await store.refresh("dead", GRACE)
        await store.refresh("alive", 60)
        await store.join("lobby", "p", "a", {}, "dead\n1")
        await store.join("lobby", "p", "b", {}, "alive\n1")
        await store.sweep(grace=GRACE, check_owners=True)
        assert set((await store.members("lobby")).members) == {"a", "b"}
        await trio.sleep(GRACE + 0.1)  # the dead owner's liveness lapsed
        assert await store.sweep(grace=GRACE, check_owners=True) == 0  # orphaned: in the grace
        assert set((await store.members("lobby")).members) == {"a", "b"}
        await trio.sleep(GRACE + 0.1)
        assert await store.sweep(grace=GRACE, check_owners=True) == 1
        assert await store.sweep(grace=GRACE, check_owners=True) == 0
        assert set((await store.members("lobby")).members) == {"b"}
        await watch.settle()
        assert watch.of("lobby") == [("join", "a"), ("join", "b"), ("leave", "a")]


async def test_a_retired_owner_is_found_at_the_next_check(
    env: tuple[PresenceStore, Watch],
) -> None:
    store, watch = env
    with trio.fail_after(GUARD):
        await store.refresh("gone", 60)
        await store.join("lobby", "p", "a", {}, "gone\n1")
        await store.retire("gone")
        await store.sweep(grace=GRACE, check_owners=True)
        await trio.sleep(GRACE + 0.1)
        assert await store.sweep(grace=GRACE, check_owners=True) == 1
        await watch.settle()
        assert watch.of("lobby") == [("join", "a"), ("leave", "a")]


async def test_refresh_says_whether_the_owner_was_alive(env: tuple[PresenceStore, Watch]) -> None:
    store, _ = env
    with trio.fail_after(GUARD):
        assert await store.refresh("o", GRACE) is False  # its first refresh
        assert await store.refresh("o", GRACE) is True
        await trio.sleep(GRACE + 0.1)
        assert await store.refresh("o", GRACE) is False  # it had lapsed


async def test_a_lapsed_owner_holds_its_members_again(env: tuple[PresenceStore, Watch]) -> None:
    store, watch = env
    with trio.fail_after(GUARD):
        await store.refresh("o", GRACE)
        hold = await store.join("lobby", "p", "a", {}, "o\n1")
        await trio.sleep(GRACE + 0.1)
        await store.sweep(grace=GRACE, check_owners=True)  # orphaned: its grace runs
        assert await store.refresh("o", 60) is False
        assert await store.rehold("lobby", hold) is True
        await trio.sleep(GRACE + 0.1)
        assert await store.sweep(grace=GRACE, check_owners=True) == 0
        assert set((await store.members("lobby")).members) == {"a"}
        await store.retire("o")  # and it is indexed again: a later death still counts
        await store.sweep(grace=GRACE, check_owners=True)
        await trio.sleep(GRACE + 0.1)
        assert await store.sweep(grace=GRACE, check_owners=True) == 1
        assert await store.rehold("lobby", hold) is False  # gone
        await watch.settle()
        assert watch.of("lobby") == [("join", "a"), ("leave", "a")]
