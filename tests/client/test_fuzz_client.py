"""Hostile servers against the real client: hypothesis writes the server's bytes.

Every input the client takes from a server is generated here and sent, byte by
byte, by a raw websocket server over trio memory streams (``RawServer``: it
speaks just enough HTTP and RFC 6455 framing to say anything at all, valid or
not). The client runs for real (trio-websocket, virtual time, a seeded
random), so each example checks the whole path from the wire to the public
surface:

* the outcome is a documented one: the client goes on (and reconnects after
  exactly the delay the rules give), or it stops with ``ReconnectFailed`` or a
  subclass, bare: never an ``ExceptionGroup``, never an internal error, never
  a hang (every run is under ``trio.fail_after`` in virtual time);
* every wait it chose is within ``[0, max_server_delay]``;
* what the application receives is exactly what docs/reference/protocol.md says.

Hypothesis drives ``trio.run`` inside each (sync) test, with a fresh
``MockClock(autojump_threshold=0)`` per example.
"""

from __future__ import annotations

import base64
import collections
import email.utils
import hashlib
import json
import math
import random
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Final
from unittest import mock

import attrs
import trio
import trio.testing
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import trio_reconnect as tr
import trio_reconnect._supervisor as client_module
from trio_reconnect._exceptions import ResumeProtocolError
from trio_reconnect._hints import FATAL_CLOSE_CODES, HINTED_CLOSE_CODES, parse_retry_after_header
from trio_reconnect._protocol import ResumeHandshake

SEED: Final = 4242
URL: Final = "ws://fuzz.test/feed"
#: The clamp for hints in these runs (above the backoff cap of 30 s, so that
#: every wait the client may choose is within [0, MAX_SERVER_DELAY]).
MAX_SERVER_DELAY: Final = 60.0
RESUME_TIMEOUT: Final = 5.0
MAX_MESSAGE_SIZE: Final = 512
MAX_REPLAY: Final = 4
#: Virtual seconds any one run may take: a hang fails the example.
LIMIT: Final = 1_000.0
#: The wall clock the client reads for HTTP-date hints.
NOW: Final = 1_800_000_000.0

OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

READY: Final = json.dumps({"type": "ready", "id": None, "lost": False})

FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --------------------------------------------------------------------------- the raw server


@attrs.define(eq=False)
class RawPeer:
    """The server end of one connection, written byte by byte.

    After :meth:`accept`, a reader task parses the client's (masked) frames:
    data frames go to :attr:`messages`, pings are answered, and a close frame
    is answered (unless we closed first) before the stream is closed.
    """

    stream: trio.abc.Stream
    nursery: trio.Nursery
    #: ``(opcode, payload)`` of every data frame the client sent.
    messages: list[tuple[int, bytes]] = attrs.field(factory=list)
    #: Set once the client closed the connection (close frame or EOF).
    gone: trio.Event = attrs.field(factory=trio.Event)
    #: Set once the client's first data frame arrived.
    first_message: trio.Event = attrs.field(factory=trio.Event)
    close_sent: bool = False
    _buffer: bytearray = attrs.field(factory=bytearray)
    _send_lock: trio.Lock = attrs.field(factory=trio.Lock)

    async def _read_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            data = await self.stream.receive_some()
            if not data:
                raise EOFError
            self._buffer += data
        chunk = bytes(self._buffer[:n])
        del self._buffer[:n]
        return chunk

    async def read_request(self) -> dict[bytes, bytes]:
        while b"\r\n\r\n" not in self._buffer:
            data = await self.stream.receive_some()
            if not data:
                raise EOFError
            self._buffer += data
        head, _, rest = bytes(self._buffer).partition(b"\r\n\r\n")
        self._buffer = bytearray(rest)
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return headers

    async def send_raw(self, data: bytes) -> None:
        async with self._send_lock:
            await self.stream.send_all(data)

    async def accept(self) -> None:
        """Read the upgrade request, answer 101, start reading frames."""
        headers = await self.read_request()
        key = base64.b64encode(hashlib.sha1(headers[b"sec-websocket-key"] + _GUID).digest())
        await self.send_raw(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + key + b"\r\n\r\n"
        )
        self.nursery.start_soon(self._reader)

    async def respond(self, response: bytes) -> None:
        """Read the upgrade request and answer it with ``response`` (raw HTTP)."""
        await self.read_request()
        await self.send_raw(response)

    async def send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = bytes([0x80 | opcode, n])
        elif n < 2**16:
            header = bytes([0x80 | opcode, 126]) + struct.pack("!H", n)
        else:
            header = bytes([0x80 | opcode, 127]) + struct.pack("!Q", n)
        await self.send_raw(header + payload)

    async def send_text(self, text: str) -> None:
        await self.send_frame(OP_TEXT, text.encode("utf-8"))

    async def send_close(self, payload: bytes) -> None:
        self.close_sent = True
        await self.send_frame(OP_CLOSE, payload)

    async def _reader(self) -> None:
        try:
            while True:
                b0, b1 = await self._read_exact(2)
                opcode, n = b0 & 0x0F, b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", await self._read_exact(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", await self._read_exact(8))
                mask = await self._read_exact(4) if b1 & 0x80 else b"\0\0\0\0"
                payload = bytes(x ^ mask[i % 4] for i, x in enumerate(await self._read_exact(n)))
                if opcode == OP_PING:
                    await self.send_frame(OP_PONG, payload)
                elif opcode == OP_CLOSE:
                    if not self.close_sent:
                        await self.send_close(payload[:2])
                    return
                elif opcode in (OP_TEXT, OP_BINARY):
                    self.messages.append((opcode, payload))
                    self.first_message.set()
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.gone.set()
            await trio.aclose_forcefully(self.stream)

    def resume(self) -> Any:
        """The client's first frame, decoded (it must be a text resume frame)."""
        opcode, payload = self.messages[0]
        assert opcode == OP_TEXT
        frame = json.loads(payload)
        assert set(frame) == {"type", "lastEventId", "clientId", "channels"}
        assert frame["channels"] == {}
        assert frame["type"] == "resume"
        return frame["lastEventId"]


Script = Callable[[RawPeer, int], Awaitable[None]]


@attrs.define(eq=False)
class RawServer:
    """Serves connection ``n`` (1, 2, ...) the client opens with ``script(peer, n)``."""

    nursery: trio.Nursery
    script: Script
    connects: list[float] = attrs.field(factory=list)
    peers: list[RawPeer] = attrs.field(factory=list)

    async def open_stream(self, target: tr.Target) -> trio.abc.Stream:
        self.connects.append(trio.current_time())
        client, server = trio.testing.memory_stream_pair()
        peer = RawPeer(server, self.nursery)
        self.peers.append(peer)
        self.nursery.start_soon(self._serve, peer, len(self.connects))
        return client

    async def _serve(self, peer: RawPeer, n: int) -> None:
        try:
            await self.script(peer, n)
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away first
        finally:
            await trio.aclose_forcefully(peer.stream)


async def well_behaved(peer: RawPeer) -> None:
    """Accept, send ready (keeping the client's lastEventId), stay up."""
    await peer.accept()
    await peer.send_text(READY)
    await peer.gone.wait()


# --------------------------------------------------------------------------- running the client


@attrs.define(eq=False)
class Run:
    """What one run of the client came to."""

    connects: list[float] = attrs.field(factory=list)
    peers: list[RawPeer] = attrs.field(factory=list)
    transitions: list[tr.Transition] = attrs.field(factory=list)
    items: list[tr.Item] = attrs.field(factory=list)
    error: BaseException | None = None
    last_event_id: str | None = None

    @property
    def waits(self) -> list[tr.Transition]:
        return [t for t in self.transitions if t.state is tr.ConnectionState.BACKING_OFF]


Done = Callable[[RawServer, tr.ReconnectingWebSocket], bool]


def reconnected(server: RawServer, ws: tr.ReconnectingWebSocket) -> bool:
    return len(server.connects) >= 2 and ws.state is tr.ConnectionState.OPEN


def run_client(script: Script, done: Done = reconnected, **options: Any) -> Run:
    """Run the client against ``script`` until ``done`` (or it fails); what happened."""
    run = Run()
    options = {
        "random": random.Random(SEED),
        "max_server_delay": MAX_SERVER_DELAY,
        "max_attempts": 3,
        "ping_interval": None,
        "on_transition": run.transitions.append,
        **options,
    }

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = RawServer(nursery, script)
            clients: list[tr.ReconnectingWebSocket] = []
            try:
                with trio.fail_after(LIMIT):
                    async with tr.open_reconnecting_websocket(
                        URL, open_stream=server.open_stream, **options
                    ) as ws:
                        clients.append(ws)
                        while not done(server, ws):
                            with trio.move_on_after(0.25):
                                run.items.append(await ws.get_message())
                        while len(ws._inbox):
                            run.items.append(await ws.get_message())
            except BaseException as exc:
                if isinstance(exc, trio.Cancelled | KeyboardInterrupt):
                    raise
                run.error = exc
            run.connects = server.connects
            run.peers = server.peers
            if clients:
                run.last_event_id = clients[0].last_event_id
            nursery.cancel_scope.cancel()

    with mock.patch.object(client_module, "_wall_clock", return_value=NOW):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return run


def assert_documented(run: Run) -> None:
    """The rules every run obeys, whatever the server did."""
    error = run.error
    if error is not None:
        assert not isinstance(error, BaseExceptionGroup), f"a group escaped: {error!r}"
        assert not isinstance(error, trio.TooSlowError), "the client hung"
        assert isinstance(error, tr.ReconnectFailed), f"undocumented error: {error!r}"
        assert str(error), "the error has no message"
        assert error.__cause__ is None, f"the supervisor crashed: {error.__cause__!r}"
        assert error.history, "the error carries no attempt history"
    for wait in run.waits:
        assert wait.delay is not None
        assert 0.0 <= wait.delay <= MAX_SERVER_DELAY, wait


def first_backoff() -> float:
    """The client's own first wait with the seeded random (``Backoff.delay(1)``)."""
    return tr.Backoff().delay(1, random.Random(SEED))


def clamp(hint: float) -> float:
    return min(max(hint, 0.0), MAX_SERVER_DELAY)


# --------------------------------------------------------------------------- JSON strategies

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


# --------------------------------------------------------------------------- close frames

#: The codes wsproto knows in the protocol range 1000-2999; any other code
#: there (1004, 1014, 1016 ...) and the local-only 1005, 1006 and 1015 make it
#: fail the connection on the client's side instead of reporting the close.
_WSPROTO_CODES: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013}
)

_retry_after_literals = st.one_of(
    st.integers(-(10**6), 10**12).map(str),
    st.integers(10**18, 10**90).map(str),  # huge ints (fit in a close reason)
    st.floats(allow_nan=True, allow_infinity=True).map(json.dumps),  # NaN, Infinity too
    st.sampled_from(
        [
            "1e999",
            "-1e999",
            "1e-999",
            "-0",
            "0",
            "0.0",
            "999",
            "1000",
            "1E3",
            "1e308",
            "true",
            "false",
            "null",
            '"1000"',
            '""',
            "[1000]",
            '{"ms": 1000}',
            "{}",
        ]
    ),
    _json.map(json.dumps),
)


@st.composite
def hint_reasons(draw: st.DrawFn) -> bytes:
    """A JSON close reason with a ``retryAfter``, often padded to 118-127 bytes."""
    literal = draw(_retry_after_literals)
    target = draw(st.one_of(st.none(), st.integers(118, 127)))
    if target is None:
        return ('{"retryAfter": ' + literal + "}").encode()
    pad_char = draw(st.sampled_from(["x", "é", "€"]))
    skeleton = '{"reason": "", "retryAfter": ' + literal + "}"
    room = max(0, target - len(skeleton.encode()))
    pad = pad_char * (room // len(pad_char.encode()))
    return ('{"reason": "' + pad + '", "retryAfter": ' + literal + "}").encode()


_close_reasons = st.one_of(
    hint_reasons(),
    st.binary(max_size=126),  # mostly not UTF-8
    st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")),
    _json.map(lambda v: json.dumps(v).encode()),  # JSON of every type
    st.just(b""),
)
_close_codes = st.one_of(
    st.sampled_from(
        sorted(
            HINTED_CLOSE_CODES
            | FATAL_CLOSE_CODES
            | {1000, 1004, 1005, 1006, 1015, 1016, 2999, 3000, 3999, 4000, 4999, 5000}
        )
    ),
    st.integers(1000, 1015),
    st.integers(0, 2**16 - 1),
)
_good_hints = st.one_of(
    st.integers(0, 10**8).map(lambda ms: json.dumps({"retryAfter": ms})),
    st.floats(0, 1e8).map(lambda ms: json.dumps({"reason": "restart", "retryAfter": ms})),
).map(str.encode)
_close_payloads = st.one_of(
    st.builds(
        lambda code, reason: struct.pack("!H", code) + reason,
        st.sampled_from(sorted(HINTED_CLOSE_CODES)),
        st.one_of(_good_hints, hint_reasons()),
    ),
    st.builds(lambda code, reason: struct.pack("!H", code) + reason, _close_codes, _close_reasons),
    st.just(b""),  # no status code: 1005
    st.binary(min_size=1, max_size=1),  # a one-byte payload is malformed
)


def wire_close(payload: bytes) -> tuple[int, str | None] | None:
    """The close a conforming client reads from ``payload``, or None if malformed."""
    if not payload:
        return 1005, None
    if len(payload) == 1 or len(payload) > 125:  # control frames carry at most 125 bytes
        return None
    (code,) = struct.unpack("!H", payload[:2])
    if not 1000 <= code <= 4999 or (code < 3000 and code not in _WSPROTO_CODES):
        return None
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return code, reason or None


def expected_hint(reason: str | None) -> float | None:
    """docs/reference/protocol.md 1a, restated: the hint in seconds, or None if it is a bad one."""
    if not reason:
        return None
    try:
        frame = json.loads(reason, parse_constant=lambda name: None)  # NaN, Infinity: no hint
    except (ValueError, RecursionError):
        return None
    if not isinstance(frame, dict):
        return None
    value = frame.get("retryAfter")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        ms = float(value)
    except OverflowError:
        return math.inf  # an int too large for a float: clamped
    if math.isnan(ms) or ms < 0:
        return None
    return ms / 1000.0


def close_category(wire: tuple[int, str | None] | None) -> str:
    if wire is None:
        return "malformed close frame"
    code, reason = wire
    if code in FATAL_CLOSE_CODES or 4000 <= code <= 4999:
        return "fatal code"
    if code not in HINTED_CLOSE_CODES:
        return "other code, reason not read"
    hint = expected_hint(reason)
    if hint is None:
        return "hinted code, no or bad hint"
    return "hint clamped" if hint > MAX_SERVER_DELAY else "hint honoured"


def _reason_of(size: int, hint_ms: int = 1375) -> bytes:
    """A JSON hint reason of exactly ``size`` bytes."""
    skeleton = f'{{"reason": "", "retryAfter": {hint_ms}}}'
    pad = "x" * (size - len(skeleton))
    return f'{{"reason": "{pad}", "retryAfter": {hint_ms}}}'.encode()


def _close(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


@given(payload=_close_payloads, ready_first=st.booleans())
@example(payload=_close(1014, b'{"retryAfter": 500}'), ready_first=True)  # wsproto refuses 1014
@example(payload=_close(1012, b'{"retryAfter": 1e999}'), ready_first=False)
@example(payload=_close(1013, _reason_of(123)), ready_first=True)  # the limit: read
@example(payload=_close(1013, _reason_of(124)), ready_first=True)  # over it: malformed
@example(payload=_close(1012, '{"retryAfter": 5, "x": "é"}'.encode()), ready_first=True)
@example(payload=_close(1012, b"\xff\xfe"), ready_first=True)  # not UTF-8: malformed
@example(payload=_close(1001, b'{"retryAfter": NaN}'), ready_first=True)
@example(payload=_close(2000, b"reserved"), ready_first=True)
@example(payload=_close(4001, b"app says no"), ready_first=True)
@example(payload=_close(1000, b'{"retryAfter": 5}'), ready_first=True)  # not read on 1000
@settings(FUZZ, max_examples=200)
def test_fuzz_close_frames(payload: bytes, ready_first: bool) -> None:
    async def script(peer: RawPeer, n: int) -> None:
        if n > 1:
            await well_behaved(peer)
            return
        await peer.accept()
        if ready_first:
            await peer.send_text(READY)
        await peer.send_close(payload)
        await peer.gone.wait()

    run = run_client(script)
    assert_documented(run)
    wire = wire_close(payload)
    event(f"close: {close_category(wire)}")
    if wire is not None and (wire[0] in FATAL_CLOSE_CODES or 4000 <= wire[0] <= 4999):
        assert isinstance(run.error, tr.FatalCloseError), run.error
        assert (run.error.code, run.error.reason) == wire
        assert run.connects == [0.0]
        return
    # A retryable close, or a malformed close frame: a protocol violation the
    # client's own websocket layer caught, which is not the server's verdict
    # (it carries no code the server chose), so: backoff, like a drop.
    assert run.error is None, run.error
    hint = None
    if wire is not None and wire[0] in HINTED_CLOSE_CODES:
        hint = expected_hint(wire[1])
    delay = first_backoff() if hint is None else clamp(hint)
    (wait,) = run.waits
    assert wait.delay == delay
    assert wait.delay_source is (tr.DelaySource.BACKOFF if hint is None else tr.DelaySource.SERVER)
    if wire is not None:
        assert (wait.close_code, wait.close_reason) == wire
    assert run.connects == [0.0, delay]
    assert [peer.resume() for peer in run.peers] == [None, None]


# --------------------------------------------------------------------------- refused handshakes

NOT_CRLF = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_dates = st.integers(0, 253_402_300_799)  # 1970 .. the end of 9999
_retry_after_values = st.one_of(
    st.integers(-(10**6), 10**6).map(lambda n: str(n).encode()),
    st.integers(10**15, 10**400).map(lambda n: str(n).encode()),
    st.floats().map(lambda f: repr(f).encode()),
    _dates.map(lambda ts: email.utils.formatdate(ts, usegmt=True).encode()),  # IMF-fixdate
    _dates.map(lambda ts: email.utils.formatdate(ts).encode()),  # -0000 zone
    st.datetimes().map(lambda d: d.strftime("%a %b %d %H:%M:%S %Y").encode()),  # asctime
    st.datetimes().map(lambda d: d.strftime("%A, %d-%b-%y %H:%M:%S GMT").encode()),  # RFC 850
    st.integers(-5, 5).map(lambda d: email.utils.formatdate(NOW + d, usegmt=True).encode()),
    st.sampled_from(
        [
            b"",
            b"0",
            b"-0",
            b"+5",
            b" 5 ",
            b"5, 6",
            b"1e3",
            b"0x10",
            b"Infinity",
            "٣".encode(),
            b"\xa05",
            b"5\x00",  # not HTTP: h11 refuses the response
        ]
    ),
    NOT_CRLF,
)
_statuses = st.one_of(
    st.sampled_from([429, 503]),  # the statuses whose Retry-After is read
    st.sampled_from([500, 502, 504, 599, 400, 401, 403, 404, 426, 301, 302, 200, 204, 304]),
    st.integers(200, 599),
)


def h11_accepts(value: bytes) -> bool:
    """Whether h11 (under wsproto) accepts ``value`` as a header value."""
    return not any(c in value for c in b"\x00\x0b\x0c")


@given(
    status=_statuses,
    retry_after=st.lists(_retry_after_values, max_size=2),
    body=st.binary(max_size=20),
)
@settings(FUZZ, max_examples=200)
def test_fuzz_refused_handshakes(status: int, retry_after: list[bytes], body: bytes) -> None:
    response = b"HTTP/1.1 %d Go Away\r\n" % status
    for value in retry_after:
        response += b"Retry-After: " + value + b"\r\n"
    response += b"Content-Length: %d\r\n\r\n" % len(body) + body

    async def script(peer: RawPeer, n: int) -> None:
        if n > 1:
            await well_behaved(peer)
            return
        await peer.respond(response)
        await trio.sleep_forever()  # the client must act on the response, not on EOF

    run = run_client(script)
    assert_documented(run)
    valid = all(h11_accepts(value) for value in retry_after)
    event(
        f"refusal: {status if status in (429, 503) else f'{status // 100}xx'}, "
        + ("Retry-After given" if retry_after else "no Retry-After")
        + ("" if valid else ", not HTTP")
    )
    if not valid:
        # Not HTTP: the handshake failed without a status; plain backoff.
        assert run.error is None
        assert run.connects == [0.0, first_backoff()]
        return
    if status != 429 and not 500 <= status <= 599:
        assert isinstance(run.error, tr.HandshakeRejectedError), run.error
        assert run.error.status_code == status
        assert run.error.body == (b"" if status in (204, 304) else body)  # no body allowed
        assert run.connects == [0.0]
        return
    assert run.error is None, run.error
    hint = None
    if status in (429, 503) and retry_after:
        hint = parse_retry_after_header(retry_after[0].strip(b" \t"), NOW)
    delay = first_backoff() if hint is None else clamp(hint)
    (wait,) = run.waits
    assert wait.status_code == status
    assert wait.delay == delay
    assert run.connects == [0.0, delay]


@given(
    response=st.one_of(
        st.binary(max_size=200), st.binary(max_size=60).map(lambda b: b"HTTP/1.1 " + b)
    )
)
@settings(FUZZ, max_examples=100)
def test_fuzz_garbage_instead_of_an_http_response(response: bytes) -> None:
    async def script(peer: RawPeer, n: int) -> None:
        if n > 1:
            await well_behaved(peer)
            return
        await peer.respond(response)  # then EOF

    run = run_client(script)
    assert_documented(run)
    if run.error is not None:
        # By chance a complete HTTP response with a status that is fatal.
        assert isinstance(run.error, tr.HandshakeRejectedError), run.error
        assert run.connects == [0.0]
    else:
        assert run.connects == [0.0, first_backoff()]


# ----------------------------------------------------------------------- handshake and live frames

#: A frame the raw server sends: ``(opcode, payload)``.
Frame = tuple[int, bytes]


def text(value: Any) -> Frame:
    return OP_TEXT, json.dumps(value).encode()


_ids = st.one_of(
    st.text(alphabet="abc", max_size=2), st.none(), st.integers(0, 3), st.booleans(), st.just(["a"])
)
_short_ids = st.text(alphabet="abcd", min_size=1, max_size=2)


def _shaped(kind: Any, fid: Any, lost: Any, data: Any, drop: set[str]) -> Frame:
    frame = {"type": kind, "id": fid, "lost": lost, "data": data}
    return text({k: v for k, v in frame.items() if k not in drop})


_protocol_frames = st.one_of(
    st.builds(lambda i, d: text({"type": "event", "id": i, "data": d}), _short_ids, _json),
    st.builds(
        lambda i, d: text({"type": "snapshot", "id": i, "data": d}), _short_ids | st.none(), _json
    ),
    st.builds(
        lambda i, lost: text({"type": "ready", "id": i, "lost": lost}),
        _short_ids | st.none(),
        st.booleans(),
    ),
    st.builds(
        _shaped,
        st.sampled_from(["event", "snapshot", "ready", "resume", "bogus", "Event"]) | _json,
        _ids,
        st.one_of(st.booleans(), st.none(), st.integers(0, 1), st.text(max_size=2)),
        _json,
        st.sets(st.sampled_from(["type", "id", "lost", "data"])),
    ),
)
_garbage_frames = st.one_of(
    st.text(max_size=30).map(lambda s: (OP_TEXT, s.encode("utf-8", "surrogatepass"))),
    st.binary(max_size=30).map(lambda b: (OP_TEXT, b)),  # text frames, mostly not UTF-8
    st.binary(max_size=30).map(lambda b: (OP_BINARY, b)),
    _json.map(text),
    st.sampled_from(
        [
            (
                OP_TEXT,
                b'{"type": "snapshot", "id": "s", "data": "' + b"x" * MAX_MESSAGE_SIZE + b'"}',
            ),
            (OP_BINARY, b"\0" * (MAX_MESSAGE_SIZE + 1)),
            (OP_TEXT, "é".encode() * (MAX_MESSAGE_SIZE // 2 + 1)),  # over in characters too
            (OP_TEXT, "é".encode() * (MAX_MESSAGE_SIZE // 2)),  # over in bytes only: fine
            (OP_TEXT, b'{"type": "\\u0065vent", "id": "u", "data": 0}'),
        ]
    ),
)
_frames = st.one_of(_protocol_frames, _protocol_frames, _garbage_frames)
_events = st.builds(lambda i, d: text({"type": "event", "id": i, "data": d}), _short_ids, _json)
#: What a server answers a resume frame with: anything, or a replay (longer
#: than max_replay, often) followed by anything.
_snapshots = st.builds(
    lambda i, d: text({"type": "snapshot", "id": i, "data": d}), _short_ids | st.none(), _json
)
_readies = st.builds(
    lambda i, lost: text({"type": "ready", "id": i, "lost": lost}),
    _short_ids | st.none(),
    st.booleans(),
)
_handshakes = st.one_of(
    st.lists(_frames, max_size=8),
    st.builds(  # a valid handshake, then anything
        lambda answer, ready, rest: [*answer, ready, *rest],
        st.one_of(
            st.lists(_events, max_size=MAX_REPLAY),
            st.builds(
                lambda snap, events: [snap, *events], _snapshots, st.lists(_events, max_size=2)
            ),
        ),
        _readies,
        st.lists(_frames, max_size=3),
    ),
    st.builds(
        lambda replay, rest: [*replay, *rest],
        st.lists(_events, min_size=3, max_size=MAX_REPLAY + 3),
        st.lists(_frames, max_size=3),
    ),
)
_endings = st.sampled_from(["hang", "eof", "close"])


@attrs.define
class Model:
    """What docs/reference/protocol.md section 2 says the client does with attempt 1."""

    items: list[tr.Item] = attrs.field(factory=list)
    last: str | None = None
    ready: bool = False
    #: Why attempt 1 ended: "error" (ResumeProtocolError), "broken" (a frame
    #: the websocket layer refuses), "timeout" (no ready), "dropped", or "open".
    end: str = "open"
    #: What ended it, in a word or two (for the statistics).
    why: str = ""


def model(frames: list[Frame], ending: str, window: int = tr.DEFAULT_DEDUPE_WINDOW) -> Model:
    m = Model()
    recent: collections.deque[str] = collections.deque(maxlen=window)
    handshake = ResumeHandshake(None)
    replayed = 0

    def deliver(event_id: str, item: tr.Item) -> None:
        if event_id in recent:
            return
        recent.append(event_id)
        m.last = event_id
        m.items.append(item)

    for opcode, payload in frames:
        message: str | bytes = payload
        if opcode == OP_TEXT:
            try:
                message = payload.decode("utf-8")
            except UnicodeDecodeError:
                m.end, m.why = "broken", "not UTF-8"  # wsproto: 1007
                return m
        if len(message) > MAX_MESSAGE_SIZE:  # trio-websocket counts characters or bytes
            m.end, m.why = "broken", "too big"
            return m
        if not m.ready:
            try:
                item = handshake.receive(message)
            except ResumeProtocolError:
                m.end, m.why = "error", "bad frame"
                return m
            if isinstance(item, tr.ServerEvent):
                replayed += 1
                if replayed > MAX_REPLAY:
                    m.end, m.why = "error", "over max_replay"
                    return m
                deliver(item.id, item)
            elif item is not None:
                if isinstance(item, tr.Snapshot):
                    m.last = item.id
                recent.clear()  # a snapshot or gap: the server's order starts again,
                anchor = item.id if isinstance(item, tr.Snapshot) else item.ready_id
                if anchor is not None:
                    recent.append(anchor)  # at an id that counts as delivered
                m.items.append(item)
            if handshake.result is not None:
                m.ready = True
                if handshake.result.ready_id is not None or isinstance(item, tr.Gap):
                    m.last = handshake.result.ready_id
            continue
        # After ready: an event with a string id, once; anything else unchanged.
        try:
            frame = json.loads(message) if isinstance(message, str) else None
        except ValueError:
            frame = None
        if (
            isinstance(frame, dict)
            and frame.get("type") == "event"
            and isinstance(frame.get("id"), str)
        ):
            deliver(frame["id"], tr.ServerEvent(frame["id"], frame.get("data")))
        else:
            m.items.append(message)
    if ending != "hang":
        m.end = "dropped"
    elif not m.ready:
        m.end = "timeout"
    return m


def frames_script(frames: list[Frame], ending: str) -> Script:
    async def script(peer: RawPeer, n: int) -> None:
        if n > 1:
            await well_behaved(peer)
            return
        await peer.accept()
        await peer.first_message.wait()  # the client's resume frame
        for opcode, payload in frames:
            await peer.send_frame(opcode, payload)
        if ending == "close":
            await peer.send_close(struct.pack("!H", 1000))
        elif ending == "eof":
            await trio.aclose_forcefully(peer.stream)
            return
        await peer.gone.wait()

    return script


def check_frames_run(run: Run, m: Model) -> None:
    why = f" ({m.why})" if m.why else ""
    event(f"attempt 1: {m.end}{why}, {'after' if m.ready else 'before'} ready")
    assert_documented(run)
    assert run.error is None, run.error
    assert run.items == m.items
    assert run.peers[0].resume() is None
    if m.end == "open":
        assert run.connects == [0.0]
        assert run.waits == []
        assert run.last_event_id == m.last
        return
    ended = RESUME_TIMEOUT if m.end == "timeout" else 0.0
    assert run.connects == [0.0, ended + first_backoff()]
    (wait,) = run.waits
    assert wait.delay_source is tr.DelaySource.BACKOFF
    if m.end == "error":
        assert isinstance(wait.error, tr.ResumeProtocolError)
        assert str(wait.error)
    elif m.end == "timeout":
        assert isinstance(wait.error, tr.ResumeTimeout)
    # The events received before the failure are kept: the next attempt resumes after them.
    assert run.peers[1].resume() == m.last
    assert run.last_event_id == m.last


def frames_done(m: Model) -> Done:
    def done(server: RawServer, ws: tr.ReconnectingWebSocket) -> bool:
        settled = trio.current_time() >= RESUME_TIMEOUT + 2
        if m.end == "open":
            return settled
        return settled and reconnected(server, ws)

    return done


@given(frames=_handshakes, ending=_endings)
@settings(FUZZ, max_examples=200)
def test_fuzz_handshake_frames(frames: list[Frame], ending: str) -> None:
    m = model(frames, ending)
    run = run_client(
        frames_script(frames, ending),
        frames_done(m),
        resume_timeout=RESUME_TIMEOUT,
        max_message_size=MAX_MESSAGE_SIZE,
        max_replay=MAX_REPLAY,
    )
    check_frames_run(run, m)


_live_frames = st.one_of(
    st.builds(lambda i, d: text({"type": "event", "id": i, "data": d}), _short_ids, _json),
    _protocol_frames,
    _garbage_frames,
)


@given(frames=st.lists(_live_frames, max_size=10), ending=_endings)
@settings(FUZZ, max_examples=150)
def test_fuzz_events_after_ready(frames: list[Frame], ending: str) -> None:
    frames = [(OP_TEXT, READY.encode()), *frames]
    m = model(frames, ending)
    run = run_client(
        frames_script(frames, ending),
        frames_done(m),
        resume_timeout=RESUME_TIMEOUT,
        max_message_size=MAX_MESSAGE_SIZE,
        max_replay=MAX_REPLAY,
    )
    check_frames_run(run, m)
