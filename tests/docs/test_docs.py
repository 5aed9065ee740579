"""The API reference holds what it promises: every public name, under its public path.

The docs are built once per test session, with Sphinx in a subprocess (so that
the build's imports and its conf.py leave this process alone), into a
temporary directory; the tests read the built inventory (objects.inv) and
HTML. The ``docs`` nox session builds the same site with ``-W``.
"""

from __future__ import annotations

import ast
import html
import importlib
import os
import pkgutil
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from trio_reconnect.server import ClientState

# Sphinx is in the test extra; typed as Any here, so that mypy needs no Sphinx.
inventory_file = pytest.importorskip("sphinx.util.inventory").InventoryFile
pytest.importorskip("myst_parser")

ROOT = Path(__file__).resolve().parents[2]


def public_modules() -> list[str]:
    """trio_reconnect and every module under it without an underscore in its path."""
    import trio_reconnect

    found = ["trio_reconnect"]
    for info in pkgutil.walk_packages(trio_reconnect.__path__, "trio_reconnect."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            found.append(info.name)
    return found


#: Every public module: the API page documents each one's ``__all__``.
PACKAGES = public_modules()

#: Seconds the build may take (about 5 s on an idle machine).
BUILD_TIMEOUT = 300


@pytest.fixture(scope="session")
def built_docs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The HTML build directory and the build's warnings."""
    out = tmp_path_factory.mktemp("docs-html")
    warnings = out / "warnings.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    options = ["-b", "html", "-q", "-E", "-w", str(warnings)]
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", *options, str(ROOT / "docs"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=BUILD_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    return out, warnings.read_text()


@pytest.fixture(scope="session")
def inventory(built_docs: tuple[Path, str]) -> dict[str, dict[str, Any]]:
    with (built_docs[0] / "objects.inv").open("rb") as stream:
        entries: dict[str, dict[str, Any]] = inventory_file.load(
            stream, "", lambda base, path: path
        )
        return entries


def test_the_public_modules() -> None:
    # The extension (docs/_ext/public_api.py) is told about each of them.
    conf = ast.parse((ROOT / "docs" / "conf.py").read_text())
    listed = next(
        ast.literal_eval(node.value)
        for node in conf.body
        if isinstance(node, ast.Assign)
        and any(getattr(target, "id", None) == "public_api_packages" for target in node.targets)
    )
    assert sorted(listed) == sorted(PACKAGES)
    assert {"trio_reconnect.server", "trio_reconnect.testing.pytest_plugin"} <= set(PACKAGES)


def test_the_build_has_no_warnings(built_docs: tuple[Path, str]) -> None:
    assert built_docs[1] == ""


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_documented(
    package: str, inventory: dict[str, dict[str, Any]]
) -> None:
    documented = {
        name for role, entries in inventory.items() if role.startswith("py:") for name in entries
    }
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if f"{package}.{name}" not in documented]
    assert not missing, f"{package}: not in the API reference: {missing}"


def _private_paths() -> dict[str, str]:
    """``{private path: public path}`` of every public class and function."""
    paths = {}
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type | types.FunctionType) and obj.__module__ != package:
                paths[f"{obj.__module__}.{obj.__qualname__}"] = f"{package}.{name}"
    return paths


def test_rendered_types_show_public_paths(built_docs: tuple[Path, str]) -> None:
    paths = _private_paths()
    # The ones the issue saw, among others.
    assert paths["trio_reconnect._state.DelaySource"] == "trio_reconnect.DelaySource"
    client_state = f"{ClientState.__module__}.ClientState"  # wherever the server keeps it
    assert paths[client_state] == "trio_reconnect.server.ClientState"
    pages = sorted(built_docs[0].rglob("*.html"))
    assert pages
    for page in pages:
        html = page.read_text()
        shown = sorted(path for path in paths if path in html)
        assert not shown, f"{page.name} shows private paths: {shown}"
    api = (built_docs[0] / "reference" / "api.html").read_text()
    # ... and the public ones instead, as links.
    for public in ("trio_reconnect.DelaySource", "trio_reconnect.HandshakeOutcome"):
        assert f'href="#{public}"' in api
    assert 'href="#trio_reconnect.server.ClientState"' in api
    # No class lists a private base (the collectors share one).
    bases = [re.sub(r"<[^>]+>", "", found) for found in re.findall(r"<p>Bases: (.*?)</p>", api)]
    assert bases
    assert not [base for base in bases if base.startswith("_")], bases
    assert 'id="trio_reconnect.prometheus.ReconnectCollector.add"' in api  # inherited, shown


def test_a_constant_shows_its_comment_and_value(built_docs: tuple[Path, str]) -> None:
    import trio_reconnect

    api = (built_docs[0] / "reference" / "api.html").read_text()
    anchor = api.index('id="trio_reconnect.DEFAULT_MAX_ATTEMPTS"')
    entry = api[anchor : api.index("</dd>", anchor)]
    assert f"{trio_reconnect.DEFAULT_MAX_ATTEMPTS}" in entry
    assert "Consecutive failed attempts before the client gives up" in entry


def _entries(api: str) -> list[str]:
    """The ids of the top-level entries of the API page, in page order."""
    ids = re.findall(r'<dt class="sig sig-object py" id="([^"]+)"', api)
    public = {f"{package}.{name}" for package in PACKAGES for name in _all(package)}
    return [found for found in ids if found in public]


def _all(package: str) -> list[str]:
    return list(importlib.import_module(package).__all__)


def _is_a_type(text: str) -> bool:
    """Whether ``text`` reads as a type expression (``int | None``, ``tuple[str, …]``)."""
    try:
        tree = ast.parse(text.replace("…", "..."), mode="eval")
    except SyntaxError:
        return False
    allowed = (ast.Expression, ast.Name, ast.Attribute, ast.Subscript, ast.Tuple, ast.Load)
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            continue
        if isinstance(node, ast.BitOr | ast.List):
            continue
        if isinstance(node, ast.Constant) and node.value in (None, Ellipsis):
            continue
        if not isinstance(node, allowed):
            return False
    return True


def test_the_type_check_tells_a_type_from_a_sentence() -> None:
    for good in ("int", "float | None", "tuple[str, …]", "trio_reconnect.DelaySource | None"):
        assert _is_a_type(good), good
    # What napoleon once made of ``#:`` comments with a colon in their first line.
    for garbled in (
        "Consecutive failed attempts before the client gives up (None",
        "RFC 6455",
        "uniform(0, cap(n))",
        "N / R",
        "capacity / 10",
        "An application\N{RIGHT SINGLE QUOTATION MARK}s snapshot",
    ):
        assert not _is_a_type(garbled), garbled


def test_every_type_field_is_a_type_and_every_text_whole(built_docs: tuple[Path, str]) -> None:
    api = (built_docs[0] / "reference" / "api.html").read_text()
    field = r'<dt class="field-\w+">Type<.*?<dd class="field-\w+">(.*?)</dd>'
    fields = re.findall(field, api, re.S)
    assert len(fields) > 50
    types_shown = [html.unescape(re.sub(r"<[^>]+>", "", field)).strip() for field in fields]
    garbled = [shown for shown in types_shown if not _is_a_type(shown)]
    assert not garbled, f"type fields that are no types (a docstring cut at a colon): {garbled}"
    # The entries the issue saw, whole.
    for anchor, text in [
        ("trio_reconnect.DEFAULT_MAX_ATTEMPTS", "gives up (None: never)."),
        (
            "trio_reconnect.MAX_CLOSE_REASON_BYTES",
            "RFC 6455: a close frame\N{RIGHT SINGLE QUOTATION MARK}s reason is at most",
        ),
        ("trio_reconnect.Jitter.FULL", "uniform(0, cap(n)): the widest spread"),
    ]:
        start = api.index(f'id="{anchor}"')
        entry = html.unescape(re.sub(r"<[^>]+>", "", api[start : api.index("</dd>", start)]))
        assert text in re.sub(r"\s+", " ", entry), entry


def test_the_page_starts_from_the_entry_point(built_docs: tuple[Path, str]) -> None:
    entries = _entries((built_docs[0] / "reference" / "api.html").read_text())
    assert entries[:2] == [
        "trio_reconnect.open_reconnecting_websocket",
        "trio_reconnect.ReconnectingWebSocket",
    ]
    # Each package: its constants after everything else it has.
    for package in PACKAGES:
        own = [found for found in entries if found.rsplit(".", 1)[0] == package]
        names = [found.rsplit(".", 1)[1] for found in own]
        constants = [index for index, name in enumerate(names) if name.isupper()]
        others = [index for index, name in enumerate(names) if not name.isupper()]
        if constants and others and package != "trio_reconnect.testing.pytest_plugin":
            assert max(others) < min(constants), f"{package}: {names}"
    client = [found.rsplit(".", 1)[1] for found in entries if found.count(".") == 1]
    groups = ("ServerEvent", "ReconnectError", "ReconnectStatistics", "DEFAULT_MAX_ATTEMPTS")
    order = [client.index(name) for name in groups]
    assert order == sorted(order), client


def test_the_design_page_lists_every_module(built_docs: tuple[Path, str]) -> None:
    # docs/_ext/module_table.py reads the tree: a new module is on the page unasked.
    import trio_reconnect

    page = (built_docs[0] / "explanation" / "design.html").read_text()
    root = Path(trio_reconnect.__file__).parent
    for path in sorted(root.rglob("*.py")):
        folder = "/".join(("trio_reconnect", *path.parent.relative_to(root).parts)) + "/"
        assert (
            f'<code class="docutils literal notranslate"><span class="pre">{folder}</span>' in page
        )
        assert f'<span class="pre">{path.name}</span>' in page, path
