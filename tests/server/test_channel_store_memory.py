"""What only MemoryChannelStore has: its defaults, its options, its testing helpers."""

from __future__ import annotations

import pytest
import trio

from trio_reconnect.server import (
    DEFAULT_CHANNEL_MAX_LEN,
    ChannelRead,
    ChannelRequest,
    LogUnavailableError,
    MemoryChannelStore,
    NotificationsLost,
    PublishRequest,
    PublishResult,
    clock_start_id,
)


def test_defaults() -> None:
    store = MemoryChannelStore()
    assert store.channel_max_len == DEFAULT_CHANNEL_MAX_LEN == 1_000
    assert store.start is None


@pytest.mark.parametrize(
    "options",
    [{"channel_max_len": 0}, {"listener_buffer": 0}, {"start": -1}, {"channel_max_len": 1.5}],
)
def test_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        MemoryChannelStore(**options)  # type: ignore[arg-type]


async def test_a_new_channel_counts_from_the_clock() -> None:
    before = clock_start_id()
    store = MemoryChannelStore()
    [read] = await store.read([ChannelRequest("c", None)], max_replay=10)
    assert int(read.newest) + 1 >= before
    assert int(await store.append("c", 1)) == int(read.newest) + 1


async def test_forget_starts_a_channel_again() -> None:
    store = MemoryChannelStore(start=1)
    for i in range(3):
        store.append_nowait("c", i)
    store.forget("c", start=100)
    [read] = await store.read([ChannelRequest("c", "3")], max_replay=10)
    assert read == ChannelRead("c", "99", None)
    assert await store.append("c", "x") == "100"


async def test_lose_notifications_ends_every_stream() -> None:
    store = MemoryChannelStore(start=1)
    async with store.listen() as one, store.listen() as two:
        store.append_nowait("c", 1)
        store.lose_notifications()
        for stream in (one, two):
            with trio.fail_after(1), pytest.raises(NotificationsLost):
                await stream.__anext__()


async def test_dedupe_records_expire_on_trios_clock_and_are_pruned(autojump_clock: object) -> None:
    store = MemoryChannelStore(start=1)
    [first] = await store.publish([PublishRequest("room", "k", 1)], dedupe_ttl=10)
    assert first.id == "1"
    await trio.sleep(9.5)
    [again] = await store.publish([PublishRequest("room", "k", 1)], dedupe_ttl=10)
    assert again == PublishResult("1", duplicate=True)  # within the window: from the first append
    await trio.sleep(0.5)
    # the window has passed: a re-send is applied again (the documented limit)
    [late] = await store.publish([PublishRequest("room", "k", 1)], dedupe_ttl=10)
    assert late == PublishResult("2")
    assert store.dedupe_records == 1  # the expired record was pruned, the new one held


async def test_dedupe_memory_is_bounded_by_the_window(autojump_clock: object) -> None:
    store = MemoryChannelStore(start=1, channel_max_len=10)
    for i in range(1_000):
        await store.publish([PublishRequest("room", f"k{i}", i)], dedupe_ttl=5)
        await trio.sleep(0.1)
    assert store.dedupe_records <= 51


async def test_a_broken_channel_refuses_appends_until_mended() -> None:
    store = MemoryChannelStore(start=1)
    store.break_channel("room")
    with pytest.raises(LogUnavailableError):
        await store.append("room", 1)
    with pytest.raises(LogUnavailableError):
        await store.publish([PublishRequest("room", "k", 1)], dedupe_ttl=1)
    store.break_channel("room", broken=False)
    assert await store.append("room", 1) == "1"
