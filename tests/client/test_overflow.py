"""The reader past ``max_queue``: the rule (trio_reconnect/_overflow.py) and the inbox applying it.

The rule is pure: a table of cases. The inbox tests run on ``autojump_clock``
with ``fail_after`` guards; the end-to-end tests (a client that only
publishes) are in tests/client/test_publish_unread.py.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_reconnect._inbox import Inbox
from trio_reconnect._overflow import frame_size, reader_must_wait


@pytest.mark.parametrize(
    ("items", "size", "publishing", "waits"),
    [
        (63, 10**9, False, False),  # under max_queue: never waits, whatever the bytes
        (63, 10**9, True, False),
        (64, 0, False, True),  # at max_queue, no publish pending: waits, as always
        (500, 100, False, True),
        (64, 0, True, False),  # a publish pending: goes on past max_queue...
        (500, 999, True, False),
        (500, 1000, True, True),  # ...until the bytes reach the bound
        (65, 5000, True, True),
    ],
)
def test_reader_must_wait(items: int, size: int, publishing: bool, waits: bool) -> None:
    assert (
        reader_must_wait(
            items=items, size=size, max_items=64, overflow_bytes=1000, publishing=publishing
        )
        is waits
    )


def test_a_zero_bound_means_no_overflow() -> None:
    assert reader_must_wait(items=1, size=0, max_items=1, overflow_bytes=0, publishing=True)


@pytest.mark.parametrize(
    ("message", "size"),
    [("", 0), ("abc", 3), ("é", 2), ("€x", 4), ("😀", 4), (b"\xff\x00", 2), (b"", 0)],
)
def test_frame_size_is_utf8_bytes(message: str | bytes, size: int) -> None:
    assert frame_size(message) == size


class Pending:
    """A stand-in for the publisher's "is a publish pending" query."""

    def __init__(self) -> None:
        self.now = False

    def __call__(self) -> bool:
        return self.now


async def test_without_a_publish_pending_the_bound_is_max_size_as_before(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox: Inbox[int] = Inbox(2, overflow_bytes=1000, publishing=Pending())
    with trio.fail_after(10):
        await inbox.put(0, 10)
        with trio.move_on_after(1) as waited:
            await inbox.put(1, 10)
    assert waited.cancelled_caught
    assert (len(inbox), inbox.size, inbox.stalls, inbox.overflows) == (2, 20, 1, 0)


async def test_a_publish_pending_lets_put_go_past_max_size_up_to_the_bytes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pending = Pending()
    pending.now = True
    inbox: Inbox[int] = Inbox(2, overflow_bytes=100, publishing=pending)
    with trio.fail_after(10):
        for n in range(9):  # 90 bytes: under the bound, no wait
            await inbox.put(n, 10)
        assert (len(inbox), inbox.size, inbox.stalls, inbox.overflows) == (9, 90, 0, 8)
        with trio.move_on_after(1) as waited:
            await inbox.put(9, 10)  # 100 bytes: the bound, waits
        assert waited.cancelled_caught
        assert (len(inbox), inbox.size, inbox.stalls) == (10, 100, 1)
        # One get brings the bytes under the bound: room again (a publish pending).
        assert await inbox.get() == 0
        assert inbox.size == 90
        with trio.move_on_after(1) as waited:
            await inbox.put(10, 10)  # back at the bound: waits
        assert waited.cancelled_caught
        assert inbox.stalls == 2


async def test_a_waiting_put_is_released_when_a_publish_becomes_pending(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pending = Pending()
    inbox: Inbox[int] = Inbox(2, overflow_bytes=100, publishing=pending)
    released: list[float] = []

    async def reader() -> None:
        for n in range(3):
            await inbox.put(n, 10)
            released.append(trio.current_time())

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(1)
            assert inbox.stalled
            assert released == [0.0]
            inbox.recheck()  # nothing changed: still waits
            await trio.sleep(1)
            assert inbox.stalled
            assert released == [0.0]
            pending.now = True
            inbox.recheck()
    assert released == [0.0, 2.0, 2.0]
    assert (len(inbox), inbox.stalls, inbox.overflows) == (3, 1, 1)


async def test_get_releases_a_put_waiting_at_the_byte_bound_while_publishing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pending = Pending()
    pending.now = True
    inbox: Inbox[int] = Inbox(1, overflow_bytes=50, publishing=pending)
    released: list[float] = []

    async def reader() -> None:
        await inbox.put(0, 30)
        await inbox.put(1, 30)  # 60 bytes, 2 items: waits
        released.append(trio.current_time())

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(3)
            assert inbox.stalled
            assert await inbox.get() == 0  # 30 bytes, 1 item: room past max_size
    assert released == [3.0]


async def test_close_resets_the_bytes() -> None:
    inbox: Inbox[int] = Inbox(10)
    inbox.put_nowait(1, 40)
    inbox.close(RuntimeError("closed"))
    assert (len(inbox), inbox.size) == (0, 0)
