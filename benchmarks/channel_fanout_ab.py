"""Issue 18's Redis channel fan-out, two builds side by side in one run (helper A's A/B).

    python benchmarks/channel_fanout_ab.py ROUNDS plain PYTHONPATH=/work/main PYTHONPATH=/work/wt/A

Each argument after ROUNDS is one server of the bench's channel figure
(``trio_reconnect/_tools/bench/_chanfanout.py``, default sizes: 2,000
clients, 1,000 channels, 10 subscriptions each, bursts of 2,000 events):
``plain`` or ``memory``, or a Redis server (a redis-server of its own)
started with the given ``NAME=VALUE,...`` environment; a ``PYTHONPATH``
entry also becomes the server's working directory (``python -m`` puts it
first on ``sys.path``), so two checkouts run side by side. The bursts are
interleaved, after a warm-up round; the figure of each server is the
median of its per-round ratios to the first one (``plain``), and its
server CPU per delivery, in µs.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys

import trio

from trio_reconnect._tools.bench._chanclients import ClientProcesses, open_clients
from trio_reconnect._tools.bench._chanfanout import (
    _AT_ONCE,
    CLIENT_PROCESSES,
    ChannelOptions,
    _argv,
    _burst,
    _Plan,
)
from trio_reconnect._tools.bench._fanout import _redis, _Samples, _Server, _server


async def main(rounds: int, variants: list[str]) -> None:
    options = ChannelOptions()
    plan = _Plan(options)
    async with contextlib.AsyncExitStack() as stack:
        servers: dict[str, _Server] = {}
        crowds: dict[str, ClientProcesses] = {}
        for variant in variants:
            kind = variant if variant in ("plain", "memory") else "redis"
            env = dict(kv.split("=", 1) for kv in variant.split(",") if "=" in kv)
            store = await stack.enter_async_context(_redis(kind == "redis"))
            saved, here = dict(os.environ), os.getcwd()
            os.environ.update(env)
            if "PYTHONPATH" in env:
                os.chdir(env["PYTHONPATH"])
            try:
                argv = _argv(kind, options.count, store.server)
                servers[variant] = await stack.enter_async_context(_server(kind, argv))
            finally:
                os.environ.clear()
                os.environ.update(saved)
                os.chdir(here)
            servers[variant].kind = variant
            crowds[variant] = await stack.enter_async_context(
                open_clients(
                    kind,
                    servers[variant].port,
                    clients=options.clients,
                    count=options.count,
                    subscriptions=options.subscriptions,
                    processes=CLIENT_PROCESSES,
                    at_once=_AT_ONCE,
                )
            )
        samples = _Samples(variants)
        for number in range(rounds + 1):  # round 0 is the warm-up
            shift = number % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                await _burst(servers[variant], crowds[variant], plan, samples if number else None)
    out = {}
    for variant in variants:
        base = samples.rates[variants[0]]
        ratios = [a / b for a, b in zip(samples.rates[variant], base, strict=True)]
        out[variant] = {
            "ratio_median": round(statistics.median(ratios), 3),
            "ratios": [round(r, 2) for r in ratios],
            "server_cpu_us": [round(c * 1e6, 1) for c in samples.server_cpus[variant]],
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), sys.argv[2:])
