"""Measurements for the v2 server design on Redis (helper R, 2026-12-06).

Run:  /work/venv/bin/python /work/notes/v2_redis_bench.py [--redis-server PATH] [--quick]

Starts its own redis-server on a free loopback port (--save '' --appendonly no
--hz 100), runs under trio with coredis 6.9 (NoRetryPolicy, as the library
does), and stops the server at the end. Every measurement is bounded to a few
seconds. It prints one JSON object with the figures.

  (a) resume script: one EVALSHA over 1 vs 100 channels, nothing missed
      (median round trip, same run, ratio); also 100 channels with 5 missed
      each, and 100 single-channel scripts pipelined, for comparison.
  (b) pub/sub delivery through one coredis pubsub connection under trio:
      messages/s received (and parsed) with S shard channels, S in (1, 16, 256);
      and, for option (b) of the design, XREAD from one notification stream.
  (c) the publish script (dedupe + counter + XADD + PUBLISH): sequential
      median/p99 latency and rate, 16 concurrent callers, a duplicate's
      latency, a batch script of 16 publishes, and Redis memory per dedupe record.
  (d) presence join script in rooms of 10 / 100 / 1,000 members (O(1) check).

The Lua scripts here are the ones the design document proposes
(/work/notes/v2-server-design.md, sections 3-5).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import coredis
import trio
from coredis.retry import NoRetryPolicy

PREFIX = "tr"

# ---------------------------------------------------------------- key layout


def tag(channel: str) -> str:
    """The hash tag of a channel: its name with %, { and } percent-encoded (never empty, no braces)."""
    return channel.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def key(channel: str, suffix: str) -> str:
    return f"{PREFIX}:{{{tag(channel)}}}:{suffix}"


def shard_of(channel: str, shards: int) -> int:
    return int.from_bytes(hashlib.blake2b(channel.encode(), digest_size=8).digest(), "big") % shards


def notify_channel(channel: str, shards: int) -> str:
    return f"{PREFIX}:n:{shard_of(channel, shards)}"


def dedupe_key(channel: str, principal: str, client_id: str, msg_id: str) -> str:
    digest = hashlib.blake2b(
        b"\0".join(x.encode() for x in (principal, client_id, msg_id)), digest_size=16
    ).hexdigest()
    return key(channel, "dd:" + digest)


# ---------------------------------------------------------------- Lua

# KEYS: per channel (meta, log, snap). ARGV: clock start, max_replay, then per
# channel (position or '' for fresh, history count or '').
# Returns per channel {kind, seq, ...}: 'r' replay (+ entries), 's' stored
# snapshot (+ id, data), 'u' not held and no stored snapshot.
RESUME_LUA = """
local out = {}
local clock = tonumber(ARGV[1])
local maxr = tonumber(ARGV[2])
for i = 0, #KEYS / 3 - 1 do
  local meta, log, snap = KEYS[3*i+1], KEYS[3*i+2], KEYS[3*i+3]
  local pos, hist = ARGV[3+2*i], ARGV[4+2*i]
  local m = redis.call('HMGET', meta, 'seq', 'first')
  local seq, first
  if not m[1] then
    local n = clock
    local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
    if top[1] then
      local t = tonumber(string.match(top[1][1], '^(%d+)-'))
      if t and t >= n then n = t + 1 end
    end
    seq = n - 1
    first = n
    redis.call('HSET', meta, 'seq', string.format('%d', seq), 'first', string.format('%d', first))
  else
    seq = tonumber(m[1])
    first = tonumber(m[2])
  end
  local a
  if pos == '' then
    local h = tonumber(hist) or 0
    if h > maxr then h = maxr end
    a = seq - h
    if a < first - 1 then a = first - 1 end
    if a < seq then
      -- a fresh subscription gets what is held of its history, never 'lost'
      local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
      if oldest[1] then
        local o = tonumber(string.match(oldest[1][1], '^(%d+)-'))
        if o and o - 1 > a then a = o - 1 end
      else
        a = seq
      end
    end
  else
    a = tonumber(pos)
  end
  local s = string.format('%d', seq)
  local held = false
  local entries = nil
  if a and a >= first - 1 and a <= seq and seq - a <= maxr then
    if a == seq then
      held = true
    else
      entries = redis.call('XRANGE', log, string.format('%d-0', a + 1), '+', 'COUNT', seq - a)
      held = (#entries == seq - a) and (entries[1][1] == string.format('%d-0', a + 1))
    end
  end
  if held then
    if entries then out[#out+1] = {'r', s, entries} else out[#out+1] = {'r', s} end
  else
    local snapshot = redis.call('HMGET', snap, 'id', 'd')
    if snapshot[1] then out[#out+1] = {'s', s, snapshot[1], snapshot[2]}
    else out[#out+1] = {'u', s} end
  end
end
return out
"""

# KEYS: meta, log, dedupe. ARGV: clock start, max_len, payload, dedupe ttl (s),
# notification channel, channel name. Returns {id, '1' if a duplicate else '0'}.
PUBLISH_LUA = """
local done = redis.call('GET', KEYS[3])
if done then return {done, '1'} end
local seq = redis.call('HGET', KEYS[1], 'seq')
local n
if seq then
  n = tonumber(seq) + 1
else
  n = tonumber(ARGV[1])
  local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  if top[1] then
    local t = tonumber(string.match(top[1][1], '^(%d+)-'))
    if t and t >= n then n = t + 1 end
  end
  redis.call('HSET', KEYS[1], 'first', string.format('%d', n))
end
local id = string.format('%d', n)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id .. '-0', 'd', ARGV[3])
redis.call('HSET', KEYS[1], 'seq', id)
redis.call('SET', KEYS[3], id, 'EX', ARGV[4])
redis.call('PUBLISH', ARGV[5], 'e\\n' .. ARGV[6] .. '\\n' .. id .. '\\n' .. ARGV[3])
return {id, '0'}
"""

# A batch of publishes of one connection, in order, stopping at the first failure.
# KEYS: per item (meta, log, dedupe). ARGV: clock, max_len, ttl, then per item
# (payload, notification channel, channel name). Returns per item {id, dup} or
# {'!', error} for the first failure (the items after it are not run).
PUBLISH_BATCH_LUA = """
local out = {}
for i = 0, #KEYS / 3 - 1 do
  local meta, log, dd = KEYS[3*i+1], KEYS[3*i+2], KEYS[3*i+3]
  local payload, nch, name = ARGV[4+3*i], ARGV[5+3*i], ARGV[6+3*i]
  local ok, res = pcall(function()
    local done = redis.call('GET', dd)
    if done then return {done, '1'} end
    local seq = redis.call('HGET', meta, 'seq')
    local n
    if seq then n = tonumber(seq) + 1 else
      n = tonumber(ARGV[1])
      local top = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
      if top[1] then
        local t = tonumber(string.match(top[1][1], '^(%d+)-'))
        if t and t >= n then n = t + 1 end
      end
      redis.call('HSET', meta, 'first', string.format('%d', n))
    end
    local id = string.format('%d', n)
    redis.call('XADD', log, 'MAXLEN', '~', ARGV[2], id .. '-0', 'd', payload)
    redis.call('HSET', meta, 'seq', id)
    redis.call('SET', dd, id, 'EX', ARGV[3])
    redis.call('PUBLISH', nch, 'e\\n' .. name .. '\\n' .. id .. '\\n' .. payload)
    return {id, '0'}
  end)
  if not ok then out[#out+1] = {'!', tostring(res)} return out end
  out[#out+1] = res
end
return out
"""

# Presence join. KEYS: meta, pm (key -> info), pk (ident -> key), pc (key -> holds), ph (holds zset).
# ARGV: ident, clientId, info JSON, hold member, notification channel, channel name, collision suffix.
# Returns {key, '1' joined (new member) | '0' already a member}.
JOIN_LUA = """
local k = redis.call('HGET', KEYS[3], ARGV[1])
if not k then
  k = ARGV[2]
  if redis.call('HEXISTS', KEYS[2], k) == 1 then k = ARGV[2] .. '~' .. ARGV[7] end
  redis.call('HSET', KEYS[3], ARGV[1], k)
end
if redis.call('ZADD', KEYS[5], 'NX', 0, k .. '\\n' .. ARGV[4]) == 0 then return {k, '0'} end
if redis.call('HINCRBY', KEYS[4], k, 1) == 1 then
  redis.call('HSET', KEYS[2], k, ARGV[3])
  local v = redis.call('HINCRBY', KEYS[1], 'pver', 1)
  redis.call('PUBLISH', ARGV[5], 'j\\n' .. ARGV[6] .. '\\n' .. v .. '\\n' .. k .. '\\n' .. ARGV[3])
  return {k, '1'}
end
return {k, '0'}
"""


def sha(src: str) -> str:
    return hashlib.sha1(src.encode()).hexdigest()


# ---------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(binary: str) -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="R-redis-")
    proc = subprocess.Popen(
        [binary, "--save", "", "--appendonly", "no", "--port", str(port),
         "--bind", "127.0.0.1", "--hz", "100", "--dir", workdir,
         "--client-output-buffer-limit", "pubsub", "0", "0", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port, workdir
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def ms(x: float) -> float:
    return round(x * 1000, 3)


# ---------------------------------------------------------------- measurements


async def evalsha(client: Any, src: str, keys: list[str], args: list[str]) -> Any:
    return await client.evalsha(sha(src), keys=keys, args=args)


def resume_call(channels: list[str], positions: list[str]) -> tuple[list[str], list[str]]:
    keys: list[str] = []
    args = [str(int(time.time() * 1e6)), "1000"]
    for channel, position in zip(channels, positions, strict=True):
        keys += [key(channel, "meta"), key(channel, "log"), key(channel, "snap")]
        args += [position, ""]
    return keys, args


async def measure_resume(client: Any, budget: float) -> dict[str, Any]:
    channels = [f"room:{i}" for i in range(100)]
    clock = int(time.time() * 1e6)
    # Each channel: 20 events of ~100 bytes.
    payload = json.dumps({"text": "x" * 80})
    for channel in channels:
        for _ in range(20):
            await evalsha(client, PUBLISH_LUA,
                          [key(channel, "meta"), key(channel, "log"), key(channel, "dd:" + os.urandom(8).hex())],
                          [str(clock), "10000", payload, "600", notify_channel(channel, 16), channel])
    newest = {}
    for channel in channels:
        newest[channel] = int((await client.hget(key(channel, "meta"), "seq")).decode())
    one_keys, one_args = resume_call(channels[:1], [str(newest[channels[0]])])
    hundred_keys, hundred_args = resume_call(channels, [str(newest[c]) for c in channels])
    missed_keys, missed_args = resume_call(channels, [str(newest[c] - 5) for c in channels])
    times: dict[str, list[float]] = {"one": [], "hundred": [], "hundred_missed5": [], "pipelined_100": []}
    # sanity
    reply = await evalsha(client, RESUME_LUA, hundred_keys, hundred_args)
    assert len(reply) == 100 and all(r[0] == b"r" and len(r) == 2 for r in reply), reply[:2]
    reply = await evalsha(client, RESUME_LUA, missed_keys, missed_args)
    assert all(r[0] == b"r" and len(r[2]) == 5 for r in reply)
    end = time.perf_counter() + budget
    while time.perf_counter() < end:
        for name, (k, a) in (("one", (one_keys, one_args)), ("hundred", (hundred_keys, hundred_args)),
                             ("hundred_missed5", (missed_keys, missed_args))):
            t0 = time.perf_counter()
            await evalsha(client, RESUME_LUA, k, a)
            times[name].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        async with client.pipeline(transaction=False) as pipe:
            for channel in channels:
                ka, aa = resume_call([channel], [str(newest[channel])])
                pipe.evalsha(sha(RESUME_LUA), keys=ka, args=aa)
        times["pipelined_100"].append(time.perf_counter() - t0)
    med = {name: statistics.median(v) for name, v in times.items()}
    return {
        "iterations": len(times["one"]),
        "median_ms": {name: ms(v) for name, v in med.items()},
        "p99_ms": {name: ms(pct(v, 0.99)) for name, v in times.items()},
        "ratio_100_vs_1": round(med["hundred"] / med["one"], 2),
        "ratio_100_missed5_vs_1": round(med["hundred_missed5"] / med["one"], 2),
        "ratio_pipelined_100_vs_1": round(med["pipelined_100"] / med["one"], 2),
    }


PUBLISHER = r"""
import sys, time, socket
port, shards, total, batch, size = map(int, sys.argv[1:6])
# Raw RESP over a socket: EVAL a loop of PUBLISHes server-side, batch at a time.
lua = ("for i = 1, tonumber(ARGV[1]) do "
       "local c = 'room:' .. ((tonumber(ARGV[3]) + i) % 10000) "
       "redis.call('PUBLISH', 'tr:n:' .. ((tonumber(ARGV[3]) + i) % tonumber(ARGV[2])), "
       "'e\\n' .. c .. '\\n' .. (tonumber(ARGV[3]) + i) .. '\\n' .. ARGV[4]) end return 1")
payload = '{"text":"' + 'x' * size + '"}'
def cmd(*parts):
    out = [b'*%d\r\n' % len(parts)]
    for p in parts:
        p = p if isinstance(p, bytes) else str(p).encode()
        out.append(b'$%d\r\n%s\r\n' % (len(p), p))
    return b''.join(out)
s = socket.create_connection(('127.0.0.1', port))
sent = 0
while sent < total:
    s.sendall(cmd('EVAL', lua, 0, batch, shards, sent, payload))
    s.recv(64)
    sent += batch
print(sent)
"""


async def measure_pubsub(url: str, port: int, shards: int, total: int, seconds: float) -> dict[str, Any]:
    client = coredis.Redis.from_url(url, retry_policy=NoRetryPolicy())
    received = 0
    by_channel: dict[bytes, int] = {}
    first_t = last_t = 0.0
    async with client:
        async with client.pubsub(channels=[f"{PREFIX}:n:{k}" for k in range(shards)],
                                 retry_policy=NoRetryPolicy(), ignore_subscribe_messages=True) as ps:
            pub = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(port), str(shards),
                                    str(total), "200", "80"], stdout=subprocess.PIPE)
            try:
                with trio.move_on_after(seconds):
                    async for message in ps:
                        if message["type"] != "message":
                            continue
                        # The node's work per notification: split, look the channel up, check the id.
                        kind, channel, ident, data = message["data"].split(b"\n", 3)
                        by_channel[channel] = int(ident)
                        if received == 0:
                            first_t = time.perf_counter()
                        received += 1
                        last_t = time.perf_counter()
                        if received >= total:
                            break
            finally:
                pub.kill()
                pub.wait()
    rate = (received - 1) / (last_t - first_t) if received > 1 else 0.0
    return {"shards": shards, "received": received, "msgs_per_s": round(rate)}


class _RespPushReader:
    """A minimal RESP2 reader for a SUBSCRIBEd connection: yields (channel, data) in bulk per recv."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        self.buf += chunk
        out: list[tuple[bytes, bytes]] = []
        buf = self.buf
        pos = 0
        n = len(buf)
        while True:
            # *3\r\n then three bulk strings
            if pos >= n or buf[pos] != 42:  # '*'
                break
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            count = int(buf[pos + 1:end])
            p = end + 2
            parts: list[bytes] = []
            ok = True
            for _ in range(count):
                if p >= n:
                    ok = False
                    break
                if buf[p] == 58:  # ':' integer (subscribe replies)
                    e = buf.find(b"\r\n", p)
                    if e < 0:
                        ok = False
                        break
                    parts.append(bytes(buf[p + 1:e]))
                    p = e + 2
                    continue
                e = buf.find(b"\r\n", p)
                if e < 0:
                    ok = False
                    break
                length = int(buf[p + 1:e])
                if e + 2 + length + 2 > n:
                    ok = False
                    break
                parts.append(bytes(buf[e + 2:e + 2 + length]))
                p = e + 2 + length + 2
            if not ok:
                break
            if parts and parts[0] == b"message":
                out.append((parts[1], parts[2]))
            pos = p
        del buf[:pos]
        return out


async def measure_raw_pubsub(port: int, shards: int, total: int, seconds: float) -> dict[str, Any]:
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    names = [f"{PREFIX}:n:{k}".encode() for k in range(shards)]
    cmd = [b"*%d\r\n" % (len(names) + 1), b"$9\r\nSUBSCRIBE\r\n"]
    for name in names:
        cmd.append(b"$%d\r\n%s\r\n" % (len(name), name))
    await sock.send_all(b"".join(cmd))
    reader = _RespPushReader()
    received = 0
    by_channel: dict[bytes, int] = {}
    first_t = last_t = 0.0
    pub = None
    async with sock:
        # wait for the subscribe confirmations
        confirmed = 0
        while confirmed < shards:
            chunk = await sock.receive_some(65536)
            confirmed += chunk.count(b"subscribe")
            reader.feed(chunk)
        pub = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(port), str(shards),
                                str(total), "200", "80"], stdout=subprocess.PIPE)
        try:
            with trio.move_on_after(seconds):
                while received < total:
                    chunk = await sock.receive_some(262144)
                    if not chunk:
                        break
                    for _channel, data in reader.feed(chunk):
                        kind, channel, ident, payload = data.split(b"\n", 3)
                        by_channel[channel] = int(ident)
                        if received == 0:
                            first_t = time.perf_counter()
                        received += 1
                    last_t = time.perf_counter()
        finally:
            pub.kill()
            pub.wait()
    rate = (received - 1) / (last_t - first_t) if received > 1 else 0.0
    return {"shards": shards, "received": received, "msgs_per_s": round(rate)}


async def measure_xread(client: Any, total: int, seconds: float) -> dict[str, Any]:
    stream = f"{PREFIX}:notify"
    await client.delete([stream])
    payload = '{"text":"' + "x" * 80 + '"}'
    lua = ("for i = 1, tonumber(ARGV[1]) do redis.call('XADD', KEYS[1], '*', 'c', 'room:' .. (i % 10000), "
           "'i', i, 'd', ARGV[2]) end return 1")
    for _ in range(total // 1000):
        await client.eval(lua, keys=[stream], args=[1000, payload])
    got = 0
    last = "0-0"
    t0 = time.perf_counter()
    with trio.move_on_after(seconds):
        while got < total:
            reply = await client.xread({stream: last}, count=1000)
            if not reply:
                break
            entries = next(iter(reply.values()))
            for entry in entries:
                fields = entry.field_values
                _ = (fields[b"c"], int(fields[b"i"]), fields[b"d"])
            got += len(entries)
            last = entries[-1].identifier
    elapsed = time.perf_counter() - t0
    await client.delete([stream])
    return {"received": got, "msgs_per_s": round(got / elapsed)}


async def measure_publish(client: Any, budget: float) -> dict[str, Any]:
    channel = "room:pub"
    payload = json.dumps({"text": "y" * 80})
    clock = str(int(time.time() * 1e6))

    def call(msg_id: str, ch: str = channel) -> tuple[list[str], list[str]]:
        return ([key(ch, "meta"), key(ch, "log"), dedupe_key(ch, "anon", "client-1", msg_id)],
                [clock, "10000", payload, "600", notify_channel(ch, 16), ch])

    # sequential
    lat: list[float] = []
    n = 0
    end = time.perf_counter() + budget
    while time.perf_counter() < end:
        k, a = call(f"s{n}")
        t0 = time.perf_counter()
        reply = await evalsha(client, PUBLISH_LUA, k, a)
        lat.append(time.perf_counter() - t0)
        n += 1
    seq_rate = n / budget
    assert reply[1] == b"0"
    # duplicates
    dup: list[float] = []
    for i in range(500):
        k, a = call(f"s{i}")
        t0 = time.perf_counter()
        reply = await evalsha(client, PUBLISH_LUA, k, a)
        dup.append(time.perf_counter() - t0)
        assert reply[1] == b"1"
    # 16 concurrent callers (different clients, different channels)
    done = 0

    async def worker(w: int, stop: float) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop:
            k, a = call(f"c{w}-{i}", f"room:c{w}")
            await evalsha(client, PUBLISH_LUA, k, a)
            i += 1
            done += 1

    stop = time.perf_counter() + budget
    async with trio.open_nursery() as nursery:
        for w in range(16):
            nursery.start_soon(worker, w, stop)
    conc_rate = done / budget
    # batch script: B publishes per EVALSHA (one connection's queue, in order)
    batch_rates: dict[str, int] = {}
    for size in (16, 64):
        batches = 0
        end = time.perf_counter() + budget
        while time.perf_counter() < end:
            keys: list[str] = []
            args = [clock, "10000", "600"]
            for j in range(size):
                keys += [key(channel, "meta"), key(channel, "log"),
                         dedupe_key(channel, "anon", "client-2", f"b{size}-{batches}-{j}")]
                args += [payload, notify_channel(channel, 16), channel]
            reply = await evalsha(client, PUBLISH_BATCH_LUA, keys, args)
            batches += 1
        assert all(r[1] == b"0" for r in reply)
        batch_rates[str(size)] = round(batches * size / budget)
    batch_rate = batch_rates["16"]
    # memory per dedupe record
    info0 = await client.info("memory")
    before = int(info0["used_memory"])
    records = 20000
    async with client.pipeline(transaction=False) as pipe:
        for i in range(records):
            pipe.set(dedupe_key(channel, "anon", "client-3", f"m{i}"), "1796526557647301", ex=600)
    info1 = await client.info("memory")
    per_record = (int(info1["used_memory"]) - before) / records
    return {
        "sequential": {"count": n, "per_s": round(seq_rate), "median_ms": ms(statistics.median(lat)),
                       "p99_ms": ms(pct(lat, 0.99))},
        "duplicate_median_ms": ms(statistics.median(dup)),
        "concurrent16_per_s": round(conc_rate),
        "batch16_per_s": round(batch_rate),
        "batch_per_s": batch_rates,
        "dedupe_record_bytes": round(per_record),
    }


async def measure_join(client: Any, budget_each: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for members in (10, 100, 1000):
        channel = f"lobby:{members}"
        names = ["meta", "pm", "pk", "pc", "ph"]
        keys = [key(channel, n) for n in names]
        info = json.dumps({"user": "ada"})
        for i in range(members):
            await evalsha(client, JOIN_LUA, keys,
                          [f"anon\n{i}", f"c{i}", info, f"node-a\nconn{i}", notify_channel(channel, 16), channel, "x"])
        lat: list[float] = []
        i = members
        end = time.perf_counter() + budget_each
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            reply = await evalsha(client, JOIN_LUA, keys,
                                  [f"anon\n{i}", f"c{i}", info, f"node-b\nconn{i}", notify_channel(channel, 16), channel, "x"])
            lat.append(time.perf_counter() - t0)
            assert reply[1] == b"1"
            i += 1
        out[str(members)] = {"joins": len(lat), "median_ms": ms(statistics.median(lat))}
    return out


async def server_usec(client: Any, keys: list[str], args: list[str], src: str, n: int = 200) -> float:
    """Redis's own CPU time per call of a script (INFO commandstats), insensitive to client load."""
    await client.config_resetstat()
    for _ in range(n):
        await evalsha(client, src, keys, args)
    stats = await client.info("commandstats")
    entry = stats.get("cmdstat_evalsha")
    return round(float(entry["usec_per_call"]), 1) if entry else -1.0


async def measure_server_costs(client: Any) -> dict[str, Any]:
    channels = [f"room:{i}" for i in range(100)]
    newest = {c: int((await client.hget(key(c, "meta"), "seq")).decode()) for c in channels}
    one = resume_call(channels[:1], [str(newest[channels[0]])])
    hundred = resume_call(channels, [str(newest[c]) for c in channels])
    missed = resume_call(channels, [str(newest[c] - 5) for c in channels])
    out = {
        "resume_1_usec": await server_usec(client, *one, RESUME_LUA),
        "resume_100_usec": await server_usec(client, *hundred, RESUME_LUA),
        "resume_100_missed5_usec": await server_usec(client, *missed, RESUME_LUA, n=50),
    }
    payload = json.dumps({"text": "y" * 80})
    channel = "room:cost"
    clock = str(int(time.time() * 1e6))
    # publish: each call a new msgId (so no dedupe hit); loop by hand for fresh keys
    await client.config_resetstat()
    for i in range(300):
        await evalsha(client, PUBLISH_LUA,
                      [key(channel, "meta"), key(channel, "log"), dedupe_key(channel, "anon", "cost", f"m{i}")],
                      [clock, "10000", payload, "600", notify_channel(channel, 16), channel])
    stats = await client.info("commandstats")
    out["publish_usec"] = round(float(stats["cmdstat_evalsha"]["usec_per_call"]), 1)
    for members in (10, 100, 1000, 10000):
        ch = f"costroom:{members}"
        keys = [key(ch, n) for n in ("meta", "pm", "pk", "pc", "ph")]
        async with client.pipeline(transaction=False) as pipe:
            for i in range(members):
                pipe.evalsha(sha(JOIN_LUA), keys=keys, args=[f"anon\nfill{i}", f"fill{i}", '{"user":"x"}',
                                                              f"node-a\nconn{i}", notify_channel(ch, 16), ch, "x"])
        await client.config_resetstat()
        for i in range(300):
            await evalsha(client, JOIN_LUA, keys, [f"anon\ncost{i}", f"cost{i}", '{"user":"x"}',
                                                  f"node-c\nconn{i}", notify_channel(ch, 16), ch, "x"])
        stats = await client.info("commandstats")
        out[f"join_{members}_members_usec"] = round(float(stats["cmdstat_evalsha"]["usec_per_call"]), 1)
    return out


async def check_semantics(client: Any) -> dict[str, Any]:
    """The resume and publish scripts' answers in the cases the design names (asserted)."""
    ch = "sem:1"
    k, a = resume_call([ch], [""])
    (fresh,) = await evalsha(client, RESUME_LUA, k, a)
    assert fresh[0] == b"r" and len(fresh) == 2, fresh
    start = int(fresh[1])
    first = int(await client.hget(key(ch, "meta"), "first"))
    assert start == first - 1, (start, first)
    clock = str(int(time.time() * 1e6))

    async def publish(msg_id: str) -> tuple[int, bool]:
        reply = await evalsha(client, PUBLISH_LUA,
                              [key(ch, "meta"), key(ch, "log"), dedupe_key(ch, "p", "c", msg_id)],
                              [clock, "10000", '{"n":1}', "600", notify_channel(ch, 16), ch])
        return int(reply[0]), reply[1] == b"1"

    ids = [await publish(f"m{i}") for i in range(5)]
    assert [i for i, _ in ids] == list(range(start + 1, start + 6)), ids
    assert await publish("m2") == (start + 3, True)  # duplicate: the original id
    (replay,) = await evalsha(client, RESUME_LUA, *resume_call([ch], [str(start)]))
    assert replay[0] == b"r" and len(replay[2]) == 5  # from the subscribed id: everything
    k, a = resume_call([ch], [""])
    a[-1] = "2"  # fresh with history 2
    (hist,) = await evalsha(client, RESUME_LUA, k, a)
    assert hist[0] == b"r" and [e[0] for e in hist[2]] == [f"{start + 4}-0".encode(), f"{start + 5}-0".encode()]
    (old,) = await evalsha(client, RESUME_LUA, *resume_call([ch], [str(start - 1)]))
    assert old[0] == b"u", old  # below first - 1: an earlier incarnation
    await client.xtrim(key(ch, "log"), threshold=2, trim_strategy=coredis.PureToken.MAXLEN)
    (trimmed,) = await evalsha(client, RESUME_LUA, *resume_call([ch], [str(start)]))
    assert trimmed[0] == b"u", trimmed  # gap no longer held: not a partial replay
    k, a = resume_call([ch], [""])
    a[-1] = "5"
    (hist2,) = await evalsha(client, RESUME_LUA, k, a)
    assert hist2[0] == b"r" and len(hist2[2]) == 2, hist2  # fresh: what is held, never lost
    await client.hset(key(ch, "snap"), {"id": str(start + 5), "d": '{"state":1}'})
    (snap,) = await evalsha(client, RESUME_LUA, *resume_call([ch], [str(start)]))
    assert snap[0] == b"s" and snap[2] == str(start + 5).encode(), snap
    return {"ok": True}


async def main(binary: str, quick: bool, semantics_only: bool = False) -> dict[str, Any]:
    proc, port, workdir = start_server(binary)
    url = f"redis://127.0.0.1:{port}/0"
    result: dict[str, Any] = {"redis": binary}
    try:
        client = coredis.Redis.from_url(url, retry_policy=NoRetryPolicy())
        async with client:
            result["redis_version"] = (await client.info("server"))["redis_version"]
            for src in (RESUME_LUA, PUBLISH_LUA, PUBLISH_BATCH_LUA, JOIN_LUA):
                loaded = await client.script_load(src)
                loaded = loaded.decode() if isinstance(loaded, bytes) else loaded
                assert loaded == sha(src), (loaded, sha(src))
            result["semantics"] = await check_semantics(client)
            if semantics_only:
                return result
            budget = 1.0 if quick else 2.0
            result["a_resume"] = await measure_resume(client, budget * 1.5)
            result["server_cpu"] = await measure_server_costs(client)
            result["c_publish"] = await measure_publish(client, budget)
            result["d_presence_join"] = await measure_join(client, budget / 2)
            result["b_xread_notify_stream"] = await measure_xread(client, 100_000, 5.0)
        result["b_pubsub"] = []
        result["b_raw_pubsub"] = []
        for _round in range(2):
            for shards in (1, 16, 256):
                result["b_pubsub"].append(await measure_pubsub(url, port, shards, 100_000, 5.0))
                result["b_raw_pubsub"].append(await measure_raw_pubsub(port, shards, 300_000, 5.0))
    finally:
        proc.terminate()
        proc.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--semantics-only", action="store_true")
    ns = parser.parse_args()
    print(json.dumps(trio.run(main, ns.redis_server, ns.quick, ns.semantics_only), indent=2))
