"""The import-linter contract in pyproject.toml names every module of the client core."""

from __future__ import annotations

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_core_layer_names_every_root_module() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    core = {name.strip() for name in layers[-1].split(":")}
    modules = {
        f"trio_reconnect.{path.stem}"
        for path in (ROOT / "trio_reconnect").glob("_*.py")
        if path.stem not in {"__init__", "__main__"}
    }
    assert core == modules


def test_the_tools_are_above_everything_else() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    assert layers[:3] == [
        "trio_reconnect.__main__",
        "trio_reconnect._tools",
        "trio_reconnect.testing",
    ]
