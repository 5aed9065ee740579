"""A connection's small decisions, pure: given the facts, what to do.

Stated once here, applied by :class:`~trio_reconnect.server.ConnectedClient`
(and its :class:`~trio_reconnect.server._outbox.Outbox`):

* **The persistent filter** (:func:`uncovered`). The handshake gave the client
  every event through ``covered``; a queued event at or below it is never
  sent, for as long as the connection lives (why a one-time purge would not
  do: :mod:`trio_reconnect.server._resume`). Messages (sequence ``None``)
  always pass. Events are queued in log order, so the first event decides
  whether any is covered.
* **Direct-write eligibility** (:func:`may_write_directly`). The fan-out may
  write live events straight to the socket only while nothing else could be
  writing to it: the client is ready and not closing, no send is in
  progress, and its queue is idle (nothing queued, no frames taken by the
  write loop). The direct writer then checks the socket's own state.
* **The half-open verdict** (:func:`half_open`). A ping whose pong did not
  come within ``ping_timeout`` makes the client half-open, unless the
  application held the client's read loop up meanwhile (the rule, shared
  with the client: :func:`trio_reconnect._settings.missed_pong_is_backpressure`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from .._settings import missed_pong_is_backpressure

__all__ = ["Frame", "half_open", "may_write_directly", "uncovered"]

#: A queued frame: ``(sequence number, text)`` for an event, ``(None, message)`` otherwise.
Frame = tuple[int | None, str | bytes]

_F = TypeVar("_F", bound=tuple[int | None, str | bytes])


def uncovered(frames: Sequence[_F], covered: int | None) -> Sequence[_F]:
    """The frames to send of ``frames`` (events in log order), the handshake having sent
    every event through ``covered`` (``None``: none).

    Returns ``frames`` itself when no event is covered (nothing is copied).
    """
    if covered is None:
        return frames
    for seq, _ in frames:
        if seq is None:
            continue
        if seq > covered:
            return frames  # the first event is not covered, so none is
        return [frame for frame in frames if frame[0] is None or frame[0] > covered]
    return frames


def may_write_directly(*, ready: bool, closing: bool, sending: bool, queue_idle: bool) -> bool:
    """Whether the fan-out may write events to the client's socket itself, now."""
    return ready and not closing and not sending and queue_idle


def half_open(*, in_handler: bool, handler_left_at: float, window_start: float) -> bool:
    """Whether a client whose pong is overdue since ``window_start`` is half-open.

    Args:
        in_handler: The read loop waits on the application now.
        handler_left_at: When the read loop last came back from the application.
        window_start: When the wait for the pong (re)started.
    """
    return not missed_pong_is_backpressure(
        held_now=in_handler, held_since_ping=handler_left_at >= window_start
    )
