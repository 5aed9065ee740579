"""A new connection: the HTTP upgrade, the admission verdict, then the client's run.

An opening handshake is refused with 503 and a spreading ``Retry-After``
when :class:`~trio_reconnect.server._health.Admission` says so (a stop, a
drain's refusal, the log down, the rate limit); else it is accepted and the
:class:`~trio_reconnect.server.ConnectedClient` runs, handshake first, until
it closes.
"""

from __future__ import annotations

import contextlib
import functools
import logging

import attrs
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, Endpoint, WebSocketRequest
from wsproto.utilities import LocalProtocolError

from ._auth import Refuse, resolve
from ._clientbase import ConnectionSettings
from ._connection import ConnectedClient
from ._health import Admission, LogHealth
from ._hooks import NodeHooks
from ._node import ClientSet, NodeConfig
from ._resume import Resumer
from ._stats import Counts

__all__ = ["Acceptor"]

logger = logging.getLogger("trio_reconnect.server")


@attrs.define(eq=False)
class Acceptor:
    """Turns streams and upgrade requests into the node's clients."""

    config: NodeConfig
    admission: Admission
    health: LogHealth
    counts: Counts
    clients: ClientSet
    settings: ConnectionSettings
    hooks: NodeHooks
    resumer: Resumer

    async def serve_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one stream as one websocket connection; never raises (but cancellation)."""
        try:
            async with trio.open_nursery() as nursery:
                request: WebSocketRequest | None = None
                with trio.move_on_after(self.config.handshake_timeout):
                    request = await trio_websocket.wrap_server_stream(
                        nursery, stream, max_message_size=self.config.max_message_size
                    )
                if request is None:
                    logger.debug("no websocket upgrade request within the handshake timeout")
                else:
                    await self.handle_request(request, nursery)
                nursery.cancel_scope.cancel()
        except* LocalProtocolError as group:
            # trio-websocket answers a ping that arrives after our close frame
            # with a pong that wsproto refuses (trio-websocket issue #184). The
            # connection was closing anyway; a restart must not fill the logs.
            logger.debug("a frame arrived after our close frame", exc_info=group)
        except* Exception as group:
            logger.error("connection failed", exc_info=group)
        finally:
            await trio.aclose_forcefully(stream)

    async def handle_request(
        self, request: WebSocketRequest, nursery: trio.Nursery | None = None
    ) -> None:
        """Refuse or accept one upgrade request; an accepted client runs until it closes.

        ``nursery``: the connection's (trio-websocket's reader task is in it),
        cancelled by the caller once this returns; the client's publish worker
        runs there (``None``: in a nursery of its own).
        """
        retry_after = self.admission.decide(trio.current_time(), log_down=self.health.down)
        if retry_after is not None:
            self.counts.refused += 1
            logger.debug("refusing a handshake; Retry-After %d", retry_after)
            with contextlib.suppress(ConnectionClosed):
                await request.reject(
                    503, extra_headers=[(b"Retry-After", str(retry_after).encode("ascii"))]
                )
            return
        principal = None
        if self.config.authenticate is not None:
            try:
                principal = await resolve(self.config.authenticate(request))
            except Refuse as refusal:
                logger.debug("authenticate refused a handshake: %d", refusal.status)
                with contextlib.suppress(ConnectionClosed):
                    await request.reject(refusal.status, body=refusal.reason.encode("utf-8"))
                return
        try:
            ws = await request.accept()
        except ConnectionClosed:
            return
        try:
            remote = ws.remote
        except OSError:
            # getpeername() fails once the peer has reset the connection, which
            # it may do right after the upgrade: a client gone, not a failure.
            logger.debug("a client left right after its upgrade")
            return
        client = ConnectedClient(
            self.clients.next_id(),
            f"{remote.address}:{remote.port}" if isinstance(remote, Endpoint) else remote,
            request.path,
            trio.current_time(),
            ws,
            self.settings,
            self.hooks,
        )
        client.principal = principal
        self.clients.add(client)
        logger.debug("client %d connected from %s", client.id, client.remote)
        channels = self.hooks.channels
        if channels is None:
            await client.run(self.resumer)
        else:  # with its publish worker beside it
            await channels.publisher.serve(
                client, functools.partial(client.run, self.resumer), nursery
            )
