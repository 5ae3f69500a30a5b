"""Sphinx configuration of the course website.

Build with ``python scripts/build_site.py``: it gathers README.md, the chapter notebooks (as they were
committed, outputs included, never re-executed) and the pages in this folder into a temporary source
folder, then runs Sphinx with this configuration and writes the site into ``_site/``.
"""

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

project = "Build a GPT from scratch"
author = "the course authors"
copyright = "the course authors"

extensions = [
    "myst_nb",  # Markdown (MyST) and notebooks; brings myst_parser
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "offline_mathjax",  # website/_ext: MathJax served from _static, no CDN
]

root_doc = "index"
default_role = "py:obj"  # `name` in docstrings: a link when it names something documented, code otherwise
exclude_patterns = ["README.md", "_build", "**.ipynb_checkpoints"]  # README.md is included by index.md
suppress_warnings = ["myst.header"]  # notebooks start at '#' and use '###' under '#' in places

# Notebooks: shown with the outputs they were committed with.
nb_execution_mode = "off"
nb_merge_streams = True
# Widgets (tqdm progress bars, the ch06 instruction box) need JavaScript from a CDN: show their text instead.
nb_ipywidgets_js = {}
nb_mime_priority_overrides = [
    ("html", "application/vnd.jupyter.widget-view+json", None),
    ("html", "application/vnd.jupyter.widget-state+json", None),
]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# API reference from the docstrings of llmcourse (imported, so torch is imported too).
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = True

html_theme = "sphinx_book_theme"
html_title = "Build a GPT from scratch"
html_static_path = []
html_last_updated_fmt = None
html_sidebars = {"**": ["navbar-logo.html", "sbt-sidebar-nav.html"]}  # the search box is in the header
html_context = {"default_mode": "auto"}  # left empty, the theme logs a console error on a first visit
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "navigation_with_keys": False,
}


def quote_special_tokens(app, what, name, obj, options, lines):
    """Show special tokens such as <|endoftext|> in docstrings as code (reST would read |...| as a substitution)."""
    lines[:] = [re.sub(r"(?<![`\w])<\|(\w+)\|>(?![`\w])", r"``<|\1|>``", line) for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", quote_special_tokens)
