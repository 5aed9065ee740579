"""The names, ids and codes of protocol version 2 (PROTOCOL.md section 4), and their checks. Pure.

Both sides check a channel name, a ``clientId``, a ``msgId`` and an id a
client sends with the functions here (a reason string, or ``None``: valid);
the codes of ``refused`` and ``nack`` are named once here. :mod:`._wire`
builds and reads the frames with them.

* **Names.** A channel name is a string of 1 to :data:`MAX_CHANNEL_BYTES`
  bytes of UTF-8 without a control character (Unicode category Cc: U+0000 to
  U+001F and U+007F to U+009F; format characters such as U+200B are allowed).
  A ``clientId`` and a ``msgId`` are strings of at most
  :data:`MAX_CLIENT_ID_BYTES` and :data:`MAX_MSG_ID_BYTES` bytes of UTF-8 (the
  empty string included, control characters allowed: the page forbids
  neither). A string holding a lone surrogate (JSON ``"\\ud800"``) has no
  UTF-8 form and is never a valid name, ``clientId`` or ``msgId``.
* **Ids a client sends** (``lastEventId``, a position in the resume map) are
  strings of at most :data:`MAX_ID_BYTES` bytes; a longer one cannot be an id
  the server issued and is ``invalid``. Otherwise they stay opaque here (the
  server's log says whether it knows them).
* **Codes** are exactly the page's lists (:class:`RefusedCode`,
  :class:`NackCode`); ``unsupported`` is the client's own code for a version 1
  server and is never accepted from the wire. Final: every refusal and nack
  code but ``unavailable``. ``unsubscribed`` may carry any string code (the
  page names none).
* **Size of publish data** is the UTF-8 length of its compact re-encoding
  (:func:`compact_json`: separators ``,`` and ``:``, non-ASCII as UTF-8),
  what the server's ``too_large`` measures (PROTOCOL.md 4.5).
"""

from __future__ import annotations

import enum
import functools
import json
import re
from typing import Any, Final, Protocol

__all__ = [
    "CLIENT_ID_BITS",
    "MAX_CHANNEL_BYTES",
    "MAX_CLIENT_ID_BYTES",
    "MAX_ID_BYTES",
    "MAX_MSG_ID_BYTES",
    "NackCode",
    "RandomBits",
    "RefusedCode",
    "channel_problem",
    "client_id_problem",
    "compact_json",
    "id_problem",
    "msg_id_problem",
    "new_client_id",
]

#: Longest ``clientId``, in bytes of UTF-8 (PROTOCOL.md 4.1).
MAX_CLIENT_ID_BYTES: Final = 128
#: Longest channel name, in bytes of UTF-8; the shortest is 1 byte (4.3).
MAX_CHANNEL_BYTES: Final = 256
#: Longest ``msgId``, in bytes of UTF-8 (ours: the page sets none; a counter needs 20).
MAX_MSG_ID_BYTES: Final = 128
#: Longest event id a client may send (ours: channel ids are decimal integers).
MAX_ID_BYTES: Final = 128
#: Random bits in a default ``clientId`` (4.1): 32 hex digits.
CLIENT_ID_BITS: Final = 128

#: Control characters (Unicode category Cc), which no channel name may hold.
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")


class RefusedCode(enum.StrEnum):
    """Why a subscription was refused (4.2). All final but :attr:`UNAVAILABLE`."""

    FORBIDDEN = "forbidden"
    INVALID = "invalid"
    LIMIT = "limit"
    UNAVAILABLE = "unavailable"
    #: The client's own: the server speaks version 1 (never on the wire).
    UNSUPPORTED = "unsupported"

    @property
    def final(self) -> bool:
        """Whether asking again cannot help."""
        return self is not RefusedCode.UNAVAILABLE


class NackCode(enum.StrEnum):
    """Why a publish was not applied (4.5). All final but :attr:`UNAVAILABLE`."""

    FORBIDDEN = "forbidden"
    INVALID = "invalid"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"
    #: The client's own: the server speaks version 1 (never on the wire).
    UNSUPPORTED = "unsupported"

    @property
    def final(self) -> bool:
        """Whether sending the publish again cannot help."""
        return self is not NackCode.UNAVAILABLE


_WIRE_REFUSED: Final = frozenset(c.value for c in RefusedCode if c is not RefusedCode.UNSUPPORTED)
_WIRE_NACK: Final = frozenset(c.value for c in NackCode if c is not NackCode.UNSUPPORTED)


# --------------------------------------------------------------------------- names and ids


class RandomBits(Protocol):
    """A source of random bits: :class:`random.Random` or :class:`random.SystemRandom`."""

    def getrandbits(self, k: int, /) -> int: ...


def new_client_id(source: RandomBits) -> str:
    """A fresh ``clientId``: :data:`CLIENT_ID_BITS` random bits as lower-case hex.

    Args:
        source: The randomness (``random.SystemRandom()`` in production, a
            seeded ``random.Random`` in tests).
    """
    return format(source.getrandbits(CLIENT_ID_BITS), f"0{CLIENT_ID_BITS // 4}x")


def _utf8_size(value: str) -> int | None:
    """Bytes of UTF-8 of ``value``, or None if it has no UTF-8 form (a lone surrogate)."""
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _string_problem(what: str, value: object, low: int, high: int) -> str | None:
    if not isinstance(value, str):
        return f"{what} must be a string, got {type(value).__name__}"
    if len(value) > high:  # each character is at least one byte: skip encoding a huge one
        return f"{what} must be at most {high} bytes of UTF-8, got {len(value)} characters"
    size = _utf8_size(value)
    if size is None:
        return f"{what} has no UTF-8 form (a lone surrogate)"
    if not low <= size <= high:
        return f"{what} must be {low} to {high} bytes of UTF-8, got {size}"
    return None


def channel_problem(value: object) -> str | None:
    """Why ``value`` is not a valid channel name, or None if it is one."""
    if type(value) is str and len(value) <= MAX_CHANNEL_BYTES:
        return _str_channel_problem(value)  # checked a few times per publish: remembered
    return _channel_problem(value)


def _channel_problem(value: object) -> str | None:
    problem = _string_problem("a channel name", value, 1, MAX_CHANNEL_BYTES)
    if problem is None and isinstance(value, str) and _CONTROL.search(value):
        return "a channel name must not hold control characters"
    return problem


@functools.lru_cache(maxsize=1024)
def _str_channel_problem(value: str) -> str | None:
    return _channel_problem(value)


def client_id_problem(value: object) -> str | None:
    """Why ``value`` is not a valid ``clientId``, or None if it is one."""
    return _string_problem("a clientId", value, 0, MAX_CLIENT_ID_BYTES)


def msg_id_problem(value: object) -> str | None:
    """Why ``value`` is not a valid ``msgId``, or None if it is one."""
    return _string_problem("a msgId", value, 0, MAX_MSG_ID_BYTES)


def id_problem(value: object) -> str | None:
    """Why ``value`` is not an event id a client may send, or None if it is one."""
    return _string_problem("an event id", value, 0, MAX_ID_BYTES)


def _last_id_problem(value: object) -> str | None:
    return None if value is None else id_problem(value)


#: :func:`compact_json`'s encoder, made once (``json.dumps`` makes one per call).
_COMPACT: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def compact_json(data: Any) -> bytes:
    """The compact re-encoding that ``too_large`` measures (4.5), as UTF-8 bytes.

    Separators ``,`` and ``:``, non-ASCII characters as UTF-8 (not escaped).

    Raises:
        ValueError: ``data`` is not JSON (NaN, Infinity, a type JSON lacks, a
            nesting too deep to encode) or has no UTF-8 form (a lone surrogate).
    """
    try:
        text = _COMPACT.encode(data)
    except (TypeError, ValueError, RecursionError) as error:
        raise ValueError(f"data is not JSON: {error}") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("data has no UTF-8 form (a lone surrogate)") from None
