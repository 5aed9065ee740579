"""Public names keep their public path (``trio_reconnect.Backoff``, not ``._backoff.Backoff``).

Each package writes its code in private modules and re-exports it (the house
style). Without help, a re-exported class still says where it was written:
tracebacks print ``trio_reconnect._exceptions.ReconnectFailed``, ``help()``
and the API reference show ``trio_reconnect._state.DelaySource``, and a user
copies a private path that a refactoring will break. :func:`rehome` points
``__module__`` at the package the user imports from, as trio does
(``trio._util.fixup_module_metadata``). Pickling still works: the package
holds each of these names.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping

__all__ = ["rehome"]


def rehome(package: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """Set ``__module__`` to ``package`` for the classes and functions among ``names``.

    Only objects written in one of ``package``'s private modules
    (``package._x``) move; constants and type aliases have no module of their
    own and stay as they are, and so do objects re-exported from elsewhere.
    """
    private = f"{package}._"
    for name in names:
        obj = namespace[name]
        if isinstance(obj, type | types.FunctionType):
            module = getattr(obj, "__module__", None)
            if isinstance(module, str) and module.startswith(private):
                obj.__module__ = package
