"""Serve MathJax 3 from the site itself, so that math renders with no network.

The MathJax files come from the PyPI package ``sphinx-mathjax-offline`` (MathJax 3.2.2, installed with
``pip install -e ".[site]"``); only its files are used. This extension points ``mathjax_path`` at a
local copy and copies the parts that ``tex-chtml.js`` loads (fonts, TeX extensions, the menu and its
accessibility tools) into ``_static/mathjax/`` of the built site.
"""

import importlib.metadata
import shutil
from pathlib import Path

ENTRY = "tex-chtml.js"
FOLDERS = ["a11y", "input", "output", "ui", "sre"]


def mathjax_source() -> Path:
    """The folder of MathJax files that the ``sphinx-mathjax-offline`` package installed."""
    dist = importlib.metadata.distribution("sphinx-mathjax-offline")
    folder = Path(dist.locate_file("sphinx-mathjax-offline/static/mathjax"))
    if not (folder / ENTRY).is_file():
        raise FileNotFoundError(f"MathJax not found in {folder}: pip install sphinx-mathjax-offline")
    return folder


def use_local_mathjax(app) -> None:
    """Point sphinx.ext.mathjax at the local copy (a path relative to ``_static/``)."""
    mathjax_source()  # fail early, before a long build, if the package is missing
    app.config.mathjax_path = f"mathjax/{ENTRY}"


def copy_mathjax(app, exception) -> None:
    """Copy the MathJax entry script and the folders it loads from into the built site."""
    if exception is not None or app.builder.format != "html":
        return
    source = mathjax_source()
    target = Path(app.outdir) / "_static" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / ENTRY, target / ENTRY)
    for name in FOLDERS:
        shutil.copytree(source / name, target / name, dirs_exist_ok=True)


def setup(app):
    app.connect("builder-inited", use_local_mathjax)
    app.connect("build-finished", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
