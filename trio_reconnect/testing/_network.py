"""An in-memory network with faults: real trio-websocket code, no sockets.

A :class:`MemoryNetwork` connects the client's ``open_stream`` to listeners
that a server serves (``ReconnectServer.serve_listeners``). Each connection
is a :class:`Link`: two one-way pipes of bytes between two
:class:`trio.abc.Stream` endpoints. The pipes model what TCP shows an
application, and nothing more:

* bytes arrive in order, ``latency`` seconds after they were sent (plus a
  random ``jitter`` drawn from the network's seeded ``random.Random``);
* a pipe holds at most ``window`` bytes in flight; a sender waits while it is
  full (flow control, so a flooding peer meets backpressure);
* closing an endpoint sends FIN: the peer reads what was in flight, then EOF.

The faults, each the way an application sees it:

============================  =============================================
:meth:`Link.reset`            RST: both ends get ``BrokenResourceError`` at
                              once; bytes in flight are lost.
:meth:`Link.close`            A middlebox ends the connection: a websocket
                              close frame to each end (optional), then FIN.
:meth:`Link.blackhole`        Half-open: every byte, FIN included, vanishes
                              from now on. Neither end hears anything.
:meth:`MemoryNetwork.refuse`  New connections get ``ConnectionRefusedError``
                              for a while.
:meth:`MemoryNetwork.         Bytes between the named hosts and the servers
partition` / ``heal``         stop moving (and new connections wait) until
                              healed; then everything queued is delivered,
                              as TCP would retransmit it.
latency / jitter              Per network, changeable at any time.
============================  =============================================

Everything runs on trio's clock, so under ``autojump_clock`` a fault
schedule is exact and, with a seeded ``random``, reproducible.

This module holds the model (the network, its links and their faults); the
bytes of one direction are a :class:`~trio_reconnect.testing._pipe.Pipe`, and
the server's side of an address is a :class:`MemoryListener`
(:mod:`trio_reconnect.testing._listener`).
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import operator
import random as _random
import ssl
from collections.abc import Callable, Iterable
from typing import Final

import attrs
import trio

from .._hints import GOING_AWAY
from .._transport import OpenStream, Target, start_tls
from .._validators import check_int, check_non_negative, check_positive
from ._listener import MemoryListener
from ._pipe import Pipe, close_frame

__all__ = [
    "DEFAULT_WINDOW",
    "Link",
    "MemoryNetwork",
    "NetworkStatistics",
]

#: Bytes a pipe holds in flight before the sender waits (a TCP window).
DEFAULT_WINDOW: Final = 256 * 1024


class _Addresses:
    """What trio-websocket asks of ``SSLStream.transport_stream.socket``."""

    def __init__(self, local: tuple[str, int], peer: tuple[str, int]) -> None:
        self._local = local
        self._peer = peer

    def getsockname(self) -> tuple[str, int]:
        return self._local

    def getpeername(self) -> tuple[str, int]:
        return self._peer


class _Endpoint(trio.abc.Stream):
    """One end of a :class:`Link`."""

    def __init__(self, link: Link, outgoing: Pipe, incoming: Pipe, name: str) -> None:
        self._link = link
        self._out = outgoing
        self._in = incoming
        self._name = name
        self._closed = False
        self._sending = False
        self._receiving = False

    def __repr__(self) -> str:
        return f"<memory stream {self._name} of {self._link!r}>"

    @property
    def socket(self) -> _Addresses:
        """Addresses, as a socket would tell them (trio-websocket reads them under TLS)."""
        network = self._link._network
        client = (network.address_of(self._link.client), 1024 + self._link.id % 64000)
        server = (network.address_of(self._link.target.host), self._link.target.port)
        if self._name == "client":
            return _Addresses(client, server)
        return _Addresses(server, client)

    @property
    def link(self) -> Link:
        """The connection this endpoint belongs to."""
        return self._link

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")
        self._sending = True
        try:
            if data:
                await self._out.write(bytes(data))
            else:
                await trio.lowlevel.checkpoint()
        finally:
            self._sending = False
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")
        self._sending = True
        try:
            await self._out.wait_writable()
        finally:
            self._sending = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be at least 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")
        self._receiving = True
        try:
            return await self._in.read(max_bytes)
        finally:
            self._receiving = False

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.writer_closed = True
            self._out.finish()
            self._in.reader_closed = True
            self._in.wake()
            self._link._endpoint_closed()
        await trio.lowlevel.checkpoint()


class Link:
    """One connection of a :class:`MemoryNetwork`, with its faults.

    Attributes:
        id: A number, unique in the network, in order of connection.
        client: The name of the client host that opened it.
        target: Where the client connected to.
        client_stream: The client's end.
        server_stream: The server's end.
    """

    def __init__(self, network: MemoryNetwork, number: int, client: str, target: Target) -> None:
        self._network = network
        self.id = number
        self.client = client
        self.target = target
        self._up = Pipe(network, self._held)  # client -> server
        self._down = Pipe(network, self._held)  # server -> client
        self.client_stream: trio.abc.Stream = _Endpoint(self, self._up, self._down, "client")
        self.server_stream: trio.abc.Stream = _Endpoint(self, self._down, self._up, "server")
        self._open_ends = 2
        self._dead = False

    def __repr__(self) -> str:
        return f"<Link #{self.id} {self.client} -> {self.target.host}:{self.target.port}>"

    @property
    def alive(self) -> bool:
        """Neither reset, black-holed nor closed at both ends."""
        return not self._dead

    @property
    def upgraded(self) -> bool:
        """Whether the server has answered the websocket upgrade (101) on it."""
        return self._down.carried_upgrade

    def _held(self) -> bool:
        return self._network._is_partitioned(self.client)

    def _endpoint_closed(self) -> None:
        self._open_ends -= 1
        if self._open_ends <= 0:
            self._forget()

    def _forget(self) -> None:
        if not self._dead:
            self._dead = True
            self._network._links.pop(self.id, None)

    def reset(self) -> None:
        """RST: both ends fail at once with ``BrokenResourceError``."""
        self._up.break_()
        self._down.break_()
        self._network._counts.resets += 1
        self._forget()

    def blackhole(self) -> None:
        """Half-open: bytes (and FIN) vanish both ways from now on; nobody is told."""
        self._up.vanish()
        self._down.vanish()
        self._network._counts.blackholes += 1
        self._forget()

    def close(self, code: int | None = GOING_AWAY, reason: str = "") -> None:
        """End the connection as a proxy would: close frames (if upgraded), then FIN.

        Args:
            code: The close code sent to both ends, or ``None`` for a bare FIN
                (a crashed peer whose kernel closed the socket).
            reason: The close reason (at most 123 bytes of UTF-8).
        """
        if code is not None and self.upgraded:
            rng = self._network.random
            self._down.inject(close_frame(code, reason, masked=False, rng=rng))
            self._up.inject(close_frame(code, reason, masked=True, rng=rng))
        self._down.finish()
        self._up.finish()
        self._network._counts.closes += 1
        self._forget()


@attrs.define
class _NetworkCounts:
    """What :class:`MemoryNetwork` counts, one field each (a misspelled one fails)."""

    connects: int = 0
    refused: int = 0
    resets: int = 0
    closes: int = 0
    blackholes: int = 0


class NetworkStatistics:
    """Counters of a :class:`MemoryNetwork` (a plain snapshot)."""

    def __init__(self, counts: dict[str, int], links: int) -> None:
        self.connects: int = counts.get("connects", 0)
        self.refused: int = counts.get("refused", 0)
        self.resets: int = counts.get("resets", 0)
        self.closes: int = counts.get("closes", 0)
        self.blackholes: int = counts.get("blackholes", 0)
        #: Links open now.
        self.links: int = links

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"NetworkStatistics({fields})"


class MemoryNetwork:
    """Hosts and servers connected in memory, with faults on demand.

    Args:
        random: The randomness for latency jitter and masking keys; seed it.
        latency: One-way delay of every byte, seconds.
        jitter: Extra one-way delay, uniform in ``[0, jitter]``, per chunk
            (never reordering).
        window: Bytes in flight per direction before the sender waits.

    Example::

        network = MemoryNetwork(random=random.Random(1))
        listener = network.listen("server", 80)
        nursery.start_soon(server.serve_listeners, [listener])
        async with open_reconnecting_websocket(
            "ws://server/", open_stream=network.client("alice")
        ) as ws:
            ...
            network.reset("alice")  # her connection dies; she reconnects
    """

    def __init__(
        self,
        *,
        random: _random.Random | None = None,
        latency: float = 0.0,
        jitter: float = 0.0,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        for name, value in (("latency", latency), ("jitter", jitter)):
            check_non_negative(name, value)
        check_int("window", window, minimum=1)
        self.random = random if random is not None else _random.Random()
        self.latency = float(latency)
        self.jitter = float(jitter)
        self.window = window
        self._listeners: dict[tuple[str, int], MemoryListener] = {}
        self._links: dict[int, Link] = {}
        self._ids = itertools.count(1)
        self._counts = _NetworkCounts()
        self._refuse_until: dict[str | None, float] = {}
        self._partitioned: set[str] = set()
        self._partition_all = False
        self._healed = trio.lowlevel.ParkingLot()
        self._on_connect: list[Callable[[Link], None]] = []
        self._addresses: dict[str, str] = {}

    # -- wiring -----------------------------------------------------------

    def listen(
        self,
        host: str = "server",
        port: int = 80,
        *,
        accept_rate: float | None = None,
        backlog: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> MemoryListener:
        """Open a listener at ``host:port`` (see :class:`MemoryListener`).

        Args:
            ssl_context: An :class:`ssl.SSLContext` to serve ``wss://`` with.

        Raises:
            OSError: if the address is taken.
        """
        if (host, port) in self._listeners:
            raise OSError(f"address {host}:{port} already in use")
        if accept_rate is not None:
            check_positive("accept_rate", accept_rate)
        listener = MemoryListener(
            self, host, port, accept_rate=accept_rate, backlog=backlog, ssl_context=ssl_context
        )
        self._listeners[(host, port)] = listener
        return listener

    def client(self, name: str = "client") -> OpenStream:
        """An ``open_stream`` for the client host ``name`` (pass it to the client).

        It connects to the listener at the target's host and port, and runs
        TLS (with the target's ``ssl_context``) for ``wss://`` like the default.
        """

        async def open_stream(target: Target) -> trio.abc.Stream:
            link = await self.connect(target, client=name)
            return await start_tls(link.client_stream, target)

        return open_stream

    async def open_stream(self, target: Target) -> trio.abc.Stream:
        """``open_stream`` for the client host ``"client"``."""
        return await self.client("client")(target)

    async def connect(self, target: Target, *, client: str = "client") -> Link:
        """Open a connection (one round trip of latency) and return its :class:`Link`.

        Raises:
            ConnectionRefusedError: nothing listens there, the backlog is full,
                or the network refuses connections right now.
        """
        await trio.sleep(2 * self.latency)  # SYN, SYN-ACK
        while self._is_partitioned(client):
            await self._healed.park()  # SYNs are lost; the client's timeout decides
        listener = self._listeners.get((target.host, target.port))
        now = trio.current_time()
        refusing = max(
            self._refuse_until.get(None, -math.inf), self._refuse_until.get(client, -math.inf)
        )
        if listener is None or now < refusing:
            self._counts.refused += 1
            raise ConnectionRefusedError(f"connection to {target.host}:{target.port} refused")
        link = Link(self, next(self._ids), client, target)
        if not listener._enqueue(link):
            self._counts.refused += 1
            raise ConnectionRefusedError(f"backlog of {target.host}:{target.port} is full")
        self._links[link.id] = link
        self._counts.connects += 1
        for hook in self._on_connect:
            hook(link)
        return link

    def on_connect(self, hook: Callable[[Link], None]) -> None:
        """Call ``hook(link)`` for every new connection (for measurements)."""
        self._on_connect.append(hook)

    # -- looking -----------------------------------------------------------

    def address_of(self, host: str) -> str:
        """The IPv4 address (in 10.0.0.0/8) the network gives the host name ``host``."""
        if host not in self._addresses:
            self._addresses[host] = str(ipaddress.IPv4Address(0x0A000001 + len(self._addresses)))
        return self._addresses[host]

    @property
    def links(self) -> tuple[Link, ...]:
        """The live connections, oldest first."""
        return tuple(self._links.values())

    def links_of(self, client: str) -> tuple[Link, ...]:
        """The live connections opened by ``client``."""
        return tuple(link for link in self._links.values() if link.client == client)

    def statistics(self) -> NetworkStatistics:
        """A snapshot of the counters."""
        return NetworkStatistics(attrs.asdict(self._counts), len(self._links))

    # -- faults --------------------------------------------------------------

    def _select(self, clients: Iterable[str]) -> list[Link]:
        names = set(clients)
        return [link for link in self._links.values() if not names or link.client in names]

    def reset(self, *clients: str) -> int:
        """RST the connections of ``clients`` (all, if none is named). Returns how many."""
        links = self._select(clients)
        for link in links:
            link.reset()
        return len(links)

    def blackhole(self, *clients: str) -> int:
        """Make the connections of ``clients`` (all, if none) half-open. Returns how many."""
        links = self._select(clients)
        for link in links:
            link.blackhole()
        return len(links)

    def drop(self, *clients: str, code: int | None = GOING_AWAY, reason: str = "") -> int:
        """End the connections of ``clients`` (all, if none), as :meth:`Link.close`.

        ``code=None`` drops them without a close frame. Returns how many.
        """
        links = self._select(clients)
        for link in links:
            link.close(code, reason)
        return len(links)

    def drop_all(self, *, code: int | None = GOING_AWAY, reason: str = "") -> int:
        """End every connection: with a close frame ``code``, or bare FIN with ``None``."""
        return self.drop(code=code, reason=reason)

    def refuse(self, seconds: float, *clients: str) -> None:
        """Refuse new connections from ``clients`` (all, if none) for ``seconds``."""
        check_non_negative("seconds", seconds)
        until = trio.current_time() + seconds
        for key in clients or (None,):
            self._refuse_until[key] = max(self._refuse_until.get(key, -math.inf), until)

    def partition(self, *clients: str) -> None:
        """Cut ``clients`` (all, if none) off: bytes stop moving, connects wait."""
        if clients:
            self._partitioned.update(clients)
        else:
            self._partition_all = True

    def heal(self, *clients: str) -> None:
        """Undo :meth:`partition` for ``clients`` (all, if none); queued bytes flow."""
        if clients:
            self._partitioned.difference_update(clients)
        else:
            self._partition_all = False
            self._partitioned.clear()
        self._healed.unpark_all()
        for link in self._links.values():
            link._up.wake_reader()
            link._down.wake_reader()

    def _is_partitioned(self, client: str) -> bool:
        return self._partition_all or client in self._partitioned
