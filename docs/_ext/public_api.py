"""Sphinx extension: the API reference holds exactly the public names, under their public paths.

trio_reconnect writes its code in private modules and re-exports it from each
package's ``__init__`` with ``__all__``. Left alone, autodoc gets two things
wrong about that:

* A re-exported constant or type alias (``DEFAULT_MAX_ATTEMPTS``, ``Item``)
  has no ``__module__``; autodoc looks for its ``#:`` comment in the package's
  ``__init__``, finds none, and leaves the name out. Here it gets the ``#:``
  comment of the private module it is imported from (the one place its
  meaning is written), and so it is documented, with its value. A name
  without any comment is still left out, and tests/docs/test_docs.py says which.
* Types in signatures and attribute types are written with the module the
  object was defined in (``trio_reconnect._state.DelaySource``). Here every
  cross-reference to a private path of a public object is rewritten to the
  public path (``trio_reconnect.DelaySource``), text and target; and a
  private base class (``_Collector``) is not listed among a class's bases.
* napoleon reads the first line of an attribute's or constant's docstring as
  ``type: description`` when it has a colon (Google style's inline attribute
  type), so ``#: Consecutive failed attempts ... (``None``: never).`` became
  the type "Consecutive failed attempts ... (None" and ``#: RFC 6455: a close
  frame's reason ...`` the type "RFC 6455". Our attribute types come from
  annotations, never from the text: here such a docstring starts with an
  empty reST comment (``..``, which renders as nothing), a first line
  without a colon, so the text stays whole (tests/docs/test_docs.py checks that
  every rendered type field is a type).

The packages are listed in ``conf.py`` as ``public_api_packages``.
tests/docs/test_docs.py checks the result in the built inventory and HTML.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import types
import typing
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging

logger = logging.getLogger(__name__)


def _reexports(package: types.ModuleType) -> dict[str, str]:
    """``{name: module}`` for each ``from .x import name`` in ``package``'s ``__init__``."""
    tree = ast.parse(inspect.getsource(package))
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            # Relative to the package the module belongs to (for a plain
            # module such as trio_reconnect.server.redis, its parent).
            module = importlib.util.resolve_name(
                "." * node.level + (node.module or ""), package.__package__
            )
            for alias in node.names:
                found[alias.asname or alias.name] = module
    return found


def _builder_inited(app: Sphinx) -> None:
    paths: dict[str, str] = {}
    for package_name in app.config.public_api_packages:
        package = importlib.import_module(package_name)
        # autodoc documents a module-level name that is no class or function
        # only if the module's analyzer has a doc comment for it: give the
        # package's analyzer (cached, and shared by every autodoc directive)
        # the comment of the module the name is imported from.
        analyzer = ModuleAnalyzer.for_module(package_name)
        analyzer.analyze()
        sources = _reexports(package)
        for name in package.__all__:
            obj = getattr(package, name)
            module = getattr(obj, "__module__", None)
            qualname = getattr(obj, "__qualname__", None)
            if (
                isinstance(obj, type | types.FunctionType)
                and isinstance(module, str)
                and module != package_name
                and qualname
            ):
                paths[f"{module}.{qualname}"] = f"{package_name}.{name}"
            elif name in sources and ("", name) not in analyzer.attr_docs:
                comment = ModuleAnalyzer.for_module(sources[name]).find_attr_docs().get(("", name))
                if comment:
                    analyzer.attr_docs[("", name)] = list(comment)
    app.env.public_api_paths = paths  # type: ignore[attr-defined]


def _public_paths(app: Sphinx, doctree: nodes.document) -> None:
    """Rewrite private paths of public objects: cross-references and signature text."""
    paths: dict[str, str] = app.env.public_api_paths  # type: ignore[attr-defined]
    if not paths:
        return
    private = re.compile(
        r"(?<![\w.])(" + "|".join(map(re.escape, sorted(paths, key=len, reverse=True))) + r")\b"
    )
    for xref in doctree.findall(pending_xref):
        target = xref.get("reftarget")
        if xref.get("refdomain") == "py" and target in paths:
            xref["reftarget"] = paths[target]
    # The text of signatures, attribute types and values (``Item = ... | ...``).
    for signature in doctree.findall(addnodes.desc_signature):
        for text in list(signature.findall(nodes.Text)):
            rewritten = private.sub(lambda match: paths[match[1]], str(text))
            if rewritten != str(text):
                text.parent.replace(text, nodes.Text(rewritten))
    for field in doctree.findall(nodes.field_body):
        for xref in field.findall(pending_xref):
            for text in list(xref.findall(nodes.Text)):
                rewritten = private.sub(lambda match: paths[match[1]], str(text))
                if rewritten != str(text):
                    text.parent.replace(text, nodes.Text(rewritten))


def _public_bases(app: Sphinx, name: str, obj: Any, options: Any, bases: list[Any]) -> None:
    """A private base class is not shown: its public bases are, in its place."""

    def public(base: Any) -> list[Any]:
        origin = getattr(base, "__origin__", base)  # _Collector[X] -> _Collector
        if getattr(origin, "__name__", "").startswith("_"):
            return [b for parent in getattr(origin, "__bases__", ()) for b in public(parent)]
        return [base]

    shown = [b for base in bases for b in public(base) if b not in (object, typing.Generic)]
    bases[:] = shown or [object]


def _no_inline_type(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Keep napoleon from reading an attribute docstring's first words as its type."""
    if what in ("attribute", "data", "property") and lines and lines[0].strip():
        lines[:0] = ["..", ""]  # an empty comment: napoleon finds no colon in it


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("public_api_packages", [], "env", types=[list])
    app.connect("builder-inited", _builder_inited)
    app.connect("doctree-read", _public_paths)
    app.connect("autodoc-process-bases", _public_bases)
    # Before napoleon's own handler (priority 500) turns the docstring into fields.
    app.connect("autodoc-process-docstring", _no_inline_type, priority=400)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
