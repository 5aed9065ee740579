"""The ``/metrics`` endpoint: a small HTTP/1.1 server on trio, with h11.

Prometheus scrapes with a plain ``GET /metrics``. prometheus-client's own
``start_http_server`` answers from a thread, and a collector called from a
thread would read the clients' statistics while trio changes them; this
endpoint answers in the trio thread instead, as one more task of the
application's nursery. One request per connection (``Connection: close``),
a bounded request head and a deadline per request, so that a stuck or
hostile scraper costs one task for at most :data:`REQUEST_TIMEOUT` seconds.
"""

from __future__ import annotations

import functools
import http
import logging
from typing import TYPE_CHECKING, Final, NoReturn

import h11
import trio
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

if TYPE_CHECKING:
    from ..server import ReconnectServer

__all__ = ["DEFAULT_HOST", "MAX_REQUEST_HEAD", "METRICS_PATH", "REQUEST_TIMEOUT", "serve_metrics"]

logger = logging.getLogger("trio_reconnect.prometheus")

#: The address :func:`serve_metrics` binds by default: loopback only.
DEFAULT_HOST: Final = "127.0.0.1"
#: The path the metrics are served on.
METRICS_PATH: Final = "/metrics"
#: Seconds a scraper has to send its request and read the answer.
REQUEST_TIMEOUT: Final = 10.0
#: Largest request head accepted, in bytes (larger: 431, or the connection is dropped).
MAX_REQUEST_HEAD: Final = 16 * 1024

_RECEIVE_SIZE: Final = 4096


async def serve_metrics(
    port: int,
    *,
    host: str | None = DEFAULT_HOST,
    registry: CollectorRegistry = REGISTRY,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``registry`` on ``http://host:port/metrics`` until cancelled.

    Use it with ``nursery.start``, which returns the listeners (port 0 picks a
    free port: ``listeners[0].socket.getsockname()[1]``)::

        async with trio.open_nursery() as nursery:
            await nursery.start(serve_metrics, 9100)

    Args:
        port: The TCP port (0: any free port).
        host: The address to bind (``None``: every interface).
        registry: What to serve (default: prometheus-client's global registry).
        task_status: For ``nursery.start``.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)

    async def handle(stream: trio.SocketStream) -> None:
        await _answer(stream, registry)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(listeners)
        await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


async def _answer(stream: trio.abc.Stream, registry: CollectorRegistry) -> None:
    """Read one request from ``stream``, answer it and close the stream."""
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
    try:
        with trio.move_on_after(REQUEST_TIMEOUT):
            try:
                request = await _read_request(connection, stream)
            except h11.RemoteProtocolError as exc:
                if connection.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await _send(connection, stream, exc.error_status_hint, b"bad request\n")
                return
            if request is None:
                return
            status, headers, body = _response(request, registry)
            await _send(connection, stream, status, body, headers, head=request.method == b"HEAD")
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        logger.debug("metrics scraper went away: %r", exc)
    finally:
        await trio.aclose_forcefully(stream)


async def _read_request(connection: h11.Connection, stream: trio.abc.Stream) -> h11.Request | None:
    """The request (``None``: the peer closed before sending one)."""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(bytes(await stream.receive_some(_RECEIVE_SIZE)))
        elif isinstance(event, h11.Request):
            return event
        else:  # ConnectionClosed
            return None


def _response(
    request: h11.Request, registry: CollectorRegistry
) -> tuple[int, list[tuple[str, str]], bytes]:
    path = request.target.split(b"?", 1)[0]
    if path != METRICS_PATH.encode():
        return 404, [], b"not found: the metrics are at " + METRICS_PATH.encode() + b"\n"
    if request.method not in (b"GET", b"HEAD"):
        return 405, [("Allow", "GET, HEAD")], b"method not allowed\n"
    accept = ",".join(
        value.decode("latin-1") for name, value in request.headers if name == b"accept"
    )
    encoder, content_type = choose_encoder(accept)
    try:
        body = encoder(registry)
    except Exception:
        logger.exception("a metrics collector failed")
        return 500, [], b"a collector failed; see the server's log\n"
    return 200, [("Content-Type", content_type)], body


async def _send(
    connection: h11.Connection,
    stream: trio.abc.Stream,
    status: int,
    body: bytes,
    headers: list[tuple[str, str]] | None = None,
    *,
    head: bool = False,
) -> None:
    all_headers = [
        *(headers or [("Content-Type", "text/plain; charset=utf-8")]),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    ]
    response = h11.Response(
        status_code=status, headers=all_headers, reason=http.HTTPStatus(status).phrase
    )
    data = connection.send(response) or b""
    if not head:
        data += connection.send(h11.Data(data=body)) or b""
    data += connection.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)


async def serve_server_metrics(
    server: ReconnectServer,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """``serve --metrics-port``: the statistics of ``server`` and of the process.

    They go on a registry of their own, not the global one.

    Starts with the bound port (``port`` 0: a free one).
    """
    from prometheus_client import ProcessCollector

    from ._collectors import ServerCollector

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    collector = ServerCollector()
    collector.add("serve", server)
    registry.register(collector)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(serve_metrics, port, host=host, registry=registry)
        )
        task_status.started(listeners[0].socket.getsockname()[1])
    raise AssertionError("unreachable")  # pragma: no cover
