"""Sphinx configuration: Markdown pages (MyST), the API from docstrings, the CLI from click."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # document this checkout's mitosis, not another installed one

import mitosis  # noqa: E402

project = "mitosis"
author = "The mitosis developers"
copyright = "the mitosis developers"
version = release = mitosis.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx_click",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
root_doc = "index"

myst_heading_anchors = 3
myst_enable_extensions = ["deflist"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" become fields, not duplicates of documented members

html_theme = "alabaster"
html_title = f"mitosis {release}"
smartquotes = False  # keep "--jobs" as typed, not an en dash
