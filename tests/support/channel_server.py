"""A small version 2 server for docs/howto/channels.md's samples: ``python channel_server.py PORT``.

It serves :class:`tests.support.fake_channels.ChannelStore` over real TCP:
``room:1`` gets an event every 50 ms and has one member (``bot``),
``secret`` is refused ``forbidden`` (subscribe and publish; publish.md's
samples use it too), and every connection is closed with 1012 and
``retryAfter: 100`` every eighth event, so each sample sees a reconnect that
resumes its channels.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio
import trio_websocket

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.fake_channels import ChannelStore
from trio_reconnect._wire import NackCode, RefusedCode

#: Seconds between two events of ``room:1``.
INTERVAL = 0.05
#: Every client is dropped (1012, ``retryAfter: 100``) after this many events.
KICK_EVERY = 8


async def main(port: int) -> None:
    store = ChannelStore(
        presence={"room:1": {"bot": {"user": "bot"}}},
        refuse={"secret": RefusedCode.FORBIDDEN},
        publish_script=lambda frame: NackCode.FORBIDDEN if frame.channel == "secret" else None,
    )
    count = 0

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        await store.serve(request, 1)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", port, None)
        while True:
            await trio.sleep(INTERVAL)
            count += 1
            store.publish("room:1", {"n": count})
            if count % KICK_EVERY == 0:
                await store.kick(1012, 100)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
