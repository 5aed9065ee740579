"""Server retry hints (docs/reference/protocol.md, section 1), in both directions. Pure.

Reading: a close code and reason, or a refused handshake's status and headers,
become a :class:`RetryAdvice`: retry (with an optional hint in seconds) or
fatal. Writing: :func:`format_close_reason` builds the JSON close reason a
server sends, and checks the 123-byte limit of RFC 6455 (wsproto would
silently truncate a longer one into invalid JSON).

The rules, stated once:

* Close codes 1001, 1011, 1012, 1013, 1014 (:data:`HINTED_CLOSE_CODES`) are
  retried, and their reason is read for ``{"retryAfter": <ms>}``.
* A close with 1001, 1012 or 1013 (:data:`PLANNED_CLOSE_CODES`) whose reason
  carries a valid hint is the server planning a reconnect
  (:func:`is_planned_close`): after ``ready`` the client counts it as
  server-directed, not as a failed attempt.
* Close codes 1002, 1003, 1007, 1008, 1009, 1010 and 4000-4999
  (:func:`is_fatal_close_code`) are fatal.
* Every other code, 1000 from the server and 1006 (no close frame) included,
  is retried with backoff and no hint.
* A hint that is missing, negative, NaN or Infinity, boolean or not a number
  is ignored (``hint=None``), never an error. A number literal too large for
  a float (``1e999``, ``10**400``) is a finite JSON number: it becomes an
  infinite hint, which the pacer clamps to ``max_server_delay``. Clamping to ``max_server_delay``
  is the pacer's job (:mod:`trio_reconnect._backoff`).
* HTTP 429 and 5xx are retried; 503 and 429 read ``Retry-After``
  (delta-seconds or an HTTP-date, read as GMT when it names no zone, as
  RFC 9110 says). Every other status (3xx, 4xx) is fatal.
"""

from __future__ import annotations

import datetime
import email.utils
import enum
import json
import math
from collections.abc import Iterable
from typing import Any, Final

import attrs

__all__ = [
    "GOING_AWAY",
    "INTERNAL_ERROR",
    "PROTOCOL_ERROR",
    "SERVICE_RESTART",
    "TRY_AGAIN_LATER",
    "UNSUPPORTED_DATA",
    "ABNORMAL_CLOSURE",
    "FATAL_CLOSE_CODES",
    "HINTED_CLOSE_CODES",
    "MAX_CLOSE_REASON_BYTES",
    "NORMAL_CLOSURE",
    "PLANNED_CLOSE_CODES",
    "RetryAdvice",
    "Verdict",
    "classify_close",
    "classify_rejection",
    "format_close_reason",
    "is_fatal_close_code",
    "is_planned_close",
    "parse_retry_after_header",
    "parse_retry_after_reason",
]

# -- The close codes of RFC 6455 that the client and the server use, named once ---
#: A normal closure (the client's when the application leaves; the server's with nothing to say).
NORMAL_CLOSURE: Final = 1000
#: Going away: :meth:`~trio_reconnect.server.ReconnectServer.drain`'s default code.
GOING_AWAY: Final = 1001
#: A protocol error (the server: the first frame was text, but not a resume frame).
PROTOCOL_ERROR: Final = 1002
#: Unsupported data (the server: the first frame was binary).
UNSUPPORTED_DATA: Final = 1003
#: What a connection that ended without a close frame is recorded with (never sent).
ABNORMAL_CLOSURE: Final = 1006
#: Internal error (the server: the application's ``on_message`` raised).
INTERNAL_ERROR: Final = 1011
#: Service restart: a restart, a graceful stop, or a discontinuity in the log.
SERVICE_RESTART: Final = 1012
#: Try again later: too slow, no resume frame in time, the log down, or busy.
TRY_AGAIN_LATER: Final = 1013
#: RFC 6455: a close frame's reason is at most 123 bytes of UTF-8.
MAX_CLOSE_REASON_BYTES: Final = 123
#: Close codes a server uses to say "come back later"; their reason may carry a hint.
HINTED_CLOSE_CODES: Final = frozenset({1001, 1011, 1012, 1013, 1014})
#: Hinted close codes of a planned reconnect (going away, restart, try again
#: later); 1011 (an error) and 1014 (unreadable, see above) are not among them.
PLANNED_CLOSE_CODES: Final = frozenset({1001, 1012, 1013})
#: Close codes on which a retry cannot help (plus the 4000-4999 application range).
FATAL_CLOSE_CODES: Final = frozenset({1002, 1003, 1007, 1008, 1009, 1010})
#: HTTP statuses of a refused handshake whose ``Retry-After`` header is a hint.
HINTED_STATUSES: Final = frozenset({429, 503})


class Verdict(enum.Enum):
    """Whether reconnecting can help."""

    RETRY = "retry"
    FATAL = "fatal"


@attrs.frozen
class RetryAdvice:
    """What a close or a refused handshake tells the client.

    Attributes:
        verdict: Retry or give up.
        hint: The server's requested wait in seconds (unclamped), or ``None``.
    """

    verdict: Verdict
    hint: float | None = None


def is_fatal_close_code(code: int) -> bool:
    """Whether a close with ``code`` is fatal by default."""
    return code in FATAL_CLOSE_CODES or 4000 <= code <= 4999


def _hint_ms(value: Any) -> float | None:
    # bool is an int subclass: {"retryAfter": true} must not mean 1 ms.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        ms = float(value)
    except OverflowError:  # an int too large for a float: finite but absurd
        return math.inf
    if math.isnan(ms) or ms < 0:
        return None
    return ms  # may be inf for a huge literal such as 1e999; the pacer clamps it


def parse_retry_after_reason(reason: str | None) -> float | None:
    """The ``retryAfter`` hint of a close reason, in seconds, or ``None``."""
    if not reason:
        return None
    try:
        # NaN and Infinity are not JSON: they read as "no hint". A number
        # literal too large for a float (1e999) is finite JSON and is clamped.
        frame = json.loads(reason, parse_constant=lambda name: None)
    except (ValueError, RecursionError):
        return None
    if not isinstance(frame, dict):
        return None
    ms = _hint_ms(frame.get("retryAfter"))
    return None if ms is None else ms / 1000.0


def parse_retry_after_header(value: bytes | str, now: float) -> float | None:
    """A ``Retry-After`` header value, in seconds from ``now``, or ``None``.

    Args:
        value: Delta-seconds (``"3"``) or an HTTP-date.
        now: The current wall-clock time, seconds since the epoch (an argument,
            so that this stays pure).
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(text)  # huge values become inf; the pacer clamps them
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # RFC 9110: every HTTP-date is GMT, including the obsolete asctime
        # form ("Sun Nov  6 08:49:37 1994"), which parses without a zone.
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)


def classify_close(code: int, reason: str | None) -> RetryAdvice:
    """The default advice for a connection closed with ``code`` and ``reason``."""
    if is_fatal_close_code(code):
        return RetryAdvice(Verdict.FATAL)
    hint = parse_retry_after_reason(reason) if code in HINTED_CLOSE_CODES else None
    return RetryAdvice(Verdict.RETRY, hint)


def is_planned_close(code: int | None, reason: str | None) -> bool:
    """Whether a close is the server planning a reconnect: a planned code and a valid hint."""
    return code in PLANNED_CLOSE_CODES and parse_retry_after_reason(reason) is not None


def classify_rejection(
    status_code: int, headers: Iterable[tuple[bytes, bytes]], now: float
) -> RetryAdvice:
    """The default advice for a handshake refused with ``status_code``.

    Args:
        status_code: The HTTP status.
        headers: The response headers as ``(name, value)`` byte pairs.
        now: Wall-clock seconds since the epoch, for HTTP-date hints.
    """
    if status_code != 429 and not 500 <= status_code <= 599:
        return RetryAdvice(Verdict.FATAL)
    hint = None
    if status_code in HINTED_STATUSES:
        for name, value in headers:
            if name.lower() == b"retry-after":
                hint = parse_retry_after_header(value, now)
                break
    return RetryAdvice(Verdict.RETRY, hint)


def format_close_reason(retry_after: float, reason: str = "restarting") -> str:
    """The JSON close reason a server sends with a hint.

    Args:
        retry_after: The hint in seconds (sent as whole milliseconds).
        reason: A short human-readable word or two.

    Raises:
        ValueError: if the hint is negative or not finite, or the encoded
            reason would exceed :data:`MAX_CLOSE_REASON_BYTES`.
    """
    if not math.isfinite(retry_after) or retry_after < 0:
        raise ValueError(f"retry_after must be finite and non-negative, got {retry_after!r}")
    try:
        ms = round(retry_after * 1000)
    except OverflowError:  # finite seconds, infinite milliseconds
        raise ValueError(
            f"retry_after={retry_after!r} does not fit in the {MAX_CLOSE_REASON_BYTES} bytes "
            "RFC 6455 allows a close reason"
        ) from None
    text = json.dumps(
        {"reason": reason, "retryAfter": ms},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    size = len(text.encode("utf-8"))
    if size > MAX_CLOSE_REASON_BYTES:
        raise ValueError(
            f"close reason is {size} bytes, more than the {MAX_CLOSE_REASON_BYTES} RFC 6455 allows"
        )
    return text
