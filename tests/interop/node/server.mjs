// A protocol server written from PROTOCOL.md alone (sections 1, 2 and 4), for
// running trio_reconnect's client against it. Usage:
//   node server.mjs [hard-timeout-ms]
// It listens on 127.0.0.1, a free port, and prints one JSON line per thing it
// saw ({"ev": "listening", "port": N} first). It takes commands on stdin, one
// JSON object a line:
//   {"cmd": "publish", "channel": null | NAME, "data": ...}  append and fan out
//   {"cmd": "drop", "code": 1012, "retryAfter": 1500}       close every client
//       with that code and hint ({"cmd": "drop"} alone: reset, no close frame)
//   {"cmd": "refuse", "count": 1, "status": 503, "retryAfter": "1", "chunked": false}
//       refuse the next handshakes; "retryAfter": {"inMs": N} sends an HTTP-date
//   {"cmd": "holdAcks", "count": N}   apply the next N publishes, answer none
//   {"cmd": "reverseAcks", "count": N}  answer the next N publishes together,
//       in the reverse order
//   {"cmd": "join" | "leave", "channel": NAME, "clientId": ID, "info": {...}}
//       a member that has no connection here (another node's)
//   {"cmd": "failHandshakes", "count": N, "code": 1013, "retryAfter": 0}
//       close the next N connections after their resume frame, before ready
//   {"cmd": "unavailable", "channel": NAME, "count": N}  refuse its next N
//       answers with code unavailable (the store is down)
//   {"cmd": "revoke", "channel": NAME}  unsubscribe everyone, code forbidden
//   {"cmd": "v1"}   from now on, speak version 1 only
//   {"cmd": "exit"}
// Channels whose name starts with "pres" carry presence; the default stream
// and the channels whose name starts with "snap" have a snapshot ({"count":
// events so far}); another channel that cannot replay answers lost.
import { createServer, hardTimeout, report } from './ws.mjs';

const [limitMs = '60000'] = process.argv.slice(2);
hardTimeout(Number(limitMs), 'server');

const MAX_REPLAY = 1000;
const MAX_SUBSCRIPTIONS = 100;
const GRACE_MS = 2000;
const INFO = { via: 'node' };

// Ids start from the clock, so that no restart reuses one (section 2).
let nextId = BigInt(Date.now()) * 1000n;
const newId = () => String(++nextId);

class Log {
  constructor() {
    this.start = newId(); // the id just before the first event
    this.events = [];
  }
  newest() {
    return this.events.length ? this.events.at(-1).id : this.start;
  }
  append(data) {
    const event = { id: newId(), data };
    this.events.push(event);
    return event;
  }
  // The events after id, or null when they cannot be replayed.
  after(id) {
    const at = id === this.start ? -1 : this.events.findIndex((e) => e.id === id);
    if (at < 0 && id !== this.start) return null;
    const rest = this.events.slice(at + 1);
    return rest.length > MAX_REPLAY ? null : rest;
  }
}

const stream = new Log();
const channels = new Map(); // name -> {log, members: Map clientId -> {info, conns: Set, timer}}
const conns = new Set();
const applied = new Map(); // clientId \0 msgId -> ack
let refusal = null;
let holdAcks = 0;
let reverse = null; // {count, held: [[conn, ack]]}
let connections = 0;
let failing = null; // {count, code, retryAfter}: close the next handshakes before ready
let v1Only = false;
const unavailable = new Map(); // channel -> how many more answers are refused 'unavailable' // a version 1 server: no channels, ready without the key

function channel(name) {
  if (!channels.has(name)) channels.set(name, { log: new Log(), members: new Map() });
  return channels.get(name);
}

function badName(name) {
  if (typeof name !== 'string') return 'missing channel';
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes < 1 || bytes > 256) return `a channel name is 1 to 256 bytes, got ${bytes}`;
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) return 'a channel name holds no control characters';
  return null;
}

const send = (conn, frame) => conn.ws.send(JSON.stringify(frame));
const subscribers = (name) => [...conns].filter((c) => c.subs.has(name));

function join(name, clientId, info, conn) {
  const members = channel(name).members;
  const member = members.get(clientId);
  if (member) {
    clearTimeout(member.timer);
    member.timer = null;
    if (conn) member.conns.add(conn);
    return;
  }
  members.set(clientId, { info, conns: new Set(conn ? [conn] : []), timer: null });
  for (const other of subscribers(name)) {
    if (other !== conn) send(other, { type: 'join', channel: name, clientId, info });
  }
}

function leave(name, clientId, conn, graceful) {
  const members = channel(name).members;
  const member = members.get(clientId);
  if (!member) return;
  if (conn) member.conns.delete(conn);
  if (member.conns.size) return;
  const go = () => {
    members.delete(clientId);
    for (const other of subscribers(name)) send(other, { type: 'leave', channel: name, clientId });
    report({ ev: 'leave', channel: name, clientId, t: Date.now() });
  };
  if (graceful) go();
  else member.timer = setTimeout(go, GRACE_MS);
}

// One channel's answer (4.2, 4.3): refused, or replay/lost, members, subscribed.
function answerChannel(conn, name, position, history) {
  const bad = badName(name);
  if (bad) return send(conn, { type: 'refused', channel: name ?? null, code: 'invalid', reason: bad });
  if (!conn.subs.has(name) && conn.subs.size >= MAX_SUBSCRIPTIONS) {
    return send(conn, { type: 'refused', channel: name, code: 'limit', reason: `at most ${MAX_SUBSCRIPTIONS}` });
  }
  if ((unavailable.get(name) ?? 0) > 0) {
    unavailable.set(name, unavailable.get(name) - 1);
    report({ ev: 'unavailable', conn: conn.n, channel: name, t: Date.now() });
    return send(conn, { type: 'refused', channel: name, code: 'unavailable', reason: 'the store is down' });
  }
  const { log } = channel(name);
  let lost = false;
  let replay = [];
  if (position === null || position === undefined) {
    const n = Math.min(Number.isInteger(history) && history > 0 ? history : 0, MAX_REPLAY);
    replay = n ? log.events.slice(-n) : [];
  } else {
    replay = log.after(position);
    lost = replay === null;
    replay = replay ?? [];
  }
  if (lost && name.startsWith('snap')) {
    // A channel with a snapshot: the state as of its newest event, instead of a gap.
    send(conn, { type: 'snapshot', channel: name, id: log.newest(), data: { count: log.events.length } });
    lost = false;
  }
  for (const e of replay) send(conn, { type: 'event', channel: name, id: e.id, data: e.data });
  conn.subs.add(name);
  if (name.startsWith('pres')) {
    join(name, conn.clientId, INFO, conn);
    const members = Object.fromEntries([...channel(name).members].map(([id, m]) => [id, m.info]));
    send(conn, { type: 'presence', channel: name, members });
  }
  send(conn, { type: 'subscribed', channel: name, id: log.newest(), lost });
}

function handshake(conn, frame) {
  if (frame?.type !== 'resume') {
    conn.ws.close(1002, 'the first frame must be resume');
    return;
  }
  if (failing && failing.count > 0) {
    // Accepted, then closed before ready: a failed attempt (section 1a).
    failing.count -= 1;
    conn.serverClosed = true;
    conn.ws.close(failing.code, JSON.stringify({ reason: 'not now', retryAfter: failing.retryAfter }));
    return;
  }
  conn.clientId = typeof frame.clientId === 'string' ? frame.clientId : `anon-${conn.n}`;
  const v2 = !v1Only && (frame.clientId !== undefined || frame.channels !== undefined);
  if (v2) for (const [name, position] of Object.entries(frame.channels ?? {})) answerChannel(conn, name, position);
  let lost = false;
  const last = frame.lastEventId ?? null;
  const replay = last === null ? null : stream.after(last);
  if (replay !== null) {
    for (const e of replay) send(conn, { type: 'event', id: e.id, data: e.data });
  } else if (stream.events.length) {
    send(conn, { type: 'snapshot', id: stream.newest(), data: { count: stream.events.length } });
  } else if (last !== null && last !== stream.start) lost = true;
  const ready = { type: 'ready', id: stream.events.length ? stream.newest() : null, lost };
  if (v2) ready.channels = [...conn.subs];
  send(conn, ready);
  conn.ready = true;
}

function answer(conn, ack) {
  if (holdAcks > 0) {
    holdAcks -= 1;
    report({ ev: 'held', conn: conn.n, ...ack });
  } else if (reverse) {
    reverse.held.push([conn, ack]);
    if (reverse.held.length === reverse.count) {
      for (const [c, a] of reverse.held.reverse()) send(c, a);
      reverse = null;
    }
  } else send(conn, ack);
}

function publish(conn, frame) {
  const msgId = typeof frame.msgId === 'string' ? frame.msgId : null;
  const bad = badName(frame.channel) ?? (msgId === null ? 'msgId must be a string' : null) ?? (!('data' in frame) ? 'missing data' : null);
  if (bad) return send(conn, { type: 'nack', msgId, channel: frame.channel ?? null, code: 'invalid', reason: bad });
  const key = `${conn.clientId}\u0000${msgId}`;
  let ack = applied.get(key);
  const repeat = ack !== undefined;
  if (!repeat) {
    const event = fanOut(frame.channel, frame.data);
    ack = { type: 'ack', msgId, channel: frame.channel, id: event.id };
    applied.set(key, ack);
  }
  report({ ev: 'publish', conn: conn.n, msgId, id: ack.id, repeat, t: Date.now() });
  answer(conn, ack);
}

function fanOut(name, data) {
  if (name === null || name === undefined) {
    const event = stream.append(data);
    for (const c of conns) if (c.ready) send(c, { type: 'event', id: event.id, data });
    return event;
  }
  const event = channel(name).log.append(data);
  for (const c of subscribers(name)) send(c, { type: 'event', channel: name, id: event.id, data });
  return event;
}

function afterReady(conn, frame) {
  if (v1Only) return report({ ev: 'message', conn: conn.n, frame });
  if (frame?.type === 'subscribe') return answerChannel(conn, frame.channel, frame.lastEventId ?? null, frame.history);
  if (frame?.type === 'unsubscribe') {
    if (conn.subs.delete(frame.channel)) leave(frame.channel, conn.clientId, conn, true);
    return send(conn, { type: 'unsubscribed', channel: frame.channel });
  }
  if (frame?.type === 'publish') return publish(conn, frame);
  report({ ev: 'message', conn: conn.n, frame });
}

function onSocket(ws) {
  const conn = { ws, n: ++connections, ready: false, subs: new Set(), clientId: null };
  conns.add(conn);
  report({ ev: 'open', conn: conn.n, t: Date.now() });
  ws.on('message', (text) => {
    let frame = null;
    try {
      frame = JSON.parse(text);
    } catch {
      frame = { unparsed: String(text) };
    }
    report({ ev: 'recv', conn: conn.n, frame, t: Date.now() });
    if (conn.ready) afterReady(conn, frame);
    else handshake(conn, frame);
  });
  ws.on('close', ({ code, reason, clean }) => {
    conns.delete(conn);
    const graceful = clean && code === 1000 && !conn.serverClosed;
    for (const name of conn.subs) leave(name, conn.clientId, conn, graceful);
    report({ ev: 'close', conn: conn.n, code, reason, clean, t: Date.now() });
  });
}

const commands = {
  publish: (c) => report({ ev: 'published', channel: c.channel ?? null, id: fanOut(c.channel, c.data).id }),
  drop(c) {
    for (const conn of conns) {
      conn.serverClosed = true;
      if (c.code === undefined) conn.ws.abort();
      else conn.ws.close(c.code, JSON.stringify({ reason: 'restarting', retryAfter: c.retryAfter }));
    }
    report({ ev: 'dropped', t: Date.now() });
  },
  refuse: (c) => {
    refusal = { ...c };
    report({ ev: 'refusing' });
  },
  holdAcks: (c) => {
    holdAcks = c.count;
    report({ ev: 'holding' });
  },
  reverseAcks: (c) => {
    reverse = { count: c.count, held: [] };
    report({ ev: 'reversing' });
  },
  join: (c) => {
    join(c.channel, c.clientId, c.info ?? {}, null);
    report({ ev: 'joined' });
  },
  leave: (c) => {
    leave(c.channel, c.clientId, null, true);
    report({ ev: 'left' });
  },
  failHandshakes: (c) => {
    failing = { ...c };
    report({ ev: 'failing' });
  },
  unavailable: (c) => {
    unavailable.set(c.channel, c.count);
    report({ ev: 'storeDown' });
  },
  revoke: (c) => {
    for (const conn of subscribers(c.channel)) {
      conn.subs.delete(c.channel);
      send(conn, { type: 'unsubscribed', channel: c.channel, code: 'forbidden', reason: 'revoked' });
    }
    report({ ev: 'revoked' });
  },
  v1: () => {
    v1Only = true;
    report({ ev: 'v1' });
  },
  exit: () => process.exit(0),
};

function decide() {
  if (!refusal || refusal.count <= 0) return null;
  refusal.count -= 1;
  report({ ev: 'refused', status: refusal.status, t: Date.now() });
  // retryAfter: delta-seconds as given, or {"inMs": N}: an HTTP-date N ms from now.
  const { retryAfter } = refusal;
  const header = retryAfter?.inMs === undefined ? retryAfter : new Date(Date.now() + retryAfter.inMs).toUTCString();
  report({ ev: 'retryAfter', value: header });
  return { status: refusal.status, headers: { 'Retry-After': header }, body: 'busy\n', chunked: refusal.chunked };
}

const server = createServer({ decide, onSocket });
server.listen(0, '127.0.0.1', () => report({ ev: 'listening', port: server.address().port }));

let pending = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  pending += chunk;
  let at;
  while ((at = pending.indexOf('\n')) >= 0) {
    const line = pending.slice(0, at).trim();
    pending = pending.slice(at + 1);
    if (!line) continue;
    const c = JSON.parse(line);
    const run = commands[c.cmd];
    if (run) run(c);
    else report({ error: `unknown command ${line}` });
  }
});
process.stdin.on('end', () => process.exit(0));
