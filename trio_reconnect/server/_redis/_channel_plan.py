"""The Redis channel store's decisions: key names, shards, notifications, replies. Pure.

No Redis, no trio: names and script arguments go out, script replies and
notification payloads come in as values.

Keys
----

Every key of channel ``C`` carries the hash tag ``{T}``, ``T = tag(C)``: the
name with ``%``, ``{`` and ``}`` percent-encoded. That is injective, never
empty (names are 1-256 bytes) and never holds a brace, so Redis hashes
exactly ``T`` and all of a channel's keys sit in one slot (a raw ``{C}``
breaks for a name such as ``}x``: ``{}`` is an empty tag and Redis then
hashes the whole key).

==================  =========  =================================================
``P:{T}:meta``      hash       ``seq`` newest id issued, ``first`` first id of
                               this incarnation
``P:{T}:log``       stream     entry ``n-0``, field ``d``: the event's JSON
``P:{T}:d:<key>``   string     a publish's dedupe record: its event id, expiring
                               after ``dedupe_ttl`` (per channel: ambiguity A3)
``P:n:<k>``         pub/sub    notifications of every channel with
                               ``shard_of(C) == k``
==================  =========  =================================================

Notifications
-------------

``e\\n<channel>\\n<id>\\n<data JSON>``, published by the append script to the
channel's shard, the last field unsplit (data may hold newlines; channel
names hold no control characters).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, Final

from .._channelbase import (
    ChannelEvent,
    ChannelRead,
    ChannelRequest,
    PublishRequest,
    PublishResult,
)
from .._logbase import EventLogError
from .._presencebase import MemberChange
from ._continuity import decode, parse_flat_entries, safe_seq

__all__ = [
    "DEFAULT_CHANNEL_PREFIX",
    "NOT_HELD",
    "append_args",
    "channel_keys",
    "event_channel",
    "notify_channel",
    "parse_append_reply",
    "parse_notification",
    "parse_publish_reply",
    "parse_read_reply",
    "publish_args",
    "position_arg",
    "read_args",
    "shard_of",
    "tag",
]

#: The prefix of every key and pub/sub channel of a :class:`RedisChannelStore`.
DEFAULT_CHANNEL_PREFIX: Final = "trio_reconnect"
#: The position argument for an ``after`` this backend could not have issued.
NOT_HELD: Final = "x"
#: The kind tag of an event notification.
_EVENT: Final = b"e"
#: The kind tags of member notifications (a join, a leave).
_JOIN: Final = b"j"
_LEAVE: Final = b"l"


def tag(channel: str) -> str:
    """The hash tag of ``channel``: ``%``, ``{``, ``}`` percent-encoded (never empty, no braces)."""
    if "%" not in channel and "{" not in channel and "}" not in channel:
        return channel  # the common case, at a resume of 100 channels
    return channel.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def channel_keys(prefix: str, channel: str) -> list[str]:
    """The keys of ``channel`` a script takes, in order: ``meta``, ``log``."""
    base = _key_base(prefix, channel)
    return [base + "meta", base + "log"]


def _key_base(prefix: str, channel: str) -> str:
    """What every key of ``channel`` starts with: the prefix and the channel's hash tag."""
    return f"{prefix}:{{{tag(channel)}}}:"


def shard_of(channel: str, shards: int) -> int:
    """The notification shard of ``channel`` (every node computes the same)."""
    digest = hashlib.blake2b(channel.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def notify_channel(prefix: str, shard: int) -> str:
    """The pub/sub channel of notification shard ``shard``."""
    return f"{prefix}:n:{shard}"


def position_arg(request: ChannelRequest) -> str:
    """The read script's position argument: ``''`` fresh, the id, or :data:`NOT_HELD`."""
    if request.after is None:
        return ""
    return NOT_HELD if safe_seq(request.after) is None else request.after


def read_args(prefix: str, requests: Sequence[ChannelRequest]) -> tuple[list[str], list[str]]:
    """The read script's KEYS and the ARGV tail of ``requests``: one string, position and history.

    Each channel adds two space-separated words: its position (``-`` fresh,
    else :func:`position_arg`, neither of which holds a space) and its history.
    """
    keys: list[str] = []
    words: list[str] = []
    for request in requests:
        base = _key_base(prefix, request.channel)  # channel_keys, without a list each
        keys.append(base + "meta")
        keys.append(base + "log")
        words.append(f"{position_arg(request) or '-'} {request.history}")
    return keys, [" ".join(words)]


def parse_read_reply(requests: Sequence[ChannelRequest], reply: Sequence[Any]) -> list[ChannelRead]:
    """The answers of a read script's reply, one per request it reached (maybe fewer).

    The reply is flat: one status string, ``r <seq> <n>`` (held: ``n`` entries
    follow in the reply, as id and data) or ``u <seq>`` (not held) per
    channel, space separated; then the entries, channel after channel.

    Raises:
        EventLogError: for a reply this script cannot have made.
    """
    if not reply or not isinstance(reply[0], bytes):
        raise EventLogError(f"unexpected channel read reply {reply!r:.80}")
    words = reply[0].split()
    reads: list[ChannelRead] = []
    at, entry = 0, 1
    try:
        for request in requests:
            if at >= len(words):
                break
            kind, newest = words[at], words[at + 1].decode()
            if kind == b"u":
                reads.append(ChannelRead(request.channel, newest, None))
                at += 2
            elif kind == b"r":
                count = int(words[at + 2])
                # Nothing missed (most channels of a resume): no parse of no entries.
                events = parse_flat_entries(reply, entry, count) if count else []
                reads.append(ChannelRead(request.channel, newest, events))
                at, entry = at + 3, entry + 2 * count
            else:
                raise EventLogError(f"unexpected channel read status {kind!r}")
    except (IndexError, ValueError) as error:
        raise EventLogError(f"unexpected channel read reply {reply!r:.80}") from error
    return reads


def _places(prefix: str, shards: int) -> Callable[[str], tuple[str, str]]:
    """A channel's key base and notification channel, each worked out once per batch."""
    seen: dict[str, tuple[str, str]] = {}

    def place(channel: str) -> tuple[str, str]:
        found = seen.get(channel)
        if found is None:
            shard = notify_channel(prefix, shard_of(channel, shards))
            found = seen[channel] = (_key_base(prefix, channel), shard)
        return found

    return place


def publish_args(
    prefix: str, shards: int, items: Sequence[PublishRequest]
) -> tuple[list[str], list[str]]:
    """The publish script's KEYS (meta, log, dedupe record) and ARGV tail (payload, shard, name)."""
    keys: list[str] = []
    args: list[str] = []
    place = _places(prefix, shards)
    for item in items:
        base, shard = place(item.channel)
        keys += (base + "meta", base + "log", f"{base}d:{item.key}")
        payload = item.payload.decode("utf-8") if item.payload else compact(item.data)
        args += (payload, shard, item.channel)
    return keys, args


def append_args(
    prefix: str, shards: int, items: Sequence[tuple[str, str]]
) -> tuple[list[str], list[str]]:
    """The batch append script's KEYS (meta, log) and ARGV tail (payload, shard, name).

    ``items``: (channel, payload) pairs, the payload already compact JSON.
    """
    keys: list[str] = []
    args: list[str] = []
    place = _places(prefix, shards)
    for channel, payload in items:
        base, shard = place(channel)
        keys += (base + "meta", base + "log")
        args += (payload, shard, channel)
    return keys, args


def parse_append_reply(reply: Sequence[Any], asked: int) -> list[str | EventLogError]:
    """Each item's outcome in a batch append's flat reply ``['i', id, 'e', message, ...]``.

    An id: stored. An :class:`EventLogError`: the script's error for that
    item (nothing of it stored).

    Raises:
        EventLogError: for a reply this script cannot have made.
    """
    if len(reply) != 2 * asked:
        raise EventLogError(f"unexpected append reply {reply!r:.80}")
    outcomes: list[str | EventLogError] = []
    for i in range(0, len(reply), 2):
        kind, value = reply[i], decode(reply[i + 1])
        if kind == b"i":
            outcomes.append(value)
        elif kind == b"e":
            outcomes.append(EventLogError(f"Redis refused the append: {value}"))
        else:
            raise EventLogError(f"unexpected append reply {reply!r:.80}")
    return outcomes


def compact(data: Any) -> str:
    """``data`` as compact JSON, as the server measures it.

    Raises:
        TypeError: not JSON-serialisable.
        ValueError: a NaN or an infinity.
    """
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def parse_publish_reply(reply: Sequence[Any], asked: int) -> list[PublishResult]:
    """The results of a publish script's flat reply ``[id, dup, id, dup, ...]``.

    Raises:
        EventLogError: for a reply this script cannot have made.
    """
    if len(reply) % 2 or len(reply) // 2 > asked:
        raise EventLogError(f"unexpected publish reply {reply!r:.80}")
    return [
        PublishResult(decode(reply[i]), duplicate=reply[i + 1] == b"1")
        for i in range(0, len(reply), 2)
    ]


def _member_change(payload: bytes) -> MemberChange:
    """A ``j`` or ``l`` notification (presence, PROTOCOL.md 4.4)."""
    join = payload[:1] == _JOIN
    parts = payload.split(b"\n", 4 if join else 3)
    if len(parts) != (5 if join else 4):
        raise EventLogError(f"malformed member notification {payload[:80]!r}")
    try:
        info = json.loads(parts[4]) if join else None
        if join and not isinstance(info, dict):
            raise ValueError("the info is not a JSON object")
        return MemberChange(parts[1].decode(), int(parts[2]), parts[3].decode(), info)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventLogError(f"malformed member notification {payload[:80]!r}: {exc}") from None


def event_channel(payload: bytes) -> str | None:
    """The channel of an event notification, read without its data; ``None``: another kind.

    ``None`` too for a name that is not UTF-8 (:func:`parse_notification` says why).
    """
    if payload[:2] != _EVENT + b"\n":
        return None
    end = payload.find(b"\n", 2)
    if end < 0:
        return None
    try:
        return payload[2:end].decode()
    except UnicodeDecodeError:
        return None


def parse_notification(payload: bytes) -> ChannelEvent | MemberChange | None:
    """The event or member change a notification carries; ``None`` for a kind not known.

    Raises:
        EventLogError: for a malformed notification.
    """
    if payload[:2] in (_JOIN + b"\n", _LEAVE + b"\n"):
        return _member_change(payload)
    parts = payload.split(b"\n", 3)
    if parts[0] != _EVENT:
        return None
    if len(parts) != 4:
        raise EventLogError(f"malformed channel notification {payload[:80]!r}")
    try:
        return ChannelEvent(parts[1].decode(), parts[2].decode(), json.loads(parts[3]))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventLogError(f"malformed channel notification {payload[:80]!r}: {exc}") from None
