"""The third-party servers the how-to's samples talk to (``websockets``, asyncio).

``python howto_servers.py exchange PORT``: an exchange-like feed at
``/feed``. A connection is authorized by ``{"op": "auth", "token": ...}``
(answered ``{"op": "auth", "ok": true}``, or ``ok: false`` with an error for
the token ``"bad"``) or by an ``Authorization: Bearer token-...`` header;
then ``{"op": "subscribe", "channel": "trades"}`` is answered
``{"op": "subscribed", ...}`` and a trade every 50 ms. A subscribe before
authorization closes with 4003. The first connection is dropped after two
trades, so that every sample shows a reconnect.

``python howto_servers.py graphql PORT``: a ``graphql-transport-ws`` server
at ``/graphql``: ``connection_init`` / ``connection_ack``, then for each
``subscribe`` three ``next`` messages (``{"data": {"tick": n}}``) and a
``complete``. It pings once after the ack (the client must pong). The first
connection is dropped after the first ``next``.

Each prints ``serving`` once it listens.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys

from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

_connections = itertools.count(1)


async def exchange(ws: ServerConnection) -> None:
    n = next(_connections)
    header = ws.request.headers.get("Authorization", "") if ws.request else ""
    authorized = header.startswith("Bearer token-")
    async for raw in ws:
        frame = json.loads(raw)
        if frame["op"] == "auth":
            ok = frame.get("token") != "bad"
            authorized = authorized or ok
            reply = {"op": "auth", "ok": ok} | ({} if ok else {"error": "invalid token"})
            await ws.send(json.dumps(reply))
        elif frame["op"] == "subscribe":
            if not authorized:
                await ws.close(4003, "subscribe before auth")
                return
            await ws.send(json.dumps({"op": "subscribed", "channel": frame["channel"]}))
            for price in itertools.count(100):
                await asyncio.sleep(0.05)
                await ws.send(json.dumps({"channel": frame["channel"], "price": price}))
                if n == 1 and price == 101:
                    await ws.close(1011, "restarting")
                    return


async def graphql(ws: ServerConnection) -> None:
    n = next(_connections)
    init = json.loads(await ws.recv())
    if init["type"] != "connection_init":
        await ws.close(4400, "connection_init first")
        return
    await ws.send(json.dumps({"type": "connection_ack"}))
    await ws.send(json.dumps({"type": "ping"}))
    async for raw in ws:
        message = json.loads(raw)
        if message["type"] == "subscribe":
            op = message["id"]
            for tick in range(1, 4):
                await asyncio.sleep(0.05)
                await ws.send(
                    json.dumps({"id": op, "type": "next", "payload": {"data": {"tick": tick}}})
                )
                if n == 1:
                    await ws.close(1011, "restarting")
                    return
            await ws.send(json.dumps({"id": op, "type": "complete"}))


async def main(kind: str, port: int) -> None:
    if kind == "exchange":
        server = serve(exchange, "127.0.0.1", port)
    else:
        server = serve(
            graphql, "127.0.0.1", port, subprotocols=[Subprotocol("graphql-transport-ws")]
        )
    async with server:
        print("serving", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
