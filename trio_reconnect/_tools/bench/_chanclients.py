"""The channel bench's clients, seen from the measuring side: processes of :mod:`._chanworker`.

:func:`open_clients` starts ``processes`` children for one server, each with
a contiguous share of the clients, and returns once every client is
subscribed. :meth:`ClientProcesses.expect` tells every child what the next
publish brings (and waits for their ``ok``, so that nothing arrives before a
child knows to time it); :meth:`ClientProcesses.wait` collects the arrival
times and the children's CPU time, or raises :class:`~._crowd.FanoutError`
with what a child found wrong.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Final

import attrs
import trio

from ._crowd import STEP_TIMEOUT, FanoutError
from ._fanout import _Lines

__all__ = ["ClientProcesses", "open_clients"]

#: Seconds a child has to exit once its standard input is closed (then it is killed).
_EXIT_TIMEOUT: Final = 5.0


@attrs.define(eq=False)
class _Child:
    process: trio.Process
    lines: _Lines

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(f"{line}\n".encode())


@attrs.define(eq=False)
class ClientProcesses:
    """The client processes of one server."""

    kind: str
    children: list[_Child] = attrs.field(factory=list)

    async def _answers(self, what: str, seconds: float) -> list[dict[str, object]]:
        answers = []
        with trio.move_on_after(seconds) as scope:
            for child in self.children:
                line = await child.lines.line()
                answer = {"ok": True} if line in ("ok", "ready") else json.loads(line)
                if "error" in answer:
                    raise FanoutError(f"{what}: {self.kind} clients: {answer['error']}")
                answers.append(answer)
        if scope.cancelled_caught:
            raise FanoutError(f"{what}: the {self.kind} client processes did not answer")
        return answers

    async def expect(self, start: int, count: int) -> None:
        """The next publish is of ``count`` events round robin from channel ``start``."""
        for child in self.children:
            await child.send(f"expect {start} {count}")
        await self._answers("expect", STEP_TIMEOUT)

    async def wait(self, what: str) -> tuple[list[float], float]:
        """Every expected event's arrival; ``(arrival times, the children's CPU seconds)``."""
        answers = await self._answers(what, 2 * STEP_TIMEOUT)
        arrivals: list[float] = []
        cpu = 0.0
        for answer in answers:
            times = answer["arrivals"]
            spent = answer["cpu"]
            assert isinstance(times, list)
            assert isinstance(spent, float)
            arrivals += times
            cpu += spent
        return arrivals, cpu


async def _stop(process: trio.Process) -> None:
    with trio.CancelScope(shield=True):
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                await pipe.aclose()
        with trio.move_on_after(_EXIT_TIMEOUT):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def open_clients(
    kind: str,
    port: int,
    *,
    clients: int,
    count: int,
    subscriptions: int,
    processes: int,
    at_once: int,
    receive_buffer: int = 0,
) -> AsyncIterator[ClientProcesses]:
    """Start the clients of the server on ``port``, subscribed once this returns.

    ``clients`` clients, each subscribed to ``subscriptions`` of ``count``
    channels (:meth:`~._chanfanout.ChannelOptions.channels_of`). ``at_once``:
    clients connecting at the same time, all the processes together.
    ``receive_buffer``: each socket's ``SO_RCVBUF`` (0: the system's).
    """
    crowd = ClientProcesses(kind)
    share = -(-clients // processes)
    async with contextlib.AsyncExitStack() as stack:
        for first in range(0, clients, share):
            argv = {
                "port": port,
                "first": first,
                "last": min(clients, first + share),
                "clients": clients,
                "count": count,
                "subscriptions": subscriptions,
                "at-once": max(1, at_once // processes),
                "receive-buffer": receive_buffer,
            }
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "trio_reconnect._tools.bench._chanworker"]
                + [f"--{name}={value}" for name, value in argv.items()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            stack.push_async_callback(_stop, process)
            assert process.stdout is not None
            crowd.children.append(_Child(process, _Lines(process.stdout)))
        batches = -(-share // max(1, at_once // processes))
        await crowd._answers("subscribing", STEP_TIMEOUT * (batches + 1))
        yield crowd
