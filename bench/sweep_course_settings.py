"""Sweep: how to spend the course model's training compute, chosen on the validation plays.

Every configuration gets the same compute: parameters × training tokens = COMPUTE (the number of
updates follows from the model's size and tokens per update), so a bigger model trains on fewer
tokens. Each is scored in bits per byte on all of the validation plays; the test plays are never
read. Two stages: first the peak learning rate for the base shape, then narrower models at the best
learning rate of the first stage (and the same settings with another seed, to see how noisy one run
is); then, at the chosen width, the learning rate again and the vocabulary size, so that every
choice has a tried value on each side (the course's experiment protocol, `llmcourse.experiment`). The
winner became `llmcourse.course.COURSE_SETTINGS`; notebook 5B quotes the table this writes. Each result
is merged into the results file as soon as it is measured, with the choices recomputed.

    python bench/sweep_course_settings.py                  # every configuration, 2 at a time, 1 thread each
    python bench/sweep_course_settings.py --workers 1      # one at a time
    python bench/sweep_course_settings.py --only "lr 4e-3, d_model 96"   # some, merged into the results file
"""

import argparse
import json
import multiprocessing as mp
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from llmcourse.data import create_dataloader, load_shakespeare
from llmcourse.experiment import Sweep
from llmcourse.model import GPTModel, count_parameters
from llmcourse.runtime import set_seed
from llmcourse.tokenizer import BPETokenizer
from llmcourse.train import (PretrainSettings, configure_optimizer, evaluate_bits_per_byte,
                             spread_windows_loader, train)

# Half of the first course model's compute was 2,800 updates × 1,024 tokens × 1.07M parameters / 2
# = 1.53e12; we spend less (1.2e12), so the model trains in about 3 minutes on a slow 2-core CPU.
COMPUTE = 1.2e12
RESULTS = Path(__file__).resolve().parent / "results" / "course_settings_sweep.json"

BASE = PretrainSettings(vocab_size=2048, context_length=128, d_model=128, n_heads=4, n_layers=4, batch_size=8,
                        max_lr=2e-3, min_lr=2e-4, warmup_steps=60)
FAST = replace(BASE, max_lr=4e-3, min_lr=4e-4)  # the best learning rate of stage 1
CANDIDATES = {
    # stage 1: the peak learning rate (the minimum is a tenth of it)
    "lr 1e-3": replace(BASE, max_lr=1e-3, min_lr=1e-4),
    "lr 2e-3": BASE,
    "lr 4e-3": FAST,
    "lr 8e-3": replace(BASE, max_lr=8e-3, min_lr=8e-4),
    # stage 2: a narrower model at lr 4e-3, which trains on more tokens for the same compute (narrower
    # still does not fit the 3-minute budget: per-token costs that do not shrink with d_model dominate)
    "lr 4e-3, d_model 96": replace(FAST, d_model=96),
    "lr 4e-3, d_model 96, seed 7": replace(FAST, d_model=96, seed=7),  # another seed: how noisy is one run?
    # stage 3: at d_model 96, the learning rate on each side of 4e-3, and the vocabulary size
    "lr 2e-3, d_model 96": replace(BASE, d_model=96),
    "lr 8e-3, d_model 96": replace(BASE, d_model=96, max_lr=8e-3, min_lr=8e-4),
    "vocab 1024, d_model 96": replace(FAST, d_model=96, vocab_size=1024),
    "vocab 4096, d_model 96": replace(FAST, d_model=96, vocab_size=4096),
}
CHOSEN = replace(FAST, d_model=96)  # the winner, COURSE_SETTINGS (whose seed is 7)


def steps_for(settings: PretrainSettings) -> int:
    """Updates that spend COMPUTE on this configuration's parameters and tokens per update."""
    parameters = count_parameters(GPTModel(settings.model_config()))
    return int(COMPUTE / (parameters * settings.batch_size * settings.context_length))


def run(name: str) -> dict:
    """Train one candidate on the training plays; score it on all of the validation plays."""
    torch.set_num_threads(1)
    settings = CANDIDATES[name]
    settings = replace(settings, max_steps=steps_for(settings))
    train_text, val_text = load_shakespeare("train"), load_shakespeare("val")
    tokenizer = BPETokenizer.train(train_text, settings.vocab_size)
    train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
    set_seed(settings.seed)
    model = GPTModel(settings.model_config())
    optimizer = configure_optimizer(model, settings.max_lr, settings.weight_decay)
    train_loader = create_dataloader(train_ids, settings.batch_size, settings.context_length, seed=settings.seed)
    val_loader = spread_windows_loader(val_ids, settings.eval_windows, settings.context_length, settings.batch_size)
    history = train(model, optimizer, train_loader, val_loader, settings.max_steps, settings.max_lr,
                    settings.min_lr, settings.warmup_steps, settings.grad_clip, eval_every=10**9,
                    seed=settings.seed, progress=False)
    bpb = evaluate_bits_per_byte(model, val_ids, len(val_text.encode("utf-8")), batch_size=32)
    result = {"name": name, "parameters": count_parameters(model), "updates": settings.max_steps,
              "tokens": history.tokens_seen[-1], "train_seconds": round(history.seconds, 1),
              "val_bits_per_byte": round(bpb, 4)}
    result.update({k: v for k, v in asdict(settings).items() if k not in ("eval_every", "eval_windows")})
    print(f"{name:24s} {result['parameters']:>9,d} params {result['updates']:>5d} updates "
          f"{history.seconds:6.0f} s  val {bpb:.4f} bits/byte", flush=True)
    return result


def choices(rows: list[dict]) -> list[dict]:
    """Each setting's sweep, from the runs of seed 123 that differ from CHOSEN in that setting alone."""
    records = []
    for setting, others in (("max_lr", {"d_model": 128}), ("max_lr", {}), ("vocab_size", {}), ("d_model", {})):
        fixed = {**asdict(replace(CHOSEN, **others)), "seed": BASE.seed}
        fixed = {k: v for k, v in fixed.items() if k not in (setting, "min_lr", "max_steps", "eval_every",
                                                            "eval_windows")}
        tried = [row for row in rows if all(row[k] == v for k, v in fixed.items())]
        if len({row[setting] for row in tried}) < 2:
            continue
        sweep = Sweep(scores={row[setting]: -row["val_bits_per_byte"] for row in tried})
        sweep.chosen = max(sweep.scores, key=sweep.scores.get)
        if setting == "d_model" and sweep.chosen == min(sweep.scores):
            sweep.hit_bound = sweep.chosen  # narrower models do not fit the three-minute budget
        where = ", ".join(f"{k} {v}" for k, v in others.items()) or f"d_model {CHOSEN.d_model}"
        label = setting if setting == "d_model" else f"{setting} ({where})"
        records.append(sweep.record(label, "better (minus validation bits per byte)"))
    return records


def merge(result: dict) -> list[dict]:
    """Add one result to the results file (replacing an earlier one of the same name), best first."""
    rows = []
    if RESULTS.exists():
        rows = [row for row in json.loads(RESULTS.read_text())["runs"]
                if row["name"] != result["name"] and row["name"] in CANDIDATES]
    rows.append(result)
    rows.sort(key=lambda row: row["val_bits_per_byte"])
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "about": "bench/sweep_course_settings.py: the course GPT's settings at equal compute, validation bits per byte",
        "compute": COMPUTE, "choices": choices(rows), "comparisons": [], "runs": rows}, indent=1) + "\n")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="configurations trained at once (default: 2)")
    parser.add_argument("--only", nargs="+", choices=list(CANDIDATES), metavar="NAME",
                        help="train only these candidates and merge them into the existing results file")
    args = parser.parse_args()
    print(f"compute per configuration {COMPUTE:.2e} parameter-tokens; load average {os.getloadavg()[0]:.2f}")
    started = time.perf_counter()
    names = args.only or list(CANDIDATES)
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for result in pool.imap_unordered(run, names):
            results = merge(result)
    print(f"\nbest on the validation plays: {results[0]['name']} ({results[0]['val_bits_per_byte']:.4f} bits/byte); "
          f"wrote {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS} "
          f"in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
