"""Benchmark: word reversal with an RNN encoder-decoder, the same with additive attention, and the 2017
transformer, each given the same CPU time (chapter 5, notebook 5F).

The task is `llmcourse.tasks.reversal_pairs`'s: reverse the words of 10-50 characters of a speech, character by character.
Each model's learning-rate scale (of the 2017 warmup schedule, 100 warmup steps) is chosen on the validation
plays (seed 0, the short budget, exact match, then character accuracy) by `llmcourse.experiment.widened_sweep`,
so that the choice lies inside the grid; then seeds 0, 1 and 2 are trained
under the long budget and scored once on the test plays, overall and by source length. Writes
bench/results/seq2seq.json, which notebook 5F plots. Usage:

    LLMCOURSE_THREADS=1 python bench/seq2seq.py                   # about 25 minutes of CPU time on one core
    LLMCOURSE_THREADS=1 python bench/seq2seq.py --short 5 --long 10 --seeds 0 --scales 0.5   # a smoke run
"""

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from llmcourse.data import load_plays
from llmcourse.experiment import comparison_record, widened_sweep
from llmcourse.runtime import recommended_threads
from llmcourse.seq2seq import MODEL_NAMES, build_model, model_width, predict, scores, scores_by_length, train_seq2seq
from llmcourse.tasks import reversal_pairs

RESULTS = Path(__file__).resolve().parent / "results" / "seq2seq.json"
N_TRAIN, N_VAL, N_TEST = 30_000, 400, 800
BATCH_SIZE, WARMUP_STEPS, LABEL_SMOOTHING = 32, 100, 0.1


def run(name: str, train_pairs: list, eval_pairs: list, lr_scale: float, budget: float, seed: int) -> dict:
    """Train one model for `budget` CPU seconds and score its greedy outputs on `eval_pairs`."""
    model = build_model(name, seed)
    history = train_seq2seq(model, train_pairs, budget, d_model=model_width(model), batch_size=BATCH_SIZE,
                            warmup_steps=WARMUP_STEPS, lr_scale=lr_scale, label_smoothing=LABEL_SMOOTHING,
                            seed=seed, progress=False)
    sources, targets = [p.source for p in eval_pairs], [p.target for p in eval_pairs]
    predictions = predict(model, sources)
    every = max(1, history.steps // 100)
    return {"model": name, "lr_scale": lr_scale, "budget": budget, "seed": seed, "steps": history.steps,
            "seconds": history.seconds[-1], "final_loss": history.losses[-1],
            "curve": [(history.seconds[i], history.losses[i]) for i in range(0, history.steps, every)],
            **scores(predictions, targets), "by_length": scores_by_length(sources, predictions, targets),
            "examples": [(s, p) for s, p in zip(sources[:5], predictions[:5])]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=float, default=30.0, help="CPU seconds per run for the choice on val")
    parser.add_argument("--long", type=float, default=75.0, help="CPU seconds per run for the test numbers")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0, 4.0, 8.0],
                        help="lr scales tried first; the grid is widened until the chosen one lies inside it")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--sweep-models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES,
                        help="models whose scale to choose again; the others' sweep rows in --out are kept")
    args = parser.parse_args()
    torch.set_num_threads(recommended_threads())
    plays = load_plays()
    train_pairs = reversal_pairs(plays, "train", N_TRAIN, seed=0)
    val_pairs = reversal_pairs(plays, "val", N_VAL, seed=1)
    test_pairs = reversal_pairs(plays, "test", N_TEST, seed=2)
    results = {"task": "reverse the words of 10-50 characters of a speech, character level",
               "n_train": N_TRAIN, "n_val": N_VAL, "n_test": N_TEST, "batch_size": BATCH_SIZE,
               "warmup_steps": WARMUP_STEPS, "label_smoothing": LABEL_SMOOTHING,
               "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
               "short_budget": args.short, "long_budget": args.long, "sweep": [], "chosen_scale": {}, "test": [],
               "choices": [], "comparisons": []}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")

    if args.out.exists() and set(args.sweep_models) != set(MODEL_NAMES):
        previous = json.loads(args.out.read_text())
        results["sweep"] = [r for r in previous["sweep"] if r["model"] not in args.sweep_models]
        results["chosen_scale"] = {k: v for k, v in previous["chosen_scale"].items() if k not in args.sweep_models}
        results["choices"] = [c for c in previous["choices"] if c["setting"] not in args.sweep_models]
    for name in args.sweep_models:
        def score(scale: float) -> float:
            """Exact match on the validation pairs, with character accuracy breaking ties."""
            started = time.time()
            row = run(name, train_pairs, val_pairs, scale, args.short, seed=0)
            results["sweep"].append({k: v for k, v in row.items() if k not in ("curve", "examples")})
            save()
            print(f"val  {name:16s} scale {scale:<5} steps {row['steps']:5d} exact {row['exact_match']:.3f} "
                  f"chars {row['char_accuracy']:.3f} ({time.time() - started:.0f} s)", flush=True)
            return row["exact_match"] + 1e-3 * row["char_accuracy"]

        sweep = widened_sweep(score, args.scales)
        results["chosen_scale"][name] = sweep.chosen
        results["choices"].append(sweep.record(name, "better (exact match + 0.001 x character accuracy)"))
        save()
    for seed in args.seeds:
        for name in MODEL_NAMES:
            row = run(name, train_pairs, test_pairs, results["chosen_scale"][name], args.long, seed)
            results["test"].append(row)
            save()
            print(f"test {name:16s} seed {seed} steps {row['steps']:5d} exact {row['exact_match']:.3f} "
                  f"chars {row['char_accuracy']:.3f}", flush=True)
    results["comparisons"] = test_comparisons(results["test"])
    save()


def test_comparisons(test_rows: list[dict]) -> list[dict]:
    """Every pair of models on the test pairs, exact match and character accuracy, over the seeds."""
    records = []
    for metric in ("exact_match", "char_accuracy"):
        scores = {name: [r[metric] for r in test_rows if r["model"] == name] for name in MODEL_NAMES}
        for i, a in enumerate(MODEL_NAMES):
            for b in MODEL_NAMES[i + 1:]:
                records.append({"metric": metric, **comparison_record(a, scores[a], b, scores[b])})
    return records


if __name__ == "__main__":
    main()
