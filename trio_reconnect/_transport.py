"""Where an attempt connects to, and the default way of opening its stream.

:func:`parse_url` is pure. :func:`open_tcp_stream` is the default
``open_stream``: TCP, plus TLS for ``wss://``. It runs the TLS handshake
itself, before the websocket handshake, so that a certificate failure comes
out as :class:`~trio_reconnect.TLSError` with the :mod:`ssl` error as its cause.
(trio-websocket would report it as a timeout and lose the cause.)

:class:`RecordingStream` and :func:`read_refusal` work around a bug of
trio-websocket 0.12.2's reader (shared TRIO_NOTES): HTTP/1.1 lets a response
body end when the server closes the connection (no ``Content-Length``, no
chunking), and load balancers send their 503s and 401s that way. The reader
stops on the empty read without telling h11 that the input ended, so the
refusal never completes: the client would see "closed during the opening
handshake" and lose the status and ``Retry-After``. The client therefore
keeps a copy of the bytes received during the opening handshake; when the
connection ends before the handshake did, :func:`read_refusal` reads them
with h11, end of input included. Every framing (``Content-Length``, chunked,
close-delimited, an empty body) then gives the same verdict.
"""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Final

import attrs
import h11
import trio

from ._exceptions import TLSError

__all__ = [
    "MAX_REFUSAL_BYTES",
    "OpenStream",
    "RecordingStream",
    "Refusal",
    "Target",
    "open_tcp_stream",
    "parse_url",
    "read_refusal",
    "start_tls",
]

#: Most bytes of the server's answer to the opening handshake kept to read a
#: refusal whose body ends at connection close (the head and the start of the
#: body; the body of the error is truncated beyond it).
MAX_REFUSAL_BYTES: Final = 64 * 1024


def default_port(secure: bool) -> int:
    """The port a ``wss://`` (443) or ``ws://`` (80) URL without one stands for."""
    return 443 if secure else 80


@attrs.frozen
class Target:
    """What one connection attempt connects to.

    Attributes:
        secure: ``True`` for ``wss://``.
        host: The host name or address, without brackets.
        port: The TCP port.
        resource: The path and query to request (``/`` at least).
        ssl_context: The TLS context for this attempt (``None`` for ``ws://``).
    """

    secure: bool
    host: str
    port: int
    resource: str
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, repr=False)

    @property
    def host_header(self) -> str:
        """The ``Host`` header value."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default_port(self.secure) else f"{host}:{self.port}"

    @property
    def display(self) -> str:
        """The URL without its query string, safe to log (queries carry tokens)."""
        scheme = "wss" if self.secure else "ws"
        path = self.resource.split("?", 1)[0]
        return f"{scheme}://{self.host_header}{path}"


#: The type of the ``open_stream`` option.
OpenStream = Callable[[Target], Awaitable[trio.abc.Stream]]


def parse_url(url: str) -> tuple[bool, str, int, str]:
    """Split a ``ws://`` or ``wss://`` URL into ``(secure, host, port, resource)``.

    Raises:
        ValueError: for another scheme, a missing host, or a bad port.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"URL scheme must be ws or wss, got {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("URL has no host")
    secure = parts.scheme == "wss"
    port = parts.port if parts.port is not None else default_port(secure)
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    return secure, parts.hostname, port, resource


async def open_tcp_stream(target: Target) -> trio.abc.Stream:
    """The default ``open_stream``: TCP, then TLS with its handshake done.

    Raises:
        OSError: the TCP connection failed.
        TLSError: the TLS handshake failed (the ssl error is ``__cause__``).
    """
    stream = await trio.open_tcp_stream(target.host, target.port)
    return await start_tls(stream, target)


async def start_tls(stream: trio.abc.Stream, target: Target) -> trio.abc.Stream:
    """Wrap ``stream`` in TLS for a ``wss://`` target and run the handshake.

    Returns ``stream`` itself for ``ws://``. Any ``open_stream`` (the
    in-memory network's too) can use it to get the same errors as the default.

    Raises:
        TLSError: the TLS handshake failed (the ssl error is ``__cause__``).
    """
    if not target.secure:
        return stream
    context = target.ssl_context or ssl.create_default_context()
    tls = trio.SSLStream(stream, context, server_hostname=target.host, https_compatible=True)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(tls)
        cause = exc.__cause__ if isinstance(exc.__cause__, ssl.SSLError) else exc
        raise TLSError(f"TLS handshake with {target.host_header} failed: {cause}") from cause
    except BaseException:
        await trio.aclose_forcefully(tls)
        raise
    return tls


@attrs.frozen
class Refusal:
    """A refused opening handshake, read from the bytes the server sent.

    Attributes:
        status_code: The HTTP status.
        headers: The response headers, lower-cased ``(name, value)`` byte pairs
            (as trio-websocket reports them).
        body: The body that arrived before the connection closed.
    """

    status_code: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


def read_refusal(data: bytes) -> Refusal | None:
    """The refusal in ``data``, everything a server sent before closing. Pure.

    Returns:
        The response, with its body up to where the input ended, or ``None``
        when ``data`` holds no complete response head (nothing, garbage, or a
        ``101`` that was cut short).
    """
    connection = h11.Connection(h11.CLIENT)
    connection.send(h11.Request(method="GET", target="/", headers=[("Host", "refusal")]))
    connection.send(h11.EndOfMessage())
    response: h11.Response | None = None
    body = bytearray()
    try:
        connection.receive_data(data)
        connection.receive_data(b"")  # the end of input trio-websocket never reports
        while True:
            event = connection.next_event()
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif not isinstance(event, h11.InformationalResponse):
                break  # EndOfMessage, ConnectionClosed, NEED_DATA or PAUSED
    except h11.RemoteProtocolError:
        pass  # malformed, or a body cut short: the head, if complete, still counts
    if response is None:
        return None
    headers = tuple((bytes(name), bytes(value)) for name, value in response.headers)
    return Refusal(response.status_code, headers, bytes(body))


def _head_end(data: bytearray) -> int | None:
    """Where the response head in ``data`` ends (after its blank line), if it is complete."""
    ends = [
        at + len(separator)
        for separator in (b"\r\n\r\n", b"\n\n")
        if (at := data.find(separator)) >= 0
    ]
    return min(ends, default=None)  # the first blank line, whichever line ends it uses


def _is_interim(head: bytes | bytearray) -> bool:
    """Whether ``head`` is an interim response: status 1xx, but not 101 (the upgrade)."""
    status_line = bytes(head).split(b"\n", 1)[0].split()
    return (
        len(status_line) >= 2
        and status_line[0].startswith(b"HTTP/1.")
        and len(status_line[1]) == 3
        and status_line[1].startswith(b"1")
        and status_line[1] != b"101"
    )


class RecordingStream(trio.abc.Stream):
    """A stream that keeps a copy of the first bytes it receives, until :meth:`stop`.

    The client wraps each attempt's stream in one for the opening handshake
    (see the top of this module); at most ``limit`` bytes are kept.

    Args:
        stream: The stream to pass everything through to.
        limit: How many received bytes to keep.
    """

    def __init__(self, stream: trio.abc.Stream, limit: int = MAX_REFUSAL_BYTES) -> None:
        self.transport_stream = stream
        self._limit = limit
        self._received: bytearray | None = bytearray()
        #: Bytes read while looking for the end of the first response head;
        #: ``None`` once that head is known not to be an interim (1xx) one.
        self._head: bytearray | None = bytearray()

    def __repr__(self) -> str:
        return repr(self.transport_stream)

    def stop(self) -> None:
        """Stop recording and drop the copy (the handshake is over)."""
        self._received = None

    def refusal(self) -> Refusal | None:
        """The refusal in what was received so far, read as if the input ended there."""
        received = self._received
        return None if received is None else read_refusal(bytes(received))

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._head is None:
            data = bytes(await self.transport_stream.receive_some(max_bytes))
        else:
            data = await self._past_interim_responses(max_bytes)
        received = self._received
        if received is not None and len(received) < self._limit:
            received += data[: self._limit - len(received)]
        return data

    async def _past_interim_responses(self, max_bytes: int | None) -> bytes:
        """The response bytes with any interim (1xx but 101) heads before the final one left out.

        RFC 9110 section 15.2: a client must read and skip ``100 Continue``
        or ``103 Early Hints`` before the final response; wsproto takes the
        first head it sees as the answer, so a server sending one would look
        like a refusal with status 100. Only the opening bytes are looked at,
        at most ``limit`` of them.
        """
        head = self._head
        assert head is not None
        while True:
            end = _head_end(head)
            if end is not None and _is_interim(head[:end]):
                del head[:end]  # skip it; the final response follows
                continue
            if end is not None or len(head) >= self._limit:
                self._head = None
                data = bytes(head)
                return data if data else await self.receive_some(max_bytes)
            chunk = await self.transport_stream.receive_some(max_bytes)
            if not chunk:  # the input ended: hand on what there is, then b""
                self._head = None
                return bytes(head)
            head += chunk

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.transport_stream.aclose()
