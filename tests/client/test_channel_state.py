"""Per-channel client state, pure: cursor, member list, outbox (trio_reconnect/_channel.py,
_presence.py, _outbox.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_reconnect import ResumeProtocolError
from trio_reconnect._channel import ChannelAnswer, ChannelCursor, ChannelReady, ChannelState, Phase
from trio_reconnect._outbox import (
    DEFAULT_OUTBOX_BYTES,
    MsgIdCounter,
    Outbox,
    OutboxStatistics,
    PendingPublish,
)
from trio_reconnect._presence import Members
from trio_reconnect._protocol import Gap, HandshakeOutcome, HandshakeResult, ServerEvent, Snapshot
from trio_reconnect._wire import (
    Ack,
    ChannelItem,
    Join,
    Leave,
    Nack,
    NackCode,
    Presence,
    Publish,
    Refused,
    RefusedCode,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    parse_client_frame,
)


def ready(
    channel: str, event_id: str, *, lost: bool = False, start: str | None = None
) -> ChannelReady:
    result = ChannelAnswer(channel, start).receive(Subscribed(channel, event_id, lost))
    assert isinstance(result, ChannelReady)
    return result


# --------------------------------------------------------------------------- the cursor


def test_a_fresh_subscription_is_in_the_map_from_its_subscribed_id() -> None:
    cursor = ChannelCursor("a", window=4)
    assert cursor.position is None  # not in the resume frame's map yet
    assert cursor.subscribe_frame() == Subscribe("a")
    assert cursor.subscribed(ready("a", "57")) is None
    assert cursor.position == "57"
    # The subscribed id counts as delivered: a live copy of it is dropped.
    assert not cursor.deliver(ServerEvent("57", "again"))
    assert cursor.deliver(ServerEvent("58", None))
    assert cursor.position == "58"
    assert not cursor.deliver(ServerEvent("58", None))


def test_an_application_position_counts_as_delivered() -> None:
    cursor = ChannelCursor("a", window=4, last_event_id="10", history=5)
    assert cursor.subscribe_frame() == Subscribe("a", "10", 5)
    assert cursor.position is None
    assert not cursor.deliver(ServerEvent("10", "off by one"))
    assert cursor.deliver(ServerEvent("11", None))
    cursor.subscribed(ready("a", "11", start="10"))
    assert cursor.position == "11"
    # Once answered, it asks from its position, without the history it had.
    assert cursor.subscribe_frame() == Subscribe("a", "11")


def test_a_resubscribe_before_the_first_subscribed_asks_from_what_it_delivered() -> None:
    cursor = ChannelCursor("a", window=4, history=50)
    assert cursor.deliver(ServerEvent("7", None))  # part of the history, then the link dropped
    assert cursor.position is None
    assert cursor.subscribe_frame() == Subscribe("a", "7")
    assert cursor.answer().start == "7"


def test_a_gap_empties_the_window_and_seeds_it_with_the_subscribed_id() -> None:
    cursor = ChannelCursor("a", window=4)
    cursor.subscribed(ready("a", "5"))
    for n in range(6, 9):
        assert cursor.deliver(ServerEvent(str(n), None))
    gap = cursor.subscribed(ready("a", "2000", lost=True, start="8"))
    assert gap == Gap("8", "2000")
    assert cursor.remembered == 1
    assert cursor.position == "2000"
    assert cursor.deliver(ServerEvent("6", "a new event with an old id"))
    assert not cursor.deliver(ServerEvent("2000", None))


def test_a_snapshot_empties_the_window_and_moves_the_position() -> None:
    cursor = ChannelCursor("a", window=4)
    cursor.subscribed(ready("a", "5"))
    assert cursor.deliver(ServerEvent("6", None))
    assert cursor.deliver(Snapshot("90", {"state": 1}))
    assert cursor.position == "90"
    assert cursor.remembered == 1
    assert cursor.deliver(ServerEvent("6", None))


def test_the_window_is_bounded() -> None:
    cursor = ChannelCursor("a", window=3)
    cursor.subscribed(ready("a", "0"))
    for n in range(1, 100):
        cursor.deliver(ServerEvent(str(n), None))
        assert cursor.remembered <= 3
    assert cursor.delivered == "99"


def test_a_cursor_checks_its_channel_name_and_history() -> None:
    for bad in ["", "a\nb", "x" * 257]:
        with pytest.raises(ValueError, match="channel name"):
            ChannelCursor(bad, window=4)
    with pytest.raises(ValueError, match="history"):
        ChannelCursor("a", window=4, history=-1)


def test_a_cursor_takes_only_its_own_channel() -> None:
    with pytest.raises(ValueError, match="'b'"):
        ChannelCursor("a", window=4).subscribed(ready("b", "1"))


def test_a_resumed_channel_keeps_its_window() -> None:
    """4.3: a subscribe for a channel already subscribed keeps the client's dedupe window."""
    cursor = ChannelCursor("a", window=8)
    cursor.subscribed(ready("a", "1"))
    for n in (2, 3, 4):
        assert cursor.deliver(ServerEvent(str(n), None))
    answer = cursor.answer(max_replay=10)
    assert answer.start == "4"
    result = answer.receive(Subscribed("a", "4"))
    assert isinstance(result, ChannelReady)
    assert result.result == HandshakeResult(HandshakeOutcome.REPLAYED, 0, "4")
    cursor.subscribed(result)
    assert not cursor.deliver(ServerEvent("3", "replayed twice"))


# --------------------------------------------------------------------------- members


def test_the_first_list_joins_everyone_and_the_same_list_changes_nothing() -> None:
    members = Members("lobby")
    listed = {"ada": {"u": 1}, "bob": {"u": 2}}
    assert members.replace(Presence("lobby", listed)) == [
        Join("lobby", "ada", {"u": 1}),
        Join("lobby", "bob", {"u": 2}),
    ]
    assert members.replace(Presence("lobby", dict(reversed(listed.items())))) == []
    assert dict(members) == listed
    assert len(members) == 2
    assert members["ada"] == {"u": 1}


def test_a_resubscribes_list_gives_leaves_then_joins_for_real_differences() -> None:
    members = Members("lobby")
    members.replace(Presence("lobby", {"ada": {}, "bob": {}, "cy": {}}))
    changes = members.replace(Presence("lobby", {"cy": {"away": True}, "bob": {}, "dee": {}}))
    assert changes == [
        Leave("lobby", "ada"),
        Join("lobby", "cy", {"away": True}),
        Join("lobby", "dee", {}),
    ]


def test_joins_and_leaves() -> None:
    members = Members("lobby")
    assert members.apply(Join("lobby", "ada", {})) == Join("lobby", "ada", {})
    assert members.apply(Join("lobby", "ada", {})) is None  # no change
    assert members.apply(Join("lobby", "ada", {"x": 1})) == Join("lobby", "ada", {"x": 1})
    assert members.apply(Leave("lobby", "bob")) is None
    assert members.apply(Leave("lobby", "ada")) == Leave("lobby", "ada")
    assert members.apply(Leave("lobby", "ada")) is None
    assert len(members) == 0
    with pytest.raises(ValueError, match="'other'"):
        members.apply(Leave("other", "ada"))


def test_clear_and_view() -> None:
    members = Members("lobby")
    view = members.view()
    members.replace(Presence("lobby", {"ada": {}, "bob": {}}))
    assert dict(view) == {"ada": {}, "bob": {}}
    with pytest.raises(TypeError):
        view["x"] = {}  # type: ignore[index]
    assert members.clear() == [Leave("lobby", "ada"), Leave("lobby", "bob")]
    assert dict(view) == {}


@given(
    st.lists(
        st.one_of(
            st.dictionaries(
                st.sampled_from("abcde"),
                st.dictionaries(st.just("v"), st.integers(0, 2)),
                max_size=5,
            ),
            st.tuples(st.sampled_from("abcde"), st.none() | st.integers(0, 2)),
        ),
        max_size=30,
    )
)
@settings(max_examples=200, deadline=None)
def test_the_changes_replayed_on_a_copy_give_the_same_list(
    steps: list[dict[str, dict[str, int]] | tuple[str, int | None]],
) -> None:
    """An application that applies only the changes it is shown holds the true list."""
    members = Members("c")
    seen: dict[str, dict[str, Any]] = {}
    for step in steps:
        if isinstance(step, dict):
            changes: list[Join | Leave] = members.replace(Presence("c", step))
        else:
            key, value = step
            change = members.apply(
                Leave("c", key) if value is None else Join("c", key, {"v": value})
            )
            changes = [] if change is None else [change]
        for change in changes:
            if isinstance(change, Join):
                assert seen.get(change.client_id) != change.info
                seen[change.client_id] = change.info
            else:
                assert change.client_id in seen
                del seen[change.client_id]
        assert seen == dict(members)


# --------------------------------------------------------------------------- msgIds


def test_the_msg_id_counter_persists_as_a_string() -> None:
    counter = MsgIdCounter()
    assert [counter.take() for _ in range(3)] == ["0", "1", "2"]
    saved = counter.dump()
    assert saved == "3"
    again = MsgIdCounter.load(saved)
    assert again.take() == "3"
    for bad in ["", "-1", "1.5", "x", "١٢"]:
        with pytest.raises(ValueError, match="decimal"):
            MsgIdCounter.load(bad)
    with pytest.raises(ValueError, match="non-negative"):
        MsgIdCounter(-1)


# --------------------------------------------------------------------------- the outbox


def test_the_default_bound() -> None:
    assert Outbox().max_bytes == DEFAULT_OUTBOX_BYTES == 1 << 20


def test_publishes_are_sent_in_order_and_acks_remove_them() -> None:
    outbox = Outbox()
    first = outbox.add("a", {"n": 1})
    second = outbox.add("b", {"n": 2})
    assert first is not None
    assert second is not None
    assert (first.msg_id, second.msg_id) == ("0", "1")
    assert json.loads(first.frame) == {
        "type": "publish",
        "channel": "a",
        "msgId": "0",
        "data": {"n": 1},
    }
    assert parse_client_frame(first.frame) == Publish("a", "0", {"n": 1})
    assert first.size == len(first.frame.encode())
    assert outbox.take_unsent() == [first, second]
    assert outbox.take_unsent() == []
    assert outbox.ack(Ack("0", "a", "19")) == first
    assert outbox.ack(Ack("0", "a", "19")) is None  # a second ack of a re-send
    assert outbox.pending() == [second]
    assert outbox.statistics() == OutboxStatistics(1, 0, second.size, DEFAULT_OUTBOX_BYTES)


def test_an_answer_naming_another_channel_changes_nothing() -> None:
    outbox = Outbox()
    outbox.add("a", 1)
    assert outbox.ack(Ack("0", "b", "19")) is None
    assert outbox.nack(Nack("0", "b", NackCode.FORBIDDEN)) is None
    assert outbox.nack(Nack("0", "b", NackCode.UNAVAILABLE)) is None
    assert outbox.nack(Nack(None, "a", NackCode.INVALID)) is None
    assert outbox.nack(Nack("0", None, NackCode.INVALID)) is None
    assert len(outbox) == 1


@pytest.mark.parametrize("code", [NackCode.FORBIDDEN, NackCode.INVALID, NackCode.TOO_LARGE])
def test_a_final_nack_removes_the_publish(code: NackCode) -> None:
    outbox = Outbox()
    entry = outbox.add("a", 1)
    outbox.take_unsent()
    assert outbox.nack(Nack("0", "a", code, "why")) == entry
    assert len(outbox) == 0
    assert outbox.statistics().bytes == 0


def test_unavailable_holds_the_publish_until_its_backoff_or_the_next_ready() -> None:
    outbox = Outbox()
    a = outbox.add("a", 1)
    b = outbox.add("a", 2)
    assert outbox.take_unsent() == [a, b]
    assert outbox.nack(Nack("0", "a", NackCode.UNAVAILABLE)) == a
    assert outbox.attempts("0") == 1
    assert outbox.statistics().held == 1
    assert outbox.oldest_held() == a
    assert outbox.nack(Nack("1", "a", NackCode.UNAVAILABLE)) == b  # the server's rule: later too
    c = outbox.add("a", 3)
    assert outbox.take_unsent() == []  # nothing overtakes a held publish
    outbox.release("1")  # not the oldest: a stays held, so nothing goes out
    assert outbox.take_unsent() == []
    outbox.release("0")
    assert outbox.take_unsent() == [a, b, c]  # its backoff is over: from it on, in order
    assert outbox.nack(Nack("0", "a", NackCode.UNAVAILABLE)) == a
    assert outbox.attempts("0") == 2
    outbox.connection_lost()
    assert outbox.oldest_held() is None
    assert outbox.take_unsent() == [a, b, c]  # after the next ready: everything, in order
    assert outbox.attempts("0") == 2
    assert outbox.attempts("unknown") == 0
    outbox.release("unknown")


def test_a_stale_unavailable_for_an_older_copy_changes_nothing() -> None:
    outbox = Outbox()
    a = outbox.add("a", 1)
    b = outbox.add("a", 2)
    assert outbox.take_unsent() == [a, b]
    outbox.nack(Nack("0", "a", NackCode.UNAVAILABLE))
    outbox.release("0")  # b's first copy is still unanswered: it goes again after a
    assert outbox.take_unsent() == [a, b]
    assert outbox.nack(Nack("1", "a", NackCode.UNAVAILABLE)) == b  # for b's first copy
    assert outbox.statistics().held == 0
    assert outbox.attempts("1") == 0
    assert outbox.take_unsent() == []
    assert outbox.ack(Ack("0", "a", "5")) == a
    assert outbox.ack(Ack("1", "a", "6")) == b
    assert len(outbox) == 0


def test_only_a_publish_never_sent_can_be_withdrawn() -> None:
    outbox = Outbox()
    a = outbox.add("a", 1)
    outbox.take_unsent()
    outbox.connection_lost()
    b = outbox.add("a", 2)
    assert b is not None
    assert not outbox.withdraw(a.msg_id if a else "")  # sent once: the server may have it
    assert outbox.withdraw(b.msg_id)
    assert not outbox.withdraw(b.msg_id)
    assert outbox.pending() == [a]
    assert outbox.statistics().bytes == (a.size if a else 0)


def test_the_outbox_is_bounded_in_bytes() -> None:
    probe = PendingPublish.of(Publish("a", "0", "x" * 50))
    outbox = Outbox(max_bytes=probe.size * 2)
    assert outbox.add("a", "x" * 50) is not None
    assert outbox.add("a", "x" * 50) is not None
    assert outbox.add("a", "x" * 50) is None  # full: the publish waits, no msgId taken
    assert outbox.msg_ids.dump() == "2"
    outbox.ack(Ack("0", "a", "1"))
    third = outbox.add("a", "x" * 50)
    assert third is not None
    assert third.msg_id == "2"
    with pytest.raises(ValueError, match="never fits"):
        outbox.add("a", "x" * 10_000)


def test_data_that_is_not_json_is_refused_at_once() -> None:
    outbox = Outbox()
    for bad in [float("nan"), {1}, "\ud800"]:
        with pytest.raises(ValueError, match="data"):
            outbox.add("a", bad)
    assert len(outbox) == 0
    assert outbox.msg_ids.dump() == "0"


def test_fail_all_empties_the_outbox_in_order() -> None:
    outbox = Outbox()
    entries = [outbox.add("a", n) for n in range(3)]
    assert outbox.fail_all() == entries
    assert outbox.statistics() == OutboxStatistics(0, 0, 0, DEFAULT_OUTBOX_BYTES)


def test_a_restarted_process_restores_its_pending_publishes() -> None:
    before = Outbox()
    for n in range(3):
        before.add("a", n)
    saved = [(p.msg_id, p.channel, p.data) for p in before.pending()], before.msg_ids.dump()
    after = Outbox(msg_ids=MsgIdCounter.load(saved[1]))
    for msg_id, channel, data in saved[0]:
        assert after.restore(PendingPublish.of(Publish(channel, msg_id, data)))
    assert after.take_unsent() == before.pending()
    fresh = after.add("a", 3)
    assert fresh is not None
    assert fresh.msg_id == "3"
    with pytest.raises(ValueError, match="already"):
        after.restore(PendingPublish.of(Publish("a", "0", 0)))
    small = Outbox(max_bytes=before.pending()[0].size)
    assert small.restore(before.pending()[0])
    assert not small.restore(before.pending()[1])


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="positive integer"):
        Outbox(max_bytes=0)


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.integers(0, 40)),
            st.tuples(
                st.sampled_from(["ack", "final", "unavailable", "release"]), st.integers(0, 30)
            ),
            st.tuples(st.sampled_from(["send", "drop"]), st.just(0)),
        ),
        max_size=60,
    )
)
@settings(max_examples=200, deadline=None)
def test_the_outbox_against_a_model(ops: list[tuple[str, int]]) -> None:
    """Every publish is answered once or still pending; bytes bounded; order kept."""
    outbox = Outbox(max_bytes=400)
    model: list[PendingPublish] = []
    done: list[str] = []
    for op, n in ops:
        if op == "add":
            entry = outbox.add("c", "y" * n)
            if entry is not None:
                model.append(entry)
        elif op == "send":
            sent = outbox.take_unsent()
            assert [p.msg_id for p in sent] == sorted((p.msg_id for p in sent), key=int)
        elif op == "drop":
            outbox.connection_lost()
        elif op == "release":
            outbox.release(str(n))
        else:
            msg_id = str(n)
            if op == "ack":
                answered = outbox.ack(Ack(msg_id, "c", "1"))
            else:
                code = NackCode.INVALID if op == "final" else NackCode.UNAVAILABLE
                answered = outbox.nack(Nack(msg_id, "c", code))
            known = [p for p in model if p.msg_id == msg_id]
            assert answered == (known[0] if known else None)
            if known and op != "unavailable":
                model.remove(known[0])
                done.append(msg_id)
        assert outbox.pending() == model
        assert outbox.statistics().bytes == sum(p.size for p in model) <= 400
    outbox.connection_lost()
    assert outbox.take_unsent() == model
    assert not set(done) & {p.msg_id for p in model}


# --------------------------------------------------------------------------- a subscription whole


def phase(state: ChannelState) -> Phase:
    """The phase, read fresh (mypy would keep an earlier narrowing of the attribute)."""
    return state.phase


def test_a_subscription_after_ready_from_subscribe_to_unsubscribed() -> None:
    state = ChannelState("room", window=8)
    assert phase(state) is Phase.PENDING
    assert state.position is None
    assert state.subscribe() == Subscribe("room")
    assert phase(state) is Phase.ASKING
    assert state.receive(Presence("room", {"ada": {}})) == [Join("room", "ada", {})]
    subscribed = state.receive(Subscribed("room", "7"))
    assert subscribed == [
        ChannelReady(Subscribed("room", "7"), HandshakeResult(HandshakeOutcome.FRESH, 0, "7"))
    ]
    assert phase(state) is Phase.ACTIVE
    assert state.position == "7"
    assert state.receive(ChannelItem("room", ServerEvent("7", "old"))) == []
    assert state.receive(ChannelItem("room", ServerEvent("8", "new"))) == [ServerEvent("8", "new")]
    assert state.receive(Join("room", "ada", {})) == []
    assert state.receive(Join("room", "bob", {})) == [Join("room", "bob", {})]
    assert state.receive(Leave("room", "ada")) == [Leave("room", "ada")]
    with pytest.raises(ResumeProtocolError, match="while subscribed"):
        state.receive(ChannelItem("room", Snapshot("9", None)))
    assert state.unsubscribe() == Unsubscribe("room")
    assert phase(state) is Phase.LEAVING
    assert state.position is None
    assert state.receive(ChannelItem("room", ServerEvent("9", "in flight"))) == []
    assert state.receive(Unsubscribed("room")) == [Unsubscribed("room")]
    assert phase(state) is Phase.CLOSED
    assert state.receive(ChannelItem("room", ServerEvent("10", None))) == []
    assert state.unsubscribe() is None


def test_unavailable_keeps_the_subscription_to_ask_again() -> None:
    state = ChannelState("room", window=8, history=5)
    state.subscribe()
    assert state.receive(Refused("room", RefusedCode.UNAVAILABLE, "down")) == [
        Refused("room", RefusedCode.UNAVAILABLE, "down")
    ]
    assert phase(state) is Phase.PENDING
    assert state.subscribe() == Subscribe("room", None, 5)
    state.receive(Subscribed("room", "3"))
    state.connection_lost()
    assert phase(state) is Phase.PENDING
    assert state.position == "3"  # in the next resume frame's map
    state.resumed()
    assert state.apply(Refused("room", RefusedCode.UNAVAILABLE)) == [
        Refused("room", RefusedCode.UNAVAILABLE)
    ]
    assert state.position == "3"  # stays in the map
    assert state.subscribe() == Subscribe("room", "3")  # after its backoff


@pytest.mark.parametrize(
    "code", [RefusedCode.FORBIDDEN, RefusedCode.INVALID, RefusedCode.LIMIT, RefusedCode.UNSUPPORTED]
)
def test_a_final_refusal_closes_the_subscription(code: RefusedCode) -> None:
    state = ChannelState("room", window=8)
    state.subscribe()
    state.receive(Subscribed("room", "3"))
    state.connection_lost()
    state.resumed()
    assert state.apply(Refused("room", code)) == [Refused("room", code)]
    assert phase(state) is Phase.CLOSED
    assert state.position is None
    with pytest.raises(ValueError, match="closed"):
        state.subscribe()


def test_a_drop_while_leaving_ends_the_subscription() -> None:
    state = ChannelState("room", window=8)
    state.subscribe()
    assert state.unsubscribe() == Unsubscribe("room")
    state.connection_lost()
    assert phase(state) is Phase.CLOSED
    pending = ChannelState("other", window=8)
    assert pending.unsubscribe() is None  # never asked: nothing to send
    assert phase(pending) is Phase.CLOSED


def test_a_lost_resume_hands_on_the_gap_first() -> None:
    state = ChannelState("room", window=8)
    state.subscribe()
    state.receive(Subscribed("room", "3"))
    state.receive(ChannelItem("room", ServerEvent("4", None)))
    state.connection_lost()
    state.resumed()
    ready_frame = ChannelAnswer("room", "4").receive(Subscribed("room", "900", lost=True))
    assert isinstance(ready_frame, ChannelReady)
    assert state.apply(ready_frame) == [Gap("4", "900"), ready_frame]
    assert state.position == "900"


def test_out_of_order_frames_of_an_asking_subscription() -> None:
    state = ChannelState("room", window=8)
    state.subscribe()
    with pytest.raises(ResumeProtocolError, match="before subscribed"):
        state.receive(Join("room", "ada", {}))
    with pytest.raises(ValueError, match="cannot resume"):
        state.resumed()
    with pytest.raises(TypeError, match="not a frame"):
        state.apply(Ack("1", "room", "2"))


def test_restart_reads_an_unasked_answer_from_the_last_delivered_id() -> None:
    """The lead's decision 2: a snapshot or subscribed for an active
    subscription starts it again; its window stays for events it had."""
    state = ChannelState("c", 8)
    state.subscribe()
    state.receive(Subscribed("c", "10"))
    assert state.phase is Phase.ACTIVE
    state.receive(ChannelItem("c", ServerEvent("11", 1)))
    with pytest.raises(ValueError, match="restart"):
        ChannelState("d", 8).restart()  # only an active one
    state.restart()
    phase: Phase = state.phase
    assert phase is Phase.ASKING
    out = state.receive(ChannelItem("c", ServerEvent("11", 1)))
    assert out == []  # already delivered: the window stayed
    out = state.receive(Subscribed("c", "900", lost=True))
    assert out[0] == Gap("11", "900")
    assert state.phase is Phase.ACTIVE
    assert state.position == "900"


@pytest.mark.parametrize(
    ("steps", "resent"),
    [
        ([], 0),  # sent once: not a re-send
        (["lost"], 2),  # both sent again after the drop
        (["lost", "lost"], 4),
        (["ack0", "lost"], 1),  # the acked one is gone
        (["unavailable0", "release0"], 2),  # held, then both sent again in order
        (["unavailable0"], 0),  # held: not sent again yet
        (["lost_before_send"], 0),  # never sent: its first send is no re-send
    ],
)
def test_the_outbox_counts_its_re_sends(steps: list[str], resent: int) -> None:
    outbox = Outbox()
    outbox.add("a", 1)
    outbox.add("a", 2)
    if steps != ["lost_before_send"]:
        outbox.take_unsent()
    for step in steps:
        if step in ("lost", "lost_before_send"):
            outbox.connection_lost()
        elif step == "ack0":
            outbox.ack(Ack("0", "a", "19"))
        elif step == "unavailable0":
            outbox.nack(Nack("0", "a", NackCode.UNAVAILABLE))
            outbox.nack(Nack("1", "a", NackCode.UNAVAILABLE))
        elif step == "release0":
            outbox.release("0")
        outbox.take_unsent()
    assert outbox.resent == outbox.statistics().resent == resent
