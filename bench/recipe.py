"""Benchmark: from GPT-2's recipe to today's, one change at a time, each at the same CPU-time budget.

Each step adds one change to those kept so far (rotary positions, RMSNorm, SwiGLU, no biases, QK-norm,
an untied output head) and is kept only if it lowers the mean validation score; then the Muon optimizer
(its learning rate chosen among three), then batch size and context length at the new speed, then
ReLU² in place of SwiGLU. Each configuration trains on the 26 training plays for `--budget`
CPU seconds of one thread (time.process_time, so other programs on the machine do not change the
result much) with the course's schedule (warmup, cosine stretched to the budget, clipping at 1), once
per seed, and is scored on the 6 validation plays in bits per byte: every choice here is made on
validation. The test plays are used once, by bench/pretrain.py. Results go to
bench/results/recipe_ablation.json, which notebook 5G plots. Usage:

    python bench/recipe.py                      # the ablation: 45 CPU seconds per run, 2 seeds per step
    python bench/recipe.py --budget 20 --seeds 1 --fresh   # a quick look
    python bench/recipe.py --speed              # tokens per second: compile, bf16, foreach/fused, vocab padding
"""

import argparse
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import torch

from llmcourse.course import COURSE_SETTINGS, course_tokenizer
from llmcourse.data import create_dataloader, load_shakespeare
from llmcourse.model import GPTModel, count_parameters
from llmcourse.muon import MuonWithAdamW
from llmcourse.runtime import set_seed
from llmcourse.train import batch_loss, configure_optimizer, evaluate_bits_per_byte, train

RESULTS = Path(__file__).parent / "results" / "recipe_ablation.json"

# Each step: (name, what it changes). A step is tried on top of every change kept so far and kept
# only if it lowers the mean validation bits per byte; "optimizer" and "data" change the training.
STEPS = [
    ("GPT-2 recipe", {}),
    ("+ rotary positions", {"model": {"positions": "rotary"}}),
    ("+ RMSNorm", {"model": {"norm": "rms"}}),
    ("+ SwiGLU", {"model": {"ff": "swiglu"}}),
    ("+ no biases", {"model": {"bias": False}}),
    ("+ QK-norm", {"model": {"qk_norm": True}}),
    ("+ untied head", {"model": {"tie_weights": False}}),
]
MUON_LRS = (0.01, 0.02, 0.04)  # Muon's step: the best of these on seed 0, then confirmed on every seed
BATCH_CONTEXT = ((16, 128), (8, 256), (4, 256))  # tried at Muon's speed, one seed each, then confirmed


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
    if "muon_lr" in total["optimizer"]:
        optimizer = MuonWithAdamW(model, settings.max_lr, total["optimizer"]["muon_lr"], settings.weight_decay)
    else:
        optimizer = configure_optimizer(model, settings.max_lr, settings.weight_decay)
    return model, optimizer, data["batch_size"], data["context_length"]


def run(total: dict, seed: int, budget: float, train_ids: list[int], val_ids: list[int], val_bytes: int,
        vocab_size: int) -> dict:
    """Train one recipe for `budget` CPU seconds; its validation bits per byte and speed."""
    settings = COURSE_SETTINGS
    model, optimizer, batch_size, context_length = build(total, vocab_size, seed)
    lr = settings.max_lr
    loader = create_dataloader(train_ids, batch_size, context_length, seed=seed)
    history = train(model, optimizer, loader, None, max_steps=10**9, max_lr=lr, min_lr=lr / 10,
                    warmup_steps=settings.warmup_steps, grad_clip=settings.grad_clip, eval_every=10**9,
                    time_budget=budget, seed=seed, clock=time.process_time, progress=False)
    bpb = evaluate_bits_per_byte(model, val_ids, val_bytes, batch_size=32)
    return {"seed": seed, "val_bits_per_byte": round(bpb, 4), "steps": history.steps[-1],
            "tokens": history.tokens_seen[-1], "cpu_seconds": round(history.seconds, 1),
            "tokens_per_cpu_second": round(history.tokens_seen[-1] / history.seconds),
            "parameters": count_parameters(model), "curve_tokens": history.tokens_seen[::20],
            "curve_loss": [round(x, 4) for x in history.train_loss[::20]]}


def ablation(args: argparse.Namespace) -> None:
    tokenizer = course_tokenizer()
    train_text, val_text = load_shakespeare("train"), load_shakespeare("val")
    train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
    val_bytes = len(val_text.encode("utf-8"))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() and not args.fresh else {}
    runs = results.setdefault("runs", {})
    results["budget_cpu_seconds"] = args.budget
    results["seeds"] = args.seeds

    def score(name: str, total: dict, seeds: range) -> float:
        """Mean validation bits per byte of `total` over `seeds` (runs already in the file are reused)."""
        for seed in seeds:
            key = f"{name} | seed {seed}"
            if runs.get(key, {}).get("recipe") == total:
                continue
            started = time.time()
            result = run(total, seed, args.budget, train_ids, val_ids, val_bytes, tokenizer.vocab_size)
            runs[key] = {"name": name, "recipe": total, **result}
            print(f"{name:32s} seed {seed}: {result['val_bits_per_byte']:.4f} bits/byte, "
                  f"{result['tokens_per_cpu_second']:,} tokens/CPU s, {result['steps']} steps "
                  f"({time.time() - started:.0f} s wall, load {os.getloadavg()[0]:.1f})", flush=True)
            RESULTS.write_text(json.dumps(results, indent=1))
        return sum(runs[f"{name} | seed {seed}"]["val_bits_per_byte"] for seed in seeds) / len(seeds)

    all_seeds = range(args.seeds)
    kept, best, decisions = combine({}, {}), math.inf, []

    def consider(name: str, total: dict) -> None:
        nonlocal kept, best
        mean = score(name, total, all_seeds)
        keep = mean < best
        decisions.append({"step": name, "val_bits_per_byte": round(mean, 4), "kept": keep})
        print(f"{name}: mean {mean:.4f} -> {'kept' if keep else 'dropped'}", flush=True)
        if keep:
            kept, best = total, mean

    for name, change in STEPS:
        consider(name, combine(kept, change))
    score("ReLU² instead of SwiGLU", combine(kept, {"model": {"ff": "relu2"}}), range(1))  # a first look
    # Muon: choose its learning rate on seed 0, then score the chosen one on every seed.
    candidates = {f"Muon lr {lr:g}": combine(kept, {"optimizer": {"muon_lr": lr}}) for lr in MUON_LRS}
    chosen = min(candidates, key=lambda name: score(name, candidates[name], range(1)))
    consider(chosen, candidates[chosen])
    candidates = {f"batch {b}, context {c}": combine(kept, {"data": {"batch_size": b, "context_length": c}})
                  for b, c in BATCH_CONTEXT}
    chosen = min(candidates, key=lambda name: score(name, candidates[name], range(1)))
    consider(chosen, candidates[chosen])
    # ReLU² beat SwiGLU in its first look (seed 0, before Muon), so it gets a full try on the final recipe.
    consider("ReLU² instead of SwiGLU, with Muon", combine(kept, {"model": {"ff": "relu2"}}))
    results["decisions"] = decisions
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
    parser.add_argument("--budget", type=float, default=45.0, help="CPU seconds per run (default: 45)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds for each step of the path (default: 2)")
    parser.add_argument("--fresh", action="store_true", help="ignore results already in the file")
    parser.add_argument("--speed", action="store_true", help="measure the CPU speed tricks instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"1 thread, load average {os.getloadavg()[0]:.2f} at start")
    speed(args) if args.speed else ablation(args)


if __name__ == "__main__":
    main()
