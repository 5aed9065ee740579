"""The Lua scripts of the Redis channel store: read many channels, append and notify, heads.

Each is one atomic step on the server (EVALSHA, EVAL after ``NOSCRIPT``),
so what it reads is one instant and what it writes is all or nothing. The
key layout and the notification format: :mod:`._channel_plan`.

A channel's counter is set if missing, from the clock id the caller passes
(or one above the stream's top entry, if that is higher): by the first read
(``seq = n - 1, first = n``: the answer is the id just before the first
one the channel will issue) or by the first append (the event gets ``n``).
Lua formats ids with ``string.format('%d', n)`` (``n .. ''`` prints
16-digit numbers as ``1.79e+15``).
"""

from __future__ import annotations

from typing import Final

from ._scripts import Lua

__all__ = ["APPEND_BATCH", "HEADS", "PUBLISH_BATCH", "READ_CHANNELS"]

# Shared by the scripts: the first id of a channel whose counter is missing.
_START_LUA: Final = """
local function start_id(log, clock)
  local n = clock
  local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
  if top[1] then
    local t = tonumber(string.match(top[1][1], '^(%d+)-'))
    if t and t >= n then n = t + 1 end
  end
  return n
end
"""

# The position a request reads after: a fresh request (pos '') gets the newest
# `hist` events that are held (capped by max_replay, never below first - 1 nor
# below the oldest held entry - 1: a fresh subscription is never 'lost').
_POSITION_LUA: Final = """
local function position(log, pos, hist, seq, first, maxr)
  if pos ~= '' then return tonumber(pos) end
  local h = tonumber(hist) or 0
  if h > maxr then h = maxr end
  local a = seq - h
  if a < first - 1 then a = first - 1 end
  if a < seq then
    local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
    if not oldest[1] then return seq end
    local o = tonumber(string.match(oldest[1][1], '^(%d+)-'))
    if o and o - 1 > a then a = o - 1 end
  end
  return a
end
"""

# KEYS: per channel (meta, log). ARGV: clock start id, max_replay, budget of
# replayed entries, then ONE string of every channel's position and history,
# space separated (position: '-' fresh, an id, or 'x' never issued). Returns a
# flat array: first one string of every channel's status, space separated,
# 'r seq n' (held: the n events after the position follow, in the array, as
# id and data) or 'u seq' (not held: outside [first - 1, seq], more than
# max_replay, or trimmed); then the entries, channel after channel. A resume
# of 100 channels that missed nothing is then one short string each way, not
# 200 arguments and 300 reply items for the node to encode and parse. Stops
# before a channel whose replay would take the call past the budget (never
# before the first): the caller sends the rest in another call.
_READ_CHANNELS_LUA: Final = (
    _START_LUA
    + _POSITION_LUA
    + """
local out, status = {''}, {}
local clock, maxr, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local spent, i = 0, 0
for pos, hist in string.gmatch(ARGV[4], '(%S+) (%S+)') do
  if pos == '-' then pos = '' end
  local meta, log = KEYS[2*i+1], KEYS[2*i+2]
  local m = redis.call('HMGET', meta, 'seq', 'first')
  local seq, first
  if m[1] then
    seq, first = tonumber(m[1]), tonumber(m[2])
  else
    first = start_id(log, clock)
    seq = first - 1
    redis.call('HSET', meta, 'seq', string.format('%d', seq), 'first', string.format('%d', first))
  end
  if pos == m[1] and seq >= first - 1 and (i == 0 or spent <= budget) then
    -- Nothing missed (most channels of a resume): held, no entries, as below.
    status[#status+1] = 'r ' .. pos .. ' 0'
  else
    local a = position(log, pos, hist, seq, first, maxr)
    local held = a ~= nil and a >= first - 1 and a <= seq and seq - a <= maxr
    local want = 0
    if held then want = seq - a end
    if i > 0 and spent + want > budget then break end
    spent = spent + want
    local s = string.format('%d', seq)
    local entries = {}
    if held and want > 0 then
      entries = redis.call('XRANGE', log, string.format('%d-0', a + 1), '+', 'COUNT', want)
      held = #entries == want and entries[1][1] == string.format('%d-0', a + 1)
    end
    if held then
      status[#status+1] = 'r ' .. s .. ' ' .. #entries
      for _, e in ipairs(entries) do
        local d, f = false, e[2]
        for j = 1, #f - 1, 2 do
          if f[j] == 'd' then d = f[j+1] end
        end
        out[#out+1] = e[1]
        out[#out+1] = d
      end
    else
      status[#status+1] = 'u ' .. s
    end
  end
  i = i + 1
end
out[1] = table.concat(status, ' ')
return out
"""
)

# One event's append, shared by the append and publish scripts (the one place
# for the rule): set-if-missing, XADD with the next id (before any other write,
# so an append that fails leaves nothing behind), seq. Returns the id; the
# caller then records what it must and calls notify (the event and its
# notification exist together, in one step).
_APPEND_ONE_LUA: Final = """
local function append_event(meta, log, clock, maxlen, payload)
  local seq = redis.call('HGET', meta, 'seq')
  local n
  if seq then n = tonumber(seq) + 1 else n = start_id(log, clock) end
  local id = string.format('%d', n)
  redis.call('XADD', log, 'MAXLEN', '~', maxlen, id .. '-0', 'd', payload)
  if seq then
    redis.call('HSET', meta, 'seq', id)
  else
    redis.call('HSET', meta, 'seq', id, 'first', id)
  end
  return id
end
local function notify(shard, channel, id, payload)
  redis.call('PUBLISH', shard, 'e\\n' .. channel .. '\\n' .. id .. '\\n' .. payload)
end
"""

# Appends of many callers in one call (group commit, :mod:`._appends`). KEYS:
# per item (meta, log). ARGV: clock start id, max_len, then per item (payload,
# notification channel, channel name). Per item, in order and in one step: the
# append (append_event) and the notification. Each item runs under pcall and
# the next one runs whatever it did: the reply is flat pairs, one per item,
# {'i', id} (stored) or {'e', message} (failed, nothing stored).
_APPEND_BATCH_LUA: Final = (
    _START_LUA
    + _APPEND_ONE_LUA
    + """
local function one(meta, log, clock, maxlen, payload, shard, channel)
  local id = append_event(meta, log, clock, maxlen, payload)
  notify(shard, channel, id, payload)
  return id
end
local out = {}
local clock, maxlen = tonumber(ARGV[1]), ARGV[2]
for i = 0, #KEYS / 2 - 1 do
  local ok, r = pcall(one, KEYS[2*i+1], KEYS[2*i+2], clock, maxlen,
    ARGV[3+3*i], ARGV[4+3*i], ARGV[5+3*i])
  if ok then
    out[#out+1] = 'i'
    out[#out+1] = r
  else
    out[#out+1] = 'e'
    if type(r) == 'table' then r = r.err or r.ok end
    out[#out+1] = tostring(r)
  end
end
return out
"""
)

# Acknowledged publishes, in order (PROTOCOL 4.5). KEYS: per item (meta, log,
# dedupe record). ARGV: clock start id, max_len, dedupe ttl in ms, then per item
# (payload, notification channel, channel name). Per item, in one step: a
# recorded key answers its first id (duplicate); else the append
# (append_event), the dedupe record, the notification. Each item runs under
# pcall: the first that fails ends the script, which returns {id, dup} pairs
# (flat) of the prefix that ran.
_PUBLISH_BATCH_LUA: Final = (
    _START_LUA
    + _APPEND_ONE_LUA
    + """
local function one(meta, log, dd, clock, maxlen, ttl, payload, shard, channel)
  local done = redis.call('GET', dd)
  if done then return {done, '1'} end
  local id = append_event(meta, log, clock, maxlen, payload)
  redis.call('SET', dd, id, 'PX', ttl)
  notify(shard, channel, id, payload)
  return {id, '0'}
end
local out = {}
local clock, maxlen, ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3]
for i = 0, #KEYS / 3 - 1 do
  local ok, r = pcall(one, KEYS[3*i+1], KEYS[3*i+2], KEYS[3*i+3], clock, maxlen, ttl,
    ARGV[4+3*i], ARGV[5+3*i], ARGV[6+3*i])
  if not ok then return out end
  out[#out+1] = r[1]
  out[#out+1] = r[2]
end
return out
"""
)

# KEYS: each channel's meta. Returns each channel's seq, or false (no starting point).
_HEADS_LUA: Final = """
local out = {}
for i, meta in ipairs(KEYS) do
  local seq = redis.call('HGET', meta, 'seq')
  if seq then out[i] = seq else out[i] = false end
end
return out
"""

READ_CHANNELS = Lua(_READ_CHANNELS_LUA)
APPEND_BATCH = Lua(_APPEND_BATCH_LUA)
HEADS = Lua(_HEADS_LUA)
PUBLISH_BATCH = Lua(_PUBLISH_BATCH_LUA)
