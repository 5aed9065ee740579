"""The demo's crowd of clients, in a process of its own (see :mod:`._arrivals` for why).

The child, ``python -m trio_reconnect._tools.demo._crowd URL CLIENTS``, runs
the clients and speaks JSON lines on stdout: a status line every
:data:`STATUS_INTERVAL` seconds, and once ``stop`` arrives on stdin (or stdin
ends), every client leaves (closing with 1000) and one last line holds what
each client received. The parent drives it through :func:`open_crowd`.
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


def _status(records: list[ClientRecord]) -> dict[str, Any]:
    durations = [d for r in records for d in r.durations]
    return {
        "connected": sum(r.ready for r in records),
        "delivered": sum(len(r.ids) for r in records),
        "min_delivered": min(len(r.ids) for r in records),
        "median_reconnect": percentile(durations, 50),
        "median_beyond": percentile([b for r in records for b in r.beyond], 50),
        "reconnects": len(durations),
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


async def _child(url: str, clients: int) -> None:
    records = [ClientRecord() for _ in range(clients)]
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    collection = HeldCollection()
    held_at: list[int] = []  # each client's reconnects when the collection was held

    def say(line: dict[str, Any]) -> None:
        print(json.dumps(line), flush=True)

    async with trio.open_nursery() as crowd:
        for i, record in enumerate(records):
            crowd.start_soon(_run_client, url, record, i)

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
                say(_status(records))
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
class Crowd:
    """The parent's side of the crowd process."""

    process: trio.Process
    clients: int
    status: CrowdStatus = attrs.field(factory=CrowdStatus)
    records: list[ClientRecord] | None = None
    ended: bool = False
    #: How many collections the crowd made when asked (:meth:`collect`).
    collected: int = 0
    _changed: trio.Event = attrs.field(factory=trio.Event)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        while chunk := await self.process.stdout.receive_some():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self._take(json.loads(line))
        self.ended = True
        self._changed.set()

    def _take(self, line: dict[str, Any]) -> None:
        if "records" in line:
            self.records = [ClientRecord(**r) for r in line["records"]]
        elif "collected" in line:
            self.collected = line["collected"]
        else:
            self.status = CrowdStatus(**line)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(
        self, *, connected: int | None = None, delivered: int = 0, reconnects: int = 0
    ) -> None:
        """Wait until ``connected`` clients (default: all) are up, each with ``delivered`` events,
        and ``reconnects`` reconnects were made in all.

        Raises:
            RuntimeError: if the crowd process ends first.
        """
        want = self.clients if connected is None else connected
        while (
            self.status.connected < want
            or self.status.min_delivered < delivered
            or self.status.reconnects < reconnects
        ):
            if self.ended or self.records is not None:
                raise RuntimeError("the demo's crowd process ended early")
            await self._changed.wait()

    async def collect(self) -> None:
        """Have the crowd collect its garbage now, then not until every client is back.

        Raises:
            RuntimeError: if the crowd process ends first.
        """
        assert self.process.stdin is not None
        want = self.collected + 1
        await self.process.stdin.send_all(COLLECT)
        while self.collected < want:
            if self.ended or self.records is not None:
                raise RuntimeError("the demo's crowd process ended early")
            await self._changed.wait()

    async def stop(self) -> list[ClientRecord]:
        """Every client leaves; what each one received."""
        assert self.process.stdin is not None
        await self.process.stdin.send_all(STOP)
        while self.records is None:
            if self.ended:
                raise RuntimeError("the demo's crowd process ended without its records")
            await self._changed.wait()
        return self.records


@contextlib.asynccontextmanager
async def open_crowd(url: str, clients: int) -> AsyncIterator[Crowd]:
    """Start ``clients`` clients of ``url`` in a child process; stop it on the way out."""
    command = [sys.executable, "-m", __name__, url, str(clients)]
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_environment()
    )
    crowd = Crowd(process, clients)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(crowd._read)
            try:
                yield crowd
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()


def main(argv: list[str]) -> int:
    """The child: ``URL CLIENTS``."""
    url, clients = argv[0], int(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    trio.run(_child, url, clients)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
