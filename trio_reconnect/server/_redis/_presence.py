"""Presence on Redis (:class:`RedisPresenceStore`): holds per channel, owners per process, sweepers.

Get it from :meth:`~trio_reconnect.server.redis.RedisChannelStore.presence_store`
(it shares that store's client and notification shards). The per-channel
keys and the scripts: :mod:`._presence_scripts`. The node-level keys:

=========================  =====  ================================================
``P:po:live:<owner>``      str    the owner (one server process) is alive (PX ttl)
``P:po:owners``            set    owners that may hold presence
``P:po:holds:<owner>``     set    ``channel\\nhold`` of each hold the owner made
``P:pdue``                 zset   ``channel\\nhold`` -> deadline: holds in their grace
=========================  =====  ================================================

* **Join**: the owner's index gets the hold first (under the member's
  ``clientId`` key, the usual case; the key of its own is indexed after the
  JOIN when the script gave one), then the JOIN script: every hold a dead
  owner left is findable. An index entry whose hold never came is dropped
  as gone.
* **Release now**: the RELEASE_NOW script, then the index entry goes.
  **Release with a grace**: the GRACE script sets the hold's deadline, then
  ``ZADD P:pdue`` (two slots on a Cluster, so two calls; a crash between
  them leaves a held-looking hold with a deadline, which ORPHAN adds to
  ``pdue`` when the owner is found dead).
* **Sweep** (every node): the due entries of ``pdue`` (Redis's clock, 256 at
  a time) are SETTLEd; settled ones leave ``pdue`` and their owner's index.
  With ``check_owners``: each owner of ``P:po:owners`` whose live key is gone
  has every indexed hold ORPHANed (a deadline ``grace`` from now if it was
  held) and added to ``pdue``; then its index and its name go. Two sweepers
  racing do the same idempotent steps; one ZREM wins each hold.
* **Retire** (a clean exit) deletes the live key: the next owner check finds
  the owner dead. A SIGKILLed owner's key expires after ``owner_ttl``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import attrs
import coredis

from .._membersplan import member_key
from .._presencebase import MemberList
from ._channel_plan import notify_channel, shard_of, tag
from ._continuity import decode
from ._presence_scripts import (
    DUE,
    GRACE,
    JOIN,
    MEMBERS,
    ORPHAN,
    REFRESH,
    REHOLD,
    RELEASE_NOW,
    SETTLE,
)
from ._store import ClientOwner, Store

__all__ = ["SWEEP_BATCH", "RedisPresenceStore"]

#: Due holds settled per round of a sweep (and index entries scanned per SSCAN).
SWEEP_BATCH: Final = 256


@attrs.define(eq=False)
class RedisPresenceStore:
    """A :class:`~trio_reconnect.server.PresenceStore` on Redis (the module comment)."""

    _store: Store
    _client: ClientOwner
    prefix: str
    notify_shards: int

    # -- keys ---------------------------------------------------------------

    def _channel_keys(self, channel: str) -> list[str]:
        base = f"{self.prefix}:{{{tag(channel)}}}:"
        return [base + "meta", base + "pm", base + "pk", base + "pc", base + "ph"]

    def _shard(self, channel: str) -> str:
        return notify_channel(self.prefix, shard_of(channel, self.notify_shards))

    def _node_key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def _run(self, what: str, op: Any) -> Any:
        return await self._store.call(self._client, op, what=what, checkpoint=False)

    async def _script(self, script: Any, keys: list[str], args: list[str], what: str) -> Any:
        async def op(client: coredis.Redis[bytes]) -> Any:
            return await script.run(client, keys=keys, args=args)

        return await self._run(what, op)

    # -- the PresenceStore protocol ------------------------------------------

    async def join(
        self, channel: str, principal_id: str, client_id: str, info: dict[str, Any], hold: str
    ) -> str:
        """Index the hold, then add it (one script; a join notification at the first hold)."""
        owner = hold.split("\n", 1)[0]
        index = self._node_key("po", "holds", owner)
        usual = f"{channel}\n{client_id}\n{hold}"
        await self._run("presence index", lambda c: c.sadd(index, [usual]))
        own = member_key(client_id, principal_id, taken=True)
        payload = json.dumps(info, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        args = [f"{principal_id}\n{client_id}", client_id, own, payload, hold]
        args += [self._shard(channel), channel]
        full = decode(await self._script(JOIN, self._channel_keys(channel), args, "join"))
        if not full.startswith(f"{client_id}\n"):
            entry = f"{channel}\n{full}"
            await self._run("presence index", lambda c: c.sadd(index, [entry]))
            await self._run("presence index", lambda c: c.srem(index, [usual]))
        return full

    async def members(self, channel: str) -> MemberList:
        """The list and its version, in one script."""
        keys = self._channel_keys(channel)[:2]
        version, flat = await self._script(MEMBERS, keys, [], "members")
        members: dict[str, dict[str, Any]] = {}
        for i in range(0, len(flat), 2):
            members[decode(flat[i])] = json.loads(flat[i + 1])
        return MemberList(members, int(version))

    async def release(self, channel: str, hold: str, *, grace: float | None) -> None:
        """End a hold now (one script) or after ``grace`` (its deadline, then ``pdue``)."""
        entry = f"{channel}\n{hold}"
        if grace is None:
            args = [hold, self._shard(channel), channel]
            await self._script(RELEASE_NOW, self._channel_keys(channel), args, "release")
            index = self._node_key("po", "holds", hold.split("\n")[1])
            await self._run("presence index", lambda c: c.srem(index, [entry]))
            return
        ph = self._channel_keys(channel)[4]
        ms = str(round(grace * 1000))
        deadline = await self._script(GRACE, [ph], [hold, ms], "release grace")
        if deadline is not None:
            pdue = self._node_key("pdue")
            await self._run("presence due", lambda c: c.zadd(pdue, {entry: int(deadline)}))

    async def sweep(self, *, grace: float, check_owners: bool) -> int:
        """Settle the due holds; with ``check_owners``, orphan the holds of dead owners."""
        if check_owners:
            await self._check_owners(grace)
        pdue = self._node_key("pdue")
        removed = 0
        while True:
            due = await self._script(DUE, [pdue], [str(SWEEP_BATCH)], "due holds")
            for raw in due:
                removed += await self._settle(decode(raw))
            if len(due) < SWEEP_BATCH:
                return removed

    async def _settle(self, entry: str) -> int:
        channel, hold = entry.split("\n", 1)
        args = [hold, self._shard(channel), channel]
        result = await self._script(SETTLE, self._channel_keys(channel), args, "settle")
        pdue = self._node_key("pdue")
        if isinstance(result, int):  # a later deadline
            await self._run("presence due", lambda c: c.zadd(pdue, {entry: result}))
            return 0
        await self._run("presence due", lambda c: c.zrem(pdue, [entry]))
        index = self._node_key("po", "holds", hold.split("\n")[1])
        await self._run("presence index", lambda c: c.srem(index, [entry]))
        return 1 if result == b"done" else 0

    async def _check_owners(self, grace: float) -> None:
        owners_key = self._node_key("po", "owners")
        owners = await self._run("presence owners", lambda c: c.smembers(owners_key))
        for raw in owners:
            owner = decode(raw)
            live = self._node_key("po", "live", owner)
            if await self._run("presence owner", lambda c, k=live: c.exists([k])):
                continue
            await self._orphan(owner, grace)
            await self._run("presence owners", lambda c, o=owner: c.srem(owners_key, [o]))

    async def _orphan(self, owner: str, grace: float) -> None:
        index = self._node_key("po", "holds", owner)
        pdue = self._node_key("pdue")
        ms = str(round(grace * 1000))
        cursor = 0
        while True:
            cursor, entries = await self._run(
                "presence index",
                lambda c, at=cursor: c.sscan(index, at, count=SWEEP_BATCH),
            )
            due: Mapping[str | bytes, int] = {}
            for raw in entries:
                channel, hold = decode(raw).split("\n", 1)
                ph = self._channel_keys(channel)[4]
                deadline = await self._script(ORPHAN, [ph], [hold, ms], "orphan")
                if deadline is not None:
                    due = {**due, f"{channel}\n{hold}": int(deadline)}
            if due:
                await self._run("presence due", lambda c, d=due: c.zadd(pdue, d))
            if not cursor:
                break
        await self._run("presence index", lambda c: c.delete([index]))

    async def refresh(self, owner: str, ttl: float) -> bool:
        """Renew the owner's live key (``PX ttl``), list it; whether the key was there."""
        keys = [self._node_key("po", "live", owner), self._node_key("po", "owners")]
        args = [owner, str(round(ttl * 1000))]
        return bool(await self._script(REFRESH, keys, args, "presence live"))

    async def rehold(self, channel: str, hold: str) -> bool:
        """Held again (no deadline), out of ``pdue``, back in the owner's index; or gone."""
        ph = self._channel_keys(channel)[4]
        if not await self._script(REHOLD, [ph], [hold], "rehold"):
            return False
        entry = f"{channel}\n{hold}"
        pdue = self._node_key("pdue")
        index = self._node_key("po", "holds", hold.split("\n")[1])
        # pdue first: a sweeper that finds the entry held drops it from the index too
        await self._run("presence due", lambda c: c.zrem(pdue, [entry]))
        await self._run("presence index", lambda c: c.sadd(index, [entry]))
        return True

    async def retire(self, owner: str) -> None:
        """Delete the owner's live key: the next owner check orphans its holds."""
        live = self._node_key("po", "live", owner)
        await self._run("presence live", lambda c: c.delete([live]))
