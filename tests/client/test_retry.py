"""The decision after each attempt (trio_reconnect/_retry.py) and the state table. Pure: no trio.

Each test is a pair, as h11 tests its machine: an attempt's outcome and the
time in, the decision (wait how long and why, or give up with which error)
out. ``Jitter.NONE`` makes every backoff delay exact.
"""

from __future__ import annotations

import math
import random

import pytest

import trio_reconnect as tr
from trio_reconnect._backoff import SHORT_HINT_LIMIT, Backoff, Jitter, Pacer
from trio_reconnect._retry import MAX_HISTORY, Disconnect, GiveUp, Outcome, RetryState, Wait
from trio_reconnect._state import TRANSITIONS, ConnectionState, DelaySource, check_transition

S = ConnectionState
HINT_0 = '{"retryAfter": 0}'
HINT_5S = '{"retryAfter": 5000}'


def state(
    *,
    max_attempts: int | None = 20,
    give_up_after: float | None = None,
    stable_after: float = 10.0,
    server_hints: bool = True,
    should_reconnect: object = None,
) -> RetryState:
    pacer = Pacer(Backoff(jitter=Jitter.NONE), random.Random(1), max_server_delay=300.0)
    return RetryState(
        pacer,
        max_attempts=max_attempts,
        give_up_after=give_up_after,
        stable_after=stable_after,
        server_hints=server_hints,
        should_reconnect=should_reconnect,  # type: ignore[arg-type]
    )


def attempt(retry: RetryState, started_at: float, **fields: object) -> Outcome:
    """An outcome numbered as the driver numbers it: the state's next attempt."""
    return Outcome(retry.next_attempt, started_at, **fields)  # type: ignore[arg-type]


def test_refused_attempts_back_off_and_are_numbered_in_the_streak() -> None:
    retry = state()
    decisions = []
    for n in range(4):
        outcome = attempt(retry, float(n), error=OSError("refused"))
        decisions.append(retry.decide(outcome, n + 0.5, wall_now=0.0))
    assert decisions == [
        Wait(1.0, DelaySource.BACKOFF, failed=True),
        Wait(2.0, DelaySource.BACKOFF, failed=True),
        Wait(4.0, DelaySource.BACKOFF, failed=True),
        Wait(8.0, DelaySource.BACKOFF, failed=True),
    ]
    assert [a.number for a in retry.history] == [1, 2, 3, 4]
    assert [a.delay for a in retry.history] == [1.0, 2.0, 4.0, 8.0]
    assert retry.failures == 4
    assert retry.next_attempt == 5
    assert retry.streak_started == 0.0


def test_a_stable_connection_ends_the_streak() -> None:
    retry = state(stable_after=10.0)
    retry.decide(attempt(retry, 0.0, error=OSError()), 0.1, wall_now=0.0)
    retry.decide(attempt(retry, 1.1, error=OSError()), 1.2, wall_now=0.0)
    # Ready at 5, dropped at 15: exactly stable_after, so stable.
    dropped = attempt(retry, 5.0, ready_at=5.0, close_code=1006)
    assert dropped.number == 3
    assert retry.decide(dropped, 15.0, wall_now=0.0) == Wait(1.0, DelaySource.BACKOFF, False)
    assert retry.failures == 0
    assert retry.history == ()
    assert retry.streak_started is None
    assert retry.next_attempt == 1


def test_a_connection_dropped_before_it_was_stable_is_a_failure() -> None:
    retry = state(stable_after=10.0)
    for n in range(3):
        outcome = attempt(retry, 20.0 * n, ready_at=20.0 * n, close_code=1006)
        decision = retry.decide(outcome, 20.0 * n + 9.999, wall_now=0.0)
        assert decision == Wait(2.0**n, DelaySource.BACKOFF, failed=True)
    assert [a.reached_ready for a in retry.history] == [True, True, True]


def test_a_planned_server_close_after_ready_is_no_failure_and_ends_the_streak() -> None:
    retry = state()
    retry.decide(attempt(retry, 0.0, error=OSError()), 0.1, 0.0)
    retry.decide(attempt(retry, 1.1, error=OSError()), 1.2, 0.0)
    assert retry.next_attempt == 3
    # Ready at 4, closed 2 s later with 1012 and a hint: a restart, not a failure.
    planned = attempt(
        retry, 3.2, ready_at=4.0, close_code=1012, close_reason=HINT_5S, server_closed=True
    )
    assert planned.number == 3
    decision = retry.decide(planned, 6.0, 0.0)
    assert decision == Wait(5.0, DelaySource.SERVER, failed=False, server_directed=True)
    assert retry.failures == 0
    assert retry.history == ()
    assert retry.streak_started is None
    assert retry.next_attempt == 1
    # The pacer went on (no stable connection): its fourth wait, 8 s.
    after = retry.decide(attempt(retry, 11.0, error=OSError()), 11.1, 0.0)
    assert after == Wait(8.0, DelaySource.BACKOFF, failed=True)
    assert after.failed
    assert retry.next_attempt == 2


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"close_code": 1012, "close_reason": HINT_5S, "server_closed": True}, "never ready"),
        ({"close_code": 1012, "close_reason": "", "server_closed": True}, "no hint"),
        ({"close_code": 1011, "close_reason": HINT_5S, "server_closed": True}, "an error"),
        ({"close_code": 1012, "close_reason": HINT_5S, "server_closed": False}, "not the server's"),
    ],
)
def test_what_is_not_a_server_directed_close(fields: dict[str, object], why: str) -> None:
    retry = state()
    ready_at = None if why == "never ready" else 0.5
    decision = retry.decide(attempt(retry, 0.0, ready_at=ready_at, **fields), 1.0, 0.0)
    assert isinstance(decision, Wait)
    assert decision.failed, why
    assert not decision.server_directed
    assert retry.failures == 1


def test_planned_closes_of_short_connections_still_meet_the_anti_hammer_rule() -> None:
    retry = state()
    sources = []
    for n in range(SHORT_HINT_LIMIT + 1):
        planned = attempt(
            retry, n, ready_at=n + 0.1, close_code=1013, close_reason=HINT_0, server_closed=True
        )
        decision = retry.decide(planned, n + 0.2, 0.0)
        assert isinstance(decision, Wait)
        assert decision.server_directed
        sources.append(decision.source)
    assert sources[-2:] == [DelaySource.SERVER_FLOORED] * 2
    assert retry.failures == 0


def test_a_stable_connection_closed_with_a_fatal_code_gives_up_without_a_failure() -> None:
    retry = state()
    fatal = attempt(retry, 0.0, ready_at=0.0, close_code=4001, server_closed=True)
    decision = retry.decide(fatal, 60.0, 0.0)
    assert isinstance(decision, GiveUp)
    assert not decision.failed
    assert isinstance(decision.error, tr.FatalCloseError)


def test_max_attempts_gives_up_with_the_history() -> None:
    retry = state(max_attempts=3)
    for n in range(2):
        assert isinstance(retry.decide(attempt(retry, n, error=OSError()), n, 0.0), Wait)
    decision = retry.decide(attempt(retry, 2.0, error=OSError("third")), 2.5, 0.0)
    assert isinstance(decision, GiveUp)
    assert decision.failed
    assert type(decision.error) is tr.ReconnectFailed
    assert str(decision.error).startswith("gave up after 3 failed attempts")
    assert [a.number for a in decision.error.history] == [1, 2, 3]
    assert decision.error.history[-1].delay == 4.0  # the wait it would have made


def test_give_up_after_counts_the_next_wait_from_the_streak_start() -> None:
    retry = state(max_attempts=None, give_up_after=10.0)
    # Streak starts at 100. Waits 1, 2, 4: the next attempt at 100.5+... stays in.
    assert retry.decide(attempt(retry, 100.0, error=OSError()), 100.5, 0.0).delay == 1.0  # type: ignore[union-attr]
    assert retry.decide(attempt(retry, 101.5, error=OSError()), 102.0, 0.0).delay == 2.0  # type: ignore[union-attr]
    # 105 + 4 - 100 = 9 <= 10: still a wait.
    assert retry.decide(attempt(retry, 104.0, error=OSError()), 105.0, 0.0).delay == 4.0  # type: ignore[union-attr]
    # 107.5 + 8 - 100 > 10: give up now rather than wait past the limit.
    decision = retry.decide(attempt(retry, 109.0, error=OSError()), 107.5, 0.0)
    assert isinstance(decision, GiveUp)
    assert "no stable connection within 10.0 s" in str(decision.error)


def test_a_fatal_close_gives_up_at_once() -> None:
    retry = state()
    outcome = attempt(
        retry, 0.0, ready_at=0.0, close_code=1008, close_reason="policy", server_closed=True
    )
    decision = retry.decide(outcome, 1.0, 0.0)
    assert isinstance(decision, GiveUp)
    assert isinstance(decision.error, tr.FatalCloseError)
    assert (decision.error.code, decision.error.reason) == (1008, "policy")
    (only,) = decision.error.history
    assert only.delay is None
    assert only.number == 1


def test_a_fatal_code_made_by_the_client_websocket_layer_is_retried() -> None:
    retry = state()
    outcome = attempt(retry, 0.0, ready_at=0.0, close_code=1009, server_closed=False)
    assert retry.decide(outcome, 1.0, 0.0) == Wait(1.0, DelaySource.BACKOFF, failed=True)


def test_a_refusal_is_fatal_or_hinted_by_its_status() -> None:
    retry = state()
    refused = attempt(retry, 0.0, status_code=503, headers=((b"retry-after", b"7"),))
    assert retry.decide(refused, 0.1, 0.0) == Wait(7.0, DelaySource.SERVER, failed=True)
    denied = attempt(retry, 7.1, status_code=401, headers=(), body=b"no")
    decision = retry.decide(denied, 7.2, 0.0)
    assert isinstance(decision, GiveUp)
    assert isinstance(decision.error, tr.HandshakeRejectedError)
    assert (decision.error.status_code, decision.error.body) == (401, b"no")
    assert [a.status_code for a in decision.error.history] == [503, 401]


def test_an_http_date_retry_after_is_read_against_the_wall_clock() -> None:
    retry = state()
    date = b"Thu, 01 Jan 1970 00:01:40 GMT"  # 100 s after the epoch
    refused = attempt(retry, 0.0, status_code=503, headers=((b"retry-after", date),))
    assert retry.decide(refused, 0.0, wall_now=60.0) == Wait(40.0, DelaySource.SERVER, True)


def test_a_hint_counts_from_when_it_arrived_never_below_zero() -> None:
    retry = state()
    # The close frame arrived at 3.0, the attempt ended (handshake over) at 3.4.
    closed = attempt(
        retry, 0.0, close_code=1012, close_reason=HINT_5S, server_closed=True, hint_received_at=3.0
    )
    assert retry.decide(closed, 3.4, 0.0) == Wait(4.6, DelaySource.SERVER, failed=True)
    refused = attempt(retry, 8.0, status_code=503, headers=((b"retry-after", b"1"),))
    refused.hint_received_at = 8.0
    assert retry.decide(refused, 9.5, 0.0) == Wait(0.0, DelaySource.SERVER, failed=True)
    # A wait the client's own backoff chose counts from the end, as before.
    unhinted = attempt(retry, 10.0, close_code=1012, server_closed=True, hint_received_at=10.0)
    assert retry.decide(unhinted, 10.5, 0.0) == Wait(4.0, DelaySource.BACKOFF, failed=True)


def test_hints_are_ignored_with_server_hints_false() -> None:
    retry = state(server_hints=False)
    outcome = attempt(retry, 0.0, close_code=1012, close_reason=HINT_5S, server_closed=True)
    assert retry.decide(outcome, 0.1, 0.0) == Wait(1.0, DelaySource.BACKOFF, failed=True)


def test_short_hints_after_failed_attempts_are_floored() -> None:
    retry = state()
    waits = []
    for n in range(SHORT_HINT_LIMIT + 1):
        outcome = attempt(retry, n, close_code=1013, close_reason=HINT_0, server_closed=True)
        decision = retry.decide(outcome, n + 0.1, 0.0)
        assert isinstance(decision, Wait)
        waits.append((decision.delay, decision.source))
    assert waits[: SHORT_HINT_LIMIT - 1] == [(0.0, DelaySource.SERVER)] * (SHORT_HINT_LIMIT - 1)
    assert waits[SHORT_HINT_LIMIT - 1 :] == [
        (2.0 ** (SHORT_HINT_LIMIT - 1), DelaySource.SERVER_FLOORED),
        (2.0**SHORT_HINT_LIMIT, DelaySource.SERVER_FLOORED),
    ]


def test_reconnect_now_is_no_failure_and_waits_nothing() -> None:
    retry = state()
    retry.decide(attempt(retry, 0.0, error=OSError()), 0.5, 0.0)
    cut = attempt(retry, 1.5, ready_at=1.6, requested=True, close_code=1006)
    assert cut.number == 2
    assert retry.decide(cut, 2.0, 0.0) == Wait(0.0, DelaySource.IMMEDIATE, failed=False)
    assert retry.failures == 1
    assert retry.next_attempt == 2
    assert len(retry.history) == 1


def test_should_reconnect_overrules_the_default_both_ways() -> None:
    asked: list[Disconnect] = []

    def never_on_4001(question: Disconnect) -> bool:
        asked.append(question)
        return question.close_code != 4001 and question.status_code != 403

    retry = state(should_reconnect=lambda q: False)
    drop = attempt(retry, 0.0, close_code=1001, close_reason=HINT_5S, server_closed=True)
    decision = retry.decide(drop, 0.1, 0.0)
    assert isinstance(decision, GiveUp)
    assert isinstance(decision.error, tr.FatalCloseError)

    retry = state(should_reconnect=lambda q: True)
    fatal = attempt(retry, 0.0, close_code=4001, server_closed=True)
    assert retry.decide(fatal, 0.1, 0.0) == Wait(1.0, DelaySource.BACKOFF, failed=True)
    forbidden = attempt(retry, 1.0, status_code=403, headers=((b"x", b"y"),))
    assert retry.decide(forbidden, 1.1, 0.0) == Wait(2.0, DelaySource.BACKOFF, failed=True)

    retry = state(should_reconnect=never_on_4001)
    retry.decide(attempt(retry, 0.0, status_code=503, headers=((b"x", b"y"),)), 0.1, 0.0)
    assert asked == [Disconnect(None, None, 503, ((b"x", b"y"),), default=True)]


def test_should_reconnect_agreeing_keeps_the_hint() -> None:
    retry = state(should_reconnect=lambda q: True)
    drop = attempt(retry, 0.0, close_code=1012, close_reason=HINT_5S, server_closed=True)
    assert retry.decide(drop, 0.1, 0.0) == Wait(5.0, DelaySource.SERVER, failed=True)


def test_should_reconnect_raising_means_the_default(caplog: pytest.LogCaptureFixture) -> None:
    def broken(question: Disconnect) -> bool:
        raise RuntimeError("bug in the application")

    retry = state(should_reconnect=broken)
    drop = attempt(retry, 0.0, close_code=1012, close_reason=HINT_5S, server_closed=True)
    assert retry.decide(drop, 0.1, 0.0) == Wait(5.0, DelaySource.SERVER, failed=True)
    assert "should_reconnect raised" in caplog.text


def test_should_reconnect_is_not_asked_about_a_drop_without_a_close() -> None:
    retry = state(should_reconnect=lambda q: pytest.fail("asked"))
    assert isinstance(retry.decide(attempt(retry, 0.0, error=OSError()), 0.1, 0.0), Wait)


def test_a_retry_policy_returning_a_bad_delay_raises() -> None:
    class Broken:
        initial = 1.0

        def delay(self, retry: int, rng: random.Random, previous: float | None = None) -> float:
            return math.nan

    retry = RetryState(Pacer(Broken(), random.Random(1), 300.0), 20, None, 10.0)
    with pytest.raises(ValueError, match="invalid delay"):
        retry.decide(attempt(retry, 0.0, error=OSError()), 0.1, 0.0)


def test_the_history_keeps_the_newest_max_history_attempts() -> None:
    retry = state(max_attempts=None)
    for n in range(3 * MAX_HISTORY):
        retry.decide(attempt(retry, float(n), error=OSError()), n + 0.5, 0.0)
        assert len(retry.history) <= MAX_HISTORY
    made = 3 * MAX_HISTORY
    assert [a.number for a in retry.history] == list(range(made - MAX_HISTORY + 1, made + 1))


def test_outcome_describe_names_the_cause_and_nothing_else() -> None:
    assert Outcome(1, 0.0, status_code=503).describe() == "handshake refused with HTTP 503"
    assert Outcome(1, 0.0, close_code=1012).describe() == "connection closed with code 1012"
    assert Outcome(1, 0.0, error=OSError("x")).describe() == "attempt failed: OSError('x')"


# ------------------------------------------------------------------ the state table


def test_the_transition_table_is_the_diagram() -> None:
    assert set(TRANSITIONS) == set(ConnectionState)
    assert TRANSITIONS[S.FAILED] == TRANSITIONS[S.CLOSED] == frozenset()
    for live in (S.CONNECTING, S.RESUMING, S.OPEN, S.BACKING_OFF):
        assert {S.FAILED, S.CLOSED} <= TRANSITIONS[live]
        assert live not in TRANSITIONS[live]
    assert S.CONNECTING in TRANSITIONS[S.BACKING_OFF]
    assert TRANSITIONS[S.BACKING_OFF] - {S.FAILED, S.CLOSED} == {S.CONNECTING}
    assert S.OPEN in TRANSITIONS[S.CONNECTING]  # resume=False


@pytest.mark.parametrize(
    ("previous", "new"),
    [
        (S.OPEN, S.RESUMING),
        (S.OPEN, S.CONNECTING),  # every new attempt starts from BACKING_OFF
        (S.BACKING_OFF, S.OPEN),
        (S.CLOSED, S.CONNECTING),
        (S.FAILED, S.CLOSED),
        (S.CONNECTING, S.CONNECTING),
    ],
)
def test_check_transition_refuses_what_the_table_does_not_have(
    previous: ConnectionState, new: ConnectionState
) -> None:
    with pytest.raises(RuntimeError, match=f"{previous.value} -> {new.value}"):
        check_transition(previous, new)


def test_check_transition_allows_the_table() -> None:
    for previous, allowed in TRANSITIONS.items():
        for new in allowed:
            check_transition(previous, new)
