"""``python -m trio_reconnect connect URL``: a wscat-like client of the reconnect protocol.

What it prints (stdout, one line per item, flushed; the format is stable and
documented in docs/reference/cli.md):

* the default stream, as always: ``event ID: DATA``, ``snapshot ID: DATA``,
  ``gap: ...`` (:func:`describe_gap`), ``message: REPR`` (a raw frame);
* with ``--channel NAME`` (repeatable), each channel's items, the line
  starting with the channel in brackets: ``[NAME] event ID: DATA``,
  ``[NAME] snapshot ID: DATA``, ``[NAME] gap: ...``,
  ``[NAME] join CLIENT: INFO``, ``[NAME] leave CLIENT``. A name or client id
  that holds anything but letters, digits and ``._:@/+=-`` is printed as a
  JSON string (``["my room"] event 4: ...``), so a line stays one line.

DATA and INFO are JSON (``json.dumps``: one line). State transitions go to stderr, stamped with
the wall clock (:func:`transition_printer`).

Refusals: a channel the server refuses (when subscribing, or at a later
reconnect) is one line on stderr, ``connect: URL: channel 'NAME' refused:
CODE (REASON)``, and ``connect`` goes on with the other channels and the
default stream. When every ``--channel`` was refused, ``connect`` exits 1:
the channels were what it was asked for. A channel given twice is
subscribed once.

Sending: each line read from stdin (without its line end; empty lines are
skipped) is sent as one application message, ``ws.send_message(line)``
(at most once across a drop, see :meth:`~trio_reconnect.ReconnectingWebSocket.send_message`).
Where a line goes is decided in one place, :func:`line_sender`: an application
message, or with ``--publish NAME`` an acknowledged publish to channel NAME
(``ws.publish``: applied exactly once, re-sent across reconnects; each ack or
refusal is one line on stderr). Lines are published one after the other, each
after the previous one's ack, so their order is the order typed. End of stdin
stops the sending, not the printing: like ``wscat``, ``connect < /dev/null``
prints until ``--count`` or Ctrl-C. A line that is not UTF-8 is not sent,
and says so in one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import attrs
import trio

from .._client import ReconnectingWebSocket, open_reconnecting_websocket
from .._exceptions import ClientClosedError, PublishRefused, SubscriptionRefused
from .._protocol import Gap, ServerEvent, Snapshot
from .._state import ConnectionState, Transition
from .._transport import parse_url
from .._wire import Join, Leave
from ._interrupt import interruptible
from ._policy import EXIT_FAILED, EXIT_OK, EXIT_USAGE, channel_name, describe_error, lower_first
from ._policy import positive_int as _positive_int

__all__ = [
    "add_arguments",
    "connect",
    "describe_channel_item",
    "describe_gap",
    "describe_item",
    "display_url",
    "label",
    "line_sender",
    "run_command",
    "transition_printer",
]

#: A name printed as it is (else as a JSON string).
_PLAIN: Final = re.compile(r"[A-Za-z0-9._:@/+=-]+")

#: Sends one stdin line somewhere (:func:`line_sender` picks where).
LineSender = Callable[[str], Awaitable[None]]


def websocket_url(text: str) -> str:
    """argparse type: a URL that :func:`~trio_reconnect._transport.parse_url` accepts."""
    try:
        parse_url(text)
    except ValueError as exc:
        reason = lower_first(str(exc))
        raise argparse.ArgumentTypeError(f"{text!r} is not a websocket URL: {reason}") from None
    return text


def display_url(url: str) -> str:
    """``url`` without its query string (queries carry tokens; never print a credential)."""
    return url.split("?", 1)[0]


def add_arguments(connect: argparse.ArgumentParser, example: str) -> None:
    """``connect``'s options; ``example`` is ``serve``'s default URL."""
    connect.add_argument(
        "url",
        type=websocket_url,
        help=f"the server's ws:// or wss:// URL, e.g. {example} (serve's)",
    )
    connect.add_argument("--no-resume", action="store_true", help="plain websocket server")
    connect.add_argument(
        "--count", type=_positive_int, default=None, help="stop after N items (default: never)"
    )
    connect.add_argument(
        "--channel",
        type=channel_name,
        action="append",
        default=[],
        metavar="NAME",
        help="subscribe to channel NAME and print its items (repeatable)",
    )
    connect.add_argument(
        "--publish",
        type=channel_name,
        default=None,
        metavar="NAME",
        help="publish each stdin line to channel NAME, with acks (default: send it as a message)",
    )


# -- what is printed --------------------------------------------------------------


def label(name: str) -> str:
    """``name`` as printed: as it is when plain, else as a JSON string."""
    return name if _PLAIN.fullmatch(name) else json.dumps(name)


def _data(data: Any) -> str:
    return json.dumps(data)


def describe_gap(gap: Gap) -> str:
    """What a Gap says is lost: the events after ``last_id`` up to ``ready_id``."""
    after = "" if gap.last_id is None else f" after {gap.last_id}"
    if gap.ready_id is None:
        return f"gap: the events{after} were lost (the server holds none since)"
    return f"gap: the events{after} up to and including {gap.ready_id} were lost"


def describe_item(item: object) -> str:
    """One line for an item of the default stream (or the body of a channel's line)."""
    if isinstance(item, ServerEvent):
        return f"event {item.id}: {json.dumps(item.data)}"
    if isinstance(item, Snapshot):
        return f"snapshot {item.id}: {json.dumps(item.data)}"
    if isinstance(item, Gap):
        return describe_gap(item)
    return f"message: {item!r}"


def describe_channel_item(channel: str, item: object) -> str:
    """One line for an item of ``channel``: ``[NAME] ...``."""
    if isinstance(item, Join):
        body = f"join {label(item.client_id)}: {_data(item.info)}"
    elif isinstance(item, Leave):
        body = f"leave {label(item.client_id)}"
    else:
        body = describe_item(item)
    return f"[{label(channel)}] {body}"


def describe_refusal(url: str, refused: SubscriptionRefused) -> str:
    """The stderr line of a refused channel."""
    reason = f" ({refused.reason})" if refused.reason else ""
    return (
        f"connect: {display_url(url)}: channel {refused.channel!r} refused: {refused.code}{reason}"
    )


def _wall_clock(stamp: float) -> str:
    """``HH:MM:SS.mmm``, local time."""
    return time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp % 1 * 1000):03d}"


def transition_printer() -> Callable[[Transition], None]:
    """An ``on_transition`` hook printing each transition on stderr, stamped with wall time.

    Call it inside ``trio.run``: it maps trio's clock to the wall clock once.
    The last transition of a failed client is not printed: the command line
    prints its cause as the command's one error line.
    """
    offset = time.time() - trio.current_time()

    def show(t: Transition) -> None:
        if t.state is ConnectionState.FAILED:
            return
        parts = [f"[{_wall_clock(offset + t.time)}] {t.previous.value} -> {t.state.value}"]
        if t.delay is not None:
            source = t.delay_source.value if t.delay_source else "-"
            parts.append(f"wait {t.delay:.3f}s ({source})")
        if t.close_code is not None:
            parts.append(f"close {t.close_code} {t.close_reason or ''}".rstrip())
        if t.status_code is not None:
            parts.append(f"HTTP {t.status_code}")
        elif t.error is not None and not isinstance(t.error, ClientClosedError):
            parts.append(describe_error(t.error))
        print("  ".join(parts), file=sys.stderr, flush=True)

    return show


# -- the run ----------------------------------------------------------------------


@attrs.define(eq=False)
class _Output:
    """The printed lines, up to ``--count``; and how the run ends."""

    url: str
    count: int | None
    channels: int
    printed: int = 0
    refused: int = 0
    status: int = EXIT_OK
    done: trio.Event = attrs.field(factory=trio.Event)

    def line(self, text: str) -> None:
        if self.done.is_set():
            return  # --count reached: not one line more
        print(text, flush=True)
        self.printed += 1
        if self.count is not None and self.printed >= self.count:
            self.done.set()

    def refusal(self, refused: SubscriptionRefused) -> None:
        print(describe_refusal(self.url, refused), file=sys.stderr, flush=True)
        self.refused += 1
        if self.refused == self.channels:
            self.status = EXIT_FAILED
            self.done.set()


def describe_ack(channel: str, line: str, event_id: str) -> str:
    """The stderr line of an acknowledged publish."""
    return f"connect: published to [{label(channel)}] as event {event_id}: {json.dumps(line)}"


def line_sender(ws: ReconnectingWebSocket, publish: str | None = None) -> LineSender:
    """Where a stdin line goes: the one place that decides.

    Without ``publish``: an application message (``ws.send_message``). With
    it: an acknowledged publish of the line (a JSON string) to that channel;
    the ack, or a refusal (:class:`~trio_reconnect.PublishRefused`), is one
    line on stderr, and the next line waits for it.
    """
    if publish is None:
        return ws.send_message
    channel = publish

    async def send(line: str) -> None:
        try:
            event_id = await ws.publish(channel, line)
        except PublishRefused as refused:
            print(f"connect: {refused}", file=sys.stderr, flush=True)
            return
        print(describe_ack(channel, line, event_id), file=sys.stderr, flush=True)

    return send


async def _default_stream(ws: ReconnectingWebSocket, out: _Output) -> None:
    async for item in ws:
        out.line(describe_item(item))


async def _channel(ws: ReconnectingWebSocket, name: str, out: _Output) -> None:
    try:
        async with ws.subscribe(name) as sub:
            # On stderr, as the transitions: the channel's events flow from here on.
            print(f"[{label(name)}] subscribed", file=sys.stderr, flush=True)
            async for item in sub:
                out.line(describe_channel_item(name, item))
    except SubscriptionRefused as refused:
        out.refusal(refused)


#: Bytes of stdin read at once.
_CHUNK: Final = 65536


async def pump_lines(read: Callable[[int], bytes], send: LineSender) -> None:
    """Send each line of the input ``read(n)`` returns, until its end (``b""``).

    ``read`` runs in a thread that a cancellation abandons: in production
    ``os.read`` on stdin's file descriptor, which holds no lock of Python's
    (a thread left blocked in ``sys.stdin.buffer.readline`` would hold the
    buffer's lock and abort the interpreter's exit).
    """
    number = 0
    pending = b""
    while True:
        chunk = await trio.to_thread.run_sync(read, _CHUNK, abandon_on_cancel=True)
        *lines, pending = (pending + chunk).split(b"\n")
        if not chunk and pending:
            lines.append(pending)  # the last line, without its line end
        for raw in lines:
            number += 1
            try:
                line = raw.rstrip(b"\r").decode("utf-8")
            except UnicodeDecodeError:
                print(
                    f"connect: stdin line {number} is not UTF-8: not sent",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            if line:
                await send(line)
        if not chunk:
            return  # end of input: stop sending, keep printing


async def connect(
    url: str,
    *,
    resume: bool = True,
    count: int | None = None,
    channels: Sequence[str] = (),
    stdin: Callable[[int], bytes] | None = None,
    publish: str | None = None,
) -> int:
    """Print what ``url`` sends (and send ``stdin``'s lines) until ``count`` items; the status."""
    names = list(dict.fromkeys(channels))
    out = _Output(url, count, len(names))
    async with (
        open_reconnecting_websocket(
            url, resume=resume, on_transition=transition_printer(), max_attempts=None
        ) as ws,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(_default_stream, ws, out)
        for name in names:
            nursery.start_soon(_channel, ws, name, out)
        if stdin is not None:
            nursery.start_soon(pump_lines, stdin, line_sender(ws, publish))
        await out.done.wait()
        nursery.cancel_scope.cancel()
    return out.status


def run_command(args: Any) -> int:
    """Run ``connect`` with parsed ``args``; return the exit status."""
    if (args.channel or args.publish) and args.no_resume:
        option = "--channel" if args.channel else "--publish"
        print(f"connect: {option} needs the resume protocol (without --no-resume)", file=sys.stderr)
        return EXIT_USAGE
    stdin = None
    # No stdin at all (None), or one without a file descriptor: nothing to send.
    with contextlib.suppress(AttributeError, OSError, ValueError):
        stdin = functools.partial(os.read, sys.stdin.fileno())
    command = functools.partial(
        connect,
        args.url,
        resume=not args.no_resume,
        count=args.count,
        channels=args.channel,
        stdin=stdin,
        publish=args.publish,
    )
    status: int = trio.run(interruptible, command)
    return status
