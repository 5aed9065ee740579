"""The clients of ``demo --nodes N``: the balancer, and what each client does and sees.

Every client follows the shared ticker stream. Some also publish with
acknowledgements into :data:`PUBLISH_CHANNEL` through the deploy (one publish
at a time, each awaited), and some are members of the presence room
:data:`ROOM`: each member watches the others and counts every ``join`` and
``leave`` it is shown while :attr:`Roles.watching` is set (the deploy, where
a member's drained connection must not show as a leave: the nodes hold it
for their presence grace).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import attrs
import trio

from ..._client import open_reconnecting_websocket
from ..._exceptions import ReconnectError
from ..._protocol import Gap, ServerEvent, Snapshot
from ..._state import ConnectionState, Transition
from ..._wire import Join, Leave

if TYPE_CHECKING:
    from ..._client import ReconnectingWebSocket

__all__ = [
    "PRESENCE_GLOB",
    "PUBLISH_CHANNEL",
    "PUBLISH_LIMIT",
    "PUBLISH_RATE",
    "ROOM",
    "Balancer",
    "Client",
    "Roles",
    "all_back",
    "make_crowd",
]

#: The channel the publishing clients append to (no presence).
PUBLISH_CHANNEL: Final = "chat"
#: The presence room the member clients join, and the nodes' ``--presence`` glob.
ROOM: Final = "room:1"
PRESENCE_GLOB: Final = "room:*"
#: Publishes per second, all publishing clients together.
PUBLISH_RATE: Final = 10.0
#: The most publishes the demo makes: fewer than the channel's stream keeps
#: (``DEFAULT_CHANNEL_MAX_LEN``), so that the check at the end reads all of them.
PUBLISH_LIMIT: Final = 900


@attrs.define(eq=False)
class Balancer:
    """The demo's load balancer: round-robin over the nodes in service."""

    urls: list[str]
    in_service: set[str] = attrs.field(init=False)
    _turn: itertools.count[int] = attrs.field(factory=itertools.count, init=False)

    def __attrs_post_init__(self) -> None:
        self.in_service = set(self.urls)

    def pick(self) -> str:
        live = [u for u in self.urls if u in self.in_service] or self.urls
        return live[next(self._turn) % len(live)]


@attrs.define(eq=False)
class Roles:
    """What the whole crowd is asked to do, and when (shared by every client)."""

    publishers: int
    members: int
    publishing: bool = False
    watching: bool = False
    started: int = 0  # publishes begun, all clients
    start: trio.Event = attrs.field(factory=trio.Event)

    @property
    def interval(self) -> float:
        """Seconds between one publishing client's publishes."""
        return self.publishers / PUBLISH_RATE


@attrs.define(eq=False)
class Client:
    """What one demo client does and saw."""

    balancer: Balancer
    roles: Roles
    number: int
    publisher: bool = False
    member: bool = False
    ids: list[str] = attrs.field(factory=list)
    told: int = 0  # Gaps and Snapshots (a loss the client was told about)
    url: str | None = None
    ready: bool = False
    #: (time, url) of every connection that became ready, timed when its
    #: attempt started (when the client came to the node's door; the
    #: handshake's end also waits for this process's own busy loop).
    arrivals: list[tuple[float, str]] = attrs.field(factory=list)
    #: (msg, event id) of every publish acknowledged; msg is the data's ``n``.
    acked: list[tuple[int, str]] = attrs.field(factory=list)
    failed: int = 0  # publishes that raised
    publishing: bool = False  # a publish is in flight
    members: int = 0  # the room's members as this member last saw them
    leaves: int = 0  # seen while watching
    joins: int = 0  # seen while watching
    _attempt_at: float | None = None

    def next_url(self) -> str:
        self.url = self.balancer.pick()
        return self.url

    def on_transition(self, transition: Transition) -> None:
        if transition.state is ConnectionState.CONNECTING:
            self._attempt_at = transition.time
        self.ready = transition.state is ConnectionState.OPEN
        if self.ready and self.url is not None:
            at = transition.time if self._attempt_at is None else self._attempt_at
            self.arrivals.append((at, self.url))

    async def run(self) -> None:
        async with (
            open_reconnecting_websocket(
                self.next_url,
                random=random.Random(self.number),
                on_transition=self.on_transition,
                max_attempts=None,
            ) as ws,
            trio.open_nursery() as nursery,
        ):
            if self.member:
                nursery.start_soon(self._watch, ws)
            if self.publisher:
                nursery.start_soon(self._publish, ws)
            async for item in ws:
                if isinstance(item, ServerEvent):
                    self.ids.append(item.id)
                elif isinstance(item, Gap | Snapshot):
                    self.told += 1

    async def _watch(self, ws: ReconnectingWebSocket) -> None:
        """Be a member of the room; count what the others are seen doing while watching."""
        async with ws.subscribe(ROOM) as sub:
            self.members = len(sub.members)
            async for item in sub:
                self.members = len(sub.members)
                if isinstance(item, Gap | Snapshot):
                    self.told += 1
                elif self.roles.watching and isinstance(item, Leave):
                    self.leaves += 1
                elif self.roles.watching and isinstance(item, Join):
                    self.joins += 1

    async def _publish(self, ws: ReconnectingWebSocket) -> None:
        """Publish with acks while the crowd is asked to, one at a time."""
        roles = self.roles
        await roles.start.wait()
        for n in itertools.count():
            if not roles.publishing or roles.started >= PUBLISH_LIMIT:
                return
            roles.started += 1
            self.publishing = True
            try:
                event_id = await ws.publish(PUBLISH_CHANNEL, {"client": self.number, "n": n})
            except ReconnectError:
                self.failed += 1
            else:
                self.acked.append((n, event_id))
            self.publishing = False
            await trio.sleep(roles.interval)


def make_crowd(balancer: Balancer, clients: int) -> tuple[list[Client], Roles]:
    """``clients`` clients: 1 in 30 publishes (at least 2), 1 in 10 is a member (at least 3)."""
    roles = Roles(
        publishers=min(clients, max(2, clients // 30)), members=min(clients, max(3, clients // 10))
    )
    crowd = [Client(balancer, roles, i) for i in range(clients)]
    for client in crowd[: roles.publishers]:
        client.publisher = True
    for client in crowd[-roles.members :]:
        client.member = True
    return crowd, roles


async def all_back(crowd: Sequence[Client]) -> None:
    """Wait until every client is connected."""
    while not all(c.ready for c in crowd):  # noqa: ASYNC110 (polling many clients)
        await trio.sleep(0.05)
