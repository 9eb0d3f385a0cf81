"""Sphinx configuration. Builds offline (no intersphinx), warnings are errors, nitpicky cross-references."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import region_attention  # noqa: E402

project = "region-attention"
author = "region-attention developers"
copyright = "2026, region-attention developers"
release = region_attention.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx.ext.autosummary",
    "myst_parser",  # only for the changelog, which is Markdown (Keep a Changelog)
]

# Offline: MathJax is not fetched from a CDN at build time; a reader's browser loads it when viewing.
# No intersphinx: our machines (and many clusters) have no internet, so external types are listed below.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|typing|typing_extensions|collections|numpy|pathlib|os|PIL|einops)(\..*)?"),
    (r"py:.*", r"(Tensor|Module|NamedTuple|Generator|optional|callable|int|float|str|bool|tuple|list|dict)"),
    (r"py:.*", r"(nn\.\w+|torch\.\w+)"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options: dict[str, object] = {}
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = ["Shapes", ("Convention", "notes_style")]
autodoc_inherit_docstrings = False  # forward() would otherwise show nn.Module's generic note

templates_path: list[str] = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
# MathJax ships with the docs (docs/_static/mathjax, Apache-2.0) so the math renders without internet too.
mathjax_path = "mathjax/tex-svg.js"
html_theme_options = {
    "description": "Region Attention Networks as PyTorch layers",
    "fixed_sidebar": True,
    "page_width": "1200px",
}
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
suppress_warnings = ["myst.header"]
