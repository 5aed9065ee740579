"""Our own sockets to Redis: the URL read as coredis reads it, a TLS context, and a command link.

Three paths of the channel store bypass coredis, each for a measured reason:
the notification reader (:mod:`._notify`: coredis's ``PubSub`` is slow and
resubscribes silently), the append committer (:mod:`._appends`) and the
acknowledged publishes (:class:`LinkPool`): a call through coredis cost the
node about 230 us of CPU and 500 us of wall time on the development machine,
against about 60 us and 150 us for the same EVALSHA written to a socket of
our own and its reply parsed by :mod:`._resp`; on the hot path of every
channel event that is most of what Redis costs a node. All log in alike
(``AUTH``, ``SELECT``) from the same URL as the store's coredis client, over
``redis://``, ``rediss://`` or ``unix://``; the password is never logged.

:class:`CommandLink` is request and reply, one call at a time (the committer
has one batch in flight). :class:`LinkPool` gives callers that call at once
(the publish workers, one per connection) a link each. A call is shielded and
bounded by ``timeout`` (connecting and logging in included). Any failure
(refused, reset, closed, not RESP2, no answer in time) closes the socket and
raises :class:`~trio_reconnect.server.LogUnavailableError`; the next call
connects again. Nothing is retried: a command whose reply was lost may or
may not have run.
"""

from __future__ import annotations

import os
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Final

import attrs
import trio

from .._logbase import LogUnavailableError
from ._resp import DEFAULT_MAX_PENDING, RespError, RespParser, RespValue, encode_command

__all__ = ["CommandLink", "LinkPool", "Target", "connect", "login_commands", "target_of", "where"]

_DEFAULT_PORT: Final = 6379
_TRUE: Final = ("1", "T", "TRUE", "Y", "YES")
#: Bytes asked of the socket per read.
_RECEIVE_SIZE: Final = 64 * 1024
#: What a broken socket raises.
_BROKEN: Final = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


@attrs.frozen
class Target:
    """Where and as whom to connect, from the URL (``password`` never shown)."""

    scheme: str
    host: str
    port: int
    path: str
    username: str | None
    password: str | None = attrs.field(repr=False)
    db: int
    #: ``rediss://`` only: the URL's ``ssl_*`` query arguments.
    tls: Mapping[str, str] = attrs.field(factory=dict)


#: ``ssl_cert_reqs`` values, as coredis reads them.
_CERT_REQS: Final = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


def _ssl_context(tls: Mapping[str, str]) -> ssl.SSLContext:
    """The TLS settings coredis derives from the same URL (its ``RedisSSLContext``).

    Its defaults too: the certificate checked if one is sent
    (``ssl_cert_reqs=optional``) and no host name check, unless the URL says
    ``ssl_cert_reqs=required`` and ``ssl_check_hostname=true``.
    """
    context = ssl.create_default_context()
    if tls.get("ssl_certfile") and tls.get("ssl_keyfile"):
        context.load_cert_chain(certfile=tls["ssl_certfile"], keyfile=tls["ssl_keyfile"])
    ca = tls.get("ssl_ca_certs")
    if ca:
        context.load_verify_locations(**{("capath" if os.path.isdir(ca) else "cafile"): ca})
    context.check_hostname = tls.get("ssl_check_hostname", "").upper() in _TRUE
    context.verify_mode = _CERT_REQS[tls.get("ssl_cert_reqs") or "optional"]
    return context


def target_of(url: str) -> Target:
    # Read as coredis reads it (its from_url), so both sockets log in alike:
    # no percent-decoding, an empty password is none, ?db= before the path.
    parts = urllib.parse.urlsplit(url)
    username = parts.username or None
    password = parts.password or None
    query = urllib.parse.parse_qs(parts.query)
    if parts.scheme == "unix":
        db = int(query.get("db", ["0"])[0])
        return Target("unix", "", 0, parts.path, username, password, db)
    db_text = query.get("db", [parts.path.lstrip("/")])[0]
    tls = {name: values[0] for name, values in query.items() if name.startswith("ssl_")}
    return Target(
        parts.scheme,
        parts.hostname or "127.0.0.1",
        parts.port or _DEFAULT_PORT,
        "",
        username,
        password,
        int(db_text) if db_text else 0,
        tls,
    )


def where(target: Target) -> str:
    return target.path if target.scheme == "unix" else f"{target.host}:{target.port}"


async def connect(target: Target) -> trio.abc.Stream:
    if target.scheme == "unix":
        return await trio.open_unix_socket(target.path)
    sock = await trio.open_tcp_stream(target.host, target.port)
    if target.scheme != "rediss":
        return sock
    try:
        tls = trio.SSLStream(sock, _ssl_context(target.tls), server_hostname=target.host)
        await tls.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(sock)
        raise
    return tls


def login_commands(target: Target, *, name: str | None = None) -> list[bytes]:
    """``AUTH`` and ``SELECT`` from the URL (each answered ``+OK``), and ``CLIENT SETNAME``."""
    commands: list[bytes] = []
    if target.password is not None:
        auth = [target.username, target.password] if target.username else [target.password]
        commands.append(encode_command("AUTH", *auth))
    if target.db:
        commands.append(encode_command("SELECT", target.db))
    if name is not None:
        commands.append(encode_command("CLIENT", "SETNAME", name))
    return commands


class _Broken(Exception):
    """The link failed; the message says how."""


@attrs.define(eq=False)
class CommandLink:
    """One socket of our own for commands, one call at a time (the module comment).

    Args:
        url: The store's URL.
        timeout: Seconds a call may take, connecting and logging in included.
        name: The connection's ``CLIENT SETNAME``.
        max_pending: Largest reply the parser holds, bytes.
    """

    url: str = attrs.field(repr=False)
    timeout: float
    name: str
    max_pending: int = DEFAULT_MAX_PENDING
    _target: Target = attrs.field(init=False, repr=False)
    _stream: trio.abc.Stream | None = attrs.field(init=False, default=None, repr=False)
    _parser: RespParser = attrs.field(init=False, repr=False)
    #: Connections opened so far.
    connections: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self._target = target_of(self.url)
        self._parser = RespParser(self.max_pending)

    @property
    def where(self) -> str:
        """``host:port`` (or the socket's path), never the credentials."""
        return where(self._target)

    async def call(self, command: bytes, *, what: str) -> RespValue:
        """Send one encoded command and return its reply (an error reply as a :class:`RespError`).

        Shielded: it returns or raises within ``timeout``, cancelled or not.

        Raises:
            LogUnavailableError: no connection, a broken one, or no reply within
                ``timeout`` (the link is closed; the command may or may not have run).
        """
        with trio.move_on_after(self.timeout, shield=True) as scope:
            try:
                if self._stream is None:
                    await self._open()
                return await self._exchange(command)
            except (*_BROKEN, RespError, _Broken) as exc:
                await self.aclose()
                raise LogUnavailableError(f"Redis at {where(self._target)}: {what}: {exc}") from exc
        await self.aclose()
        assert scope.cancelled_caught
        raise LogUnavailableError(
            f"Redis at {where(self._target)}: {what}: no answer within {self.timeout:g} s"
        )

    async def _exchange(self, command: bytes) -> RespValue:
        stream = self._stream  # closed under the call (aclose): a broken stream, not None
        assert stream is not None
        await stream.send_all(command)
        while True:
            chunk = await stream.receive_some(_RECEIVE_SIZE)
            if not chunk:
                raise _Broken("Redis closed the connection")
            replies = self._parser.feed(chunk)
            if len(replies) > 1:
                raise _Broken(f"{len(replies)} replies to one command")
            if replies:
                return replies[0]

    async def _open(self) -> None:
        self._parser = RespParser(self.max_pending)
        self._stream = await connect(self._target)
        self.connections += 1
        for command in login_commands(self._target, name=self.name):
            reply = await self._exchange(command)
            if isinstance(reply, RespError):
                raise _Broken(f"refused: {reply}")

    async def aclose(self) -> None:
        """Close the socket (the next call connects again)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            await trio.aclose_forcefully(stream)


@attrs.define(eq=False)
class LinkPool:
    """Command links for callers that call at once: each call has a link to itself.

    A call takes an idle link, or opens one while fewer than ``size`` exist;
    beyond that it waits (cancellably: nothing is sent yet) for one to come
    back. A link whose call failed comes back closed and connects again at
    its next call (:class:`CommandLink`).

    Args:
        url: The store's URL.
        timeout: Seconds a call may take once it has its link.
        name: Each connection's ``CLIENT SETNAME``.
        size: Links at most, so calls in flight at most.
        max_pending: Largest reply a link's parser holds, bytes.
    """

    url: str = attrs.field(repr=False)
    timeout: float
    name: str
    size: int
    max_pending: int = DEFAULT_MAX_PENDING
    _links: list[CommandLink] = attrs.field(init=False, factory=list, repr=False)
    _idle: list[CommandLink] = attrs.field(init=False, factory=list, repr=False)
    _free: trio.Semaphore = attrs.field(init=False, repr=False)
    _closed: bool = attrs.field(init=False, default=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._free = trio.Semaphore(self.size)

    @property
    def where(self) -> str:
        """``host:port`` (or the socket's path), never the credentials."""
        return where(target_of(self.url))

    @property
    def connections(self) -> int:
        """Connections the links have opened so far."""
        return sum(link.connections for link in self._links)

    async def call(self, command: bytes, *, what: str) -> RespValue:
        """:meth:`CommandLink.call` on a link of the caller's own (the class comment).

        Raises:
            LogUnavailableError: as :meth:`CommandLink.call`, or the pool is closed.
        """
        async with self._free:
            if self._closed:
                raise LogUnavailableError(f"Redis at {self.where}: {what}: the store closed")
            if self._idle:
                link = self._idle.pop()
            else:
                link = CommandLink(self.url, self.timeout, self.name, self.max_pending)
                self._links.append(link)
            try:
                return await link.call(command, what=what)
            finally:
                self._idle.append(link)

    async def aclose(self) -> None:
        """Close every socket; a call in flight or made later fails ``LogUnavailableError``."""
        self._closed = True
        for link in self._links:
            await link.aclose()
