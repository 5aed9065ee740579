"""The in-memory network: stream contract, timing, and every fault, in virtual time."""

from __future__ import annotations

import random
import ssl

import pytest
import trio
import trio.testing
import trustme

from trio_reconnect import (
    ConnectionState,
    ReconnectFailed,
    ServerEvent,
    Target,
    TLSError,
    Transition,
    open_reconnecting_websocket,
)
from trio_reconnect.server import ReconnectServer, ReplayLog
from trio_reconnect.testing import Link, MemoryNetwork

TARGET = Target(secure=False, host="server", port=80, resource="/")


async def _pair(network: MemoryNetwork, client: str = "client") -> tuple[Link, trio.abc.Stream]:
    """Connect, and accept on the server side."""
    listener = network._listeners.get(("server", 80)) or network.listen()
    link = await network.connect(TARGET, client=client)
    server_stream = await listener.accept()
    return link, server_stream


async def _read_all(stream: trio.abc.Stream) -> bytes:
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


# -- the stream contract -------------------------------------------------------


async def test_generic_stream_contract() -> None:
    async def maker() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        link, server_stream = await _pair(MemoryNetwork(random=random.Random(1)))
        return link.client_stream, server_stream

    async def clogged() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        network = MemoryNetwork(random=random.Random(1), window=1)
        link, server_stream = await _pair(network)
        await link.client_stream.send_all(b"x")  # both windows are now full
        await server_stream.send_all(b"x")
        return link.client_stream, server_stream

    with trio.fail_after(10):
        await trio.testing.check_two_way_stream(maker, clogged)


async def test_bytes_arrive_after_the_latency_in_order(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(random=random.Random(7), latency=0.05, jitter=0.02)
    network.listen()
    start = trio.current_time()
    link = await network.connect(TARGET)
    assert trio.current_time() - start == pytest.approx(0.1)  # one round trip
    server_stream = await network._listeners[("server", 80)].accept()
    sent_at = trio.current_time()
    payload = [bytes([i]) * 10 for i in range(50)]
    for chunk in payload:
        await link.client_stream.send_all(chunk)
    await link.client_stream.aclose()
    with trio.fail_after(5):
        first = await server_stream.receive_some()
        assert 0.05 <= trio.current_time() - sent_at <= 0.07
        assert first + await _read_all(server_stream) == b"".join(payload)


async def test_receive_some_splits_chunks_and_checks_max_bytes(
    autojump_clock: trio.abc.Clock,
) -> None:
    link, server_stream = await _pair(MemoryNetwork())
    await link.client_stream.send_all(b"abcdef")
    assert await server_stream.receive_some(4) == b"abcd"
    assert await server_stream.receive_some(4) == b"ef"
    with pytest.raises(ValueError, match="max_bytes"):
        await server_stream.receive_some(0)


async def test_a_full_window_makes_the_sender_wait(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(window=100)
    link, server_stream = await _pair(network)
    await link.client_stream.send_all(b"x" * 100)
    with trio.move_on_after(60) as scope:
        await link.client_stream.send_all(b"y")
    assert scope.cancelled_caught  # blocked: the window is full and nobody reads
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.client_stream.send_all, b"z")
        await trio.testing.wait_all_tasks_blocked()
        assert await server_stream.receive_some() == b"x" * 100
    assert await server_stream.receive_some() == b"z"


async def test_close_sends_fin_and_later_sends_fail(autojump_clock: trio.abc.Clock) -> None:
    link, server_stream = await _pair(MemoryNetwork(latency=0.01))
    await server_stream.send_all(b"bye")
    await server_stream.aclose()
    with trio.fail_after(1):
        assert await _read_all(link.client_stream) == b"bye"
    with pytest.raises(trio.BrokenResourceError):
        await link.client_stream.send_all(b"anyone?")
    with pytest.raises(trio.ClosedResourceError):
        await server_stream.receive_some()
    await link.client_stream.aclose()
    assert not link.alive


# -- faults ----------------------------------------------------------------------


async def test_reset_breaks_both_ends_at_once(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(latency=0.01)
    link, server_stream = await _pair(network, "alice")
    await link.client_stream.send_all(b"lost in flight")
    async with trio.open_nursery() as nursery:

        async def reader() -> None:
            with pytest.raises(trio.BrokenResourceError):
                await link.client_stream.receive_some()
            assert trio.current_time() == start  # at once, not after any timeout

        start = trio.current_time()
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert network.reset("alice") == 1
    with pytest.raises(trio.BrokenResourceError):
        await server_stream.receive_some()
    with pytest.raises(trio.BrokenResourceError):
        await server_stream.send_all(b"x")
    assert network.statistics().resets == 1
    assert network.links == ()


async def test_blackhole_swallows_bytes_and_fin(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork()
    link, server_stream = await _pair(network, "bob")
    assert network.blackhole("bob") == 1
    await link.client_stream.send_all(b"into the void")  # succeeds: nobody knows
    await link.client_stream.aclose()  # the FIN vanishes too
    with trio.move_on_after(3600) as scope:
        await server_stream.receive_some()
    assert scope.cancelled_caught
    assert network.statistics().blackholes == 1


async def test_partition_holds_bytes_and_connects_until_heal(
    autojump_clock: trio.abc.Clock,
) -> None:
    network = MemoryNetwork(latency=0.01)
    link, server_stream = await _pair(network, "carol")
    network.partition("carol")
    await link.client_stream.send_all(b"held")
    results: list[tuple[float, bytes | bytearray]] = []

    async def read() -> None:
        data = await server_stream.receive_some()
        results.append((trio.current_time(), data))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        start = trio.current_time()
        with trio.move_on_after(30):  # a new connection from carol waits too
            await network.connect(TARGET, client="carol")
        assert trio.current_time() - start == pytest.approx(30)
        other = await network.connect(TARGET, client="dave")  # others are fine
        assert other.alive
        healed = trio.current_time()
        network.heal("carol")
    assert results == [(healed, b"held")]
    network.partition()
    assert network._is_partitioned("erin")
    network.heal()
    assert not network._is_partitioned("erin")


async def test_refuse_for_a_while_then_accept(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork()
    network.listen()
    network.refuse(5)
    with pytest.raises(ConnectionRefusedError):
        await network.connect(TARGET)
    await trio.sleep(5)
    assert (await network.connect(TARGET)).alive
    network.refuse(5, "mallory")
    with pytest.raises(ConnectionRefusedError):
        await network.connect(TARGET, client="mallory")
    assert (await network.connect(TARGET, client="trent")).alive
    with pytest.raises(ConnectionRefusedError, match="refused"):
        await network.connect(Target(secure=False, host="nowhere", port=80, resource="/"))
    assert network.statistics().refused == 3


async def test_backlog_and_accept_rate(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork()
    listener = network.listen(accept_rate=10, backlog=3)
    for _ in range(3):
        await network.connect(TARGET)
    with pytest.raises(ConnectionRefusedError, match="backlog"):
        await network.connect(TARGET)
    start = trio.current_time()
    times = []
    for _ in range(3):
        await listener.accept()
        times.append(trio.current_time() - start)
    assert times == pytest.approx([0.0, 0.1, 0.2])
    assert listener.accepted == 3


async def test_closing_a_listener_resets_its_backlog(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork()
    listener = network.listen()
    link = await network.connect(TARGET)
    await listener.aclose()
    with pytest.raises(trio.BrokenResourceError):
        await link.client_stream.receive_some()
    with pytest.raises(trio.ClosedResourceError):
        await listener.accept()
    network.listen()  # the address is free again
    with pytest.raises(OSError, match="in use"):
        network.listen()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latency": -1}, "latency"),
        ({"jitter": float("nan")}, "jitter"),
        ({"window": 0}, "window"),
        ({"window": True}, "window"),
    ],
)
def test_bad_network_options(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MemoryNetwork(**kwargs)  # type: ignore[arg-type]


async def test_bad_fault_arguments() -> None:
    network = MemoryNetwork()
    with pytest.raises(ValueError, match="accept_rate"):
        network.listen(accept_rate=0)
    with pytest.raises(ValueError, match="seconds"):
        network.refuse(-1)
    with pytest.raises(ValueError, match="seconds"):
        network.refuse(float("inf"))


# -- with the real client and server -----------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code"),
    [("close-frame", 1001), ("bare-fin", 1006), ("reset", 1006)],
)
async def test_client_reconnects_after_each_drop_and_loses_nothing(
    autojump_clock: trio.abc.Clock, fault: str, code: int
) -> None:
    network = MemoryNetwork(random=random.Random(3), latency=0.005)
    server = ReconnectServer(ReplayLog(start=1), rng=random.Random(4))
    transitions: list[Transition] = []
    received: list[object] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve_listeners, [network.listen()])
        async with open_reconnecting_websocket(
            "ws://server/",
            open_stream=network.client("alice"),
            random=random.Random(5),
            on_transition=transitions.append,
        ) as ws:
            with trio.fail_after(60):
                await ws.wait_ready()
                await server.publish(1)
                received.append(await ws.get_message())
                if fault == "close-frame":
                    assert network.drop("alice", code=1001, reason="proxy going away") == 1
                elif fault == "bare-fin":
                    assert network.drop("alice", code=None) == 1
                else:
                    assert network.reset("alice") == 1
                await server.publish(2)
                received.append(await ws.get_message())
        nursery.cancel_scope.cancel()
    assert [item.data for item in received if isinstance(item, ServerEvent)] == [1, 2]
    lost = [t for t in transitions if t.state is ConnectionState.BACKING_OFF]
    assert [t.close_code for t in lost] == [code]
    if fault == "close-frame":
        assert lost[0].close_reason == "proxy going away"


async def test_close_frame_is_not_injected_before_the_upgrade(
    autojump_clock: trio.abc.Clock,
) -> None:
    link, server_stream = await _pair(MemoryNetwork())
    assert not link.upgraded
    link.close(1001)
    assert await _read_all(link.client_stream) == b""  # FIN only: no frame before the 101
    assert await _read_all(server_stream) == b""


async def test_a_half_open_link_is_found_by_the_ping(autojump_clock: trio.abc.Clock) -> None:
    network = MemoryNetwork(random=random.Random(3))
    server = ReconnectServer(ReplayLog(start=1), rng=random.Random(4))
    transitions: list[Transition] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve_listeners, [network.listen()])
        async with open_reconnecting_websocket(
            "ws://server/",
            open_stream=network.client("alice"),
            random=random.Random(5),
            ping_interval=5,
            ping_timeout=3,
            on_transition=transitions.append,
        ) as ws:
            with trio.fail_after(60):
                await ws.wait_ready()
                network.blackhole("alice")
                start = trio.current_time()
                while ws.state is ConnectionState.OPEN:
                    await trio.sleep(0.1)
                # the next ping goes out within 5 s and times out 3 s later
                assert 3 < trio.current_time() - start <= 8.1
                await ws.wait_ready()
        nursery.cancel_scope.cancel()
    errors = [type(t.error).__name__ for t in transitions if t.state is ConnectionState.BACKING_OFF]
    assert errors == ["PingTimeout"]


async def test_wss_over_the_memory_network(autojump_clock: trio.abc.Clock) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("server").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    network = MemoryNetwork(random=random.Random(1))
    server = ReconnectServer(ReplayLog(start=1))
    async with trio.open_nursery() as nursery:
        await nursery.start(
            server.serve_listeners, [network.listen("server", 443, ssl_context=server_context)]
        )
        async with open_reconnecting_websocket(
            "wss://server/", open_stream=network.client(), ssl_context=client_context
        ) as ws:
            with trio.fail_after(30):
                await ws.wait_ready()
        # an untrusted certificate is a TLSError with the ssl error as its cause
        with trio.fail_after(30), pytest.raises(ReconnectFailed) as failure:
            async with open_reconnecting_websocket(
                "wss://server/", open_stream=network.client(), max_attempts=1
            ) as ws:
                await ws.wait_ready()
        nursery.cancel_scope.cancel()
    error = failure.value.last_error
    assert isinstance(error, TLSError)
    assert isinstance(error.__cause__, ssl.SSLError)


def test_a_misspelled_network_counter_raises_instead_of_counting_nothing() -> None:
    from trio_reconnect.testing._network import _NetworkCounts

    counts = _NetworkCounts()
    with pytest.raises(AttributeError):
        counts.reset += 1  # type: ignore[attr-defined]
    assert MemoryNetwork().statistics().connects == 0
