"""``connect --channel NAME`` and stdin: what it prints, what it sends, how it fails.

The formats are checked as tables; the runs are real: a
:class:`~trio_reconnect.server.ReconnectServer` on loopback TCP in-process,
and a ``serve`` subprocess with two ``connect`` subprocesses.
"""

from __future__ import annotations

import io
import re
import shlex
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import trio

import trio_reconnect as tr
from trio_reconnect._tools._connect import (
    connect,
    describe_channel_item,
    describe_item,
    label,
    line_sender,
    pump_lines,
)
from trio_reconnect.server import MemoryChannelStore, ReconnectServer, ReplayLog

from .test_cli import ROOT, WAIT, one_line, run_cli, start  # noqa: F401

# -- the formats --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("room:1", "room:1"),
        ("a.b-c_d/e@f+g=h", "a.b-c_d/e@f+g=h"),
        ("my room", '"my room"'),
        ("a]b", '"a]b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("caf\u00e9", '"caf\\u00e9"'),
        ("tab\there", '"tab\\there"'),
    ],
)
def test_a_name_is_shown_plain_or_as_a_json_string(name: str, shown: str) -> None:
    assert label(name) == shown


@pytest.mark.parametrize(
    ("item", "line"),
    [
        (tr.ServerEvent("5", {"text": "hi"}), '[room] event 5: {"text": "hi"}'),
        (tr.Snapshot("7", [1, 2]), "[room] snapshot 7: [1, 2]"),
        (tr.Snapshot(None, None), "[room] snapshot None: null"),
        (tr.Gap("3", "9"), "[room] gap: the events after 3 up to and including 9 were lost"),
        (tr.Join("room", "c1", {"name": "ann"}), '[room] join c1: {"name": "ann"}'),
        (tr.Join("room", "a b", {}), '[room] join "a b": {}'),
        (tr.Leave("room", "c1"), "[room] leave c1"),
    ],
)
def test_a_channel_item_is_one_line_naming_its_channel(item: object, line: str) -> None:
    assert describe_channel_item("room", item) == line


def test_the_default_stream_lines_are_unchanged() -> None:
    assert describe_item(tr.ServerEvent("1", {"tick": 1})) == 'event 1: {"tick": 1}'
    assert describe_item(tr.Snapshot("1", 0)) == "snapshot 1: 0"
    assert describe_item("raw") == "message: 'raw'"
    assert describe_channel_item("my room", tr.ServerEvent("1", 2)) == '["my room"] event 1: 2'


# -- bad input: one line, exit 2 ------------------------------------------------------------

E_ACUTE = "\u00e9"


@pytest.mark.parametrize(
    ("channel", "line"),
    [
        (
            "",
            "connect: --channel: '' is not a channel name: it must be 1 to 256 bytes of UTF-8,"
            " got 0",
        ),
        (
            "x" * 300,
            f"connect: --channel: '{'x' * 300}' is not a channel name: it must be at most 256"
            " bytes of UTF-8, got 300 characters",
        ),
        (
            E_ACUTE * 200,
            f"connect: --channel: '{E_ACUTE * 200}' is not a channel name: it must be 1 to 256"
            " bytes of UTF-8, got 400",
        ),
        (
            "a\tb",
            "connect: --channel: 'a\\tb' is not a channel name: it must not hold control"
            " characters",
        ),
    ],
)
def test_an_invalid_channel_name_is_one_line_and_exit_2(channel: str, line: str) -> None:
    result = run_cli("connect", "ws://127.0.0.1:1/", "--channel", channel)
    assert (result.returncode, result.stdout) == (2, "")
    assert one_line(result.stderr) == line


def test_publish_needs_the_resume_protocol() -> None:
    result = run_cli("connect", "ws://127.0.0.1:1/", "--publish", "room", "--no-resume")
    assert (result.returncode, result.stdout) == (2, "")
    assert one_line(result.stderr) == (
        "connect: --publish needs the resume protocol (without --no-resume)"
    )


def test_channels_need_the_resume_protocol() -> None:
    result = run_cli("connect", "ws://127.0.0.1:1/", "--channel", "room", "--no-resume")
    assert (result.returncode, result.stdout) == (2, "")
    assert one_line(result.stderr) == (
        "connect: --channel needs the resume protocol (without --no-resume)"
    )


# -- in-process runs against a real server on loopback ------------------------------------


def _server() -> ReconnectServer:
    def authorize(principal: Any, channel: str, action: str) -> bool:
        return not channel.startswith("secret")

    return ReconnectServer(ReplayLog(), channels=MemoryChannelStore(start=1), authorize=authorize)


async def _publish_until(server: ReconnectServer, channel: str, done: Callable[[], bool]) -> None:
    n = 0
    while not done():
        n += 1
        await server.publish(channel, {"n": n})
        await trio.sleep(0.02)


async def test_channels_print_with_their_name_and_count_toward_count(
    capfd: pytest.CaptureFixture[str],
) -> None:
    server = _server()
    status: list[int] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(server.serve, "127.0.0.1", 0)
            url = f"ws://127.0.0.1:{listener.port}/"

            async def run() -> None:
                status.append(await connect(url, count=4, channels=["room", "secret", "room"]))

            nursery.start_soon(run)
            await _publish_until(server, "room", lambda: bool(status))
            nursery.cancel_scope.cancel()
    assert status == [0]  # one refused channel out of two: connect goes on
    out, err = capfd.readouterr()
    # Exactly --count lines, in order: the channel's consecutive events from
    # where the (single) subscription started.
    ids = [int(m[1]) for m in re.finditer(r'^\[room\] event (\d+): \{"n": \1\}$', out, re.M)]
    assert len(out.splitlines()) == len(ids) == 4
    assert ids == list(range(ids[0], ids[0] + 4))
    refusals = [line for line in err.splitlines() if not line.startswith("[")]
    assert refusals == [f"connect: {url}: channel 'secret' refused: forbidden (not authorized)"]


async def test_every_channel_refused_is_exit_1(capfd: pytest.CaptureFixture[str]) -> None:
    server = _server()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(server.serve, "127.0.0.1", 0)
            url = f"ws://127.0.0.1:{listener.port}/?token=x"
            status = await connect(url, channels=["secret", "secret2"])
            nursery.cancel_scope.cancel()
    assert status == 1
    out, err = capfd.readouterr()
    assert out == ""
    refusals = sorted(line for line in err.splitlines() if not line.startswith("["))
    shown = url.split("?")[0]  # never the query (a token)
    assert [line.split(" refused: ")[0] for line in refusals] == [
        f"connect: {shown}: channel 'secret'",
        f"connect: {shown}: channel 'secret2'",
    ]
    assert all(line.split(" refused: ")[1].startswith("forbidden") for line in refusals)


async def test_stdin_lines_go_out_as_messages(capfd: pytest.CaptureFixture[str]) -> None:
    received: list[str | bytes] = []
    got_two = trio.Event()

    async def on_message(client: Any, message: str | bytes) -> None:
        received.append(message)
        if len(received) == 2:
            got_two.set()

    server = ReconnectServer(ReplayLog(), on_message=on_message)
    sent: list[str] = []

    async def send(line: str) -> None:
        sent.append(line)

    # The pump alone: line ends dropped, empty lines skipped, a bad line said.
    stdin = io.BytesIO(b"hello\r\n\nna\xefve\n  spaced  \nlast")
    await pump_lines(lambda n: stdin.read(3), send)  # lines split across reads
    assert sent == ["hello", "  spaced  ", "last"]
    assert capfd.readouterr().err == "connect: stdin line 3 is not UTF-8: not sent\n"
    # Through a real client, and end of input does not end connect.
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(server.serve, "127.0.0.1", 0)
            url = f"ws://127.0.0.1:{listener.port}/"
            stdin = io.BytesIO("first\nsecond \u00e9\n".encode())
            nursery.start_soon(lambda: connect(url, stdin=stdin.read))
            await got_two.wait()
            await trio.sleep(0.2)
            assert nursery.child_tasks  # still running after the end of stdin
            nursery.cancel_scope.cancel()
    assert received == ["first", "second \u00e9"]


async def test_publish_acks_and_refusals_are_one_line_each(
    capfd: pytest.CaptureFixture[str],
) -> None:
    server = _server()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(server.serve, "127.0.0.1", 0)
            url = f"ws://127.0.0.1:{listener.port}/"
            stdin = io.BytesIO(b"one\ntwo\n")
            await connect(url, count=2, channels=["room"], stdin=stdin.read, publish="room")
            # A refused publish is one line, and the next line still goes.
            async with tr.open_reconnecting_websocket(url) as ws:
                await line_sender(ws, "secret")("hidden")
                await line_sender(ws, "room")("three")
            nursery.cancel_scope.cancel()
    out, err = capfd.readouterr()
    acks = re.findall(r'^connect: published to \[room\] as event (\d+): "(\w+)"$', err, re.M)
    assert [text for _, text in acks] == ["one", "two", "three"]
    first, second, third = (int(i) for i, _ in acks)
    assert (second, third) == (first + 1, first + 2)  # in the order typed
    assert out.splitlines() == [f'[room] event {first}: "one"', f'[room] event {second}: "two"']
    refusals = [line for line in err.splitlines() if "refused" in line]
    assert len(refusals) == 1
    assert re.fullmatch(
        r"connect: publish \d+ to channel 'secret' refused: forbidden: .+", refusals[0]
    ), refusals


# -- two terminals and serve: real processes ----------------------------------------------


def page_commands() -> list[list[str]]:
    """The commands of docs/howto/channels.md's command line section, as argv."""
    text = (ROOT / "docs" / "howto" / "channels.md").read_text(encoding="utf-8")
    section = text.split("## On the command line: `connect --channel`", 1)[1]
    found = re.findall(r"^\$ python -m trio_reconnect (.*)$", section, re.MULTILINE)
    return [shlex.split(command) for command in found]


def test_two_connects_and_serve_make_a_chat(start: Any) -> None:  # noqa: F811
    serve, connect_a, connect_b = page_commands()
    assert serve[0] == "serve"
    assert "--publish" in connect_a
    assert "--publish" not in connect_b
    server = start(*serve, "--port", "0")  # the page's, on a free port
    line = server.wait_for(server.out, r"^serving the reconnect protocol on ")
    url = line.rsplit(" ", 1)[1]

    def at_url(argv: list[str]) -> list[str]:
        assert argv[:2] == ["connect", "ws://127.0.0.1:8765/"], argv
        return ["connect", url, *argv[2:]]

    a = start(*at_url(connect_a), stdin=subprocess.PIPE)
    b = start(*at_url(connect_b), stdin=subprocess.PIPE)
    for running in (a, b):  # each subscription answered: events flow from here on
        running.wait_for(running.err, r"^\[room\] subscribed$")
    assert a.process.stdin is not None
    assert b.process.stdin is not None
    # A line typed into A is published into room: acked to A, printed by both.
    a.process.stdin.write("hello from a\n")
    a.process.stdin.flush()
    ack = a.wait_for(a.err, r"^connect: published to ")
    match = re.fullmatch(r'connect: published to \[room\] as event (\d+): "hello from a"', ack)
    assert match, ack
    for running in (a, b):
        shown = running.wait_for(running.out, r"^\[room\] ")
        assert shown == f'[room] event {match[1]}: "hello from a"', shown
    # A line typed into B (no --publish) is a message to serve, in no channel.
    b.process.stdin.write("not in the room\n")
    b.process.stdin.flush()
    server.wait_for(server.out, r'^message from client \d+: "not in the room"$')
    # End of A's stdin: A goes on running (and printing).
    a.process.stdin.close()
    assert a.process.poll() is None
    status, rest = a.interrupt()
    assert status == 130
    assert all(line.startswith("[") for line in rest), rest  # transitions only, no traceback
    assert b.interrupt()[0] == 130
    assert server.interrupt()[0] == 0
