"""What a connection and its handshake report to the node, and where it goes.

:class:`NodeHooks` implements the connection's
(:class:`~trio_reconnect.server._clientbase.ConnectionHooks`) and the
handshake's (:class:`~trio_reconnect.server._resume.ResumeHooks`) interfaces
on the node's parts: its counters, its client set, its fan-out, its log
watch and its spreader. It holds nothing of its own.
"""

from __future__ import annotations

import logging

import attrs
import trio

from .._protocol import HandshakeOutcome
from ._chanframes import ChannelFrames
from ._clientbase import CLOSE_INTERNAL_ERROR, CLOSE_TRY_AGAIN_LATER
from ._connection import ConnectedClient
from ._drain import Spreader
from ._fanout import FanOut
from ._logbase import LogUnavailableError
from ._node import ClientSet, NodeConfig
from ._outage import LogWatch
from ._stats import Counts

__all__ = ["NodeHooks"]

logger = logging.getLogger("trio_reconnect.server")


@attrs.define(eq=False)
class NodeHooks:
    """The node's side of the connection and handshake interfaces."""

    config: NodeConfig
    counts: Counts
    clients: ClientSet
    fanout: FanOut
    watch: LogWatch
    spreader: Spreader
    #: Where messages go when there is no ``on_message`` (read by ``messages()``).
    incoming: trio.MemorySendChannel[tuple[ConnectedClient, str | bytes]]
    #: The node's channels (``None``: a version 1 server); set once the parts are made.
    channels: ChannelFrames | None = None

    # -- ConnectionHooks and ResumeHooks --------------------------------------

    def hint_reason(self, reason: str) -> str:
        """A close reason with a one-client spread hint."""
        return self.spreader.hint_reason(reason)

    # -- ConnectionHooks --------------------------------------------------------

    async def received(self, client: ConnectedClient, message: str | bytes) -> None:
        """Answer a channel frame, or hand the message to ``on_message`` or to ``messages()``."""
        if self.channels is not None and await self.channels.received(client, message):
            return
        on_message = self.config.on_message
        if on_message is None:
            try:
                await self.incoming.send((client, message))
            except trio.BrokenResourceError:
                logger.debug("messages() was closed; dropping a message")
            return
        try:
            await on_message(client, message)
        except Exception:
            self.counts.handler_errors += 1
            logger.exception("on_message failed for client %d; closing it", client.id)
            client.close(CLOSE_INTERNAL_ERROR, self.hint_reason("internal error"))

    def too_slow(self, client: ConnectedClient) -> None:
        """The client's queue is full: close it with 1013 and a hint."""
        self.counts.slow_clients += 1
        logger.warning(
            "client %d is too slow (%d frames queued); closing it",
            client.id,
            client.statistics().queued,
        )
        client.close(CLOSE_TRY_AGAIN_LATER, self.hint_reason("too slow"))

    def half_open(self, client: ConnectedClient) -> None:
        """The client did not answer a ping in time."""
        self.counts.half_open += 1
        logger.info(
            "client %d did not answer a ping within %s s; dropping it",
            client.id,
            self.config.ping_timeout,
        )

    def leaving(self, client: ConnectedClient) -> None:
        """The client started closing: the fan-outs feed it no more."""
        self.fanout.unregister(client)
        if self.channels is not None:
            self.channels.gone(client)

    def gone(self, client: ConnectedClient) -> None:
        """The connection is over."""
        self.leaving(client)
        self.clients.discard(client)
        logger.debug("client %d closed (%s)", client.id, client.statistics().close_code)

    # -- ResumeHooks ------------------------------------------------------------

    def protocol_error(self) -> None:
        """A bad or missing resume frame."""
        self.counts.protocol_errors += 1

    def log_unavailable(self, error: LogUnavailableError) -> None:
        """A handshake's log read failed."""
        self.watch.log_unavailable(error)

    def busy(self) -> None:
        """A handshake's log read did not end within the handshake timeout."""
        self.counts.busy += 1

    def resumed(self, outcome: HandshakeOutcome, replayed: int) -> None:
        """A handshake ended with ``outcome``."""
        self.counts.resumed(outcome, replayed)
