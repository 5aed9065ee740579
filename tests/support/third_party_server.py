"""A small third-party WebSocket server (the ``websockets`` package, asyncio), run as a subprocess.

Not ours and not trio-websocket: the kind of server the issue's newcomer
met. Its protocol: the first frame must be ``auth:<token>`` (answered
``auth-ok``), the second ``subscribe`` (answered ``subscribed``); after
that every frame is an application frame (``order-N``), each answered with
nothing. An application frame before the handshake closes the connection
with 4003, as the newcomer's server did. It forgets everything on restart.

Every frame it receives is written to the file given as the second argument
as one JSON line ``{"pid", "conn", "frame"}``, flushed at once, so that a
SIGKILL loses nothing already received. Usage::

    python third_party_server.py PORT FRAMES_FILE
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys

from websockets.asyncio.server import ServerConnection, serve

_connections = itertools.count(1)


async def main(port: int, path: str) -> None:
    out = open(path, "a", buffering=1)  # noqa: ASYNC230, SIM115 - line-buffered, one per frame
    pid = os.getpid()

    async def handler(ws: ServerConnection) -> None:
        conn = next(_connections)
        step = 0
        async for frame in ws:
            out.write(json.dumps({"pid": pid, "conn": conn, "frame": frame}) + "\n")
            if step == 0:
                if not isinstance(frame, str) or not frame.startswith("auth:"):
                    await ws.close(4003, "auth first")
                    return
                step = 1
                await ws.send("auth-ok")
            elif step == 1:
                if frame != "subscribe":
                    await ws.close(4003, "subscribe next")
                    return
                step = 2
                await ws.send("subscribed")

    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(handler, "127.0.0.1", port, ping_interval=None) as server:
        print("serving", flush=True)
        await stop
        server.close()  # SIGTERM: close every connection (1001), then exit


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
