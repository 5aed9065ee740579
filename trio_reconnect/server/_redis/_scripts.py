"""The Lua scripts of the Redis backends, each run by EVALSHA (EVAL when Redis lacks it).

Every script is one atomic step on the server: an append (read ``seq``, XADD,
store ``seq``), a consistent read of a gap, the log's state for the
continuity checks, and the registry's announce and read. The stream's layout
and why each script reads what it reads: :mod:`trio_reconnect.server._redis._log`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final

import attrs
import coredis
import coredis.exceptions

from ._resp import encode_command

__all__ = ["ANNOUNCE", "APPEND", "NODES", "READ", "STATE", "Lua"]

# KEYS: stream, meta. ARGV: clock start id, max_len, payload. Returns the entry id.
_APPEND_LUA: Final = """
local seq = redis.call('HGET', KEYS[2], 'seq')
local n
local fresh = false
if seq then
  n = tonumber(seq) + 1
else
  fresh = true
  n = tonumber(ARGV[1])
  local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if top[1] then
    local t = tonumber(string.match(top[1][1], '^(%d+)-'))
    if t and t >= n then n = t + 1 end
  end
end
local id = string.format('%d-0', n)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], id, 'd', ARGV[3])
if fresh then
  redis.call('HSET', KEYS[2], 'seq', string.format('%d', n), 'first', string.format('%d', n))
else
  redis.call('HSET', KEYS[2], 'seq', string.format('%d', n))
end
return id
"""

# KEYS: stream, meta. ARGV: after ('' for the whole history), limit.
# Returns {} (empty log), {seq, first} (gap not held or too long), or
# {seq, first, entries}.
_READ_LUA: Final = """
local seq = redis.call('HGET', KEYS[2], 'seq')
if not seq then return {} end
local first = redis.call('HGET', KEYS[2], 'first')
local n = tonumber(seq)
local f = tonumber(first)
local a
if ARGV[1] == '' then
  a = f - 1
else
  a = tonumber(ARGV[1])
  if a < f or a > n then return {seq, first} end
end
local gap = n - a
if gap > tonumber(ARGV[2]) then return {seq, first} end
if gap == 0 then return {seq, first, {}} end
return {seq, first, redis.call('XRANGE', KEYS[1], string.format('%d-0', a + 1), '+', 'COUNT', gap)}
"""

# KEYS: stream, meta. Returns {} (empty log) or {seq, first, oldest held entry id or false}.
_STATE_LUA: Final = """
local seq = redis.call('HGET', KEYS[2], 'seq')
if not seq then return {} end
local first = redis.call('HGET', KEYS[2], 'first')
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if oldest[1] then return {seq, first, oldest[1][1]} end
return {seq, first, false}
"""

# KEYS: node key, names set. ARGV: name, status JSON, ttl in ms.
_ANNOUNCE_LUA: Final = """
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# KEYS: names set. ARGV: node key prefix. Returns the live statuses, drops expired names.
_NODES_LUA: Final = """
local names = redis.call('SMEMBERS', KEYS[1])
local live = {}
for _, name in ipairs(names) do
  local status = redis.call('GET', ARGV[1] .. name)
  if status then table.insert(live, status) else redis.call('SREM', KEYS[1], name) end
end
return live
"""


@attrs.frozen
class Lua:
    """A Lua script run by EVALSHA, and by EVAL when Redis does not have it (after a restart)."""

    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()

    def command(
        self, keys: Sequence[str], args: Sequence[str | bytes], *, load: bool = False
    ) -> bytes:
        """The RESP2 ``EVALSHA`` of this script (``load``: the ``EVAL``), for a link of our own."""
        head = ("EVAL", self.source) if load else ("EVALSHA", self.sha)
        return encode_command(*head, len(keys), *keys, *args)

    async def run(self, client: coredis.Redis[bytes], *, keys: list[str], args: list[str]) -> Any:
        # NOSCRIPT means nothing ran, so the EVAL that follows cannot store an event twice.
        try:
            return await client.evalsha(self.sha, keys=keys, args=args)
        except coredis.exceptions.NoScriptError:
            return await client.eval(self.source, keys=keys, args=args)


APPEND = Lua(_APPEND_LUA)
READ = Lua(_READ_LUA)
STATE = Lua(_STATE_LUA)
ANNOUNCE = Lua(_ANNOUNCE_LUA)
NODES = Lua(_NODES_LUA)
