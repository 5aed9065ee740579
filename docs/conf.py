"""Sphinx configuration for the trio_reconnect documentation.

Build with ``python3 -m nox -s docs`` (``sphinx-build -W --keep-going``: every
warning is an error). The build must work offline: CI has no network, so there
are no intersphinx mappings and no page fetches anything at build time.
"""

from __future__ import annotations

import os
import sys

# Document the checkout being built, whether or not it is installed; the
# local extensions live in _ext/.
sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("_ext"))

project = "trio_reconnect"
author = "trio_reconnect developers"
copyright = "2025, trio_reconnect developers"

try:
    from importlib.metadata import version as _version

    release = _version("trio-reconnect")
except Exception:  # not installed: the docs still build
    release = "0.1.0"
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    # Loaded for its roles only. No intersphinx_mapping on purpose: fetching
    # inventories needs the network, which CI does not have, and a failed
    # fetch is a warning, which -W turns into a failed build.
    "sphinx.ext.intersphinx",
    "sphinxcontrib_trio",
    "myst_parser",
    # Every name of each package's __all__, under its public path (_ext/public_api.py).
    "public_api",
    # The module tables of the design page, read from the tree (_ext/module_table.py).
    "module_table",
]

public_api_packages = [
    "trio_reconnect",
    "trio_reconnect.server",
    "trio_reconnect.testing",
    "trio_reconnect.testing.pytest_plugin",
    "trio_reconnect.prometheus",
    "trio_reconnect.server.redis",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

nitpicky = False

# autodoc / napoleon: Google-style docstrings, in source order.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

# MyST: ```{directive} fences, ::: fences, and #anchors on headings up to ###.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"trio_reconnect {release}"
