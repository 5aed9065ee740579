"""The Redis clients of a backend: their owners, their turns, and the one way to run a command.

coredis's pool-slot leak, and how the backends keep out of it
-------------------------------------------------------------

A coredis pool loses a slot for good whenever a leased connection dies or
a command on it is cancelled halfway: a cancelled blocked XREAD, a blocked
XREAD whose connection the server killed (TRIO_NOTES). Once its slots are
gone every command waits for the pool timeout. So here:

* **No command is ever cancelled halfway.** Every call runs in a shielded
  scope with its own deadline (``timeout``, plus the block for an XREAD),
  and cancellation is delivered at a checkpoint right after it (except
  after an append, which returns the id it stored). A blocked
  XREAD blocks at most ``read_block`` (default 0.1 s), so a cancelled tail
  returns within that; :meth:`RedisStreamLog.tail` with a longer ``block``
  is a loop of such reads.
* **A client that had a connection error, or a command that hit its
  deadline, is replaced**, with its pool and whatever slots it lost. A
  coredis client is an async context manager around a task group, so one
  task must enter and leave it: each lives in a task of its own in the
  log's nursery. A failing caller retires it, and its owner enters a fresh
  one at once, without waiting for the old one to leave (which can take its
  stream timeout when Redis stopped answering).
* **The tail has its own client**, so that blocked reads never queue the
  publish path behind them, and every client has a ``pool_timeout``.
* **A client replaced under a command fails it as unavailable**, whatever
  coredis raised (once its pool has exited, a ``RuntimeError``).

coredis's writer, and why commands take turns
---------------------------------------------

coredis 6.9 multiplexes: a command other than a blocked read leases a
pooled connection only to queue itself on it, and the pool is a stack, so
the commands of one client pile onto one connection. That connection's
writer task gathers what is queued and, after each checkpoint, gathers
again; it sends only once a pass added nothing. So while new commands keep
arriving in every scheduler pass (a reconnect storm on a loaded node: one
handshake read per pass) it sends nothing at all. Measured against a real
redis-server: of 500 handshakes, each holding the loop 10 ms, 185 reads
were never sent; the first failed "no answer within 2 s", replacing the
client failed the others ("Connection lost!"), and the node, taking Redis
for down, refused the next 295 clients with 503 (docs/explanation/design.md).

So each client lets ``max_in_flight`` commands run at once; the others wait
their turn on a semaphore. With that many queued, no pass adds another, and
the writer sends. The wait for a turn sends nothing, so it is cancellable
and it is not on the ``timeout`` clock (a queue of commands is not Redis
failing); a caller bounds it with its own deadline, as the resume handshake
does with the handshake timeout.

Errors out of coredis never leave this package: a connection error, a
timeout or an ``OSError`` (found inside exception groups too) is
:class:`LogUnavailableError`; any other Redis error (a key of the wrong type,
say) is :class:`EventLogError`.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Final, TypeVar

import anyio
import attrs
import coredis
import coredis.exceptions
import trio
from coredis.retry import NoRetryPolicy

from ..._exceptions import leaves
from .._logbase import EventLogError, LogUnavailableError

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_TIMEOUT",
    "ClientOwner",
    "Store",
    "check_url",
    "unavailable",
]

_logger = logging.getLogger("trio_reconnect.server")

#: Seconds to connect, to get a pooled connection, and for a command to answer (from its turn).
DEFAULT_TIMEOUT: Final = 2.0
#: Connections in each client's pool (coredis's own default).
DEFAULT_MAX_CONNECTIONS: Final = 64
#: Commands each client has in flight at once; the others wait their turn,
#: outside their ``timeout`` (the module's notes on coredis's writer).
DEFAULT_MAX_IN_FLIGHT: Final = 16
#: Pause before an owner enters a new client after entering one failed.
_REENTER_PAUSE: Final = 0.05

_T = TypeVar("_T")

#: What a lost connection looks like from coredis: its own error, a timeout,
#: the socket's error, or (a command still in flight on a client that was
#: replaced meanwhile) the anyio stream it was reading being closed.
_CONNECTION_LOST: Final = (
    coredis.exceptions.ConnectionError,
    TimeoutError,
    OSError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
)


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or a leaf of its group) means Redis could not be reached."""
    return any(isinstance(leaf, _CONNECTION_LOST) for leaf in leaves(exc))


@attrs.define(eq=False)
class ClientOwner:
    """Owns one coredis client at a time, in its own task; enters a new one when it is retired.

    A coredis client is an async context manager around a task group, so it
    must be entered and left by one task: this one. Callers borrow the
    current client with :meth:`client` and hand it back broken with
    :meth:`retire` (by identity, so a late failure of an old client never
    retires its successor).
    """

    make: Callable[[], coredis.Redis[bytes]]
    name: str
    #: The turns of the commands in flight on this owner's clients.
    turns: trio.Semaphore
    _client: coredis.Redis[bytes] | None = attrs.field(default=None, init=False)
    _available: trio.Event = attrs.field(factory=trio.Event, init=False)
    #: Set to retire the current client (a fresh Event per client).
    _retired: trio.Event = attrs.field(factory=trio.Event, init=False)
    generations: int = attrs.field(default=0, init=False)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Each client lives in a task of its own, so a new one is in service
        # at once while the old one is still leaving (which can take its
        # stream timeout when the server stopped answering).
        async with trio.open_nursery() as nursery:
            started = False
            while True:
                self._retired = trio.Event()
                try:
                    await nursery.start(self._hold, self._retired)
                except Exception as exc:
                    _logger.debug("redis client %s could not be entered: %r", self.name, exc)
                    await trio.sleep(_REENTER_PAUSE)
                    continue
                finally:
                    if not started:
                        started = True
                        task_status.started()
                await self._retired.wait()

    async def _hold(
        self, retired: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        client: coredis.Redis[bytes] | None = None
        try:
            async with self.make() as client:
                self._client = client
                self.generations += 1
                self._available.set()
                task_status.started()
                await retired.wait()
        except Exception as exc:  # the old client's failures end here, never leak
            _logger.debug("redis client %s left after %r", self.name, exc)
        finally:
            self.retire(client)

    async def client(self) -> coredis.Redis[bytes]:
        """The current client (waits while a new one is entered)."""
        while self._client is None:
            await self._available.wait()
        return self._client

    def replaced(self, client: coredis.Redis[bytes] | None) -> bool:
        """Whether ``client`` was retired (by any caller) since it was borrowed."""
        return client is not None and client is not self._client

    def retire(self, client: coredis.Redis[bytes] | None) -> None:
        """Replace ``client`` (if it is still the current one) with a fresh one."""
        if client is not None and client is self._client:
            self._client = None
            self._available = trio.Event()
            self._retired.set()


def check_url(url: object) -> None:
    """Raise ``ValueError`` unless ``url`` is a Redis URL coredis can connect to.

    coredis itself takes ``"nonsense"`` or ``"http://x"`` and fails only when
    it connects; this says what is wrong at once.
    """
    if not isinstance(url, str):
        raise ValueError(f"the Redis URL must be a string, got {url!r}")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a Redis URL: {url!r} ({exc})") from None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"a unix:// Redis URL needs a socket path: {url!r}")
        return
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"a Redis URL starts with redis://, rediss:// or unix://, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"the Redis URL has no host: {url!r}")
    if port == 0:
        raise ValueError(f"the Redis URL has port 0: {url!r}")
    db = parts.path.lstrip("/")
    if db and not (db.isascii() and db.isdigit()):
        raise ValueError(f"the Redis URL's database must be a number, got {db!r} in {url!r}")


@attrs.define(eq=False)
class Store:
    """The shared machinery: client owners in a nursery, and the one way to run a command."""

    url: str = attrs.field(
        repr=False, validator=lambda _instance, _attribute, value: check_url(value)
    )
    timeout: float
    max_connections: int
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    _stack: AsyncExitStack | None = attrs.field(default=None, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)

    def owner(self, name: str, *, stream_timeout: float) -> ClientOwner:
        def make() -> coredis.Redis[bytes]:
            return coredis.Redis.from_url(
                self.url,
                retry_policy=NoRetryPolicy(),
                pool_timeout=self.timeout,
                connect_timeout=self.timeout,
                stream_timeout=stream_timeout,
                max_connections=self.max_connections,
                client_name=f"trio_reconnect:{name.replace(' ', '-')}",
            )

        return ClientOwner(make, name, trio.Semaphore(self.max_in_flight))

    async def open(self, owners: Sequence[ClientOwner]) -> None:
        if self._stack is not None:
            raise RuntimeError("already open")
        stack = AsyncExitStack()
        nursery = await stack.enter_async_context(trio.open_nursery())
        self._stack, self._nursery = stack, nursery
        for owner in owners:
            await nursery.start(owner.run)

    async def start(self, task: Callable[..., Awaitable[object]]) -> None:
        """Run ``task`` (started as by ``nursery.start``) in the store's nursery until it closes."""
        if self._nursery is None:
            raise RuntimeError("the Redis store is not open")
        await self._nursery.start(task)

    async def close(self) -> None:
        stack, nursery = self._stack, self._nursery
        self._stack = self._nursery = None
        if stack is None or nursery is None:
            return
        nursery.cancel_scope.cancel()
        await stack.aclose()

    async def call(
        self,
        owner: ClientOwner,
        op: Callable[[coredis.Redis[bytes]], Awaitable[_T]],
        *,
        what: str,
        extra: float = 0.0,
        checkpoint: bool = True,
    ) -> _T:
        """Run one command on ``owner``'s client, uncancelled, within ``timeout + extra`` seconds.

        Raises:
            LogUnavailableError: on a connection error or timeout (the client is replaced).
            EventLogError: on any other Redis error.
        """
        if self._nursery is None:
            raise RuntimeError(f"use the Redis {owner.name} as 'async with' before {what}")
        bound = self.timeout + extra
        client: coredis.Redis[bytes] | None = None
        # The wait for a turn sends nothing: it is cancellable, and not on
        # the clock of ``bound`` (a queue of commands is not Redis failing).
        async with owner.turns:
            # Shielded: a command cancelled halfway loses a pool slot for good.
            with trio.move_on_after(bound, shield=True) as scope:
                try:
                    client = await owner.client()
                    result = await op(client)
                except Exception as exc:
                    # A client replaced under a command fails it with anything
                    # (a RuntimeError once its pool has exited): that is the
                    # failure it was replaced for, not a Redis error.
                    if unavailable(exc) or owner.replaced(client):
                        owner.retire(client)
                        raise LogUnavailableError(
                            f"Redis at {self._where()}: {what}: {exc}"
                        ) from exc
                    raise EventLogError(f"Redis at {self._where()}: {what}: {exc!r}") from exc
            if scope.cancelled_caught:
                owner.retire(client)
                raise LogUnavailableError(
                    f"Redis at {self._where()}: {what}: no answer within {bound:g} s"
                )
        if checkpoint:
            await trio.lowlevel.checkpoint()
        return result

    def _where(self) -> str:
        # The URL without its credentials (never log a password).
        rest = self.url.split("://", 1)[-1]
        return rest.rsplit("@", 1)[-1]
