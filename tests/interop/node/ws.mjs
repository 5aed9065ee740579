// A minimal RFC 6455 WebSocket for the interop tests: no npm packages, written
// from the RFC and /work/shared/design/PROTOCOL.md only. Text and binary
// messages, fragmentation (reassembled), ping/pong, close frames with code and
// reason, client-side masking. Not a general-purpose library.
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import http from 'node:http';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export function acceptKey(key) {
  return crypto.createHash('sha1').update(key + GUID).digest('base64');
}

function encodeFrame(opcode, payload, mask) {
  const len = payload.length;
  let header;
  if (len < 126) {
    header = Buffer.alloc(2);
    header[1] = len;
  } else if (len < 65536) {
    header = Buffer.alloc(4);
    header[1] = 126;
    header.writeUInt16BE(len, 2);
  } else {
    header = Buffer.alloc(10);
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(len), 2);
  }
  header[0] = 0x80 | opcode;
  if (!mask) return Buffer.concat([header, payload]);
  header[1] |= 0x80;
  const key = crypto.randomBytes(4);
  const masked = Buffer.alloc(len);
  for (let i = 0; i < len; i++) masked[i] = payload[i] ^ key[i & 3];
  return Buffer.concat([header, key, masked]);
}

// Events: 'message' (string | Buffer), 'pong' (Buffer),
// 'close' ({code, reason, clean}) exactly once.
export class WebSocket extends EventEmitter {
  constructor(socket, isClient, head) {
    super();
    this.socket = socket;
    this.isClient = isClient;
    this.buffer = head && head.length ? Buffer.from(head) : Buffer.alloc(0);
    this.fragments = null;
    this.fragmentOpcode = 0;
    this.closeSent = false;
    this.closeReceived = null;
    this.closed = false;
    this.holdClose = false;
    socket.setNoDelay(true);
    socket.on('data', (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this._parse();
    });
    socket.on('error', () => {});
    socket.on('close', () => this._finish());
    if (this.buffer.length) setImmediate(() => this._parse());
  }

  _finish() {
    if (this.closed) return;
    this.closed = true;
    const got = this.closeReceived;
    this.emit('close', got ? { ...got, clean: true } : { code: 1006, reason: '', clean: false });
  }

  _parse() {
    for (;;) {
      const b = this.buffer;
      if (b.length < 2) return;
      const fin = (b[0] & 0x80) !== 0;
      const opcode = b[0] & 0x0f;
      const masked = (b[1] & 0x80) !== 0;
      let len = b[1] & 0x7f;
      let offset = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        offset = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        offset = 10;
      }
      const keyAt = offset;
      if (masked) offset += 4;
      if (b.length < offset + len) return;
      let payload = Buffer.from(b.subarray(offset, offset + len));
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= b[keyAt + (i & 3)];
      this.buffer = b.subarray(offset + len);
      this._frame(fin, opcode, payload);
    }
  }

  _frame(fin, opcode, payload) {
    if (opcode === 0x9) return this._write(0xa, payload);
    if (opcode === 0xa) return this.emit('pong', payload);
    if (opcode === 0x8) return this._onClose(payload);
    if (opcode === 0x0) {
      if (!this.fragments) return this.abort();
      this.fragments.push(payload);
      if (!fin) return;
      payload = Buffer.concat(this.fragments);
      opcode = this.fragmentOpcode;
      this.fragments = null;
    } else if (!fin) {
      this.fragments = [payload];
      this.fragmentOpcode = opcode;
      return;
    }
    this.emit('message', opcode === 0x1 ? payload.toString('utf8') : payload);
  }

  _onClose(payload) {
    const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
    const reason = payload.length > 2 ? payload.subarray(2).toString('utf8') : '';
    this.closeReceived = { code, reason };
    // A peer that never answers a close (to keep a draining server waiting).
    if (this.holdClose) return this.emit('closeFrame', this.closeReceived);
    if (!this.closeSent) this._sendClose(code === 1005 ? null : code, '');
    // The server ends the TCP connection; a client waits for it (briefly).
    if (!this.isClient) this.socket.end();
    else setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  _sendClose(code, reason) {
    this.closeSent = true;
    let payload = Buffer.alloc(0);
    if (code !== null) {
      const text = Buffer.from(reason, 'utf8');
      payload = Buffer.alloc(2 + text.length);
      payload.writeUInt16BE(code, 0);
      text.copy(payload, 2);
    }
    this._write(0x8, payload);
  }

  _write(opcode, payload) {
    if (this.socket.writable) this.socket.write(encodeFrame(opcode, payload, this.isClient));
  }

  send(data) {
    if (this.closeSent || this.closed) return false;
    const text = typeof data === 'string';
    this._write(text ? 0x1 : 0x2, text ? Buffer.from(data, 'utf8') : data);
    return true;
  }

  // One text message in several frames (RFC 6455 5.4), for the peer to reassemble.
  sendFragmented(text, parts = 3) {
    const bytes = Buffer.from(text, 'utf8');
    const size = Math.ceil(bytes.length / parts);
    for (let at = 0, first = true; at < bytes.length; at += size, first = false) {
      const last = at + size >= bytes.length;
      const frame = encodeFrame(first ? 0x1 : 0x0, bytes.subarray(at, at + size), this.isClient);
      if (!last) frame[0] &= 0x7f; // FIN off
      this.socket.write(frame);
    }
  }

  ping(payload = crypto.randomBytes(4)) {
    this._write(0x9, payload);
  }

  // A close handshake: send ours, wait (at most timeoutMs) for the peer's.
  close(code = 1000, reason = '', timeoutMs = 2000) {
    if (!this.closeSent && !this.closed) this._sendClose(code, reason);
    if (this.closeReceived && !this.isClient) this.socket.end();
    setTimeout(() => this.socket.destroy(), timeoutMs).unref();
  }

  // No close frame: the TCP connection just goes (the peer sees 1006).
  abort() {
    this.socket.destroy();
  }
}

// Open a client connection. Resolves {ws} on 101, or {refused: {status,
// headers, body}} when the server answers the handshake with another status.
export function connect(url, { headers = {}, timeoutMs = 5000 } = {}) {
  const target = new URL(url);
  const key = crypto.randomBytes(16).toString('base64');
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: target.hostname,
      port: target.port,
      path: target.pathname + target.search,
      headers: {
        ...headers,
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Key': key,
        'Sec-WebSocket-Version': '13',
      },
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`handshake with ${url} timed out`));
    }, timeoutMs);
    req.on('upgrade', (res, socket, head) => {
      clearTimeout(timer);
      if (res.headers['sec-websocket-accept'] !== acceptKey(key)) {
        socket.destroy();
        reject(new Error('bad Sec-WebSocket-Accept'));
        return;
      }
      resolve({ ws: new WebSocket(socket, true, head) });
    });
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        const body = Buffer.concat(chunks).toString('utf8');
        resolve({ refused: { status: res.statusCode, headers: res.headers, body } });
      });
    });
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.end();
  });
}

// A server: decide(req) returns null to accept, or {status, headers, body} to
// refuse the handshake; onSocket(ws, req) gets every accepted connection.
export function createServer({ decide = () => null, onSocket }) {
  const server = http.createServer((req, res) => {
    res.writeHead(426, { 'Content-Type': 'text/plain' });
    res.end('a WebSocket server\n');
  });
  server.on('upgrade', (req, socket, head) => {
    const key = req.headers['sec-websocket-key'];
    const refusal = key ? decide(req) : { status: 400, headers: {}, body: 'not a WebSocket handshake\n' };
    if (refusal) {
      const body = Buffer.from(refusal.body ?? '', 'utf8');
      const lines = [`HTTP/1.1 ${refusal.status} ${http.STATUS_CODES[refusal.status] ?? 'Refused'}`];
      for (const [name, value] of Object.entries(refusal.headers ?? {})) lines.push(`${name}: ${value}`);
      // A chunked body, or one delimited by its length (HTTP/1.1 allows both).
      const framed = refusal.chunked
        ? Buffer.from(`${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`, 'utf8')
        : body;
      lines.push(refusal.chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${body.length}`);
      lines.push('Connection: close', '', '');
      socket.end(Buffer.concat([Buffer.from(lines.join('\r\n'), 'latin1'), framed]));
      return;
    }
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`,
    );
    onSocket(new WebSocket(socket, false, head), req);
  });
  return server;
}

// Print one JSON line (what a program saw) on stdout.
export function report(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// Every program exits on its own after ms, whatever happens.
export function hardTimeout(ms, name) {
  setTimeout(() => {
    report({ error: `${name}: hard timeout after ${ms} ms` });
    process.exit(3);
  }, ms);
}
