"""Development sessions: ``python3 -m nox -s tests`` (and ``lint``, ``typecheck``, ``docs``).

Every session runs on the interpreter nox itself runs on (no version is
pinned), in a fresh ``venv`` each time, so that a clean machine with only
Python 3.11+ and pip gives the same result as CI::

    python3 -m pip install nox && python3 -m nox -s tests

Extra arguments after ``--`` go to the tool, e.g.
``python3 -m nox -s tests -- -k backoff -x``.
"""

from __future__ import annotations

import nox
from packaging.requirements import Requirement  # a dependency of nox
from packaging.utils import canonicalize_name

nox.needs_version = ">=2024.3.2"  # nox.project.load_toml
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = False
nox.options.error_on_external_run = True
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

PYPROJECT = nox.project.load_toml("pyproject.toml")


def _requirement(extra: str, name: str) -> str:
    """The requirement for ``name`` as pinned in the ``extra`` of pyproject.toml.

    Keeps a single source for tool versions (``lint`` installs ruff alone,
    not the whole ``lint`` extra).
    """
    for requirement in PYPROJECT["project"]["optional-dependencies"][extra]:
        if canonicalize_name(Requirement(requirement).name) == canonicalize_name(name):
            return str(requirement)
    return name


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite under coverage."""
    session.install(".[test]")
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "report")


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff (lint rules and formatting) and import-linter (the layering contract)."""
    session.install(_requirement("lint", "ruff"), _requirement("lint", "import-linter"))
    session.run("ruff", "check", *(session.posargs or ["."]))
    session.run("ruff", "format", "--check", *(session.posargs or ["."]))
    # import-linter reads the package from the source tree: no install needed.
    session.run("lint-imports", env={"PYTHONPATH": "."})


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict (configured in pyproject.toml: strict = true, files = ...)."""
    session.install(".[lint]")
    session.run("mypy", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the Sphinx site; every warning is an error."""
    session.install(".[docs]")
    session.run(
        "sphinx-build",
        "-W",
        "--keep-going",
        "-b",
        "html",
        "docs",
        "docs/_build/html",
        *session.posargs,
    )


@nox.session
def demo(session: nox.Session) -> None:
    """The embedded server with a crowd of clients, restarted under them."""
    session.install(".")
    session.run("python", "-m", "trio_reconnect", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput and reconnect benchmarks."""
    session.install(".")
    session.run("python", "-m", "trio_reconnect", "bench", *session.posargs)
