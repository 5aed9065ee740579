"""The demo's crowd of clients, in processes of their own (see :mod:`._arrivals` for why).

Each child, ``python -m trio_reconnect._tools.demo._crowd URL CLIENTS FIRST``,
runs ``CLIENTS`` clients (seeded ``FIRST``, ``FIRST + 1``, ...) and speaks
JSON lines on stdout: a status line every :data:`STATUS_INTERVAL` seconds
(with the reconnects finished since the last one), an answer to each
``collect`` on stdin (:mod:`._collect`), and once ``stop`` arrives on stdin
(or stdin ends), every client leaves (closing with 1000) and one last line
holds what each client received. The parent drives the children through
:func:`open_crowd`, as one crowd; :data:`CLIENTS_PER_PROCESS` clients to a
child at most, so that one child's pause holds back only a part of the
crowd, as with clients on many machines; each child in a session of its own.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any, Final

import attrs
import trio

from ..._client import open_reconnecting_websocket
from ..._metrics import percentile
from ..._protocol import Gap, ServerEvent, Snapshot
from ..._state import ConnectionState, DelaySource, Transition
from ...testing._node_process import child_environment
from ._arrivals import freeze_heap
from ._collect import HeldCollection, everyone_back

__all__ = ["ClientRecord", "Crowd", "CrowdStatus", "open_crowd"]

#: The most clients one child process runs.
CLIENTS_PER_PROCESS: Final = 50
#: Each child runs in a session of its own, as clients on other machines
#: would: the terminal's Ctrl-C reaches only the parent (which stops the
#: children), and where Linux groups the CPU by session (autogroup), the crowd
#: does not share the server's share of it. On a machine busy with other work
#: that halved the demo's peak (:mod:`._arrivals`); the demo then takes a share
#: per crowd process.
_OWN_SESSION: Final = sys.platform != "win32"
#: Seconds between the child's status lines.
STATUS_INTERVAL: Final = 0.2
#: What the parent writes to end the crowd.
STOP: Final = b"stop\n"
#: What the parent writes just before it restarts the server: collect now, then not until
#: every client is back (:mod:`._collect`).
COLLECT: Final = b"collect\n"


@attrs.define(eq=False)
class ClientRecord:
    """What one demo client saw."""

    ids: list[str] = attrs.field(factory=list)
    gaps: int = 0
    durations: list[float] = attrs.field(factory=list)
    #: For each duration, the part beyond the waits the server asked for.
    beyond: list[float] = attrs.field(factory=list)
    lost_at: float | None = None
    waited: float = 0.0
    ready: bool = False

    def on_transition(self, transition: Transition) -> None:
        if transition.state is ConnectionState.OPEN:
            self.ready = True
            if self.lost_at is not None:
                duration = transition.time - self.lost_at
                self.durations.append(duration)
                self.beyond.append(duration - min(self.waited, duration))
                self.lost_at = None
            self.waited = 0.0
            return
        if transition.previous is ConnectionState.OPEN:
            self.ready = False
            self.lost_at = transition.time
        if transition.delay_source is DelaySource.SERVER and transition.delay is not None:
            self.waited += transition.delay


@attrs.frozen
class CrowdStatus:
    """The crowd's counters, as of its last status line."""

    connected: int = 0
    delivered: int = 0
    min_delivered: int = 0
    median_reconnect: float | None = None
    median_beyond: float | None = None
    reconnects: int = 0


def _status(records: list[ClientRecord], reported: list[int]) -> dict[str, Any]:
    """A status line: counters, and the reconnects finished since ``reported`` (then updated)."""
    durations: list[float] = []
    beyond: list[float] = []
    for i, r in enumerate(records):
        durations += r.durations[reported[i] :]
        beyond += r.beyond[reported[i] :]
        reported[i] = len(r.durations)
    return {
        "connected": sum(r.ready for r in records),
        "delivered": sum(len(r.ids) for r in records),
        "min_delivered": min(len(r.ids) for r in records),
        "durations": durations,
        "beyond": beyond,
    }


async def _run_client(url: str, record: ClientRecord, seed: int) -> None:
    async with open_reconnecting_websocket(
        url, random=random.Random(seed), on_transition=record.on_transition, max_attempts=None
    ) as ws:
        async for item in ws:
            if isinstance(item, ServerEvent):
                record.ids.append(item.id)
            elif isinstance(item, Gap | Snapshot):
                record.gaps += 1


async def _child(url: str, clients: int, first: int) -> None:
    records = [ClientRecord() for _ in range(clients)]
    reported = [0] * clients
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    collection = HeldCollection()
    held_at: list[int] = []  # each client's reconnects when the collection was held

    def say(line: dict[str, Any]) -> None:
        print(json.dumps(line), flush=True)

    async with trio.open_nursery() as crowd:
        for i, record in enumerate(records):
            crowd.start_soon(_run_client, url, record, first + i)

        async def report() -> None:
            # What was made before every client was up stays out of later
            # collections; each later full collection runs just before a
            # restart, when the parent asks for it (._collect).
            frozen = False
            while True:
                if not frozen and all(r.ready for r in records):
                    freeze_heap()
                    frozen = True
                if collection.held and everyone_back(
                    held_at, [len(r.durations) for r in records], [r.ready for r in records]
                ):
                    collection.release()
                say(_status(records, reported))
                await trio.sleep(STATUS_INTERVAL)

        crowd.start_soon(report)
        async for command in _commands(stdin):
            if command == COLLECT:
                held_at[:] = [len(r.durations) for r in records]
                collection.hold()
                say({"collected": collection.collections})
            elif command == STOP:
                break
        crowd.cancel_scope.cancel()  # every client leaves, closing with 1000
    fields = ("ids", "gaps", "durations", "beyond")
    say({"records": [{name: getattr(r, name) for name in fields} for r in records]})


async def _commands(stdin: trio.abc.ReceiveStream) -> AsyncIterator[bytes]:
    """The parent's command lines, until stdin ends."""
    buffer = b""
    while chunk := await stdin.receive_some():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line + b"\n"


@attrs.define(eq=False)
class _Child:
    """The parent's side of one crowd process."""

    process: trio.Process
    changed: _Changed
    connected: int = 0
    delivered: int = 0
    min_delivered: int = 0
    durations: list[float] = attrs.field(factory=list)
    beyond: list[float] = attrs.field(factory=list)
    records: list[ClientRecord] | None = None
    ended: bool = False
    collected: int = 0

    async def read(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        while chunk := await self.process.stdout.receive_some():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self._take(json.loads(line))
        self.ended = True
        self.changed.fire()

    def _take(self, line: dict[str, Any]) -> None:
        if "records" in line:
            self.records = [ClientRecord(**r) for r in line["records"]]
        elif "collected" in line:
            self.collected = line["collected"]
        else:
            self.connected = line["connected"]
            self.delivered = line["delivered"]
            self.min_delivered = line["min_delivered"]
            self.durations += line["durations"]
            self.beyond += line["beyond"]
        self.changed.fire()

    async def send(self, command: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(command)


@attrs.define(eq=False)
class _Changed:
    """Wakes whoever waits for news from any child."""

    event: trio.Event = attrs.field(factory=trio.Event)

    def fire(self) -> None:
        self.event.set()
        self.event = trio.Event()


@attrs.define(eq=False)
class Crowd:
    """The parent's side of the crowd: its child processes, as one."""

    clients: int
    _children: list[_Child]
    _changed: _Changed

    @property
    def status(self) -> CrowdStatus:
        """The crowd's counters, as of each child's last status line."""
        children = self._children
        durations = [d for c in children for d in c.durations]
        return CrowdStatus(
            connected=sum(c.connected for c in children),
            delivered=sum(c.delivered for c in children),
            min_delivered=min(c.min_delivered for c in children),
            median_reconnect=percentile(durations, 50),
            median_beyond=percentile([b for c in children for b in c.beyond], 50),
            reconnects=len(durations),
        )

    @property
    def pids(self) -> list[int]:
        """The child processes' ids."""
        return [c.process.pid for c in self._children]

    @property
    def collected(self) -> int:
        """How many collections every child made when asked (:meth:`collect`)."""
        return min(c.collected for c in self._children)

    async def _wait(self) -> None:
        if any(c.ended or c.records is not None for c in self._children):
            raise RuntimeError("the demo's crowd process ended early")
        await self._changed.event.wait()

    async def wait_until(
        self, *, connected: int | None = None, delivered: int = 0, reconnects: int = 0
    ) -> None:
        """Wait until ``connected`` clients (default: all) are up, each with ``delivered`` events,
        and ``reconnects`` reconnects were made in all.

        Raises:
            RuntimeError: if a crowd process ends first.
        """
        want = self.clients if connected is None else connected
        while True:
            status = self.status
            if (
                status.connected >= want
                and status.min_delivered >= delivered
                and status.reconnects >= reconnects
            ):
                return
            await self._wait()

    async def collect(self) -> None:
        """Have every child collect its garbage now, then not until its clients are back.

        Raises:
            RuntimeError: if a crowd process ends first.
        """
        want = self.collected + 1
        for child in self._children:
            await child.send(COLLECT)
        while self.collected < want:
            await self._wait()

    async def stop(self) -> list[ClientRecord]:
        """Every client leaves; what each one received, in the order of their seeds."""
        for child in self._children:
            await child.send(STOP)
        while any(c.records is None for c in self._children):
            if any(c.ended and c.records is None for c in self._children):
                raise RuntimeError("the demo's crowd process ended without its records")
            await self._changed.event.wait()
        return [r for c in self._children for r in c.records or ()]


def shares(clients: int) -> list[int]:
    """How many clients each child process runs: as even as can be, at most
    :data:`CLIENTS_PER_PROCESS` each.

    Raises:
        ValueError: if ``clients`` is not positive.
    """
    if clients < 1:
        raise ValueError(f"clients must be at least 1, got {clients}")
    processes = -(-clients // CLIENTS_PER_PROCESS)
    small, extra = divmod(clients, processes)
    return [small + (i < extra) for i in range(processes)]


@contextlib.asynccontextmanager
async def open_crowd(url: str, clients: int) -> AsyncIterator[Crowd]:
    """Start ``clients`` clients of ``url`` in child processes; stop them on the way out."""
    changed = _Changed()
    children: list[_Child] = []
    try:
        async with trio.open_nursery() as nursery:
            first = 0
            for share in shares(clients):
                command = [sys.executable, "-m", __name__, url, str(share), str(first)]
                process = await trio.lowlevel.open_process(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=child_environment(),
                    start_new_session=_OWN_SESSION,
                )
                children.append(_Child(process, changed))
                nursery.start_soon(children[-1].read)
                first += share
            try:
                yield Crowd(clients, children, changed)
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for child in children:
                if child.process.returncode is None:
                    child.process.kill()
                await child.process.wait()


def main(argv: list[str]) -> int:
    """The child: ``URL CLIENTS FIRST``."""
    url, clients, first = argv[0], int(argv[1]), int(argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    trio.run(_child, url, clients, first)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
