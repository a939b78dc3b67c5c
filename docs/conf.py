"""Sphinx configuration of funcloss's documentation site.

Build (from the repository root, with the ``docs`` extra installed)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Pages under ``docs/_generated/`` are written at every build by ``docs/_ext/funcloss_docs.py``
(API pages from ``funcloss.__all__``/``funcloss.nn.__all__``, concept pages from the README,
the gallery, the transform-support table); MathJax is served from the build
(``sphinx-mathjax-offline``), search is Sphinx's own offline index.
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))
sys.path.insert(0, str(DOCS / "_ext"))

import funcloss  # noqa: E402

project = "funcloss"
author = "funcloss developers"
copyright = "funcloss developers"
release = version = funcloss.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # vendored MathJax 3, copied into _static/mathjax: no CDN
    "myst_parser",
    "funcloss_docs",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "README.md"]
templates_path: list[str] = []

# Google-style Args/Returns/Raises/Examples, reST maths (``.. math::``, ``:math:``) as is.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autosummary_generate = False
add_module_names = True

# Every cross-reference must resolve, except to the libraries funcloss builds on (no intersphinx:
# the build is offline).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|optree|hypothesis|typing|collections|numpy|inspect)(\..*)?"),
    (r"py:.*", r"(Tensor|Callable|Any|Reduction|KLReduction|PyTree|Sequence|Mapping|Iterable)"),
    (r"py:.*", r"(int|float|bool|str|tuple|dict|list|None|type|object|Exception)"),
    (r"py:.*", r"(_\w+.*|funcloss\._.*)"),  # private helpers named in annotations
    (r"py:.*", r"(P|F|T)"),  # the type variables and ParamSpec of loss_module / custom_backward
]

myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

html_theme = "furo"
html_title = f"funcloss {release}"
html_static_path = ["_static"]
html_css_files = ["funcloss.css"]
html_show_sourcelink = False
html_copy_source = False
