"""Where an attempt connects to, and the default way of opening its stream.

:func:`parse_url` is pure. :func:`open_tcp_stream` is the default
``open_stream``: TCP, plus TLS for ``wss://``. It runs the TLS handshake
itself, before the websocket handshake, so that a certificate failure comes
out as :class:`~trio_reconnect.TLSError` with the :mod:`ssl` error as its cause.
(trio-websocket would report it as a timeout and lose the cause.)
"""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import Awaitable, Callable

import attrs
import trio

from ._exceptions import TLSError

__all__ = ["OpenStream", "Target", "open_tcp_stream", "parse_url", "start_tls"]


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
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"

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
    port = parts.port if parts.port is not None else (443 if secure else 80)
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
