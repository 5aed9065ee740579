"""The event log on a Redis stream (:class:`RedisStreamLog`).

How the log sits on a stream
----------------------------

The log is one Redis stream (``stream``) plus one hash (``stream + ":meta"``)
holding ``seq``, the newest id issued, and ``first``, the first id of this
incarnation of the log. Event ``n`` is the stream entry ``n-0`` with one
field, ``d``, its JSON payload. Stream ids are never shown to anyone: ids
leave this module as canonical decimal strings (``"42"``), and ids come in
through :func:`~trio_reconnect.server._logbase.parse_event_id` only (Redis
itself would take ``"0042-0"`` for ``"42-0"``).

*Append* is one Lua script: read ``seq``, XADD entry ``seq + 1`` with ``MAXLEN
~ max_len``, then store the new ``seq``. The XADD comes before the write of
``seq``, so a script that fails leaves nothing behind. When the hash is
missing (a new log, or Redis lost its data: restarted without persistence,
flushed, evicted) the script starts from the clock id the caller passes in
(:func:`~trio_reconnect.server._logbase.clock_start_id`), or one above the
stream's top entry if that is higher, and records it as ``first``. Every id
of the new incarnation is then above every id an earlier one issued
(PROTOCOL.md sections 2 and 3.3), and an old ``lastEventId`` reads as unknown.
Lua numbers are doubles: ids are formatted with ``string.format('%d', n)``
(``n .. '-0'`` prints 16-digit numbers as ``1.79e+15``), and exact up to
2**53, far above a clock id in microseconds; a larger id from a client is
unknown without reaching Redis.

*The publish path never retries.* A retried EVALSHA whose first attempt did
run would store the event twice, so the clients run with coredis's
``NoRetryPolicy`` (its default retries on connection errors and timeouts).
An append whose connection fails raises :class:`LogUnavailableError`; the
event may or may not be stored, and if it is, every reader sees it once.
(A ``NOSCRIPT`` answer to EVALSHA, after Redis restarted, is followed by
an EVAL of the same script: that is safe, a ``NOSCRIPT`` EVALSHA ran
nothing.)

*read_after* is one read-only Lua script, so ``newest`` and the events come
from one instant: it answers "not held" when the asked id is outside
``[first, seq]`` or its gap exceeds ``limit``, else returns ``seq``, ``first``
and the XRANGE of the gap. Because ids are consecutive, "is the gap after
``L`` fully held" is then exact arithmetic: it is held iff XRANGE returned
exactly ``seq - L`` entries starting at ``L + 1``. No XINFO field is needed
(Redis 6.2 lacks ``entries-added`` and ``max-deleted-entry-id``), so Redis
6.2 and 7.x behave alike; MAXLEN ``~`` trimming (which keeps between
``max_len`` and about ``max_len + 100`` entries) is seen exactly as it is.

*tail* is XREAD after ``L-0``. The entries it returns must start at ``L +
1`` and run on consecutively; anything else means entries were trimmed
before the reader got to them or the counter restarted from the clock, and
it raises :class:`LogDiscontinuityError`. A tail that found nothing checks
``seq`` before it returns: Redis restarted empty (no hash) or a ``seq``
below ``L``, or entries after ``L`` that are issued but not held (the
stream was deleted), is a discontinuity too, found within one ``block``
even when nothing is published.

The keys are plain (``stream``, ``stream:meta``, and the registry's keys
built inside a script), so this is for a standalone Redis (with replicas or
Sentinel if you like), not Redis Cluster.

The continuity rule (when a read is whole, when a tail follows on):
:mod:`trio_reconnect.server._redis._continuity`; the scripts:
:mod:`trio_reconnect.server._redis._scripts`; how commands run, uncancelled
and in turns: :mod:`trio_reconnect.server._redis._store`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, Final, NoReturn, cast

import attrs
import coredis
import trio

from ..._validators import check_int, check_non_negative, positive_int, positive_number
from .._logbase import LogDiscontinuityError, LoggedEvent, LogRead, clock_start_id
from ._continuity import (
    LogState,
    decode,
    entry_seq,
    gap_is_whole,
    idle_position_lost,
    parse_entries,
    safe_seq,
    tail_follows,
)
from ._scripts import APPEND, READ, STATE
from ._store import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_TIMEOUT,
    ClientOwner,
    Store,
)

__all__ = ["DEFAULT_MAX_LEN", "DEFAULT_READ_BLOCK", "DEFAULT_STREAM", "RedisStreamLog"]

#: The stream key a :class:`RedisStreamLog` uses by default.
DEFAULT_STREAM: Final = "trio_reconnect:events"
#: Events the stream keeps by default (``MAXLEN ~``: Redis keeps up to about 100 more).
DEFAULT_MAX_LEN: Final = 10_000
#: Longest single blocked XREAD, seconds: how late a cancelled tail returns.
DEFAULT_READ_BLOCK: Final = 0.1


@attrs.define(eq=False)
class RedisStreamLog:
    """An :class:`~trio_reconnect.server.EventLog` on a Redis stream, shared by every node.

    Use it as an async context manager; it owns its Redis clients (one for
    appends and reads, one for the tail) for that long::

        async with RedisStreamLog("redis://127.0.0.1:6379/0") as log:
            event_id = await log.append({"price": 42})

    Args:
        url: ``redis://[[user]:password@]host:port/db`` (or ``rediss://``, ``unix://``).
        stream: The stream's key; ``stream + ":meta"`` holds the id counter.
        max_len: Events the stream keeps (``MAXLEN ~``; Redis keeps up to
            about 100 more). Size it above ``max_replay`` plus what is
            published during a drain window (docs/howto/redis.md).
        timeout: Seconds to connect, to get a pooled connection, and for
            any command to answer, counted from its turn (``max_in_flight``);
            beyond it the call raises
            :class:`~trio_reconnect.server.LogUnavailableError`.
        read_block: Longest single blocked XREAD, seconds. A cancelled
            :meth:`tail` returns within about this long (the read itself is
            never cancelled; see the module's notes on coredis).
        max_connections: Connections in each client's pool.
        max_in_flight: Commands each client has in flight at once (the
            handshake reads of a reconnect storm, say); the others wait
            their turn, and that wait is not counted in ``timeout``: a
            queue of commands is not Redis failing. A caller bounds it with
            its own deadline (cancelling a wait sends nothing).
    """

    url: str = attrs.field(repr=False)  # it may hold a password
    stream: str = attrs.field(default=DEFAULT_STREAM, kw_only=True)
    max_len: int = attrs.field(default=DEFAULT_MAX_LEN, kw_only=True, validator=positive_int)
    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, kw_only=True, validator=positive_number)
    read_block: float = attrs.field(
        default=DEFAULT_READ_BLOCK, kw_only=True, validator=positive_number
    )
    max_connections: int = attrs.field(
        default=DEFAULT_MAX_CONNECTIONS, kw_only=True, validator=positive_int
    )
    max_in_flight: int = attrs.field(
        default=DEFAULT_MAX_IN_FLIGHT, kw_only=True, validator=positive_int
    )
    _store: Store = attrs.field(init=False, repr=False)
    _main: ClientOwner = attrs.field(init=False, repr=False)
    _tail: ClientOwner = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._store = Store(self.url, self.timeout, self.max_connections, self.max_in_flight)
        self._main = self._store.owner("log", stream_timeout=self.timeout)
        self._tail = self._store.owner("log tail", stream_timeout=self.timeout + self.read_block)

    @property
    def _keys(self) -> list[str]:
        return [self.stream, self.stream + ":meta"]

    async def __aenter__(self) -> RedisStreamLog:
        await self._store.open([self._main, self._tail])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._store.close()

    @property
    def client_generations(self) -> tuple[int, int]:
        """How many Redis clients were entered so far: (appends and reads, tail).

        Each connection error or deadline replaces one; for monitoring and tests.
        """
        return (self._main.generations, self._tail.generations)

    async def append(self, data: Any) -> str:
        """Store one event and return its id; never retried.

        Raises:
            TypeError: if ``data`` is not JSON-serialisable (nothing is stored).
            ValueError: if it holds a NaN or an infinity (nothing is stored).
            LogUnavailableError: Redis did not answer; the event may or may not be stored.
        """
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        args = [str(clock_start_id()), str(self.max_len), payload]

        async def op(client: coredis.Redis[bytes]) -> object:
            return await APPEND.run(client, keys=self._keys, args=args)

        # No checkpoint after: an append that ran returns its id even if cancelled meanwhile.
        reply = await self._store.call(self._main, op, what="append", checkpoint=False)
        return str(entry_seq(reply))

    async def newest(self) -> str | None:
        """The id of the newest event, or ``None`` when the log is empty (or Redis lost it)."""

        async def op(client: coredis.Redis[bytes]) -> object:
            return await client.hget(self._keys[1], "seq")

        reply = await self._store.call(self._main, op, what="newest")
        return None if reply is None else decode(reply)

    async def read_after(self, event_id: str | None, *, limit: int) -> LogRead:
        """Every event after ``event_id``, with the newest id, in one consistent read.

        An id this log never issued (malformed, non-canonical, too large,
        from an earlier incarnation) gives ``events=None``.
        """
        check_int("limit", limit, minimum=0)
        if event_id is None:
            after = ""
        else:
            seq = safe_seq(event_id)
            if seq is None:
                return LogRead(await self.newest(), None)
            after = str(seq)

        async def op(client: coredis.Redis[bytes]) -> object:
            return await READ.run(client, keys=self._keys, args=[after, str(limit)])

        reply = cast(list[Any], await self._store.call(self._main, op, what="read"))
        if not reply:
            return LogRead(None, [] if event_id is None else None)
        newest, first = int(reply[0]), int(reply[1])
        if len(reply) < 3:
            return LogRead(str(newest), None)
        start = first if event_id is None else int(after) + 1
        events = parse_entries(reply[2])
        if not gap_is_whole(events, start=start, newest=newest):
            return LogRead(str(newest), None)
        return LogRead(str(newest), events)

    async def tail(self, after: str | None, *, limit: int, block: float) -> Sequence[LoggedEvent]:
        """The events after ``after``, at most ``limit``; blocks up to ``block`` s for one.

        Runs blocked XREADs of at most ``read_block`` seconds each (never
        cancelled; cancellation is delivered between them) on its own client.

        Raises:
            LogDiscontinuityError: the entries right after ``after`` are gone
                (trimmed, or Redis lost its data and the ids restarted from
                the clock), or ``after`` is no id of this log.
            LogUnavailableError: Redis did not answer.
        """
        check_int("limit", limit, minimum=1)
        check_non_negative("block", block)
        parsed = 0 if after is None else safe_seq(after)
        if parsed is None:
            await self._discontinuity(after)
        seq: int = parsed
        start = f"{seq}-0"
        deadline = trio.current_time() + block
        while True:
            remaining = max(0.0, deadline - trio.current_time())
            chunk = min(remaining, self.read_block)
            ms = math.ceil(chunk * 1000) if chunk > 0 else None

            async def op(client: coredis.Redis[bytes], ms: int | None = ms) -> object:
                return await client.xread({self.stream: start}, count=limit, block=ms)

            reply = await self._store.call(self._tail, op, what="tail", extra=chunk)
            if reply:
                entries = next(iter(cast(dict[Any, Sequence[Any]], reply).values()))
                events = parse_entries(entries)
                expected_first = seq + 1 if after is not None else await self._first()
                if not tail_follows(events, entries=len(entries), expected_first=expected_first):
                    await self._discontinuity(after)
                return events
            if chunk >= remaining:
                await self._check_idle(after, seq)
                return []

    async def _state(self) -> LogState | None:
        async def op(client: coredis.Redis[bytes]) -> object:
            return await STATE.run(client, keys=self._keys, args=[])

        reply = cast(list[Any], await self._store.call(self._tail, op, what="tail state"))
        if not reply:
            return None
        oldest = None if not reply[2] else entry_seq(reply[2])
        return int(reply[0]), int(reply[1]), oldest

    async def _first(self) -> int | None:
        state = await self._state()
        return None if state is None else state[1]

    async def _check_idle(self, after: str | None, seq: int) -> None:
        """After an empty read: is the position still in this log?"""
        state = await self._state()
        if idle_position_lost(None if after is None else seq, state):
            await self._discontinuity(after, state)

    async def _discontinuity(self, after: str | None, state: LogState | None = None) -> NoReturn:
        if state is None:
            state = await self._state()
        if state is None:
            raise LogDiscontinuityError(after, None, None)
        newest, _, oldest = state
        raise LogDiscontinuityError(after, None if oldest is None else str(oldest), str(newest))
