"""The node's counters: typed fields, incremented by attribute, snapshotted as frozen values.

:class:`Counts` is what the node's parts increment (``counts.refused += 1``);
its fields are slots, so a misspelled counter raises instead of counting
nothing. :meth:`Counts.snapshot` builds the public
:class:`ServerStatistics` from them, field by field.
"""

from __future__ import annotations

import attrs

from .._names import NackCode
from .._protocol import HandshakeOutcome
from .._wire import RefusedCode

__all__ = ["Counts", "ServerStatistics"]


@attrs.frozen
class ServerStatistics:
    """A snapshot of a :class:`ReconnectServer`.

    Attributes:
        clients: Clients connected now (handshaking or ready).
        ready_clients: Of those, the ones past ``ready``.
        fresh: Handshakes that ended fresh (no ``lastEventId``, empty log).
        replayed: Handshakes that replayed the missed events (possibly none).
        snapshots: Handshakes that sent a snapshot.
        lost: Handshakes that ended with ``lost: true``.
        refused: Opening handshakes refused with HTTP 503.
        protocol_errors: Clients closed for a bad or missing resume frame.
        slow_clients: Clients closed because their queue was full.
        handler_errors: Clients closed because ``on_message`` raised.
        events_published: Events published by this node.
        events_replayed: Events sent from the log during handshakes.
        restarts: Calls of :meth:`~ReconnectServer.restart`,
            :meth:`~ReconnectServer.drain` and :meth:`~ReconnectServer.shutdown`.
        half_open: Clients dropped because they did not answer a ping.
        log_errors: Log calls that failed because the log was unavailable.
        log_discontinuities: Times the fan-out found the log no longer
            holding what its clients were to get (each closes every client).
        busy: Clients closed with 1013 because a log read of their handshake
            did not end within ``handshake_timeout`` (the node was too busy,
            the log did not fail; it is not a log error).
        channels_held: Channels with at least one subscription on this node now.
        channel_subscriptions: Channel subscriptions held on this node now.
        channel_subscribed: Channel answers that ended ``subscribed`` (the
            resume's map, ``subscribe`` frames).
        channel_events_live: Channel events sent by the live feed (a
            repair's events included).
        channel_events_replayed: Channel events sent in answers (a replay,
            the events after a snapshot).
        channel_snapshots: Channel snapshots sent in answers.
        channel_lost: Answers with ``lost: true`` (the asked position was
            not held and there was no snapshot).
        channel_refused_forbidden: ``refused`` answers with code ``forbidden``.
        channel_refused_invalid: ... with code ``invalid``.
        channel_refused_limit: ... with code ``limit``.
        channel_refused_unavailable: ... with code ``unavailable``.
        channel_repairs: Channel reads made to repair a gap (a skipped
            notification, a lost notification stream).
        channel_resyncs: Subscriptions started again unasked at their
            channel's newest id (``lost: true``): their gap was no longer held.
        channel_notifications_lost: Times the node's notification stream was
            lost (each repairs every channel the node holds).
        channel_store_errors: Times the node's notification stream failed
            because the channel store was unavailable (it retries).
        publishes_acked: ``publish`` frames answered ``ack`` (duplicates included).
        publishes_duplicate: Of those, re-sends of a msgId already applied.
        nacks_forbidden, nacks_invalid, nacks_too_large, nacks_unavailable:
            ``publish`` frames answered ``nack``, per code.
    """

    clients: int
    ready_clients: int
    fresh: int
    replayed: int
    snapshots: int
    lost: int
    refused: int
    protocol_errors: int
    slow_clients: int
    handler_errors: int
    events_published: int
    events_replayed: int
    restarts: int
    half_open: int = 0
    log_errors: int = 0
    log_discontinuities: int = 0
    busy: int = 0
    # -- channels (protocol version 2) ----------------------------------------
    channels_held: int = 0
    channel_subscriptions: int = 0
    channel_subscribed: int = 0
    channel_events_live: int = 0
    channel_events_replayed: int = 0
    channel_snapshots: int = 0
    channel_lost: int = 0
    channel_refused_forbidden: int = 0
    channel_refused_invalid: int = 0
    channel_refused_limit: int = 0
    channel_refused_unavailable: int = 0
    channel_repairs: int = 0
    channel_resyncs: int = 0
    channel_notifications_lost: int = 0
    channel_store_errors: int = 0
    # -- acknowledged publish (4.5) ------------------------------------------
    publishes_acked: int = 0
    publishes_duplicate: int = 0
    nacks_forbidden: int = 0
    nacks_invalid: int = 0
    nacks_too_large: int = 0
    nacks_unavailable: int = 0


@attrs.define(eq=False)
class Counts:
    """The node's running counters (each a field of :class:`ServerStatistics`).

    ``channels_held`` and ``channel_subscriptions`` are gauges the channel
    feed keeps current; every other field only grows.
    """

    fresh: int = 0
    replayed: int = 0
    snapshots: int = 0
    lost: int = 0
    refused: int = 0
    protocol_errors: int = 0
    slow_clients: int = 0
    handler_errors: int = 0
    events_published: int = 0
    events_replayed: int = 0
    restarts: int = 0
    half_open: int = 0
    log_errors: int = 0
    log_discontinuities: int = 0
    busy: int = 0
    # -- channels (protocol version 2) ----------------------------------------
    channels_held: int = 0
    channel_subscriptions: int = 0
    channel_subscribed: int = 0
    channel_events_live: int = 0
    channel_events_replayed: int = 0
    channel_snapshots: int = 0
    channel_lost: int = 0
    channel_refused_forbidden: int = 0
    channel_refused_invalid: int = 0
    channel_refused_limit: int = 0
    channel_refused_unavailable: int = 0
    channel_repairs: int = 0
    channel_resyncs: int = 0
    channel_notifications_lost: int = 0
    channel_store_errors: int = 0
    # -- acknowledged publish (4.5) ------------------------------------------
    publishes_acked: int = 0
    publishes_duplicate: int = 0
    nacks_forbidden: int = 0
    nacks_invalid: int = 0
    nacks_too_large: int = 0
    nacks_unavailable: int = 0

    def channel_refused(self, code: RefusedCode) -> None:
        """A channel was answered ``refused`` with ``code``."""
        if code is RefusedCode.FORBIDDEN:
            self.channel_refused_forbidden += 1
        elif code is RefusedCode.INVALID:
            self.channel_refused_invalid += 1
        elif code is RefusedCode.LIMIT:
            self.channel_refused_limit += 1
        elif code is RefusedCode.UNAVAILABLE:
            self.channel_refused_unavailable += 1
        else:  # the client's own code, never sent by a server
            raise ValueError(f"a server does not refuse with {code!r}")

    def nacked(self, code: NackCode) -> None:
        """A ``publish`` was answered ``nack`` with ``code``."""
        if code is NackCode.FORBIDDEN:
            self.nacks_forbidden += 1
        elif code is NackCode.INVALID:
            self.nacks_invalid += 1
        elif code is NackCode.TOO_LARGE:
            self.nacks_too_large += 1
        else:
            self.nacks_unavailable += 1

    def resumed(self, outcome: HandshakeOutcome, replayed: int) -> None:
        """A handshake ended with ``outcome``, having sent ``replayed`` events from the log."""
        if outcome is HandshakeOutcome.FRESH:
            self.fresh += 1
        elif outcome is HandshakeOutcome.REPLAYED:
            self.replayed += 1
        elif outcome is HandshakeOutcome.SNAPSHOT:
            self.snapshots += 1
        else:
            self.lost += 1
        self.events_replayed += replayed

    def snapshot(self, *, clients: int, ready_clients: int) -> ServerStatistics:
        """The frozen statistics: these counters, and the clients connected now."""
        return ServerStatistics(
            clients=clients, ready_clients=ready_clients, **attrs.asdict(self, recurse=False)
        )
