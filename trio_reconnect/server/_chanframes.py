"""A version 2 connection's channel frames: the resume's map, then subscribe, unsubscribe, publish.

Only a connection whose ``resume`` carried a ``clientId`` speaks version 2
(decision 1); on any other, every message after ``ready`` is the
application's, as in version 1. On a version 2 connection a message that
:func:`~trio_reconnect._wire.parse_client_frame` classifies as a channel
frame is answered here and never reaches the application; a malformed one
is answered ``refused`` or ``nack`` (never a close), an ``unsubscribe`` for
a channel not held is answered ``unsubscribed`` (decision 10). A
``publish`` goes to the connection's queue (:mod:`._chanpublish`), its
checks (valid, within size, authorized) done first, its answer in order.

Memory stays bounded whatever a client sends: at most ``max_subscriptions``
subscriptions per connection, and every answer goes through the
connection's bounded queue (a client that does not read them waits in its
own read loop).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import attrs

from .._wire import (
    Nack,
    NackCode,
    Publish,
    Refused,
    RefusedCode,
    ResumeFrame,
    Subscribe,
    Unsubscribe,
    Unsubscribed,
    parse_client_frame,
)
from ._chananswer import Busy, ChannelAnswerer, ChannelSession, Send
from ._chanfeed import Subscription
from ._channelbase import ChannelRequest, ChannelStore
from ._chanplan import channel_request
from ._chanpublish import Publisher
from ._clientbase import CLOSE_TRY_AGAIN_LATER
from ._connection import ConnectedClient
from ._logbase import LogUnavailableError
from ._membersplan import release_of
from ._pubplan import Answered, Entry, Pending
from ._stats import Counts

__all__ = ["ChannelFrames"]

logger = logging.getLogger("trio_reconnect.server")


@attrs.define(eq=False)
class ChannelFrames:
    """The channel side of every version 2 connection of a node."""

    store: ChannelStore
    answerer: ChannelAnswerer
    max_data_bytes: int
    publisher: Publisher
    counts: Counts = attrs.field(factory=Counts, kw_only=True)
    _sessions: dict[ConnectedClient, ChannelSession] = attrs.field(init=False, factory=dict)

    def session(self, client: ConnectedClient) -> ChannelSession | None:
        """The client's channels (``None``: a version 1 connection)."""
        return self._sessions.get(client)

    def gone(self, client: ConnectedClient) -> None:
        """The connection is closing: its subscriptions end (idempotent); presence: 4.4."""
        session = self._sessions.pop(client, None)
        if session is not None:
            how = release_of(unsubscribed=False, peer_close_code=client.peer_close_code)
            for channel in list(session.subscriptions):
                self.answerer.drop(session, channel, how)
            if self.answerer.presence is not None:
                self.answerer.presence.release_all(session, how)

    def _refusal(self, refused: Refused) -> str:
        """The frame of a ``refused`` answer, counted by its code."""
        self.counts.channel_refused(refused.code)
        return refused.encode()

    async def handshake(
        self, client: ConnectedClient, frame: ResumeFrame, refusals: Sequence[Refused]
    ) -> tuple[list[str], list[str]] | None:
        """Answer the resume's channel map before ``ready``: the channels now active, the answer.

        The answer's frames are returned, not sent: the handshake writes them
        with ``ready`` in ONE write (:meth:`ConnectedClient.send_frame` of a
        list), so a resume of 100 channels costs one write, not 101.
        ``None`` for a version 1 connection (no ``clientId``).

        Raises:
            LogUnavailableError: the store is down (the handshake is refused).
            Busy: the read did not end within the handshake timeout.
        """
        if frame.client_id is None:
            return None
        session = ChannelSession(client.principal, frame.client_id)
        self._sessions[client] = session
        held: list[str] = []

        async def send(text: str) -> None:
            held.append(text)

        for refusal in refusals:
            await send(self._refusal(refusal))
        answers: list[Refused | tuple[Subscription, ChannelRequest]] = []
        answerer = self.answerer
        hook = answerer.authorize is not None  # none (the default): no await per channel
        for channel, position in frame.channels:
            if hook:
                admitted = await answerer.admit(session, client, channel)
            else:
                admitted = answerer.admit_allowed(session, client, channel)
            if isinstance(admitted, Refused):
                answers.append(admitted)
            else:
                answers.append((admitted, ChannelRequest(channel, position)))
        requests = [a[1] for a in answers if not isinstance(a, Refused)]
        reads = iter(await answerer.read(requests))
        for answer in answers:
            if isinstance(answer, Refused):
                await send(self._refusal(answer))
                continue
            subscription, request = answer
            read = next(reads)
            repair = answerer.answer_plain(held, subscription, request, read)
            if repair is None:
                await answerer.answer(send, subscription, request, read, session)
            elif repair:
                await answerer.repair(subscription)
        return [c for c, s in session.subscriptions.items() if not s.closed], held

    async def received(self, client: ConnectedClient, message: str | bytes) -> bool:
        """Answer a channel frame of a ready client; ``False``: the message is the application's."""
        session = self._sessions.get(client)
        if session is None:
            return False
        frame = parse_client_frame(message, max_data_bytes=self.max_data_bytes)
        if type(frame) is Publish:  # the frequent one first
            await self._publish(client, session, frame)
            return True
        if isinstance(frame, str | bytes):
            return False
        send = client.send
        if isinstance(frame, Refused):
            await send(self._refusal(frame))
        elif isinstance(frame, Nack):
            await self.publisher.offer(client, Answered(frame))
        elif isinstance(frame, Subscribe):
            await self._subscribe(client, session, frame, send)
        elif isinstance(frame, Unsubscribe):
            self.answerer.drop(session, frame.channel)
            await send(Unsubscribed(frame.channel).encode())
        else:
            await self._publish(client, session, frame)
        return True

    async def _subscribe(
        self, client: ConnectedClient, session: ChannelSession, frame: Subscribe, send: Send
    ) -> None:
        admitted = await self.answerer.admit(session, client, frame.channel)
        if isinstance(admitted, Refused):
            await send(self._refusal(admitted))
            return
        request = channel_request(frame, max_replay=self.answerer.max_replay)
        try:
            [read] = await self.answerer.read([request])
        except (LogUnavailableError, Busy) as error:
            logger.warning("subscribe to %r: %s", frame.channel, error or "store busy")
            self.answerer.drop(session, frame.channel)
            await send(
                self._refusal(Refused(frame.channel, RefusedCode.UNAVAILABLE, "store unavailable"))
            )
            return
        try:
            await self.answerer.answer(send, admitted, request, read, session)
        except (LogUnavailableError, Busy) as error:
            logger.warning("client %d: repairing %r failed (%r)", client.id, frame.channel, error)
            client.close(CLOSE_TRY_AGAIN_LATER, "channel store unavailable")

    async def _publish(
        self, client: ConnectedClient, session: ChannelSession, frame: Publish
    ) -> None:
        entry: Entry
        if await self.answerer.allowed(session.principal, frame.channel, "publish"):
            key = self.publisher.key(client, session.principal, session.client_id, frame.msg_id)
            entry = Pending(frame, key)
        else:
            entry = Answered(
                Nack(frame.msg_id, frame.channel, NackCode.FORBIDDEN, "not authorized")
            )
        await self.publisher.offer(client, entry)

    async def publish(self, channel: str, data: Any) -> str:
        """The application's publish: append ``data`` to ``channel``."""
        return await self.store.append(channel, data)
