"""Presence's rules (PROTOCOL.md 4.4), stated once. Pure: no trio, no IO.

* **Which channels** carry presence: those whose name matches one of the
  server's ``presence`` globs (:func:`carries_presence`, ``fnmatch`` rules,
  case-sensitive).
* **Release now or after the grace** (:func:`release_of`): an ``unsubscribe``,
  or a clean close the *client* sent (1000), releases the member's hold at
  once; any other end (1001 or 1011 from the client, 1006, a ping timeout, a
  close the server sent itself, a drain's 1012/1001 included) keeps it for
  ``presence_grace`` seconds, so that a member that comes back meanwhile, on
  any node, causes neither a ``leave`` nor a ``join``.
* **A member's wire key** (:func:`member_key`) is its ``clientId``, unless
  another principal already holds that key in the channel: then
  ``clientId~<8 hex of blake2b(principal)>`` (the same member always gets the
  same key; two principals are never merged).
* **A hold** is one subscription of one connection: ``key\\nowner\\nserial``
  (the node gives ``owner\\nserial``, the store puts the key in front;
  :func:`hold_key` reads it back).
* **What a subscription sends** (:func:`plan_change`): a change whose
  presence version is at or below what the subscription's client already has
  is skipped; the next version is applied; a jump is a gap, repaired by
  reading the list again and sending the difference (:func:`difference`) as
  ``join`` and ``leave`` frames (docs/reference/protocol.md 4.4).
* **The bound** on a member of a killed node that does not come back
  (:func:`killed_node_bound`): ``owner_ttl + owner_check_interval + grace +
  sweep_interval``.
"""

from __future__ import annotations

import enum
import fnmatch
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from ._clientbase import CLOSE_NORMAL

__all__ = [
    "KEY_SEPARATOR",
    "ChangePlan",
    "Release",
    "carries_presence",
    "difference",
    "hold_key",
    "killed_node_bound",
    "member_key",
    "plan_change",
    "presence_patterns",
    "release_of",
]

#: Between a ``clientId`` and the principal's digest in a key of its own.
KEY_SEPARATOR: Final = "~"


class Release(enum.Enum):
    """How a hold ends."""

    #: At once: exactly one ``leave`` if it was the member's last hold.
    NOW = "now"
    #: After ``presence_grace``: the member stays meanwhile.
    GRACE = "grace"


def release_of(*, unsubscribed: bool, peer_close_code: int | None) -> Release:
    """How a subscription's hold ends.

    Args:
        unsubscribed: The client unsubscribed (the connection goes on).
        peer_close_code: The close code the *client* sent first, ``None`` when
            the server closed first or no close frame came (1006).
    """
    if unsubscribed or peer_close_code == CLOSE_NORMAL:
        return Release.NOW
    return Release.GRACE


def presence_patterns(value: Iterable[str]) -> tuple[str, ...]:
    """The ``presence`` setting as a tuple of globs.

    Raises:
        TypeError: for a bare string (say ``("lobby*",)``) or a glob that is not a string.
        ValueError: for an empty glob.
    """
    if isinstance(value, str | bytes):
        raise TypeError(f"presence must be a sequence of globs, such as ({value!r},)")
    patterns = tuple(value)
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f"presence: a glob must be a str, got {pattern!r}")
        if not pattern:
            raise ValueError("presence: a glob must not be empty")
    return patterns


def carries_presence(patterns: Iterable[str], channel: str) -> bool:
    """Whether ``channel`` matches one of the ``presence`` globs."""
    return any(fnmatch.fnmatchcase(channel, pattern) for pattern in patterns)


def member_key(client_id: str, principal_id: str, *, taken: bool) -> str:
    """The wire key of a new member: its ``clientId``, or one of its own if ``taken``.

    ``taken``: another principal holds ``client_id`` as a key in the channel.
    """
    if not taken:
        return client_id
    digest = hashlib.blake2b(principal_id.encode(), digest_size=4).hexdigest()
    return f"{client_id}{KEY_SEPARATOR}{digest}"


def hold_key(hold: str) -> str:
    """The member key a hold counts for."""
    return hold.split("\n", 1)[0]


class ChangePlan(enum.Enum):
    """What a subscription does with one member change (its presence version)."""

    SKIP = "skip"
    APPLY = "apply"
    GAP = "gap"


def plan_change(have: int, version: int) -> ChangePlan:
    """``have``: the version the client's list stands at; ``version``: the change's."""
    if version <= have:
        return ChangePlan.SKIP
    return ChangePlan.APPLY if version == have + 1 else ChangePlan.GAP


@attrs.frozen
class MemberDiff:
    """The frames that take a client's list from one state to another."""

    #: Keys that are gone, in the old list's order.
    leaves: list[str]
    #: Members that are new or whose info changed, in the new list's order.
    joins: list[tuple[str, Any]]


def difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> MemberDiff:
    """The ``leave`` and ``join`` frames from ``old`` to ``new`` (nothing when equal)."""
    leaves = [key for key in old if key not in new]
    joins = [(key, info) for key, info in new.items() if key not in old or old[key] != info]
    return MemberDiff(leaves, joins)


def killed_node_bound(
    *, owner_ttl: float, owner_check_interval: float, grace: float, sweep_interval: float
) -> float:
    """Seconds after a SIGKILL by which a member that does not come back has left."""
    return owner_ttl + owner_check_interval + grace + sweep_interval
