"""The application's receive buffer (trio_reconnect/_inbox.py).

Driven by pytest-trio's ``autojump_clock``: every wait is measured in exact
``trio.current_time()`` values, and every test that waits has a ``fail_after``.
"""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
import trio.testing

from trio_reconnect._inbox import Inbox


class Closed(Exception):
    pass


async def test_fifo_order() -> None:
    inbox: Inbox[str] = Inbox(max_size=10)
    with trio.fail_after(1):
        for item in ("a", "b", "c"):
            await inbox.put(item)
        inbox.put_nowait("d")
        await inbox.put("e")
        assert len(inbox) == 5
        assert [await inbox.get() for _ in range(5)] == ["a", "b", "c", "d", "e"]
        assert len(inbox) == 0
        assert inbox.stalls == 0


async def test_get_waits_for_an_item(autojump_clock: trio.testing.MockClock) -> None:
    inbox: Inbox[int] = Inbox(max_size=2)
    got: list[tuple[float, int]] = []

    async def consumer() -> None:
        item = await inbox.get()
        got.append((trio.current_time(), item))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer)
            await trio.sleep(4)
            assert got == []
            await inbox.put(7)
    assert got == [(4.0, 7)]


async def test_put_waits_when_full_and_resumes_after_a_get(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox: Inbox[int] = Inbox(max_size=2)
    returned: list[float] = []

    async def producer() -> None:
        await inbox.put(1)
        returned.append(trio.current_time())
        await inbox.put(2)  # the buffer now holds max_size items: waits
        returned.append(trio.current_time())

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            await trio.sleep(5)
            assert returned == [0.0]
            assert inbox.stalled
            assert inbox.stalls == 1
            assert len(inbox) == 2
            assert await inbox.get() == 1
            await trio.sleep(1)
            assert returned == [0.0, 5.0]
            assert not inbox.stalled
            assert inbox.stalls == 1
            assert len(inbox) == 1
            assert await inbox.get() == 2
    assert trio.current_time() == 6.0


async def test_max_size_one_waits_for_every_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox: Inbox[int] = Inbox(max_size=1)
    returned: list[float] = []
    received: list[tuple[float, int]] = []

    async def producer() -> None:
        for n in range(3):
            await inbox.put(n)
            returned.append(trio.current_time())

    async def consumer() -> None:
        for _ in range(3):
            await trio.sleep(2)
            item = await inbox.get()
            received.append((trio.current_time(), item))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            nursery.start_soon(consumer)
    assert received == [(2.0, 0), (4.0, 1), (6.0, 2)]
    assert returned == [2.0, 4.0, 6.0]
    assert inbox.stalls == 3
    assert not inbox.stalled


async def test_put_stays_stalled_while_the_buffer_holds_max_size_or_more(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox: Inbox[int] = Inbox(max_size=2)
    for n in range(3):
        inbox.put_nowait(n)
    returned: list[float] = []

    async def producer() -> None:
        await inbox.put(3)
        returned.append(trio.current_time())

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            for expected, now in ((0, 1.0), (1, 2.0)):
                await trio.sleep(1)
                assert await inbox.get() == expected
                await trio.lowlevel.checkpoint()
                assert inbox.stalled, f"4 -> {len(inbox)} items is not below max_size=2"
                assert trio.current_time() == now
            await trio.sleep(1)
            assert await inbox.get() == 2  # 1 item left: space
            await trio.sleep(1)
            assert not inbox.stalled
    assert returned == [3.0]
    assert inbox.stalls == 1
    assert len(inbox) == 1


async def test_put_nowait_bypasses_the_bound() -> None:
    inbox: Inbox[int] = Inbox(max_size=1)
    with trio.fail_after(1):
        for n in range(100):
            inbox.put_nowait(n)
        assert len(inbox) == 100
        assert not inbox.stalled
        assert inbox.stalls == 0
        assert [await inbox.get() for _ in range(100)] == list(range(100))


async def test_close_wakes_a_pending_get_with_the_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox: Inbox[int] = Inbox(max_size=2)
    error = Closed("gone")
    raised: list[tuple[float, BaseException]] = []

    async def consumer() -> None:
        with pytest.raises(Closed) as info:
            await inbox.get()
        raised.append((trio.current_time(), info.value))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer)
            nursery.start_soon(consumer)
            await trio.sleep(3)
            inbox.close(error)
    assert raised == [(3.0, error), (3.0, error)]


async def test_close_discards_the_buffer_and_later_gets_raise() -> None:
    inbox: Inbox[int] = Inbox(max_size=10)
    error = Closed("gone")
    with trio.fail_after(1):
        for n in range(3):
            await inbox.put(n)
        inbox.close(error)
        assert len(inbox) == 0
        for _ in range(3):
            with pytest.raises(Closed) as info:
                await inbox.get()
            assert info.value is error
            assert info.value.__cause__ is None


async def test_close_releases_a_stalled_put(autojump_clock: trio.testing.MockClock) -> None:
    inbox: Inbox[int] = Inbox(max_size=1)
    returned: list[float] = []

    async def producer() -> None:
        await inbox.put(1)
        returned.append(trio.current_time())

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            await trio.sleep(2)
            assert inbox.stalled
            inbox.close(Closed())
            assert not inbox.stalled
    assert returned == [2.0]
    assert len(inbox) == 0


async def test_close_is_idempotent_and_keeps_the_first_error() -> None:
    inbox: Inbox[int] = Inbox(max_size=1)
    first, second = Closed("first"), Closed("second")
    inbox.close(first)
    inbox.close(second)
    with trio.fail_after(1), pytest.raises(Closed) as info:
        await inbox.get()
    assert info.value is first


async def test_put_after_close_is_a_no_op() -> None:
    inbox: Inbox[int] = Inbox(max_size=1)
    error = Closed()
    inbox.close(error)
    with trio.fail_after(1):
        await inbox.put(1)  # must neither raise nor wait
        await inbox.put(2)
        inbox.put_nowait(3)
        assert len(inbox) == 0
        assert inbox.stalls == 0
        assert not inbox.stalled
        with pytest.raises(Closed) as info:
            await inbox.get()
    assert info.value is error


async def test_get_order_after_a_stall_is_still_fifo(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox: Inbox[int] = Inbox(max_size=3)
    received: list[int] = []

    async def producer() -> None:
        for n in range(10):
            await inbox.put(n)

    async def consumer() -> None:
        for _ in range(10):
            await trio.sleep(1)
            received.append(await inbox.get())

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            nursery.start_soon(consumer)
    assert received == list(range(10))
    assert trio.current_time() == 10.0
    # The producer stalls on items 2..9 (each put that leaves 3 items buffered).
    assert inbox.stalls == 8


@pytest.mark.parametrize("size", [0, -1])
def test_max_size_validation(size: int) -> None:
    with pytest.raises(ValueError, match="max_size must be at least 1"):
        Inbox[int](max_size=size)
