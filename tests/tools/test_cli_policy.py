"""The command line's rules, in process: argument types, one-line messages, exit statuses."""

from __future__ import annotations

import argparse
import errno
import socket

import pytest
import trio

from trio_reconnect import FatalCloseError, HandshakeRejectedError, ReconnectFailed
from trio_reconnect._tools._policy import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    channel_name,
    describe_error,
    exit_status,
    node_count,
    non_negative_int,
    non_negative_number,
    port,
    positive_int,
    positive_number,
    usage_line,
)
from trio_reconnect._validators import MAX_PORT, check_port


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        (positive_int, "7", 7),
        (non_negative_int, "0", 0),
        (positive_number, "0.5", 0.5),
        (non_negative_number, "0", 0.0),
        (port, "0", 0),
        (port, str(MAX_PORT), MAX_PORT),
        (channel_name, "room:1", "room:1"),
        (channel_name, "my room \u200b", "my room \u200b"),  # a format character is allowed
        (channel_name, "x" * 256, "x" * 256),
    ],
)
def test_argument_types_accept(kind: object, text: str, value: object) -> None:
    assert kind(text) == value  # type: ignore[operator]


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        (positive_int, "0", "must be a positive integer, got 0"),
        (positive_int, "1.5", "must be a positive integer, got '1.5'"),
        (positive_int, "", "must be a positive integer, got ''"),
        (non_negative_int, "-1", "must be a non-negative integer, got -1"),
        (positive_number, "0", "must be a positive finite number, got 0"),
        (positive_number, "-0.0", "must be a positive finite number, got -0.0"),
        (positive_number, "inf", "must be a positive finite number, got inf"),
        (positive_number, "soon", "must be a positive finite number, got 'soon'"),
        (non_negative_number, "nan", "must be a non-negative finite number, got nan"),
        (port, "65536", "must be a port from 0 to 65535, got 65536"),
        (port, "-1", "must be a port from 0 to 65535, got -1"),
        (port, "http", "must be a port from 0 to 65535, got 'http'"),
        (channel_name, "", "'' is not a channel name: it must be 1 to 256 bytes of UTF-8, got 0"),
        (
            channel_name,
            "\u00e9" * 129,
            f"'{'é' * 129}' is not a channel name: it must be 1 to 256 bytes of UTF-8, got 258",
        ),
        (
            channel_name,
            "a\x85b",
            "'a\\x85b' is not a channel name: it must not hold control characters",
        ),
        (
            channel_name,
            "\udcff",  # a byte that was not UTF-8 on the command line (surrogateescape)
            "'\\udcff' is not a channel name: it has no UTF-8 form (a lone surrogate)",
        ),
    ],
)
def test_argument_types_refuse(kind: object, text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        kind(text)  # type: ignore[operator]
    assert str(info.value) == message


def test_the_library_check_says_the_same() -> None:
    with pytest.raises(ValueError, match=r"^port must be a port from 0 to 65535, got 99999$"):
        check_port("port", 99999)
    with pytest.raises(ValueError, match="got True"):
        check_port("port", True)


@pytest.mark.parametrize(
    ("prog", "message", "line"),
    [
        (
            "python -m trio_reconnect demo",
            "argument --clients: must be a positive integer, got 0",
            "demo: --clients must be a positive integer, got 0",
        ),
        (
            "python -m trio_reconnect herd",
            "argument --strategy: invalid choice: 'x'",
            "herd: --strategy: invalid choice: 'x'",
        ),
        (
            "python -m trio_reconnect",
            "the following arguments are required: command",
            "trio_reconnect: the following arguments are required: command",
        ),
    ],
)
def test_usage_line(prog: str, message: str, line: str) -> None:
    assert usage_line(prog, message) == line


def _connect_failure(*errors: OSError) -> OSError:
    """What trio's open_tcp_stream raises: one OSError, caused by a group of each address's."""
    error = OSError("all attempts to connect to 127.0.0.1:1 failed")
    error.__cause__ = ExceptionGroup("all attempts to connect to 127.0.0.1:1 failed", errors)
    return error


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (
            _connect_failure(ConnectionRefusedError(errno.ECONNREFUSED, "Error connecting to x")),
            "connection refused",
        ),
        (
            _connect_failure(
                OSError(errno.ECONNREFUSED, "a"),
                OSError(errno.ENETUNREACH, "b"),
                OSError(errno.ECONNREFUSED, "c"),
            ),
            "connection refused / network is unreachable",
        ),
        (OSError(errno.EADDRINUSE, "Address already in use"), "address already in use"),
        (socket.gaierror(-2, "Name or service not known"), "name or service not known"),
        (OSError("odd"), "odd"),
        (
            HandshakeRejectedError(200, [], b"<html>"),
            "server refused the handshake with HTTP 200 (is it a websocket server?)",
        ),
        (HandshakeRejectedError(404, [], None), "server refused the handshake with HTTP 404"),
        (
            FatalCloseError(4001, "bad token"),
            "server closed the connection with fatal code 4001 (bad token)",
        ),
        (ReconnectFailed("gave up"), "gave up"),
        (ValueError("x"), "ValueError: x"),
    ],
)
def test_describe_error(error: BaseException, cause: str) -> None:
    assert describe_error(error) == cause


async def _a_cancelled() -> trio.Cancelled:
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.sleep(1)
        except trio.Cancelled as cancelled:
            return cancelled
    raise AssertionError("not cancelled")


def test_exit_status() -> None:
    cancelled = trio.run(_a_cancelled)
    in_use = OSError(errno.EADDRINUSE, "Address already in use")
    assert exit_status(KeyboardInterrupt()) == (EXIT_INTERRUPTED, None)
    assert exit_status(BaseExceptionGroup("", [cancelled, KeyboardInterrupt()])) == (
        EXIT_INTERRUPTED,
        None,
    )
    assert exit_status(ExceptionGroup("", [in_use])) == (EXIT_FAILED, "address already in use")
    assert exit_status(BaseExceptionGroup("", [cancelled, in_use])) == (
        EXIT_FAILED,
        "address already in use",
    )
    assert exit_status(HandshakeRejectedError(404, [], None)) == (
        EXIT_FAILED,
        "server refused the handshake with HTTP 404",
    )
    # A bug keeps its traceback: anything else, alone or next to an OSError.
    assert exit_status(ValueError("bug")) is None
    assert exit_status(ExceptionGroup("", [in_use, ValueError("bug")])) is None
    assert exit_status(SystemExit(2)) is None


def test_node_count() -> None:
    assert node_count("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match=r"^'abc' is not a number"):
        node_count("abc")
    with pytest.raises(argparse.ArgumentTypeError, match="needs at least 2 nodes"):
        node_count("1")
