"""A process of channel bench clients: ``python -m trio_reconnect._tools.bench._chanworker``.

The measuring side of the channel fan-out (:mod:`._chanfanout`) must cost far
less per delivery than the servers it measures, or the figure is the
clients'. So the clients of one server live in one or more child processes of
their own, each a plain ``select.epoll`` loop over raw loopback sockets (no
trio, no wsproto): a client does the HTTP upgrade, sends its masked
``resume`` and ``subscribe`` frames, walks the answers' frame headers up to
its ``ready`` and ``subscribed`` frames, and from then on does, per readable
socket, one ``recv``, one append and one ``bytearray.count`` of
:data:`EVENT_END` (the two bytes every event frame of the bench ends with: the
payload is a string without quotes). A client's arrival is its
``time.monotonic()`` when that count reaches its target.

Nothing is taken on trust: once every client of a burst has arrived, and off
the clock, :func:`check_frames` walks and decodes every frame each client
received: only complete text ``event`` frames of its own channels, exactly
the expected number on each, no id twice; and every subscriber of a channel
got the same ids in the same order (:class:`_Agreement`).

Commands on standard input, one a line; answers on standard output:

* ``expect START COUNT``: the server is about to publish ``COUNT`` events,
  the i-th on channel ``(START + i) % N``. Answers ``ok`` at once, then, when
  every client with something to expect has it, one JSON line
  ``{"arrivals": [...], "cpu": seconds}`` (the arrival times of those
  clients; this process's CPU time from the command to the last arrival), or
  ``{"error": "..."}`` (a close, a check that failed, or
  :data:`STEP_TIMEOUT` without every arrival: which clients are short, and
  of what).

The first line, once every client is subscribed, is ``ready``. End of file on
standard input ends the process.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import socket
import sys
import time
from collections.abc import Sequence
from typing import Final

import attrs

from ...testing._pipe import OP_CLOSE, OP_TEXT, frame_at
from ._crowd import STEP_TIMEOUT, channel_hello

__all__ = ["EVENT_END", "check_frames", "closed", "main", "per_channel"]

#: The last two bytes of every event frame of the bench (``..."data": "eee"}``), nowhere else.
EVENT_END: Final = b'"}'
_RECEIVE_SIZE: Final = 65536
#: During a burst, a poll that finds fewer than ``_FEW`` sockets readable is
#: followed by a nap of ``_NAP`` seconds, so that the next one finds more: one
#: ``epoll_wait`` for many deliveries (an arrival is late by at most the nap,
#: a burst lasts a second or so). Not for a latency sample (one event).
_FEW: Final = 32
_NAP: Final = 0.0005


class WorkerError(RuntimeError):
    """A client failed: what to tell the parent."""


def per_channel(start: int, count: int, channels: int) -> list[int]:
    """Events each channel gets from a publish of ``count`` round robin from ``start``."""
    laps, extra = divmod(count, channels)
    counts = [laps] * channels
    for number in range(start, start + extra):
        counts[number % channels] += 1
    return counts


def check_frames(
    buffer: bytes | bytearray, expected: dict[str, int]
) -> tuple[dict[str, list[str]], str | None]:
    """The event ids in ``buffer`` by channel, and what is wrong (``None``: nothing).

    ``expected``: the events due on each of the client's channels.
    """
    ids: dict[str, list[str]] = {channel: [] for channel in expected}
    offset = 0
    while (frame := frame_at(buffer, offset)) is not None:
        opcode, start, end = frame
        offset = end
        body = bytes(buffer[start:end])
        if opcode != OP_TEXT:
            code = int.from_bytes(body[:2], "big") if len(body) >= 2 else None
            return ids, f"a frame of opcode {opcode} ({code} {body[2:60]!r})"
        try:
            message = json.loads(body)
            channel, event_id = message["channel"], message["id"]
        except (ValueError, KeyError, TypeError):
            return ids, f"not an event frame: {body[:80]!r}"
        if message.get("type") != "event" or channel not in ids:
            return ids, f"not an event of its channels: {body[:80]!r}"
        ids[channel].append(event_id)
    if offset != len(buffer):
        return ids, f"{len(buffer) - offset} bytes after the last whole frame"
    for channel, due in expected.items():
        got = ids[channel]
        if len(got) != due or len(set(got)) != len(got):
            return ids, f"channel {channel}: {len(got)} events ({len(set(got))} ids), {due} due"
    return ids, None


def closed(buffer: bytes | bytearray) -> str:
    """Why a connection ended: its close frame's code and reason, if ``buffer`` has one."""
    offset = 0
    while (frame := frame_at(buffer, offset)) is not None:
        opcode, start, end = frame
        if opcode == OP_CLOSE:
            body = bytes(buffer[start:end])
            code = int.from_bytes(body[:2], "big") if len(body) >= 2 else None
            return f"closed by the server: {code} {body[2:].decode(errors='replace')}"
        offset = end
    return "the server closed the connection (no close frame)"


@attrs.define(eq=False)
class _Agreement:
    """Every subscriber of a channel got the same ids, in the same order."""

    first: dict[str, tuple[list[str], int]] = attrs.field(factory=dict)

    def check(self, client: int, ids: dict[str, list[str]]) -> str | None:
        for channel, got in ids.items():
            seen = self.first.setdefault(channel, (got, client))
            if seen[0] != got:
                return f"channel {channel}: client {client} got {got}, client {seen[1]} {seen[0]}"
        return None


@attrs.define(eq=False, slots=True)
class _Client:
    index: int
    sock: socket.socket
    #: Its channels' numbers and names.
    numbers: list[int]
    channels: list[str]
    #: The hello's answers still due (``ready``, ``subscribed``s); then 0.
    answers: int
    buffer: bytearray = attrs.field(factory=bytearray)
    upgraded: bool = False
    scanned: int = 0
    events: int = 0
    target: int = 0
    waiting: bool = False
    reached_at: float = 0.0


def _upgrade_request(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /bench HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | OP_TEXT, 0x80 | len(payload)]) + mask + body


def _handshake_step(client: _Client, data: bytes) -> bool:
    """Feed the handshake ``data``; ``True`` once every answer is in."""
    buffer = client.buffer
    buffer += data
    if not client.upgraded:
        head, found, rest = bytes(buffer).partition(b"\r\n\r\n")
        if not found:
            return False
        if not head.startswith(b"HTTP/1.1 101"):
            raise WorkerError(f"client {client.index}: upgrade refused: {head[:60]!r}")
        client.upgraded = True
        buffer[:] = rest
        hello = channel_hello(client.index, client.channels)
        client.sock.sendall(b"".join(_masked_text(frame) for frame in hello.frames))
    offset = 0
    while client.answers and (frame := frame_at(buffer, offset)) is not None:
        opcode, _, end = frame
        if opcode != OP_TEXT:
            raise WorkerError(f"client {client.index}: opcode {opcode} during the handshake")
        client.answers -= 1
        offset = end
    del buffer[:offset]
    if client.answers == 0 and buffer:
        raise WorkerError(f"client {client.index}: {len(buffer)} bytes after its handshake")
    return client.answers == 0


class _Worker:
    """The clients of one process, and the loop that serves them."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ._chanfanout import ChannelOptions
        from ._chanserve import channel_name

        self.options = ChannelOptions(
            clients=args.clients, count=args.count, subscriptions=args.subscriptions
        )
        self.port: int = args.port
        self.name = channel_name
        self.epoll = select.epoll()
        self.clients: dict[int, _Client] = {}
        self.indexes = range(args.first, args.last)
        self.at_once: int = args.at_once
        self.receive_buffer: int = args.receive_buffer
        self.pending = 0
        self.deadline = 0.0
        self.cpu = 0.0
        self.nap = 0.0
        self.due: list[int] = []

    def connect_all(self) -> None:
        for first in range(self.indexes.start, self.indexes.stop, self.at_once):
            batch = []
            for index in range(first, min(self.indexes.stop, first + self.at_once)):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                if self.receive_buffer:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
                sock.connect(("127.0.0.1", self.port))
                sock.sendall(_upgrade_request(self.port))
                sock.setblocking(False)
                numbers = self.options.channels_of(index)
                channels = [self.name(c) for c in numbers]
                client = _Client(index, sock, numbers, channels, answers=1 + len(channels))
                self.clients[sock.fileno()] = client
                self.epoll.register(sock.fileno(), select.EPOLLIN)
                batch.append(client)
            deadline = time.monotonic() + STEP_TIMEOUT
            left = len(batch)
            while left:
                if time.monotonic() > deadline:
                    raise WorkerError(f"{left} clients not subscribed within {STEP_TIMEOUT:g} s")
                for fd, _ in self.epoll.poll(1.0):
                    client = self.clients[fd]
                    data = client.sock.recv(_RECEIVE_SIZE)
                    if not data:
                        raise WorkerError(f"client {client.index}: closed during its handshake")
                    if not client.answers:
                        client.buffer += data  # checked with the next burst's frames
                    elif _handshake_step(client, data):
                        left -= 1

    def expect(self, start: int, count: int) -> None:
        self.due = per_channel(start, count, self.options.count)
        self.pending = 0
        for client in self.clients.values():
            due = sum(self.due[c] for c in client.numbers)
            client.target = client.events + due
            client.waiting = due > 0
            self.pending += client.waiting
        self.deadline = time.monotonic() + STEP_TIMEOUT
        self.nap = _NAP if count > 1 else 0.0
        self.cpu = time.process_time()

    def receive(self, fds: Sequence[tuple[int, int]]) -> bool:
        """The hot path: count the event frames that arrived; ``True``: standard input too."""
        clients = self.clients
        command = False
        for fd, _ in fds:
            client = clients.get(fd)
            if client is None:
                command = True
                continue
            data = client.sock.recv(_RECEIVE_SIZE)
            if not data:
                raise WorkerError(f"client {client.index}: {closed(client.buffer)}")
            buffer = client.buffer
            buffer += data
            found = buffer.count(EVENT_END, client.scanned - 1 if client.scanned else 0)
            client.scanned = len(buffer)
            if found:
                client.events += found
                if client.waiting and client.events >= client.target:
                    client.waiting = False
                    client.reached_at = time.monotonic()
                    self.pending -= 1
        return command

    def _expected(self, client: _Client) -> dict[str, int]:
        return {name: self.due[n] for n, name in zip(client.numbers, client.channels, strict=True)}

    def report(self) -> dict[str, object]:
        """Off the clock: check every frame, then the arrivals (or what is wrong)."""
        cpu = time.process_time() - self.cpu
        agreement = _Agreement()
        arrivals = []
        for client in sorted(self.clients.values(), key=lambda c: c.index):
            expected = self._expected(client)
            if any(expected.values()):
                arrivals.append(client.reached_at)
            ids, wrong = check_frames(client.buffer, expected)
            wrong = wrong or agreement.check(client.index, ids)
            if wrong is not None:
                return {"error": f"client {client.index}: {wrong}"}
            client.buffer.clear()
            client.scanned = 0
        return {"arrivals": arrivals, "cpu": cpu}

    def shortfall(self) -> dict[str, object]:
        short = [c for c in self.clients.values() if c.waiting]
        detail = []
        for client in sorted(short, key=lambda c: c.index)[:10]:
            expected = self._expected(client)
            ids, wrong = check_frames(client.buffer, expected)
            got = {name: len(v) for name, v in ids.items() if len(v) != expected[name]}
            detail.append(
                f"client {client.index}: {client.target - client.events} short, "
                f"got {got} of {expected}; {wrong}"
            )
        return {
            "error": f"{len(short)} of {len(self.clients)} clients did not get every event "
            f"within {STEP_TIMEOUT:g} s: " + "; ".join(detail)
        }


def _serve(worker: _Worker) -> None:
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    worker.epoll.register(stdin, select.EPOLLIN)
    commands = b""
    busy = False
    while True:
        fds = worker.epoll.poll(1.0 if busy else -1)
        if worker.receive(fds):  # a command
            chunk = os.read(stdin, 4096)
            if not chunk:
                return
            commands += chunk
            while b"\n" in commands:
                line, commands = commands.split(b"\n", 1)
                _, start, count = line.split()
                worker.expect(int(start), int(count))
                busy = True
                _say("ok")
        if not busy:
            continue
        if worker.pending == 0:
            busy = False
            _say(json.dumps(worker.report()))
        elif time.monotonic() > worker.deadline:
            busy = False
            _say(json.dumps(worker.shortfall()))
        elif worker.nap and len(fds) < _FEW:
            time.sleep(worker.nap)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Connect the clients, say ``ready``, serve the commands; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m trio_reconnect._tools.bench._chanworker")
    for name in ("port", "first", "last", "clients", "count", "subscriptions", "at-once"):
        parser.add_argument(f"--{name}", type=int, required=True)
    # A small one makes a server meet full socket buffers (partial writes): an investigation's.
    parser.add_argument("--receive-buffer", type=int, default=0, help="SO_RCVBUF (0: the system's)")
    worker = _Worker(parser.parse_args(argv))
    try:
        worker.connect_all()
        _say("ready")
        _serve(worker)
    except (WorkerError, OSError) as exc:
        _say(json.dumps({"error": str(exc)}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
