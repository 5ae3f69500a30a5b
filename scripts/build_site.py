"""Build the course website into _site/ from the committed notebooks, without executing them.

    python scripts/build_site.py            # needs: pip install -e ".[site]"

Sphinx with MyST-NB reads the notebooks as they were committed, outputs included. The pages are
gathered into a temporary source folder, as symbolic links or copies (nothing is written into the
repository):

    index.md, api.rst        website/ (the configuration is website/conf.py)
    README.md                the landing page's text, included by index.md
    data/README.md           linked from README.md
    chNN_*/NN_*.ipynb        every notebook of every chapter folder
    chNN_*/index.md          written here: the chapter's notebooks in order, solutions last

so a new notebook or chapter folder appears in the site with no edit. Runs offline (MathJax is served
from the site itself, see website/_ext/offline_mathjax.py).
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEBSITE = ROOT / "website"
SITE = ROOT / "_site"


def chapter_folders(root: Path = ROOT) -> list[Path]:
    """The chapter folders (chNN_name) that hold notebooks, in reading order."""
    return sorted(p for p in root.glob("ch[0-9][0-9]_*") if p.is_dir() and any(p.glob("*.ipynb")))


def notebooks_in_order(chapter: Path) -> list[Path]:
    """A chapter's notebooks by file name, with solutions.ipynb last."""
    return sorted(chapter.glob("*.ipynb"), key=lambda p: (p.stem == "solutions", p.name))


ACRONYMS = {"gpt": "GPT", "lora": "LoRA", "llm": "LLM"}


def chapter_title(chapter: Path) -> str:
    """'ch02_text_data' -> 'Chapter 2 · Text data', 'ch04_gpt_model' -> 'Chapter 4 · GPT model'."""
    number, _, name = chapter.name.partition("_")
    words = [ACRONYMS.get(word, word) for word in name.split("_")]
    words[0] = words[0][0].upper() + words[0][1:]
    return f"Chapter {int(number[2:])} · {' '.join(words)}"


def chapter_page(chapter: Path) -> str:
    """The Markdown of a chapter's page: its title and a table of contents of its notebooks."""
    entries = "\n".join(nb.stem for nb in notebooks_in_order(chapter))
    return f"# {chapter_title(chapter)}\n\n```{{toctree}}\n:maxdepth: 1\n\n{entries}\n```\n"


def link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source)


def gather_sources(src: Path) -> list[Path]:
    """Fill `src` with links to the site's pages and write the chapter pages; returns the notebooks."""
    for page in ["index.md", "api.rst"]:
        link(WEBSITE / page, src / page)
    # Copied, not linked: MyST resolves an included file's links from its real location.
    for page in ["README.md", "data/README.md"]:
        (src / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / page, src / page)
    notebooks = []
    for chapter in chapter_folders():
        for nb in notebooks_in_order(chapter):
            link(nb, src / chapter.name / nb.name)
            notebooks.append(nb)
        (src / chapter.name / "index.md").write_text(chapter_page(chapter), encoding="utf-8")
    return notebooks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SITE, help="output folder (default: _site/)")
    args = parser.parse_args()
    try:
        from sphinx.cmd.build import build_main
        import myst_nb  # noqa: F401
        import sphinx_book_theme  # noqa: F401
    except ImportError as err:
        print(f"missing {err.name}: pip install -e '.[site]'", file=sys.stderr)
        return 1

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llmcourse-site-") as tmp:
        src = Path(tmp) / "src"
        notebooks = gather_sources(src)
        # Built inside the temporary folder: MyST-NB writes a jupyter_execute/ beside the output folder.
        html = Path(tmp) / "html"
        status = build_main(["-b", "html", "-q", "-c", str(WEBSITE), "-d", str(Path(tmp) / "doctrees"),
                             str(src), str(html)])
        if status != 0:
            print(f"Sphinx failed (exit {status})", file=sys.stderr)
            return status
        shutil.rmtree(args.out, ignore_errors=True)
        shutil.copytree(html, args.out)
    pages = len(list(args.out.rglob("*.html")))
    print(f"built {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}/: "
          f"{len(notebooks)} notebooks in {len(chapter_folders())} chapters, {pages} HTML pages, "
          f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
