"""Sphinx extension: the ``module-table`` directive, the package's modules read from the tree.

The design page describes the layers with a table of modules. Written by
hand, such a table goes stale the day a module is split, renamed or added.
This one is read from the source at every build:

* every ``.py`` file under the package, grouped by folder (one table each);
* the first line of its module docstring (a module without one is a build
  warning, which ``-W`` turns into a failed build);
* whether it imports trio or trio-websocket: the house rule is that the
  modules that decide are pure, and a pure module imports neither (imports
  under ``if TYPE_CHECKING:`` do not count).

The files are parsed, not imported, so the optional extras (coredis,
prometheus-client) need not be installed. Usage, in a MyST page::

    ```{module-table} trio_reconnect
    ```

tests/docs/test_docs.py checks that the built page lists every module.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

#: The imports that make a module a driver rather than a pure one.
IO_PACKAGES = frozenset({"trio", "trio_websocket"})

#: ``literal`` and :role:`~dotted.name` in a docstring's first line.
_MARKUP = re.compile(r"``(?P<literal>[^`]+)``|:[a-z:]+:`(?P<tilde>~?)(?P<target>[^`]+)`")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_io(tree: ast.Module) -> bool:
    """Whether the module imports trio or trio-websocket anywhere but under TYPE_CHECKING."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            names = []
        if any(name.split(".")[0] in IO_PACKAGES for name in names):
            return True
        pending.extend(ast.iter_child_nodes(node))
    return False


def package_root(package: str) -> Path:
    """The folder of ``package``, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{package} is not a package")
    return Path(next(iter(spec.submodule_search_locations)))


def modules(package: str) -> dict[str, list[tuple[str, str | None, bool]]]:
    """``{folder: [(file name, docstring's first line, imports trio)]}``, in tree order."""
    root = package_root(package)
    groups: dict[str, list[tuple[str, str | None, bool]]] = {}
    folders = sorted(
        {path.parent for path in root.rglob("*.py") if "__pycache__" not in path.parts},
        key=lambda folder: folder.relative_to(root).parts,
    )
    for folder in folders:
        label = "/".join((package, *folder.relative_to(root).parts)) + "/"
        files = sorted(
            folder.glob("*.py"), key=lambda path: (path.name != "__init__.py", path.name)
        )
        for path in files:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            doc = ast.get_docstring(tree)
            first = doc.strip().splitlines()[0] if doc and doc.strip() else None
            groups.setdefault(label, []).append((path.name, first, imports_io(tree)))
    return groups


def _inline(text: str) -> list[nodes.Node]:
    """The first line as docutils nodes: ``literal`` and roles become code."""
    found: list[nodes.Node] = []
    position = 0
    for match in _MARKUP.finditer(text):
        found.append(nodes.Text(text[position : match.start()]))
        if match["literal"] is not None:
            found.append(nodes.literal(match["literal"], match["literal"]))
        else:
            target = match["target"]
            shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
            found.append(nodes.literal(shown, shown))
        position = match.end()
    found.append(nodes.Text(text[position:]))
    return found


def _table(rows: list[tuple[str, str | None, bool]]) -> nodes.table:
    table = nodes.table(classes=["module-table"])
    group = nodes.tgroup(cols=3)
    table += group
    for width in (22, 66, 12):
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    body = nodes.tbody()
    group += body

    def row(cells: list[list[nodes.Node]], into: nodes.Element) -> None:
        line = nodes.row()
        for content in cells:
            entry = nodes.entry()
            entry += nodes.paragraph("", "", *content)
            line += entry
        into += line

    row([[nodes.Text("module")], [nodes.Text("what it is")], [nodes.Text("imports trio")]], head)
    for name, first, io in rows:
        row(
            [
                [nodes.literal(name, name)],
                _inline(first or ""),
                [nodes.Text("yes" if io else "no")],
            ],
            body,
        )
    return table


class ModuleTable(SphinxDirective):
    """``{module-table} package``: one table per folder of the package."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        package = self.arguments[0]
        groups = modules(package)
        result: list[nodes.Node] = []
        for folder, rows in groups.items():
            for name, first, _ in rows:
                if first is None:
                    logger.warning(
                        "module-table: %s%s has no module docstring",
                        folder,
                        name,
                        location=self.get_location(),
                    )
            result.append(nodes.rubric("", "", nodes.literal(folder, folder)))
            result.append(_table(rows))
        # The table changes whenever a module does: rebuild this page then.
        for path in package_root(package).rglob("*.py"):
            self.env.note_dependency(str(path))
        return result


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("module-table", ModuleTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
