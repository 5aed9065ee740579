"""The Lua scripts of presence on Redis (PROTOCOL.md 4.4; benchmarks/v2_design/DESIGN.md 6).

Every script touches one channel's slot (``P:{T}:meta|pm|pk|pc|ph``) or one
node-level key, and none reads the member list except :data:`MEMBERS`: a
join or a leave is O(1) in the room's size (:data:`RELEASE_NOW` also reads
the channel's holds in their grace, to end the member's own with it). Keys:

==================  =====  ======================================================
``P:{T}:meta``      hash   ``pver``: the channel's presence version
``P:{T}:pm``        hash   member key -> info JSON (the list)
``P:{T}:pk``        hash   ``i:<principal\\nclientId>`` -> key, ``k:<key>`` -> identity
``P:{T}:pc``        hash   member key -> number of holds
``P:{T}:ph``        zset   hold ``key\\nowner\\nserial`` -> 0 (held) or deadline (ms)
==================  =====  ======================================================

**Exactly one leave**: every removal of a hold ``ZREM``s it first and goes
on only if that removed it; the leave is published where the count reaches
0, in the same script (so are a join and its count reaching 1). Deadlines
are Redis's clock (``TIME``), so the nodes' clocks do not matter.
Notifications: ``j\\n<channel>\\n<pver>\\n<key>\\n<info>`` and
``l\\n<channel>\\n<pver>\\n<key>`` on the channel's shard, as the events.
"""

from __future__ import annotations

from typing import Final

from ._scripts import Lua

__all__ = [
    "DUE",
    "GRACE",
    "JOIN",
    "MEMBERS",
    "ORPHAN",
    "REFRESH",
    "REHOLD",
    "RELEASE_NOW",
    "SETTLE",
]

_NOW_LUA: Final = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS: meta, pm, pk, pc, ph. ARGV: hold, notification channel, channel name.
# The removal; returns 0 (already gone), 1 (removed, member stays), 2 (left).
_REMOVE_LUA: Final = """
local function remove(hold, shard, name)
  if redis.call('ZREM', KEYS[5], hold) == 0 then return 0 end
  local key = string.match(hold, '^([^\\n]*)')
  if redis.call('HINCRBY', KEYS[4], key, -1) > 0 then return 1 end
  local ident = redis.call('HGET', KEYS[3], 'k:' .. key)
  redis.call('HDEL', KEYS[2], key)
  redis.call('HDEL', KEYS[4], key)
  redis.call('HDEL', KEYS[3], 'k:' .. key)
  if ident then redis.call('HDEL', KEYS[3], 'i:' .. ident) end
  local v = redis.call('HINCRBY', KEYS[1], 'pver', 1)
  redis.call('PUBLISH', shard, 'l\\n' .. name .. '\\n' .. string.format('%d', v) .. '\\n' .. key)
  return 2
end
"""

# KEYS: meta, pm, pk, pc, ph. ARGV: identity, clientId, the key of its own
# (taken), info JSON, hold suffix (owner\\nserial), notification channel,
# channel name. Returns the hold's full id.
_JOIN_LUA: Final = """
local key = redis.call('HGET', KEYS[3], 'i:' .. ARGV[1])
if not key then
  key = ARGV[2]
  if redis.call('HEXISTS', KEYS[2], key) == 1 then key = ARGV[3] end
  redis.call('HSET', KEYS[3], 'i:' .. ARGV[1], key, 'k:' .. key, ARGV[1])
end
local hold = key .. '\\n' .. ARGV[5]
if redis.call('ZADD', KEYS[5], 'NX', 0, hold) == 0 then return hold end
if redis.call('HINCRBY', KEYS[4], key, 1) == 1 then
  redis.call('HSET', KEYS[2], key, ARGV[4])
  local v = redis.call('HINCRBY', KEYS[1], 'pver', 1)
  redis.call('PUBLISH', ARGV[6],
    'j\\n' .. ARGV[7] .. '\\n' .. string.format('%d', v) .. '\\n' .. key .. '\\n' .. ARGV[4])
end
return hold
"""

# The hold, then the member's holds in their grace (its ended connections,
# e.g. on a node it hopped from): an unsubscribe or a clean close is one leave
# at once (4.4). O(holds in their grace in the channel).
_RELEASE_NOW_LUA: Final = (
    _REMOVE_LUA
    + """
local r = remove(ARGV[1], ARGV[2], ARGV[3])
if r ~= 1 then return r end
local prefix = string.match(ARGV[1], '^([^\\n]*)') .. '\\n'
for _, h in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '(0', '+inf')) do
  if string.sub(h, 1, #prefix) == prefix then
    r = remove(h, ARGV[2], ARGV[3])
    if r == 2 then return 2 end
  end
end
return 1
"""
)

# KEYS: ph. ARGV: hold, grace ms. Returns the deadline, or false (no such hold).
_GRACE_LUA: Final = (
    _NOW_LUA
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return false end
local deadline = now_ms() + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', deadline, ARGV[1])
return deadline
"""
)

# KEYS: meta, pm, pk, pc, ph. ARGV: hold, notification channel, channel name.
# Returns 'gone', 'held', 'done' (removed), or the deadline still ahead.
_SETTLE_LUA: Final = (
    _NOW_LUA
    + _REMOVE_LUA
    + """
local score = redis.call('ZSCORE', KEYS[5], ARGV[1])
if not score then return 'gone' end
score = tonumber(score)
if score == 0 then return 'held' end
if score > now_ms() then return score end
remove(ARGV[1], ARGV[2], ARGV[3])
return 'done'
"""
)

# KEYS: ph. ARGV: hold, grace ms. A held hold of a dead owner gets its
# deadline; returns the deadline (new or already set), or false (gone).
_ORPHAN_LUA: Final = (
    _NOW_LUA
    + """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return false end
score = tonumber(score)
if score == 0 then
  score = now_ms() + tonumber(ARGV[2])
  redis.call('ZADD', KEYS[1], 'XX', score, ARGV[1])
end
return score
"""
)

# KEYS: pdue. ARGV: most entries. The entries whose deadline passed (Redis clock).
_DUE_LUA: Final = (
    _NOW_LUA
    + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
"""
)

# KEYS: ph. ARGV: hold. A hold of a live connection is held again: 1, or 0 (gone).
_REHOLD_LUA: Final = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', 0, ARGV[1])
return 1
"""

# KEYS: the owner's live key, the owners set. ARGV: owner, ttl ms. Renews the
# live key; returns 1 if it existed (the owner was alive until now), else 0.
_REFRESH_LUA: Final = """
local alive = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return alive
"""

# KEYS: meta, pm. Returns {pver, {key, info, key, info, ...}}.
_MEMBERS_LUA: Final = """
local v = redis.call('HGET', KEYS[1], 'pver')
return {v or '0', redis.call('HGETALL', KEYS[2])}
"""

JOIN = Lua(_JOIN_LUA)
RELEASE_NOW = Lua(_RELEASE_NOW_LUA)
GRACE = Lua(_GRACE_LUA)
SETTLE = Lua(_SETTLE_LUA)
ORPHAN = Lua(_ORPHAN_LUA)
DUE = Lua(_DUE_LUA)
MEMBERS = Lua(_MEMBERS_LUA)
REHOLD = Lua(_REHOLD_LUA)
REFRESH = Lua(_REFRESH_LUA)
