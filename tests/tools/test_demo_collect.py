"""The demo's garbage collections: just before a restart, not while clients come back."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import trio

from trio_reconnect._tools.demo._collect import HeldCollection, everyone_back
from trio_reconnect._tools.demo._crowd import open_crowd
from trio_reconnect._tools.demo._single import run_demo
from trio_reconnect.server import ReconnectServer, ReplayLog


@pytest.mark.parametrize(
    ("before", "now", "ready", "back"),
    [
        ([], [], [], True),  # no client: nobody to wait for
        ([0, 0], [1, 1], [True, True], True),
        ([0, 0], [1, 0], [True, True], False),  # one not dropped and back yet
        ([0, 0], [1, 1], [True, False], False),  # back, but still catching up
        ([2, 5], [3, 6], [True, True], True),  # counted from the hold, not from zero
        ([2, 5], [2, 6], [True, True], False),
        ([1, 1], [3, 2], [True, True], True),  # dropped twice meanwhile
    ],
)
def test_everyone_back_after_the_hold(
    before: list[int], now: list[int], ready: list[bool], back: bool
) -> None:
    assert everyone_back(before, now, ready) is back


def test_everyone_back_wants_one_entry_per_client() -> None:
    with pytest.raises(ValueError, match="one entry per client: 2, 1, 2"):
        everyone_back([0, 0], [1], [True, True])


@pytest.fixture
def gc_restored() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    if enabled:
        gc.enable()
    else:
        gc.disable()


@pytest.mark.usefixtures("gc_restored")
def test_held_collection_collects_then_holds_until_released() -> None:
    gc.enable()
    collection = HeldCollection()
    collection.release()  # nothing held: nothing to do
    assert gc.isenabled()

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    Cycle()  # garbage that only a collection frees
    collection.hold()
    assert gc.garbage == []
    assert not any(type(o) is Cycle for o in gc.get_objects())
    assert (collection.held, collection.collections, gc.isenabled()) == (True, 1, False)
    collection.release()
    assert (collection.held, gc.isenabled()) == (False, True)


@pytest.mark.usefixtures("gc_restored")
def test_release_leaves_a_collection_it_did_not_turn_off() -> None:
    gc.disable()  # someone else's choice
    HeldCollection().release()
    assert not gc.isenabled()


async def test_crowd_collects_when_asked() -> None:
    server = ReconnectServer(ReplayLog())
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            (tcp,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
            await nursery.start(server.serve_listeners, [tcp])
            url = f"ws://127.0.0.1:{tcp.socket.getsockname()[1]}/c"
            async with open_crowd(url, 3) as crowd:
                await crowd.wait_until()
                await crowd.collect()
                await crowd.collect()
                assert crowd.collected == 2
                records = await crowd.stop()
            nursery.cancel_scope.cancel()
    assert len(records) == 3


@pytest.mark.usefixtures("gc_restored")
async def test_demo_leaves_automatic_collection_on() -> None:
    gc.enable()
    with trio.fail_after(60):
        summary = await run_demo(clients=5, duration=1.5, restarts=2, rate=10.0, progress=False)
    assert summary.ok
    assert summary.restarts == 2
    assert gc.isenabled()
