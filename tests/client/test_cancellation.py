"""Cancellation from outside at every stage of a connection's life.

Each stage is set up on the in-memory network, the block is cancelled from
outside at t = 5 s (virtual), and then: the block exits at once (or, with a
websocket open, after one round trip of closing handshake, and never later
than ``close_timeout``); an open websocket is closed with 1000; no task of the
client is left; nothing but the cancellation comes out (no ExceptionGroup).
"""

from __future__ import annotations

import random
import ssl

import pytest
import trio
import trustme

import trio_reconnect as tr
from tests.support.harness import live_tasks
from trio_reconnect.server import ConnectedClient, ReconnectServer, ReplayLog
from trio_reconnect.testing import MemoryListener, MemoryNetwork

LATENCY = 0.01
CANCEL_AT = 5.0
STAGES = ["connecting", "tls", "handshake", "resuming", "open", "backing_off", "sending"]
STATE_AT_CANCEL = {
    "connecting": tr.ConnectionState.CONNECTING,
    "tls": tr.ConnectionState.CONNECTING,
    "handshake": tr.ConnectionState.CONNECTING,
    "resuming": tr.ConnectionState.RESUMING,
    "open": tr.ConnectionState.OPEN,
    "backing_off": tr.ConnectionState.BACKING_OFF,
    "sending": tr.ConnectionState.RESUMING,
}


def _client_tasks() -> list[str]:
    """Names of the live tasks that belong to the client's code."""
    return [
        name
        for name in live_tasks().values()
        if "trio_reconnect._client" in name or "trio_reconnect._attempt" in name
    ]


async def _hold_forever(listener: MemoryListener) -> None:
    """Accept connections and never answer: a server stuck before the websocket opens."""
    held: list[trio.abc.Stream] = []
    while True:
        held.append(await listener.accept())


async def _stuck_snapshot() -> tuple[str | None, str]:
    await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


@pytest.mark.parametrize("stage", STAGES)
async def test_cancel_at_every_stage(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery, stage: str
) -> None:
    network = MemoryNetwork(random=random.Random(stage), latency=LATENCY)
    listener = network.listen("server", 443 if stage == "tls" else 80)
    url = "wss://server/" if stage == "tls" else "ws://server/"
    server = ReconnectServer(
        ReplayLog(start=1),
        rng=random.Random(1),
        snapshot=_stuck_snapshot if stage in ("resuming", "sending") else None,
    )
    if stage in ("tls", "handshake"):
        nursery.start_soon(_hold_forever, listener)
    else:
        await nursery.start(server.serve_listeners, [listener])
    if stage == "connecting":
        network.partition("c")  # the TCP connect itself hangs
    context = ssl.create_default_context()
    trustme.CA().configure_trust(context)
    seen: list[ConnectedClient] = []
    states: list[tr.ConnectionState] = []

    async def setup(ws: tr.ReconnectingWebSocket) -> None:
        if stage in ("open", "backing_off"):
            await ws.wait_ready()
        if stage == "backing_off":
            network.drop("c", code=1012, reason='{"retryAfter": 600000}')
        if stage == "sending":
            await ws.send_message("held at the gate")  # never returns: no ready

    with trio.move_on_at(CANCEL_AT) as scope:
        async with (
            tr.open_reconnecting_websocket(
                url,
                open_stream=network.client("c"),
                ssl_context=context,
                random=random.Random(2),
                connect_timeout=60,
                resume_timeout=60,
                on_transition=lambda t: states.append(t.state),
            ) as ws,
            trio.open_nursery() as inner,
        ):
            inner.start_soon(setup, ws)
            while trio.current_time() < CANCEL_AT - 0.5:
                seen.extend(c for c in server.clients if c not in seen)
                await trio.sleep(0.25)
            assert ws.state is STATE_AT_CANCEL[stage]
            await trio.sleep_forever()
    assert scope.cancelled_caught
    took = trio.current_time() - CANCEL_AT
    websocket_open = stage in ("resuming", "open", "sending")
    if websocket_open:
        # the closing handshake: one round trip, far below close_timeout
        assert took == pytest.approx(2 * LATENCY, abs=1e-6)
        (client,) = seen
        await client.wait_closed()
        assert client.statistics().close_code == 1000
    else:
        assert took == 0
    assert ws.state is tr.ConnectionState.CLOSED
    assert _client_tasks() == []
    nursery.cancel_scope.cancel()


async def test_cancel_while_closing_is_bounded_by_close_timeout(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    network = MemoryNetwork(random=random.Random(1))
    server = ReconnectServer(ReplayLog(start=1))
    await nursery.start(server.serve_listeners, [network.listen()])
    with trio.move_on_after(CANCEL_AT):
        async with tr.open_reconnecting_websocket(
            "ws://server/", open_stream=network.client("c"), close_timeout=2.5
        ) as ws:
            await ws.wait_ready()
            network.blackhole("c")  # the close frame will never be answered
            await trio.sleep_forever()
    assert trio.current_time() == pytest.approx(CANCEL_AT + 2.5)
    assert _client_tasks() == []


async def test_a_stuck_snapshot_is_bounded_by_the_handshake_timeout(
    autojump_clock: trio.abc.Clock, nursery: trio.Nursery
) -> None:
    network = MemoryNetwork(random=random.Random(1))
    server = ReconnectServer(ReplayLog(start=1), snapshot=_stuck_snapshot, handshake_timeout=3.0)
    await nursery.start(server.serve_listeners, [network.listen()])
    await server.publish("missed")
    async with tr.open_reconnecting_websocket("ws://server/", open_stream=network.client()) as ws:
        with trio.fail_after(10):
            await ws.wait_ready()
            assert trio.current_time() == pytest.approx(3.0)
            item = await ws.get_message()
    assert isinstance(item, tr.Gap)
    assert server.statistics().lost == 1
