"""After each attempt: wait this long, for this reason, or give up with this error. Pure.

The driver (:mod:`trio_reconnect._client`) fills in an :class:`Outcome` as an
attempt goes, and hands it to :meth:`RetryState.decide` with the time; it
gets back a :class:`Wait` or a :class:`GiveUp` and does what it says. Every
rule about retrying lives here, stated once (no trio, no clock: the times
come in as arguments, so a test states exact numbers):

* **Attempt numbers.** An attempt's number is 1 + the failed attempts before
  it in the current failure streak (:attr:`RetryState.next_attempt`): 1
  after a stable connection or a server-directed close, then 2, 3 ...
* **Stability.** An attempt that reached ``ready`` and stayed up for
  ``stable_after`` seconds ends the streak: the pacer, the failure count and
  the history start again. Every other attempt is a failure (a connection
  closed before it was stable included; docs/explanation/design.md says why), except:
* **Server-directed closes.** A connection that reached ``ready`` and that
  the server closed on purpose, with a planned code and a hint
  (:func:`~trio_reconnect._hints.is_planned_close`: a restart, a drain), is
  no failure either: it ends the failure streak (count and history), and
  is counted apart. The pacer goes on (it resets only after a stable
  connection), and the short-lived ones still count toward the anti-hammer
  rule of docs/reference/protocol.md.
* **Retry or fatal.** :mod:`trio_reconnect._hints` reads the close or the
  refusal; only a close the server sent is read for a verdict (one that the
  client's own websocket layer made is retried with backoff, like a drop).
  The application's ``should_reconnect`` may overrule the verdict either
  way; if it raises, the default rule applies.
* **Limits.** ``max_attempts`` failed attempts in a streak, or a streak
  older than ``give_up_after`` seconds at the time the next attempt would
  start, end the client with :class:`~trio_reconnect.ReconnectFailed`.
* **reconnect_now().** An attempt that the application cut short is no
  failure: the next one starts at once.
* **A hint counts from its arrival.** The server's wait starts when its
  close frame or refusal arrived (:attr:`Outcome.hint_received_at`), not
  when the attempt's teardown (the close handshake) ended: a wait timed by
  the hint is shortened by the time since, never below 0. The server plans
  its hints as points in time (docs/reference/protocol.md), so that each
  client's own lag does not move its return.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Final, TypeAlias, cast

import attrs

from ._backoff import Pacer
from ._exceptions import FatalCloseError, HandshakeRejectedError, ReconnectFailed
from ._hints import RetryAdvice, Verdict, classify_close, classify_rejection, is_planned_close
from ._state import Attempt, DelaySource

__all__ = ["MAX_HISTORY", "Decision", "Disconnect", "GiveUp", "Outcome", "RetryState", "Wait"]

logger = logging.getLogger("trio_reconnect")

#: Most attempts kept in the history of a failure streak (the oldest are
#: dropped), so that ``max_attempts=None`` against a server that refuses
#: forever does not grow memory.
MAX_HISTORY: Final = 100


@attrs.frozen
class Disconnect:
    """What ``should_reconnect`` is asked about: a close or a refused handshake.

    Attributes:
        close_code: The close code, for a closed connection.
        close_reason: The close reason, for a closed connection.
        status_code: The HTTP status, for a refused handshake.
        headers: The refusal's response headers.
        default: What the default rule (docs/reference/protocol.md, section 1) says:
            ``True`` to reconnect.
        error: What the application's ``on_connect`` raised (then every
            other attribute is ``None`` or empty and ``default`` is ``True``).
    """

    close_code: int | None
    close_reason: str | None
    status_code: int | None
    headers: tuple[tuple[bytes, bytes], ...]
    default: bool
    error: BaseException | None = None


@attrs.define(eq=False)
class Outcome:
    """What one attempt came to; the driver fills it in as the attempt goes."""

    #: The attempt's number within the failure streak (1, 2, 3 ...).
    number: int
    started_at: float
    ready_at: float | None = None
    close_code: int | None = None
    close_reason: str | None = None
    status_code: int | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes | None = None
    error: BaseException | None = None
    #: Whether the close code is the server's (it sent the close frame).
    server_closed: bool = False
    #: When the server's close frame or refusal arrived (``None``: unknown).
    hint_received_at: float | None = None
    #: The application called ``reconnect_now()`` during the attempt.
    requested: bool = False
    #: The application's ``on_connect`` raised ``error``.
    on_connect_failed: bool = False
    #: The resume met a server that does not speak the protocol.
    foreign_server: bool = False

    def describe(self) -> str:
        """The cause, for a log line (never a header or a URL)."""
        if self.status_code is not None:
            return f"handshake refused with HTTP {self.status_code}"
        if self.on_connect_failed:
            return f"on_connect raised {self.error!r}"
        if self.close_code is not None:
            return f"connection closed with code {self.close_code}"
        return f"attempt failed: {self.error!r}"


@attrs.frozen
class Wait:
    """Wait ``delay`` seconds (because of ``source``), then attempt again.

    Attributes:
        delay: Seconds, finite and at least 0.
        source: Where the delay came from.
        failed: Whether the attempt that ended counts as a failure.
        server_directed: Whether it ended in a server-directed close (no failure).
    """

    delay: float
    source: DelaySource
    failed: bool
    server_directed: bool = False


@attrs.frozen
class GiveUp:
    """Stop: the client fails with ``error``.

    Attributes:
        error: What the application gets (a fatal close, a refusal, or the limits).
        failed: Whether the attempt that ended counts as a failure (not if
            it was a stable connection that then closed with a fatal code).
    """

    error: ReconnectFailed
    failed: bool


Decision: TypeAlias = Wait | GiveUp


@attrs.define(eq=False)
class RetryState:
    """The failure streak: counts, history, and the decision after each attempt.

    Args:
        pacer: Chooses the waits (backoff, server hints, anti-hammering).
        max_attempts: Failed attempts in a streak before giving up (``None``: never).
        give_up_after: Seconds a streak may last (``None``: no limit).
        stable_after: Seconds a connection must stay ready to end the streak.
        server_hints: Whether the server's hints time the waits.
        should_reconnect: The application's verdict on a close or refusal.
    """

    pacer: Pacer
    max_attempts: int | None
    give_up_after: float | None
    stable_after: float
    server_hints: bool = True
    should_reconnect: Callable[[Disconnect], bool] | None = None
    #: Failed attempts in the current streak.
    failures: int = attrs.field(init=False, default=0)
    #: When the current streak's first attempt started (``None``: no streak).
    streak_started: float | None = attrs.field(init=False, default=None)
    _history: collections.deque[Attempt] = attrs.field(
        init=False, factory=lambda: collections.deque(maxlen=MAX_HISTORY)
    )

    @property
    def next_attempt(self) -> int:
        """The number of the next attempt within the streak."""
        return self.failures + 1

    @property
    def history(self) -> tuple[Attempt, ...]:
        """The failed attempts of the current streak, oldest first (at most :data:`MAX_HISTORY`)."""
        return tuple(self._history)

    def decide(self, outcome: Outcome, now: float, wall_now: float) -> Decision:
        """What to do after ``outcome`` ended at ``now``.

        Args:
            outcome: The attempt that ended.
            now: The time it ended (``trio.current_time()``).
            wall_now: Seconds since the epoch, for an HTTP-date ``Retry-After``.

        Raises:
            ValueError: the retry policy returned an invalid delay.
        """
        if outcome.requested:
            return Wait(0.0, DelaySource.IMMEDIATE, failed=False)
        was_open = outcome.ready_at is not None
        stable = was_open and now - cast(float, outcome.ready_at) >= self.stable_after
        advice = self.advise(outcome, wall_now)
        server_directed = (
            was_open
            and outcome.server_closed
            and is_planned_close(outcome.close_code, outcome.close_reason)
            and advice.verdict is Verdict.RETRY
        )
        failed = not (stable or server_directed)
        if stable:
            self.pacer.reset()
        if failed:
            self.failures += 1
            if self.streak_started is None:
                self.streak_started = outcome.started_at
        else:
            self.failures = 0
            self._history.clear()
            self.streak_started = None
        if advice.verdict is Verdict.FATAL:
            self._history.append(self._record(outcome, now, None, None))
            return GiveUp(self._fatal_error(outcome), failed=failed)
        hint = advice.hint if self.server_hints else None
        # Short-lived connections count toward the anti-hammer rule, planned or not.
        delay, source = self.pacer.next_delay(failed=not stable, hint=hint)
        if source is DelaySource.SERVER and outcome.hint_received_at is not None:
            delay = max(0.0, delay - (now - outcome.hint_received_at))
        if failed:
            self._history.append(self._record(outcome, now, delay, source))
        if self.max_attempts is not None and self.failures >= self.max_attempts:
            return GiveUp(
                ReconnectFailed(f"gave up after {self.failures} failed attempts", self._history),
                failed=True,
            )
        if (
            self.give_up_after is not None
            and self.streak_started is not None
            and now + delay - self.streak_started > self.give_up_after
        ):
            return GiveUp(
                ReconnectFailed(
                    f"gave up: no stable connection within {self.give_up_after} s", self._history
                ),
                failed=True,
            )
        return Wait(delay, source, failed=failed, server_directed=server_directed)

    def advise(self, outcome: Outcome, wall_now: float) -> RetryAdvice:
        """Retry or fatal, and the server's hint: the default rule, then ``should_reconnect``."""
        if outcome.status_code is not None:
            advice = classify_rejection(outcome.status_code, outcome.headers, wall_now)
        elif outcome.on_connect_failed:
            advice = RetryAdvice(Verdict.RETRY)
        elif outcome.close_code is not None:
            advice = (
                classify_close(outcome.close_code, outcome.close_reason)
                if outcome.server_closed
                else RetryAdvice(Verdict.RETRY)
            )
        else:
            return RetryAdvice(Verdict.RETRY)
        if self.should_reconnect is None:
            return advice
        refused = outcome.status_code is not None
        question = Disconnect(
            close_code=None if refused else outcome.close_code,
            close_reason=None if refused else outcome.close_reason,
            status_code=outcome.status_code,
            headers=outcome.headers,
            default=advice.verdict is Verdict.RETRY,
            error=outcome.error if outcome.on_connect_failed else None,
        )
        try:
            retry = bool(self.should_reconnect(question))
        except Exception:
            logger.exception("should_reconnect raised; the default rule applies")
            return advice
        if retry == (advice.verdict is Verdict.RETRY):
            return advice
        return RetryAdvice(Verdict.RETRY) if retry else RetryAdvice(Verdict.FATAL)

    def _fatal_error(self, outcome: Outcome) -> ReconnectFailed:
        if outcome.on_connect_failed:
            error = ReconnectFailed(
                f"on_connect raised {outcome.error!r} and should_reconnect said stop",
                self._history,
            )
            error.__cause__ = outcome.error
            return error
        if outcome.status_code is not None:
            return HandshakeRejectedError(
                outcome.status_code, outcome.headers, outcome.body, self._history
            )
        return FatalCloseError(cast(int, outcome.close_code), outcome.close_reason, self._history)

    def _record(
        self, outcome: Outcome, now: float, delay: float | None, source: DelaySource | None
    ) -> Attempt:
        return Attempt(
            number=outcome.number,
            started_at=outcome.started_at,
            ended_at=now,
            reached_ready=outcome.ready_at is not None,
            close_code=outcome.close_code,
            close_reason=outcome.close_reason,
            status_code=outcome.status_code,
            error=outcome.error,
            delay=delay,
            delay_source=source,
        )
