"""The command line reference (docs/reference/cli.md) names every command and option.

The page shows each command's ``--help``; these tests walk the parser itself,
so a new command or option fails here until the page shows it, and a
command the parser lost fails until the page drops it.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from trio_reconnect._tools import _cli, _policy

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "reference" / "cli.md"

PARSER, COMMANDS = _cli._parser()


def options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string and positional name of ``parser``, ``--help`` included."""
    found: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        found.extend(action.option_strings or [action.dest])
    return found


def section(name: str) -> str:
    """The page's section of command ``name``: from its heading to the next."""
    text = PAGE.read_text(encoding="utf-8")
    match = re.search(rf"^## `{re.escape(name)}`\n(.*?)(?=^## |\Z)", text, re.DOTALL | re.MULTILINE)
    assert match, f"docs/reference/cli.md has no section for {name!r}"
    return match[1]


def test_the_page_has_a_section_for_each_command_and_no_other() -> None:
    text = PAGE.read_text(encoding="utf-8")
    documented = re.findall(r"^## `([a-z-]+)`$", text, re.MULTILINE)
    assert sorted(documented) == sorted(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_is_in_its_command_section(command: str) -> None:
    shown = section(command)
    missing = [
        option
        for option in options(COMMANDS[command])
        if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", shown)
    ]
    assert not missing, f"{command}: not on docs/reference/cli.md: {missing}"


def test_the_exit_statuses_are_the_policy_s() -> None:
    text = PAGE.read_text(encoding="utf-8")
    statuses = {int(found) for found in re.findall(r"^\| (\d+) \|", text, re.MULTILINE)}
    assert statuses == {
        _policy.EXIT_OK,
        _policy.EXIT_FAILED,
        _policy.EXIT_USAGE,
        _policy.EXIT_INTERRUPTED,
    }
    assert options(PARSER) == ["-h", "--help"]
