"""What the command line accepts and how it fails: one place for each rule.

Every command fails the same way, as ``herd`` always has:

========  ============================================================
status    when
========  ============================================================
0         done
1         a runtime error: one line on stderr naming the cause, e.g.
          ``serve: 127.0.0.1:8765: address already in use``
2         a usage error: one line, e.g.
          ``demo: --clients must be a positive integer, got 0``
130       interrupted (Ctrl-C): nothing more is printed
========  ============================================================

A traceback is kept for what is not a user's mistake or the network's: an
exception other than ``OSError`` and the library's own errors is a bug, and
hiding it would hide the bug.

Pure: no trio import. The argument types check values with the rules of
:mod:`trio_reconnect._validators`, so that ``--clients 0`` and
``run_demo(clients=0)`` are refused by the same rule, in the same words.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from typing import Final, NoReturn

from .._exceptions import FatalCloseError, HandshakeRejectedError, ReconnectError, leaves
from .._names import channel_problem
from .._validators import int_problem, non_negative_problem, port_problem, positive_problem

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Parser",
    "channel_name",
    "describe_error",
    "exit_status",
    "leaves",
    "lower_first",
    "non_negative_int",
    "non_negative_number",
    "port",
    "positive_int",
    "positive_number",
    "usage_line",
]

EXIT_OK: Final = 0
#: A runtime error (one line naming the cause).
EXIT_FAILED: Final = 1
#: A usage error (one line).
EXIT_USAGE: Final = 2
#: Interrupted by Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED: Final = 130

# argparse says "argument --clients: must be ..."; herd's style is
# "--clients must be ...".
_ARGUMENT_PREFIX: Final = re.compile(r"^argument (?P<name>[^:]+): ")


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line and exit 2.

    The line is ``COMMAND: MESSAGE``, where COMMAND is the subcommand
    (``demo``, ``serve`` ...); ``--help`` shows the usage.
    """

    def error(self, message: str) -> NoReturn:
        """Print ``COMMAND: MESSAGE`` on stderr and exit with :data:`EXIT_USAGE`."""
        self.exit(EXIT_USAGE, f"{usage_line(self.prog, message)}\n")


def usage_line(prog: str, message: str) -> str:
    """The one line of a usage error of the (sub)command ``prog``."""
    command = prog.split()[-1]
    match = _ARGUMENT_PREFIX.match(message)
    if match is not None:
        rest = message[match.end() :]
        separator = " " if rest.startswith("must ") else ": "
        message = f"{match['name']}{separator}{rest}"
    return f"{command}: {message}"


def _argument_type(
    parse: Callable[[str], object], problem: Callable[[object], str | None], text: str
) -> object:
    try:
        value = parse(text)
    except ValueError:
        value = text
    found = problem(value)
    if found is not None:
        if value is not text:  # say the number as it was typed: "got 0", not "got 0.0"
            found = found.replace(f"got {value!r}", f"got {text}")
        raise argparse.ArgumentTypeError(found)
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number, at least 1."""
    value = _argument_type(int, lambda v: int_problem(v, 1), text)
    assert isinstance(value, int)
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number, at least 0."""
    value = _argument_type(int, lambda v: int_problem(v, 0), text)
    assert isinstance(value, int)
    return value


def positive_number(text: str) -> float:
    """argparse type: a finite number above zero."""
    value = _argument_type(float, positive_problem, text)
    assert isinstance(value, float)
    return value


def non_negative_number(text: str) -> float:
    """argparse type: a finite number, at least zero."""
    value = _argument_type(float, non_negative_problem, text)
    assert isinstance(value, float)
    return value


def port(text: str) -> int:
    """argparse type: a TCP port to listen on, 0 to 65535 (0: any free port)."""
    value = _argument_type(int, port_problem, text)
    assert isinstance(value, int)
    return value


def _is_cancelled(error: BaseException) -> bool:
    # trio.Cancelled, recognised without importing trio (this module is pure).
    kind = type(error)
    return kind.__name__ == "Cancelled" and kind.__module__.startswith("trio")


def describe_error(error: BaseException) -> str:
    """The cause of ``error`` in a few words, for one line of output.

    An ``OSError`` is said the way the OS says it (``connection refused``),
    looking through trio's "all attempts to connect ... failed" into the
    errors of each address it tried.
    """
    if isinstance(error, OSError):
        return _describe_os_error(error)
    if isinstance(error, HandshakeRejectedError):
        hint = " (is it a websocket server?)" if 200 <= error.status_code < 300 else ""
        return f"{error}{hint}"
    if isinstance(error, FatalCloseError) and error.reason:
        return f"{error} ({error.reason})"
    if isinstance(error, ReconnectError):
        return str(error) or type(error).__name__
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _describe_os_error(error: OSError) -> str:
    if error.errno is not None and error.errno > 0:
        return lower_first(os.strerror(error.errno))
    if error.strerror:  # a gaierror: a negative errno of its own
        return lower_first(error.strerror)
    if isinstance(error.__cause__, BaseExceptionGroup):
        causes = []
        for leaf in leaves(error.__cause__):
            text = describe_error(leaf)
            if text not in causes:
                causes.append(text)
        if causes:
            return " / ".join(causes)
    return str(error) or type(error).__name__


def lower_first(text: str) -> str:
    """``text`` with its first letter in lower case, unless it starts an acronym ("URL")."""
    if text[1:2].isupper():
        return text
    return text[:1].lower() + text[1:]


def exit_status(error: BaseException) -> tuple[int, str | None] | None:
    """How the command line ends on ``error``: ``(status, cause)``.

    ``cause`` is ``None`` for Ctrl-C (:data:`EXIT_INTERRUPTED`, quiet).
    ``None`` instead of a pair means a bug: let the traceback show.
    """
    found = [leaf for leaf in leaves(error) if not _is_cancelled(leaf)]
    if any(isinstance(leaf, KeyboardInterrupt) for leaf in found):
        return EXIT_INTERRUPTED, None
    if found and all(isinstance(leaf, OSError | ReconnectError) for leaf in found):
        return EXIT_FAILED, describe_error(found[0])
    return None


def node_count(text: str) -> int:
    """argparse type of ``--nodes``: a whole number, at least 2 (a deploy needs survivors)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number (a whole number of nodes, at least 2)"
        ) from None
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a rolling deploy needs at least 2 nodes (the others take the clients)"
        )
    return value


def channel_name(text: str) -> str:
    """argparse type of ``--channel``: a channel name (PROTOCOL.md 4.3, :mod:`.._names`)."""
    problem = channel_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a channel name: {_reason(problem)}")
    return text


def _reason(problem: str) -> str:
    """``a channel name must ...`` -> ``it must ...`` (the line names the channel already)."""
    prefix = "a channel name "
    return "it " + problem[len(prefix) :] if problem.startswith(prefix) else problem
