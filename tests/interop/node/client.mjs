// A protocol client written from PROTOCOL.md alone (sections 1, 2 and 4), run
// against `python -m trio_reconnect serve`. Usage:
//   node client.mjs SCENARIO URL [hard-timeout-ms]
// It prints one JSON line per thing it saw; the pytest wrappers judge them.
import crypto from 'node:crypto';
import { connect, hardTimeout, report } from './ws.mjs';

const [scenario, url, limitMs = '30000'] = process.argv.slice(2);
hardTimeout(Number(limitMs), `client ${scenario}`);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const hex = () => crypto.randomBytes(16).toString('hex');
const t0 = Date.now();
const now = () => Date.now() - t0;

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return { unparsed: text };
  }
}

// One connection: every frame received is queued with the time it came.
class Conn {
  static async open(target) {
    const result = await connect(target);
    return result.refused ? { refused: result.refused } : new Conn(result.ws);
  }

  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.wake = null;
    this.closed = null;
    ws.on('message', (m) => this._push(typeof m === 'string' ? parse(m) : { binary: m.length }));
    ws.on('closeFrame', (c) => {
      this.closed = { ...c, held: true, t: now() };
      this._push(null);
    });
    ws.on('close', (c) => {
      this.closed = { ...c, t: now() };
      this._push(null);
    });
  }

  _push(frame) {
    if (frame) this.queue.push({ ...frame, t: now() });
    if (this.wake) this.wake();
  }

  send(frame) {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  // Frames up to and including the first one matching pred; stops early at a
  // close or after ms. Returns {frames, match} (match null if none came).
  async until(pred, ms = 3000) {
    const deadline = Date.now() + ms;
    const frames = [];
    for (;;) {
      while (this.queue.length) {
        const frame = this.queue.shift();
        frames.push(frame);
        if (pred(frame)) return { frames, match: frame };
      }
      const left = deadline - Date.now();
      if (this.closed || left <= 0) return { frames, match: null };
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  // Everything that comes within ms.
  async collect(ms) {
    return (await this.until(() => false, ms)).frames;
  }
}

const isTick = (f) => f.type === 'event' && f.channel === undefined;
const strip = (frames) => frames.filter((f) => !isTick(f));

// The client's state across connections: section 2 and 4.2.
class Client {
  constructor(target, { clientId = hex(), v1 = false } = {}) {
    this.url = target;
    this.clientId = clientId;
    this.v1 = v1;
    this.lastEventId = null;
    this.channels = new Map();
    this.conn = null;
  }

  resumeFrame() {
    const frame = { type: 'resume', lastEventId: this.lastEventId };
    if (!this.v1) {
      frame.clientId = this.clientId;
      frame.channels = Object.fromEntries(this.channels);
    }
    return frame;
  }

  apply(f) {
    if (f.type === 'event' || f.type === 'snapshot') {
      if (f.channel === undefined) this.lastEventId = f.id;
      else if (this.channels.has(f.channel)) this.channels.set(f.channel, f.id);
    } else if (f.type === 'subscribed') this.channels.set(f.channel, f.id);
    else if (f.type === 'refused' || f.type === 'unsubscribed') this.channels.delete(f.channel);
    else if (f.type === 'ready' && f.id !== null) this.lastEventId = f.id;
  }

  async connect({ fragmented = false } = {}) {
    const conn = await Conn.open(this.url);
    if (conn.refused) return { refused: conn.refused };
    this.conn = conn;
    const sent = this.resumeFrame();
    if (fragmented) conn.ws.sendFragmented(JSON.stringify(sent));
    else conn.send(sent);
    const { frames, match } = await conn.until((f) => f.type === 'ready');
    frames.forEach((f) => this.apply(f));
    return { sent, frames, ready: match };
  }

  // Read until pred, applying every frame to the state.
  async until(pred, ms) {
    const got = await this.conn.until(pred, ms);
    got.frames.forEach((f) => this.apply(f));
    return got;
  }

  async subscribe(channel, extra = {}) {
    this.conn.send({ type: 'subscribe', channel, lastEventId: null, ...extra });
    return this.until((f) => ['subscribed', 'refused'].includes(f.type) && f.channel === channel);
  }

  async publish(channel, msgId, data) {
    this.conn.send({ type: 'publish', channel, msgId, data });
    return this.until((f) => ['ack', 'nack'].includes(f.type) && f.msgId === msgId);
  }

  close(code = 1000) {
    this.conn.ws.close(code, '');
  }
}

async function liveEvents(client, n, channel) {
  const events = [];
  await client.until((f) => {
    if (f.type === 'event' && f.channel === channel) events.push(f);
    return events.length >= n;
  }, 5000);
  return events;
}

const scenarios = {
  // Section 2: a fresh connect, then a resume that replays what was missed.
  async 'v1-resume'() {
    const observer = new Client(url, { v1: true });
    report({ observerFresh: await observer.connect() });
    const client = new Client(url, { v1: true });
    report({ fresh: await client.connect() });
    const seen = await liveEvents(client, 3, undefined);
    const from = client.lastEventId;
    client.close();
    await sleep(600);
    const resumed = await client.connect();
    const wanted = resumed.ready?.id;
    const { frames } = await observer.until((f) => f.type === 'event' && f.id === wanted, 5000);
    report({ seen, from, resumed, observer: frames.filter(isTick) });
    // An id no log ever issued: unknown, so a snapshot or lost. The resume
    // frame goes in three fragments, and a ping must come back as a pong.
    const stranger = new Client(url, { v1: true });
    stranger.lastEventId = 'no-such-id';
    report({ unknown: await stranger.connect({ fragmented: true }) });
    const pong = new Promise((resolve) => stranger.conn.ws.once('pong', (p) => resolve(p.toString())));
    stranger.conn.ws.ping(Buffer.from('are you there'));
    report({ pong: await Promise.race([pong, sleep(2000).then(() => null)]) });
  },

  // 4.1, 4.2: identity, subscriptions, and a resume with channels.
  async 'v2-resume'() {
    const room = `v2:${hex()}`;
    const empty = `v2e:${hex()}`;
    const client = new Client(url);
    report({ first: await client.connect() });
    report({ subscribeRoom: await client.subscribe(room) });
    report({ subscribeEmpty: await client.subscribe(empty) });
    const publisher = new Client(url);
    await publisher.connect();
    const acks = [];
    for (let i = 0; i < 3; i++) acks.push((await publisher.publish(room, String(i), { n: i })).match);
    const live = await liveEvents(client, 3, room);
    client.close();
    await sleep(200);
    for (let i = 3; i < 5; i++) acks.push((await publisher.publish(room, String(i), { n: i })).match);
    for (let i = 5; i < 7; i++) acks.push((await publisher.publish(empty, String(i), { n: i })).match);
    const resumed = await client.connect();
    report({ room, empty, acks, live, resumed: { ...resumed, frames: strip(resumed.frames) } });
  },

  // 4.3: subscribe after ready, history, re-subscribe, unsubscribe, refusals.
  async 'v2-subscribe'() {
    const room = `sub:${hex()}`;
    const publisher = new Client(url);
    await publisher.connect();
    const acks = [];
    for (let i = 0; i < 5; i++) acks.push((await publisher.publish(room, `m${i}`, i)).match);
    const client = new Client(url);
    await client.connect();
    report({ acks, history: strip((await client.subscribe(room, { history: 3 })).frames) });
    const again = await client.subscribe(room, { lastEventId: acks[1].id });
    report({ again: strip(again.frames) });
    client.conn.send({ type: 'unsubscribe', channel: room });
    report({ unsubscribe: strip((await client.until((f) => f.type === 'unsubscribed')).frames) });
    await publisher.publish(room, 'after', 'after');
    report({ afterUnsubscribe: strip(await client.conn.collect(400)) });
    const bad = ['', 'a\u0001b', 'x'.repeat(257), 'é'.repeat(129)];
    for (const name of bad) report({ badName: name.length, answer: strip((await client.subscribe(name)).frames) });
    client.conn.send({ type: 'subscribe', lastEventId: null });
    report({ missingChannel: strip(await client.conn.collect(400)) });
    report({ stillOpen: client.conn.closed === null });
    // Over the limit: subscribe to many channels at once, count the answers.
    const many = 3000;
    for (let i = 0; i < many; i++) client.conn.send({ type: 'subscribe', channel: `lim:${i}`, lastEventId: null });
    const answers = {};
    let n = 0;
    const { frames } = await client.conn.until((f) => {
      if (['subscribed', 'refused'].includes(f.type) && f.channel.startsWith('lim:')) {
        const key = f.type === 'refused' ? `refused:${f.code}` : 'subscribed';
        answers[key] = (answers[key] ?? 0) + 1;
        n += 1;
      }
      return n === many;
    }, 15000);
    const firstRefusal = frames.find((f) => f.type === 'refused');
    report({ limit: answers, firstRefusal, stillOpenAfterLimit: client.conn.closed === null });
  },

  // 4.3: a subscribe from a position while the channel is being published to:
  // every event after it, each once, in order (no gap, no duplicate at the
  // boundary between the replay and the live events).
  async 'v2-race'() {
    const room = `race:${hex()}`;
    const publisher = new Client(url);
    await publisher.connect();
    const start = (await publisher.publish(room, 'start', 'start')).match;
    const n = 300;
    for (let i = 0; i < n; i++) publisher.conn.send({ type: 'publish', channel: room, msgId: `p${i}`, data: i });
    const reader = new Client(url);
    await reader.connect();
    await sleep(5); // some publishes are applied before the subscribe, some after
    const { frames } = await reader.subscribe(room, { lastEventId: start.id });
    const acks = [];
    await publisher.until((f) => f.type === 'ack' && acks.push(f) === n, 15000);
    const last = acks.at(-1).id;
    const rest = await reader.until((f) => f.type === 'event' && f.channel === room && f.id === last, 15000);
    const events = [...frames, ...rest.frames].filter((f) => f.type === 'event' && f.channel === room);
    const replayed = frames.filter((f) => f.type === 'event').length;
    report({ start: start.id, last, replayed, ids: events.map((f) => f.id), data: events.map((f) => f.data) });
  },

  // 4.5: acknowledged publish, exactly once; nacks for bad frames.
  async 'v2-publish'() {
    const room = `pub:${hex()}`;
    const reader = new Client(url);
    await reader.connect();
    await reader.subscribe(room);
    const client = new Client(url);
    await client.connect();
    const first = (await client.publish(room, '1', { hello: 'wörld' })).match;
    const repeat = (await client.publish(room, '1', { hello: 'wörld' })).match;
    const second = (await client.publish(room, '2', 'two')).match;
    client.close();
    await sleep(100);
    await client.connect();
    const afterReconnect = (await client.publish(room, '1', { hello: 'wörld' })).match;
    const other = new Client(url);
    await other.connect();
    const otherClient = (await other.publish(room, '1', { hello: 'wörld' })).match;
    const read = (await reader.conn.collect(500)).filter((f) => f.channel === room);
    report({ first, repeat, second, afterReconnect, otherClient, read });
    const nack = async (frame) => {
      client.conn.send(frame);
      return strip(await client.conn.collect(300));
    };
    report({ badChannel: await nack({ type: 'publish', channel: '', msgId: 'b1', data: 1 }) });
    report({ noData: await nack({ type: 'publish', channel: room, msgId: 'b2' }) });
    report({ noMsgId: await nack({ type: 'publish', channel: room, data: 1 }) });
    report({ numericMsgId: await nack({ type: 'publish', channel: room, msgId: 7, data: 1 }) });
    report({ notJson: await nack('{"type": "publish", ') });
    report({ unknownType: await nack({ type: 'frobnicate' }) });
    report({ stillOpen: client.conn.closed === null });
  },

  // 4.4: presence, joins and leaves, no flapping within the grace.
  async presence() {
    const room = `pres:${hex()}`;
    const a = new Client(url);
    await a.connect();
    report({ aSubscribe: strip((await a.subscribe(room)).frames) });
    const b = new Client(url);
    await b.connect();
    report({ bSubscribe: strip((await b.subscribe(room)).frames) });
    report({ aSeesJoin: strip((await a.until((f) => f.type === 'join')).frames) });
    b.conn.ws.abort();
    await sleep(200);
    const bResumed = await b.connect();
    report({ bResumed: { ...bResumed, frames: strip(bResumed.frames) } });
    report({ aDuringHop: strip(await a.conn.collect(1800)) });
    b.conn.send({ type: 'unsubscribe', channel: room });
    const start = now();
    report({ aAfterUnsubscribe: strip((await a.until((f) => f.type === 'leave', 3000)).frames), start });
    const c = new Client(url);
    await c.connect();
    await c.subscribe(room);
    await a.until((f) => f.type === 'join');
    c.close(1000);
    const cStart = now();
    report({ aAfterCleanClose: strip((await a.until((f) => f.type === 'leave', 3000)).frames), start: cStart, c: c.clientId });
    const d = new Client(url);
    await d.connect();
    await d.subscribe(room);
    await a.until((f) => f.type === 'join');
    d.conn.ws.abort();
    const dStart = now();
    report({ aAfterDrop: strip((await a.until((f) => f.type === 'leave', 5000)).frames), start: dStart, d: d.clientId });
    report({ ids: { a: a.clientId, b: b.clientId } });
  },

  // 1a and 3.2: a SIGTERM drain closes with a hint and refuses new handshakes
  // while it waits for its clients (the second one does not answer the close).
  async drain() {
    const clients = [new Client(url), new Client(url)];
    for (const c of clients) await c.connect();
    clients[1].conn.ws.holdClose = true;
    report({ ready: true });
    const closes = [];
    for (const c of clients) {
      await c.conn.until(() => false, 15000);
      closes.push(c.conn.closed);
    }
    try {
      const again = await connect(url);
      if (again.ws) again.ws.abort();
      report({ duringDrain: again.refused ?? 'accepted' });
    } catch (e) {
      report({ duringDrain: { error: String(e.code ?? e) } });
    }
    report({ closes });
    clients[1].conn.ws.abort();
  },
};

const run = scenarios[scenario];
if (!run) {
  report({ error: `no scenario ${scenario}` });
  process.exit(2);
}
try {
  await run();
  report({ done: true });
  process.exit(0);
} catch (e) {
  report({ error: String(e.stack ?? e) });
  process.exit(1);
}
