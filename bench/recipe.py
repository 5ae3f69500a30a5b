"""Benchmark: from GPT-2's recipe to today's, one change at a time, each on the same number of tokens.

Under the course's experiment protocol (`llmcourse.experiment`), every choice is made on the 6 validation
plays in bits per byte:

1. AdamW's peak learning rate is tuned for this budget on the GPT-2 recipe (the mean over the seeds, a grid
   widened until the best rate is inside it).
2. Each change (rotary positions, RMSNorm, SwiGLU, no biases, QK-norm, an untied output head) is tried on
   top of the changes kept so far, over 3 seeds, and kept only if it lowers bits per byte by more than two
   standard errors (`compare`); a change within the noise is dropped, the simpler model kept.
3. The Muon optimizer: its learning rate tuned the same way as AdamW's, then kept by the same rule.
4. Batch size and context length for the same tokens (one seed each, the best confirmed over 3 seeds), and
   ReLU² in place of the feed-forward kept so far.

Each run trains on the 26 training plays for the same number of training tokens, `--tokens` (307,200 by
default: 300 updates of 8 windows of 128 tokens, about 45 CPU seconds of one thread), with the course's
schedule (warmup, cosine stretched to the run, clipping at 1). A budget of tokens means the same on every
machine, and a run's score depends on its seed alone, not on how busy the machine was; what each change
costs in time is measured apart, in tokens per CPU second (`--speed`, and every run records its own).
The test plays are used once, by bench/pretrain.py. Results go to bench/results/recipe_ablation.json,
which notebook 5G plots. Usage:

    python bench/recipe.py --fresh              # the ablation: 3 seeds per step, about 45 minutes on one core
    python bench/recipe.py --tokens 102400 --fresh   # a quick look
    python bench/recipe.py --speed              # tokens per second: compile, bf16, foreach/fused, vocab padding
"""

import argparse
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from llmcourse.course import COURSE_SETTINGS, course_tokenizer
from llmcourse.data import create_dataloader, load_shakespeare
from llmcourse.experiment import comparison_record, widened_sweep
from llmcourse.model import GPTModel, count_parameters
from llmcourse.muon import MuonWithAdamW
from llmcourse.runtime import set_seed
from llmcourse.train import batch_loss, configure_optimizer, evaluate_bits_per_byte, train

RESULTS = Path(__file__).parent / "results" / "recipe_ablation.json"

# Each step: (name, what it changes), tried on top of every change kept so far.
STEPS = [
    ("+ rotary positions", {"model": {"positions": "rotary"}}),
    ("+ RMSNorm", {"model": {"norm": "rms"}}),
    ("+ SwiGLU", {"model": {"ff": "swiglu"}}),
    ("+ no biases", {"model": {"bias": False}}),
    ("+ QK-norm", {"model": {"qk_norm": True}}),
    ("+ untied head", {"model": {"tie_weights": False}}),
]
ADAMW_LRS = (2e-3, 4e-3, 8e-3)  # AdamW's peak rate: the starting grid, widened until the best is inside
MUON_LRS = (0.01, 0.02, 0.04)  # Muon's rate for the weight matrices, likewise
BATCH_CONTEXT = ((4, 128), (16, 128), (8, 256), (4, 256))  # windows x tokens per update, one seed each


def combine(total: dict, change: dict) -> dict:
    """`total` with `change`'s fields added, part by part."""
    return {part: {**total.get(part, {}), **change.get(part, {})} for part in ("model", "optimizer", "data")}


def build(total: dict, vocab_size: int, seed: int) -> tuple[GPTModel, object, int, int]:
    """The model, optimizer, batch size and context length of a recipe."""
    settings = COURSE_SETTINGS
    data = {"batch_size": settings.batch_size, "context_length": settings.context_length, **total["data"]}
    config = replace(settings.model_config(), vocab_size=vocab_size, context_length=data["context_length"],
                     **total["model"])
    set_seed(seed)
    model = GPTModel(config)
    lr = total["optimizer"].get("max_lr", settings.max_lr)
    if "muon_lr" in total["optimizer"]:
        optimizer = MuonWithAdamW(model, lr, total["optimizer"]["muon_lr"], settings.weight_decay)
    else:
        optimizer = configure_optimizer(model, lr, settings.weight_decay)
    return model, optimizer, data["batch_size"], data["context_length"]


def run(total: dict, seed: int, tokens: int, train_ids: list[int], val_ids: list[int], val_bytes: int,
        vocab_size: int) -> dict:
    """Train one recipe on `tokens` training tokens; its validation bits per byte and speed."""
    settings = COURSE_SETTINGS
    model, optimizer, batch_size, context_length = build(total, vocab_size, seed)
    lr = total["optimizer"].get("max_lr", settings.max_lr)
    loader = create_dataloader(train_ids, batch_size, context_length, seed=seed)
    started = time.process_time()
    history = train(model, optimizer, loader, None, max_steps=tokens // (batch_size * context_length), max_lr=lr,
                    min_lr=lr / 10, warmup_steps=settings.warmup_steps, grad_clip=settings.grad_clip,
                    eval_every=10**9, seed=seed, progress=False)
    cpu_seconds = time.process_time() - started
    bpb = evaluate_bits_per_byte(model, val_ids, val_bytes, batch_size=32)
    return {"seed": seed, "val_bits_per_byte": round(bpb, 4), "steps": history.steps[-1],
            "tokens": history.tokens_seen[-1], "cpu_seconds": round(cpu_seconds, 1),
            "tokens_per_cpu_second": round(history.tokens_seen[-1] / cpu_seconds),
            "parameters": count_parameters(model), "curve_tokens": history.tokens_seen[::20],
            "curve_loss": [round(x, 4) for x in history.train_loss[::20]]}


def ablation(args: argparse.Namespace) -> None:
    tokenizer = course_tokenizer()
    train_text, val_text = load_shakespeare("train"), load_shakespeare("val")
    train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
    val_bytes = len(val_text.encode("utf-8"))
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results = {"about": "5G's ablation, validation bits per byte (lower is better)",
               "budget_tokens": args.tokens, "seeds": args.seeds, "threads": 1,
               "runs": {} if args.fresh else old.get("runs", {}), "choices": [], "comparisons": [],
               "decisions": [], **({"speed": old["speed"]} if "speed" in old else {})}
    runs = results["runs"]

    def scores(name: str, total: dict, seeds: range) -> list[float]:
        """Validation bits per byte of `total`, one per seed (runs already in the file are reused)."""
        for seed in seeds:
            key = f"{name} | seed {seed}"
            if runs.get(key, {}).get("recipe") == total:
                continue
            started = time.time()
            result = run(total, seed, args.tokens, train_ids, val_ids, val_bytes, tokenizer.vocab_size)
            runs[key] = {"name": name, "recipe": total, **result}
            print(f"{name:36s} seed {seed}: {result['val_bits_per_byte']:.4f} bits/byte, "
                  f"{result['tokens_per_cpu_second']:,} tokens/CPU s, {result['steps']} steps "
                  f"({time.time() - started:.0f} s wall, load {os.getloadavg()[0]:.1f})", flush=True)
            RESULTS.write_text(json.dumps(results, indent=1))
        return [runs[f"{name} | seed {seed}"]["val_bits_per_byte"] for seed in seeds]

    all_seeds = range(args.seeds)

    def tune(setting: str, label: str, grid: tuple[float, ...], total_at) -> float:
        """The rate in `grid` (widened until inside) with the lowest validation bits per byte, mean of every seed
        (one seed is not enough near the edge of stability, where a lucky seed can hide a diverging one)."""
        sweep = widened_sweep(lambda lr: -statistics.mean(scores(f"{label} {lr:g}", total_at(lr), all_seeds)), grid)
        results["choices"].append(sweep.record(setting, higher_is="better (minus bits per byte)"))
        print(f"{setting}: {sweep.chosen:g} from {sorted(sweep.scores)}", flush=True)
        return sweep.chosen

    adamw_lr = tune("AdamW learning rate", "GPT-2 recipe, AdamW lr", ADAMW_LRS,
                    lambda lr: combine({}, {"optimizer": {"max_lr": lr}}))
    kept_name = f"GPT-2 recipe, AdamW lr {adamw_lr:g}"
    kept = combine({}, {"optimizer": {"max_lr": adamw_lr}})
    kept_scores = scores(kept_name, kept, all_seeds)
    results["decisions"].append({"step": "GPT-2 recipe", "val_bits_per_byte": kept_scores, "kept": True})

    def consider(name: str, total: dict) -> None:
        """Keep `total` only if it beats the recipe kept so far beyond two standard errors."""
        nonlocal kept, kept_name, kept_scores
        new = scores(name, total, all_seeds)
        record = comparison_record(kept_name, kept_scores, name, new)
        keep = record["verdict"] == "a is higher"  # the kept recipe's bits per byte are higher: the change helps
        record["claim"] = record["verdict"]
        results["comparisons"].append(record)
        results["decisions"].append({"step": name, "val_bits_per_byte": new, "kept": keep,
                                     "difference": record["difference"], "standard_error": record["standard_error"]})
        print(f"{name}: {record['difference']:+.4f} ± {record['standard_error']:.4f} -> "
              f"{'kept' if keep else 'dropped'}", flush=True)
        if keep:
            kept, kept_name, kept_scores = total, name, new

    for name, change in STEPS:
        consider(name, combine(kept, change))
    muon_lr = tune("Muon learning rate", "+ Muon lr", MUON_LRS,
                   lambda lr: combine(kept, {"optimizer": {"muon_lr": lr}}))
    consider(f"+ Muon lr {muon_lr:g}", combine(kept, {"optimizer": {"muon_lr": muon_lr}}))
    candidates = {f"batch {b}, context {c}": combine(kept, {"data": {"batch_size": b, "context_length": c}})
                  for b, c in BATCH_CONTEXT}
    chosen = min(candidates, key=lambda name: scores(name, candidates[name], range(1))[0])
    consider(chosen, candidates[chosen])
    consider("ReLU² feed-forward", combine(kept, {"model": {"ff": "relu2"}}))
    results["final_recipe"] = kept
    RESULTS.write_text(json.dumps(results, indent=1))
    print("final recipe:", json.dumps(kept))


def speed(args: argparse.Namespace) -> None:
    """Tokens per second of one training update under each CPU speed trick, for the GPT-2 and final recipes."""
    def measure(total: dict, vocab_size: int = 2048, compile_model: bool = False, bf16: bool = False,
                foreach: bool | None = None, fused: bool | None = None, updates: int = 30) -> float:
        model, optimizer, batch_size, context_length = build(total, vocab_size, seed=0)
        if foreach is not None or fused is not None:
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=foreach, fused=fused)
        step_model = torch.compile(model) if compile_model else model
        batch = torch.randint(0, vocab_size, (batch_size, context_length + 1))
        inputs, targets = batch[:, :-1], batch[:, 1:]

        def update() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = batch_loss(step_model, inputs, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(5):  # warm up (and compile)
            update()
        started = time.process_time()
        for _ in range(updates):
            update()
        return updates * inputs.numel() / (time.process_time() - started)

    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    final = results.get("final_recipe")
    if final is None:
        raise SystemExit(f"run the ablation first: {RESULTS} has no final recipe")
    rows = []
    for label, total in (("GPT-2 recipe", combine({}, {})), ("final recipe", final)):
        rows += [(label, "eager (baseline)", measure(total)),
                 (label, "torch.compile", measure(total, compile_model=True)),
                 (label, "bf16 autocast", measure(total, bf16=True)),
                 (label, "AdamW for-loop", measure(total, foreach=False)),
                 (label, "AdamW foreach", measure(total, foreach=True)),
                 (label, "AdamW fused", measure(total, fused=True)),
                 (label, "vocabulary 2,049", measure(total, vocab_size=2049)),
                 (label, "vocabulary 2,049 padded to 2,112", measure(total, vocab_size=2112))]
    for label, trick, tokens_per_second in rows:
        print(f"{label:16s} {trick:34s} {tokens_per_second:>9,.0f} tokens/CPU s")
    results["speed"] = [{"recipe": label, "trick": trick, "tokens_per_cpu_second": round(value)}
                        for label, trick, value in rows]
    RESULTS.write_text(json.dumps(results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=300 * 8 * 128,
                        help="training tokens per run (default: 307,200, 300 updates of 8 x 128)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds for each step of the path (default: 3)")
    parser.add_argument("--fresh", action="store_true", help="ignore results already in the file")
    parser.add_argument("--speed", action="store_true", help="measure the CPU speed tricks instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"1 thread, load average {os.getloadavg()[0]:.2f} at start")
    speed(args) if args.speed else ablation(args)


if __name__ == "__main__":
    main()
