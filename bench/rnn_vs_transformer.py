"""Benchmark: an Elman RNN, an LSTM and a small transformer, each given the same CPU time (chapter 1).

The three language models read the course's 2048-token BPE (trained on the training plays), have
about 235k parameters each, and train on windows of 128 tokens from the training plays under a
budget of CPU seconds (time.process_time), with the chapter-5 loop (AdamW, warmup then cosine
decay stretched to end with the budget, clipping at 1). The peak learning rate of each model is
chosen on the validation plays (seed 0, the short budget) by `llmcourse.experiment.widened_sweep`, which
widens the grid until the choice lies inside it; then seeds 0, 1 and 2 are trained under
the short and the long budget and scored once on the test plays, in bits per byte. Writes
bench/results/rnn_vs_transformer.json, which notebook 1E plots. Usage:

    LLMCOURSE_THREADS=1 python bench/rnn_vs_transformer.py                 # about 20 minutes on one core
    LLMCOURSE_THREADS=1 python bench/rnn_vs_transformer.py --budgets 5 --seeds 0 --lrs 3e-3   # a smoke run
"""

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch import nn

from llmcourse.course import course_model
from llmcourse.data import create_dataloader, load_shakespeare
from llmcourse.experiment import comparison_record, widened_sweep
from llmcourse.model import GPTConfig, GPTModel, count_parameters
from llmcourse.rnn import RNNConfig, RNNLanguageModel
from llmcourse.runtime import recommended_threads, set_seed
from llmcourse.train import configure_optimizer, evaluate_bits_per_byte, train

RESULTS = Path(__file__).resolve().parent / "results" / "rnn_vs_transformer.json"
CONTEXT_LENGTH = 128
BATCH_SIZE = 16
MODELS = ("RNN", "LSTM", "transformer")


def build(name: str, vocab_size: int, seed: int) -> nn.Module:
    """One of the three models, freshly initialised from `seed` (the sizes notebook 1E uses)."""
    set_seed(seed)
    if name == "RNN":
        return RNNLanguageModel(RNNConfig(vocab_size, CONTEXT_LENGTH, d_model=64, hidden_size=256, cell="rnn"))
    if name == "LSTM":
        return RNNLanguageModel(RNNConfig(vocab_size, CONTEXT_LENGTH, d_model=64, hidden_size=128, cell="lstm"))
    if name == "transformer":
        return GPTModel(GPTConfig(vocab_size, CONTEXT_LENGTH, d_model=64, n_heads=4, n_layers=2, dropout=0.0))
    raise ValueError(f"unknown model {name!r}; choose one of {MODELS}")


def run(name: str, data: dict, lr: float, budget: float, seed: int, split: str) -> tuple[dict, nn.Module]:
    """Train one model for `budget` CPU seconds: its bits per byte on `split`, its loss against CPU time, the model."""
    model = build(name, data["vocab_size"], seed)
    optimizer = configure_optimizer(model, lr)
    loader = create_dataloader(data["train"], BATCH_SIZE, CONTEXT_LENGTH, seed=seed)
    started = time.process_time()
    curve = []

    def log(event: dict) -> None:
        if event["event"] == "step":
            curve.append((time.process_time() - started, event["loss"]))

    history = train(model, optimizer, loader, None, max_steps=10**6, max_lr=lr, min_lr=lr / 10,
                    warmup_steps=20, time_budget=budget, clock=time.process_time, seed=seed, progress=False,
                    log=log)
    model.eval()
    result = {"lr": lr, "budget": budget, "seed": seed, "steps": history.steps[-1],
              "seconds": history.seconds, "tokens": history.tokens_seen[-1],
              "tokens_per_second": history.tokens_seen[-1] / history.seconds,
              "curve": curve[:: max(1, len(curve) // 200)]}
    result[f"{split}_bits_per_byte"] = evaluate_bits_per_byte(model, data[split], data[f"{split}_bytes"])
    return result, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[25.0, 60.0], help="CPU seconds per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lrs", type=float, nargs="+", default=[4e-3, 8e-3, 1.6e-2],
                        help="peak rates tried first; the grid is widened until the chosen one lies inside it")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS,
                        help="models to run; the others' results already in --out are kept")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    _, tokenizer = course_model()
    data = {"vocab_size": tokenizer.vocab_size}
    for split in ("train", "val", "test"):
        text = load_shakespeare(split)
        data[split], data[f"{split}_bytes"] = tokenizer.encode(text), len(text.encode("utf-8"))

    results = {"about": "bench/rnn_vs_transformer.py: RNN, LSTM and transformer language models under equal "
                        "CPU-time budgets, BPE 2048, windows of 128 tokens, batches of 16",
               "threads": recommended_threads(), "machine": platform.machine(), "torch": torch.__version__,
               "budgets": args.budgets, "seeds": args.seeds, "lrs": args.lrs, "models": {}, "choices": [],
               "comparisons": []}
    if args.out.exists() and set(args.models) != set(MODELS):
        kept = json.loads(args.out.read_text())["models"]
        results["models"] = {name: kept[name] for name in MODELS if name in kept and name not in args.models}
    short = min(args.budgets)
    for name in args.models:
        print(f"{name}: {count_parameters(build(name, data['vocab_size'], 0)):,} parameters", flush=True)
        sweep, trained = {}, {}

        def score(lr: float) -> float:
            """Minus the validation bits per byte after the short budget (higher is better)."""
            sweep[lr], trained[lr] = run(name, data, lr, short, args.seeds[0], "val")
            print(f"  lr {lr:g}: val {sweep[lr]['val_bits_per_byte']:.4f} bits per byte", flush=True)
            return -sweep[lr]["val_bits_per_byte"]

        lr_sweep = widened_sweep(score, args.lrs)
        best = lr_sweep.chosen
        sweep[best]["test_bits_per_byte"] = evaluate_bits_per_byte(trained[best], data["test"], data["test_bytes"])
        runs = []
        for budget in args.budgets:
            for seed in args.seeds:
                done = sweep[best] if (budget == short and seed == args.seeds[0]) else \
                    run(name, data, best, budget, seed, "test")[0]
                runs.append(done)
                print(f"  budget {budget:g} s, seed {seed}: test {done['test_bits_per_byte']:.4f} bits per byte, "
                      f"{done['tokens_per_second']:,.0f} tokens/s", flush=True)
        results["models"][name] = {
            "parameters": count_parameters(build(name, data["vocab_size"], 0)),
            "sweep": {f"{lr:g}": sweep[lr]["val_bits_per_byte"] for lr in sorted(sweep)},
            "chosen_lr": best, "choice": lr_sweep.record(name, "better (minus validation bits per byte)"), "runs": runs}
        results["choices"] = [results["models"][m]["choice"] for m in MODELS if m in results["models"]]
        results["comparisons"] = test_comparisons(results["models"], args.budgets)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


def test_comparisons(models: dict, budgets: list[float]) -> list[dict]:
    """Every pair of models trained so far, test bits per byte at each budget, over the seeds."""
    records = []
    names = [m for m in MODELS if m in models]
    for budget in budgets:
        scores = {m: [r["test_bits_per_byte"] for r in models[m]["runs"] if r["budget"] == budget] for m in names}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                records.append({"budget": budget, **comparison_record(a, scores[a], b, scores[b])})
    return records


if __name__ == "__main__":
    main()
