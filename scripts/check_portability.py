"""Another CPU, in effect: retrain the course's cached models with another seed, then run the notebooks that read them.

The course GPT and encoder are trained on the learner's own machine the first time a notebook asks for
them. Another CPU adds floating-point numbers in another order, so after a few hundred updates its
models differ from ours in every weight, much as two seeds do. An assert about a trained model must
hold for those models too. This script trains sibling models (the course's settings, the seed moved
by --offset) into a cache folder of their own, records them under the course's settings exactly as
another machine's cache would hold them, and runs every notebook that loads them under nbval with
LLMCOURSE_CACHE pointing there. Notebook 5B is left out: it trains and saves the course GPT itself.

    python scripts/check_portability.py                  # siblings with seed + 1, all such notebooks
    python scripts/check_portability.py --offset 2 ch06_finetuning/04_encoder_classification.ipynb

It takes about 15 minutes on two cores: 5 to pretrain the siblings, 9 for the notebooks on two workers.
The sibling models stay in .cache-sibling-<offset>/ (git-ignored), so a second run only re-runs the notebooks.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
READS_A_CACHED_MODEL = ("course_model(", "course_encoder(")
WRITES_THE_CACHE = ("save_checkpoint(COURSE_MODEL_DIR", "save_encoder(COURSE_ENCODER_DIR")


def notebooks_that_load_cached_models() -> list[Path]:
    """Every chapter notebook whose code loads the course GPT or encoder, less those that write them."""
    found = []
    for path in sorted(REPO_ROOT.glob("ch0*/*.ipynb")):
        code = "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"]
                         if cell["cell_type"] == "code")
        if any(call in code for call in READS_A_CACHED_MODEL) and not any(w in code for w in WRITES_THE_CACHE):
            found.append(path)
    return found


def build_sibling_gpt(offset: int) -> dict:
    """Pretrain the course GPT with seed + offset and store it where `course_model()` looks."""
    from llmcourse.checkpoint import load_checkpoint, restore_optimizer, save_checkpoint
    from llmcourse.course import COURSE_MODEL_DIR, COURSE_SETTINGS, pretrain_course_model
    from llmcourse.train import configure_optimizer

    seed = COURSE_SETTINGS.seed + offset
    staging = COURSE_MODEL_DIR.with_name("sibling_gpt_staging")
    pretrain_course_model(replace(COURSE_SETTINGS, seed=seed), staging)
    trained = load_checkpoint(staging)
    optimizer = configure_optimizer(trained.model, COURSE_SETTINGS.max_lr, COURSE_SETTINGS.weight_decay)
    restore_optimizer(optimizer, trained.optimizer_state)
    # Recorded under the course's settings, as another machine's cache would be: course_model() loads it.
    extra = {**trained.extra, "settings": asdict(COURSE_SETTINGS), "sibling_seed": seed}
    save_checkpoint(COURSE_MODEL_DIR, trained.model, optimizer, trained.step, trained.tokenizer, extra)
    shutil.rmtree(staging)
    return {"seed": seed, "val_bits_per_byte": round(trained.extra["val_bits_per_byte"], 4)}


def build_sibling_encoder(offset: int) -> dict:
    """Pretrain the course encoder with seed + offset and store it where `course_encoder()` looks."""
    from llmcourse.course import COURSE_ENCODER_DIR, COURSE_ENCODER_SETTINGS, bert_tokenizer
    from llmcourse.mlm import pretrain_until_healthy, save_encoder

    seed = COURSE_ENCODER_SETTINGS.seed + offset
    # As course_encoder() does on any machine: a run that stalls is started again with the next seed.
    model, _, history, used = pretrain_until_healthy(replace(COURSE_ENCODER_SETTINGS, seed=seed), bert_tokenizer())
    save_encoder(COURSE_ENCODER_DIR, model, COURSE_ENCODER_SETTINGS, history)
    return {"seed": seed, "trained_by_seed": used}


SIBLINGS = {"course GPT": build_sibling_gpt, "course encoder": build_sibling_encoder}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to run (default: every notebook that loads a cached model)")
    parser.add_argument("--offset", type=int, default=1, help="added to each model's seed (default 1)")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (default 2)")
    args = parser.parse_args()
    if args.offset < 1:
        parser.error(f"--offset must be a positive integer (0 is the course's own seed), got {args.offset}")
    if args.workers < 1:
        parser.error(f"--workers must be a positive integer, got {args.workers}")
    missing = [str(path) for path in args.notebooks if not path.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")

    cache = REPO_ROOT / f".cache-sibling-{args.offset}"
    os.environ["LLMCOURSE_CACHE"] = str(cache)  # read when llmcourse is first imported, below
    record_path = cache / "siblings.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    for name, build in SIBLINGS.items():
        if name in record:
            print(f"{name}: the sibling in {cache.name}/ is kept (seed {record[name]['seed']})")
            continue
        print(f"{name}: pretraining a sibling with the seed moved by {args.offset} ...", flush=True)
        started = time.perf_counter()
        record[name] = {**build(args.offset), "seconds": round(time.perf_counter() - started)}
        record_path.write_text(json.dumps(record, indent=1))
        print(f"{name}: {record[name]}", flush=True)

    notebooks = args.notebooks or notebooks_that_load_cached_models()
    print(f"running {len(notebooks)} notebooks against the siblings:",
          ", ".join(str(path.relative_to(REPO_ROOT) if path.is_absolute() else path) for path in notebooks), flush=True)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval", "-q", "-n", str(args.workers),
                             *map(str, notebooks)], cwd=REPO_ROOT, env=os.environ)
    minutes = (time.perf_counter() - started) / 60
    verdict = "passed" if result.returncode == 0 else f"FAILED (pytest exit code {result.returncode})"
    print(f"portability check {verdict}: {len(notebooks)} notebooks against siblings with seed offset "
          f"{args.offset}, in {minutes:.1f} min")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
