"""Benchmark: how validation loss falls with model size and compute (the isoFLOP sweep of chapter 5's scaling).

Eight sizes of the modern recipe (`llmcourse.course.MODERN_RECIPE`: rotary positions, SwiGLU, an untied head,
Muon + AdamW at the recipe's rates, batches of 4 windows of 128 tokens), from 14 thousand to 2.7 million
non-embedding parameters, six of them at each of three compute budgets C = 6 N D, with D the training tokens and N
the parameters that multiply: all but the input embedding, which is a table lookup (the untied output head
is a matrix product, and counts). PyTorch's FLOP counter agrees with 6 N per token to 1 % on the course
model; attention's scores add 12 x layers x context x width per token, which the budget leaves out, as
Kaplan et al. (2020) and Hoffmann et al. (2022) do. A budget of tokens means the same on every machine (the
course's experiment protocol), so each run's token count is D = C / (6 N), whatever the CPU; each is scored
on the validation plays in bits per byte. The training plays hold about 1.3 million
tokens: a run with more tokens repeats them (its "epochs" are recorded).

With --repeats it measures what repeating data costs instead: one size (2 layers, width 48) trained on the same
number of tokens, one epoch of the training plays, drawn from all of them or from a half, a quarter ... a
32nd of them repeated 2, 4 ... 32 times (every k-th chunk of 8,192 tokens, so every play keeps its share),
three seeds each, written to bench/results/scaling_repeats.json.

With --fit it trains nothing: it reads the sweep's file, records each budget's best size as a choice (which
must lie inside that budget's sizes), fits N_opt ~ C^a and D_opt ~ C^b on the parabolas' optima and the loss
law L(N, D) on every run (with bootstrap standard errors), and predicts the validation bits per byte of the
course's published model (PUBLISHED below) before it is trained, into bench/results/scaling_law.json.

Every finished run is written to its results file at once, and a later call skips the runs already
there, so the sweep can be stopped and resumed. Usage:

    LLMCOURSE_THREADS=1 python bench/scaling.py                 # the whole sweep, about an hour on one core
    LLMCOURSE_THREADS=1 python bench/scaling.py --budgets 1e12  # one budget
    LLMCOURSE_THREADS=1 python bench/scaling.py --repeats       # repeated data, about 20 minutes
    python bench/scaling.py --list                              # the sizes and the tokens each budget gives
    python bench/scaling.py --fit                               # the fits and the prediction, a minute
"""

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from llmcourse.course import COURSE_SETTINGS, MODERN_RECIPE, course_tokenizer, modern_model_config
from llmcourse.data import create_dataloader, load_shakespeare
from llmcourse.model import GPTConfig, GPTModel, count_parameters
from llmcourse.muon import MuonWithAdamW
from llmcourse.runtime import set_seed
from llmcourse.scaling import fit_loss_law, isoflop_optimum, power_law
from llmcourse.train import evaluate_bits_per_byte, train

RESULTS = Path(__file__).parent / "results" / "scaling.json"
REPEATS_RESULTS = Path(__file__).parent / "results" / "scaling_repeats.json"
LAW_RESULTS = Path(__file__).parent / "results" / "scaling_law.json"
# (layers, width, heads)
SIZES = ((2, 24, 2), (2, 32, 2), (2, 48, 2), (3, 64, 4), (4, 96, 4), (4, 128, 4), (5, 160, 5), (6, 192, 6))
# Training FLOPs (C = 6 N D) and the sizes tried at each: six around where the optimum lies, one size larger
# for each larger budget (a size far from the optimum costs time and shows little: the largest model would
# see 50 thousand tokens at 1e12, the smallest 26 million at 1e13).
BUDGETS = {1e12: SIZES[:6], 3e12: SIZES[1:7], 1e13: SIZES[2:]}

# The course's published model (scripts/pretrain.py --publish): about 30 minutes of a 2-core CPU, 3x the
# sweep's largest budget, at the course model's size, the size on the sizes' grid nearest the loss law's
# optimum for that budget.
PUBLISHED = {"budget_flops": 3e13, "size": (4, 96, 4)}

REPEATS = (1, 2, 4, 8, 16, 32)  # epochs over 1/k of the training tokens, the same number of tokens in all
REPEATS_SIZE = (2, 48, 2)
REPEATS_SEEDS = (0, 1, 2)


def size_config(n_layers: int, d_model: int, n_heads: int, vocab_size: int) -> GPTConfig:
    """The modern recipe's model at another depth and width."""
    return replace(modern_model_config(vocab_size), n_layers=n_layers, d_model=d_model, n_heads=n_heads)


def parameter_counts(config: GPTConfig) -> dict[str, int]:
    """Every parameter; those that multiply (all but the input embedding: the count in C = 6 N D); and those
    outside the input embedding and the output head (the "non-embedding" count of Kaplan et al.)."""
    with torch.device("meta"):
        model = GPTModel(config)
    total = count_parameters(model)
    lookup, head = model.tok_emb.weight.numel(), model.out_head.weight.numel()
    return {"parameters": total, "compute_parameters": total - lookup,
            "non_embedding_parameters": total - lookup - head}


def every_kth_chunk(token_ids: list[int], k: int, chunk: int = 8192) -> list[int]:
    """1/k of the tokens: every k-th chunk of `chunk` tokens, so that every play keeps its share."""
    chunks = [token_ids[i:i + chunk] for i in range(0, len(token_ids), chunk)]
    return [token for part in chunks[::k] for token in part]


def run(config: GPTConfig, budget: float, seed: int, train_ids: list[int], val_ids: list[int],
        val_bytes: int) -> dict:
    """Train one size for the tokens its budget allows; its validation bits per byte."""
    counts = parameter_counts(config)
    batch_size, context_length = MODERN_RECIPE["batch_size"], config.context_length
    steps = max(1, round(budget / (6 * counts["compute_parameters"]) / (batch_size * context_length)))
    set_seed(seed)
    model = GPTModel(config)
    optimizer = MuonWithAdamW(model, MODERN_RECIPE["max_lr"], MODERN_RECIPE["muon_lr"], COURSE_SETTINGS.weight_decay)
    loader = create_dataloader(train_ids, batch_size, context_length, seed=seed)
    started = time.process_time()
    history = train(model, optimizer, loader, None, max_steps=steps, max_lr=MODERN_RECIPE["max_lr"],
                    min_lr=MODERN_RECIPE["max_lr"] / 10, warmup_steps=min(COURSE_SETTINGS.warmup_steps, steps // 10),
                    grad_clip=COURSE_SETTINGS.grad_clip, eval_every=10**9, seed=seed, progress=False)
    cpu_seconds = time.process_time() - started
    tokens = history.tokens_seen[-1]
    return {"n_layers": config.n_layers, "d_model": config.d_model, "n_heads": config.n_heads, **counts,
            "budget_flops": budget, "seed": seed, "steps": steps, "tokens": tokens,
            "epochs": round(tokens / len(train_ids), 3), "cpu_seconds": round(cpu_seconds, 1),
            "val_bits_per_byte": round(evaluate_bits_per_byte(model, val_ids, val_bytes, batch_size=32), 4),
            "curve_tokens": history.tokens_seen[::25], "curve_loss": [round(x, 4) for x in history.train_loss[::25]]}


def repeated_data(tokenizer, train_ids: list[int], val_ids: list[int], val_bytes: int) -> None:
    """One size, one epoch's worth of tokens, from 1/k of the training tokens repeated k times."""
    config = size_config(*REPEATS_SIZE, tokenizer.vocab_size)
    budget = 6 * parameter_counts(config)["compute_parameters"] * len(train_ids)  # one epoch of all the plays
    results = json.loads(REPEATS_RESULTS.read_text()) if REPEATS_RESULTS.exists() else {
        "about": "bench/scaling.py --repeats: the same tokens from fewer plays' tokens, repeated; validation bits "
                 "per byte", "recipe": MODERN_RECIPE, "train_tokens": len(train_ids), "threads": 1, "choices": [],
        "comparisons": [], "runs": []}
    done = {(r["repeats"], r["seed"]) for r in results["runs"]}
    for repeats in REPEATS:
        for seed in REPEATS_SEEDS:
            if (repeats, seed) in done:
                continue
            unique = every_kth_chunk(train_ids, repeats)
            result = {"repeats": repeats, "unique_tokens": len(unique),
                      **run(config, budget, seed, unique, val_ids, val_bytes)}
            results["runs"].append(result)
            REPEATS_RESULTS.write_text(json.dumps(results, indent=1) + "\n")
            print(f"{len(unique) / 1e6:5.2f}M unique tokens, {result['epochs']:4.1f} epochs, seed {seed}: "
                  f"{result['val_bits_per_byte']:.4f} bits/byte  {result['cpu_seconds']:.0f} CPU s", flush=True)


def fit(tokenizer) -> None:
    """Each budget's best size, the power laws of the optima, the loss law, and the published model's prediction."""
    runs = json.loads(RESULTS.read_text())["runs"]
    budgets = sorted({r["budget_flops"] for r in runs})
    choices, optima = [], []
    for budget in budgets:
        at = sorted((r for r in runs if r["budget_flops"] == budget), key=lambda r: r["compute_parameters"])
        sizes, losses = [r["compute_parameters"] for r in at], [r["val_bits_per_byte"] for r in at]
        choices.append({"setting": f"multiplying parameters at {budget:.0e} FLOPs", "grid": sizes,
                        "scores": [-x for x in losses], "higher_score_is": "better (minus bits per byte)",
                        "chosen": sizes[losses.index(min(losses))], "hit_bound": None})
        n_opt = isoflop_optimum(sizes, losses)
        optima.append({"budget_flops": budget, "parameters": round(n_opt), "tokens": round(budget / (6 * n_opt))})
    n_law = power_law(budgets, [o["parameters"] for o in optima])
    d_law = power_law(budgets, [o["tokens"] for o in optima])
    law = fit_loss_law([r["compute_parameters"] for r in runs], [r["tokens"] for r in runs],
                       [r["val_bits_per_byte"] for r in runs], bootstrap=200)
    config = size_config(*PUBLISHED["size"], tokenizer.vocab_size)
    n = parameter_counts(config)["compute_parameters"]
    steps = round(PUBLISHED["budget_flops"] / (6 * n) / (MODERN_RECIPE["batch_size"] * config.context_length))
    d = steps * MODERN_RECIPE["batch_size"] * config.context_length
    law_n, law_d = law.optimum(PUBLISHED["budget_flops"])
    results = {"about": "bench/scaling.py --fit: fits on bench/results/scaling.json (validation bits per byte)",
               "choices": choices, "comparisons": [], "isoflop_optima": optima,
               "n_opt_exponent": round(n_law.exponent, 4), "n_opt_exponent_se": round(n_law.exponent_se, 4),
               "d_opt_exponent": round(d_law.exponent, 4), "d_opt_exponent_se": round(d_law.exponent_se, 4),
               "loss_law": {name: round(getattr(law, name), 4) for name in ("E", "A", "B", "alpha", "beta")},
               "loss_law_se": {name: round(value, 4) for name, value in law.se.items()},
               "published": {**PUBLISHED, "parameters": n, "steps": steps, "tokens": d,
                             "law_optimum_parameters": round(law_n), "law_optimum_tokens": round(law_d),
                             "predicted_val_bits_per_byte": round(law(n, d), 4)}}
    LAW_RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "choices"}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS),
                        help=f"training FLOPs, C = 6 N D, among {list(BUDGETS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", action="store_true", help="the repeated-data runs instead of the sweep")
    parser.add_argument("--list", action="store_true", help="print the sizes and each budget's tokens, train nothing")
    parser.add_argument("--fit", action="store_true",
                        help="fit the laws to the sweep's file and predict, train nothing")
    args = parser.parse_args()
    tokenizer = course_tokenizer()
    if not set(args.budgets) <= set(BUDGETS):
        parser.error(f"--budgets must be among {list(BUDGETS)}")
    if args.fit:
        fit(tokenizer)
        return
    if args.list:
        for size in SIZES:
            config = size_config(*size, tokenizer.vocab_size)
            counts = parameter_counts(config)
            tokens = [f"{budget / (6 * counts['compute_parameters']) / 1e6:6.2f}M" if size in BUDGETS[budget]
                      else "    -  " for budget in args.budgets]
            print(f"{config.n_layers} layers, d {config.d_model:3d}: {counts['parameters']:>9,} parameters, "
                  f"{counts['compute_parameters']:>9,} multiplying, {counts['non_embedding_parameters']:>9,} "
                  "non-embedding; tokens per budget:", *tokens)
        return
    torch.set_num_threads(1)
    train_text, val_text = load_shakespeare("train"), load_shakespeare("val")
    train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
    val_bytes = len(val_text.encode("utf-8"))
    if args.repeats:
        repeated_data(tokenizer, train_ids, val_ids, val_bytes)
        return
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {
        "about": "bench/scaling.py: the modern recipe at several sizes and compute budgets, validation bits per byte",
        "flops": "C = 6 N D, N the parameters that multiply (all but the input embedding), D training tokens",
        "recipe": MODERN_RECIPE, "train_tokens": len(train_ids), "threads": 1, "choices": [], "comparisons": [],
        "runs": []}
    done = {(r["n_layers"], r["d_model"], r["budget_flops"], r["seed"]) for r in results["runs"]}
    for budget in sorted(args.budgets):
        for config in (size_config(*size, tokenizer.vocab_size) for size in BUDGETS[budget]):
            if (config.n_layers, config.d_model, budget, args.seed) in done:
                continue
            result = run(config, budget, args.seed, train_ids, val_ids, val_bytes)
            results["runs"].append(result)
            RESULTS.write_text(json.dumps(results, indent=1) + "\n")
            print(f"C {budget:.0e}  {config.n_layers} x {config.d_model:3d}  {result['compute_parameters']:>9,} N  "
                  f"{result['tokens'] / 1e6:5.2f}M tokens ({result['epochs']:.1f} epochs)  "
                  f"{result['val_bits_per_byte']:.4f} bits/byte  {result['cpu_seconds']:.0f} CPU s", flush=True)


if __name__ == "__main__":
    main()
