"""The publish queue's rules (trio_reconnect/server/_pubplan.py): R3, bounds, the cut. Pure."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from trio_reconnect._wire import Ack, Nack, NackCode, Publish
from trio_reconnect.server import PublishResult
from trio_reconnect.server._pubplan import (
    GATHER_IDLE_PASSES,
    MAX_BATCH,
    Answered,
    Pending,
    PublishQueue,
    dedupe_key,
    gather_more,
    key_base,
)


def pub(msg_id: str, channel: str = "room", size: int = 10) -> Pending:
    return Pending(Publish(channel, msg_id, "x", b"x" * size), key=f"k{msg_id}")


def final(msg_id: str, code: NackCode = NackCode.INVALID) -> Answered:
    return Answered(Nack(msg_id, "room", code, "no"))


def results(*ids: str) -> list[PublishResult]:
    return [PublishResult(i) for i in ids]


def summary(answers: Sequence[Ack | Nack]) -> list[str]:
    """``m1=7`` for an ack, ``m2!unavailable`` for a nack."""
    return [
        f"{a.msg_id}={a.id}" if isinstance(a, Ack) else f"{a.msg_id}!{a.code.value}"
        for a in answers
    ]


def test_a_cut_takes_the_longest_prefix_up_to_the_limit() -> None:
    queue = PublishQueue()
    for i in range(MAX_BATCH + 5):
        assert queue.offer(pub(str(i))) is None
    cut = queue.cut()
    assert [p.publish.msg_id for p in cut.items] == [str(i) for i in range(MAX_BATCH)]
    assert len(queue) == 5
    rest = queue.cut()
    assert len(rest.items) == 5
    assert len(queue) == 0
    assert queue.queued_bytes == 0


def test_decided_answers_keep_their_place_and_do_not_count_in_the_batch() -> None:
    queue = PublishQueue()
    for entry in (pub("1"), final("2"), pub("3"), final("4", NackCode.FORBIDDEN), pub("5")):
        queue.offer(entry)
    cut = queue.cut(limit=2)
    # the limit counts publishes for the store: the decided ones ride along
    assert cut.slots == [0, Nack("2", "room", NackCode.INVALID, "no"), 1]
    answers = queue.settle(cut, results("10", "11"))
    assert summary(answers) == ["1=10", "2!invalid", "3=11"]
    assert summary(queue.settle(queue.cut(), results("12"))) == ["4!forbidden", "5=12"]


@pytest.mark.parametrize(
    ("ran", "expected", "blocked"),
    [
        (3, ["a=1", "b=2", "c=3"], None),
        (2, ["a=1", "b=2", "c!unavailable"], "c"),
        (1, ["a=1", "b!unavailable", "c!unavailable"], "b"),
        (0, ["a!unavailable", "b!unavailable", "c!unavailable"], "a"),
    ],
)
def test_settle_acks_the_prefix_that_ran_and_blocks_from_the_first_failure(
    ran: int, expected: list[str], blocked: str | None
) -> None:
    queue = PublishQueue()
    for m in "abc":
        queue.offer(pub(m))
    answers = queue.settle(queue.cut(), results("1", "2", "3")[:ran])
    assert summary(answers) == expected
    assert queue.blocked_on == blocked


def test_r3_nacks_later_publishes_until_the_first_nacked_msg_id_comes_back() -> None:
    queue = PublishQueue()
    for m in "ab":
        queue.offer(pub(m))
    assert summary(queue.settle(queue.cut(), results("1"))) == ["a=1", "b!unavailable"]
    # later publishes, queued before the re-send, are nacked in order
    for m in "cd":
        queue.offer(pub(m))
    assert summary(queue.settle(queue.cut(), ())) == ["c!unavailable", "d!unavailable"]
    assert queue.blocked_on == "b"
    # the re-send starts: b, c, d go to the store again, in order
    for m in "bcd":
        queue.offer(pub(m))
    cut = queue.cut()
    assert [p.publish.msg_id for p in cut.items] == ["b", "c", "d"]
    assert queue.blocked_on is None
    assert summary(queue.settle(cut, results("2", "3", "4"))) == ["b=2", "c=3", "d=4"]


def test_r3_within_one_cut_a_re_send_opens_the_gate() -> None:
    queue = PublishQueue()
    queue.offer(pub("a"))
    queue.settle(queue.cut(), ())
    for m in ("x", "a", "y"):
        queue.offer(pub(m))
    cut = queue.cut()
    assert [p.publish.msg_id for p in cut.items] == ["a", "y"]
    assert summary(queue.settle(cut, results("1", "2"))) == ["x!unavailable", "a=1", "y=2"]


def test_a_failure_after_a_re_send_blocks_on_the_new_first_failure() -> None:
    queue = PublishQueue()
    queue.offer(pub("a"))
    queue.settle(queue.cut(), ())
    for m in ("a", "b", "c"):
        queue.offer(pub(m))
    answers = queue.settle(queue.cut(), results("1"))
    assert summary(answers) == ["a=1", "b!unavailable", "c!unavailable"]
    assert queue.blocked_on == "b"


def test_the_count_bound_nacks_and_starts_r3_in_order() -> None:
    queue = PublishQueue(max_items=3)
    for m in "abc":
        assert queue.offer(pub(m)) is None
    # d is over the bound: one marker in the queue, in order (answered later)
    assert queue.offer(pub("d")) is None
    assert len(queue) == 4
    # later ones are answered at once, the queue does not grow
    for m in "efg":
        nack = queue.offer(pub(m))
        assert nack is not None
        assert nack.code is NackCode.UNAVAILABLE
    assert len(queue) == 4
    # a decided answer while overflowing goes out at once too
    assert queue.offer(final("h")) == Nack("h", "room", NackCode.INVALID, "no")
    answers = queue.settle(queue.cut(), results("1", "2", "3"))
    assert summary(answers) == ["a=1", "b=2", "c=3", "d!unavailable"]
    assert queue.blocked_on == "d"
    # e (not the awaited msgId) is still answered at once; d's re-send finds room
    assert queue.offer(pub("e")) is not None
    assert queue.offer(pub("d")) is None
    assert queue.offer(pub("e")) is None
    cut = queue.cut()
    assert [p.publish.msg_id for p in cut.items] == ["d", "e"]


def test_the_byte_bound_but_an_empty_queue_takes_any_one_publish() -> None:
    queue = PublishQueue(max_bytes=100)
    assert queue.offer(pub("big", size=500)) is None  # alone: taken
    assert queue.offer(pub("next", size=1)) is None  # marker: over the bound
    assert len(queue) == 2
    assert queue.queued_bytes == 500
    cut = queue.cut()
    assert [p.publish.msg_id for p in cut.items] == ["big"]
    assert summary(queue.settle(cut, results("1"))) == ["big=1", "next!unavailable"]
    assert queue.queued_bytes == 0


def test_an_overflow_yields_to_an_earlier_store_failure() -> None:
    """The store failed at ``a``, the queue overflowed at ``q``: ``a``'s re-send must get in."""
    queue = PublishQueue(max_items=2)
    queue.offer(pub("a"))
    cut = queue.cut()
    queue.offer(pub("p"))
    queue.offer(pub("q2"))
    queue.offer(pub("q"))  # overflow marker
    assert summary(queue.settle(cut, ())) == ["a!unavailable"]
    assert queue.blocked_on == "a"
    queue.settle(queue.cut(), ())  # p, q2 nacked (R3), the marker answered
    assert queue.blocked_on == "a"
    assert queue.offer(pub("a")) is None  # the re-send R3 waits for is taken
    assert queue.offer(pub("p")) is None
    cut = queue.cut()
    assert [p.publish.msg_id for p in cut.items] == ["a", "p"]


def test_memory_stays_bounded_whatever_a_client_sends() -> None:
    queue = PublishQueue(max_items=100, max_bytes=10_000)
    answered_at_once = 0
    for i in range(100_000):
        if queue.offer(pub(str(i), size=50)) is not None:
            answered_at_once += 1
    assert len(queue) <= 101
    assert queue.queued_bytes <= 10_000
    assert answered_at_once >= 100_000 - 101


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (("ada", "c1", "1"), ("ada", "c1", "1"), True),
        (("ada", "c1", "1"), ("ada", "c1", "2"), False),
        (("ada", "c1", "1"), ("ada", "c2", "1"), False),
        (("ada", "c1", "1"), ("bob", "c1", "1"), False),
        ((None, "c1", "1"), ("None", "c1", "1"), False),
        (("a", "b,c", "1"), ("a,b", "c", "1"), False),
        ((None, "c1", "\ud800"), (None, "c1", "\ud801"), False),
    ],
)
def test_dedupe_key(a: tuple[object, str, str], b: tuple[object, str, str], same: bool) -> None:
    def key(principal: object, client_id: str, msg_id: str) -> str:
        return dedupe_key(key_base(principal, client_id), msg_id)

    assert (key(*a) == key(*b)) is same
    assert len(key(*a)) == 32
    base = key_base(a[0], a[1])
    assert dedupe_key(base, a[2]) == dedupe_key(base, a[2]) == key(*a)  # the base is not used up


@pytest.mark.parametrize(
    ("queued", "idle", "limit", "more"),
    [
        (0, 0, 64, False),  # nothing queued: the worker parks instead
        (1, 0, 64, True),  # a lone publish waits a pass or more...
        (1, GATHER_IDLE_PASSES - 1, 64, True),
        (1, GATHER_IDLE_PASSES, 64, False),  # ...and goes once passes bring nothing
        (40, 0, 64, True),  # still growing
        (63, GATHER_IDLE_PASSES - 1, 64, True),
        (64, 0, 64, False),  # a full batch goes at once
        (100, 0, 64, False),
        (5, 0, 5, False),
        (4, 0, 5, True),
    ],
)
def test_the_worker_gathers_while_the_queue_grows_up_to_a_batch(
    queued: int, idle: int, limit: int, more: bool
) -> None:
    assert gather_more(queued, idle, limit) is more


def test_gathering_waits_a_few_passes_only() -> None:
    assert GATHER_IDLE_PASSES == 3
    assert gather_more(1, 0)
    assert not gather_more(MAX_BATCH, 0)
