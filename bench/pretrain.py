"""Benchmark: a character-level "baby GPT", the course GPT, and the course GPT with today's recipe, same budget.

All three train on the 26 training plays for the same budget, 3 CPU minutes of one pinned thread
each by default (the course's experiment protocol: the budget means the same on a busy machine), with
warmup then cosine decay stretched to the budget and gradient clipping, once per seed. The baby GPT and
the course GPT use AdamW; the modern recipe is the one notebook 5G's ablation kept
(`llmcourse.course.MODERN_RECIPE`). All are scored on the 6 test plays in bits per byte, which does not
depend on the tokenizer, and compared with `llmcourse.experiment.compare`. (Nothing here chooses a
setting: the course settings were chosen on the validation plays by bench/sweep_course_settings.py, the
modern recipe by bench/recipe.py.) Usage:

    python bench/pretrain.py                 # 3 CPU minutes per model and seed: about half an hour
    python bench/pretrain.py --budget 30 --seeds 1   # a quick look
    python bench/pretrain.py --wall-clock    # wall-clock seconds with every thread (on an idle machine)
"""

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from llmcourse.course import COURSE_SETTINGS, MODERN_RECIPE, modern_model_config
from llmcourse.data import create_dataloader, load_shakespeare
from llmcourse.experiment import comparison_record
from llmcourse.model import GPTConfig, GPTModel, count_parameters
from llmcourse.muon import MuonWithAdamW
from llmcourse.runtime import get_device, set_seed
from llmcourse.tokenizer import BPETokenizer
from llmcourse.train import configure_optimizer, evaluate_bits_per_byte, spread_windows_loader, train

RESULTS = Path(__file__).parent / "results" / "pretrain.json"

# The classic character-level "baby GPT": 4 layers, 4 heads, 128 dimensions, 64 characters, batch 12.
BABY_GPT = dict(n_layers=4, n_heads=4, d_model=128, context_length=64, batch_size=12)


def run(name: str, config: GPTConfig, batch_size: int, train_ids: list[int], val_ids: list[int],
        test_ids: list[int], test_bytes: int, budget: float, device: torch.device,
        clock: Callable[[], float], seed: int, muon_lr: float | None = None,
        max_lr: float = COURSE_SETTINGS.max_lr) -> dict:
    """Train one model for `budget` seconds (AdamW, or Muon + AdamW with `muon_lr`); score it on the test plays."""
    settings = COURSE_SETTINGS
    set_seed(seed)
    model = GPTModel(config).to(device)
    if muon_lr is None:
        optimizer = configure_optimizer(model, max_lr, settings.weight_decay)
    else:
        optimizer = MuonWithAdamW(model, max_lr, muon_lr, settings.weight_decay)
    train_loader = create_dataloader(train_ids, batch_size, config.context_length, seed=seed)
    val_loader = spread_windows_loader(val_ids, settings.eval_windows, config.context_length, batch_size)
    history = train(model, optimizer, train_loader, val_loader, max_steps=10**9, max_lr=max_lr,
                    min_lr=max_lr / 10, warmup_steps=settings.warmup_steps, grad_clip=settings.grad_clip,
                    eval_every=10**9, time_budget=budget, seed=seed, clock=clock, progress=False)
    bpb = evaluate_bits_per_byte(model, test_ids, test_bytes, batch_size=32)
    print(f"{name:28s} seed {seed}: {history.steps[-1]:5d} steps, {bpb:.4f} bits per byte", flush=True)
    return {"model": name, "parameters": count_parameters(model), "seed": seed, "steps": history.steps[-1],
            "tokens": history.tokens_seen[-1], "seconds": round(history.seconds, 1), "bits per byte": round(bpb, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=180.0, help="training seconds per model (default: 180)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per model (default: 3)")
    parser.add_argument("--wall-clock", action="store_true",
                        help="budget wall-clock seconds with every thread instead of CPU seconds of one thread")
    args = parser.parse_args()
    device = get_device() if args.device == "auto" else torch.device(args.device)
    clock = time.perf_counter
    if not args.wall_clock:
        torch.set_num_threads(1)
        clock = time.process_time
    load_at_start = os.getloadavg()[0]
    print(f"device {device}, {torch.get_num_threads()} threads, budget {args.budget:.0f} "
          f"{'wall-clock' if args.wall_clock else 'CPU'} seconds per model, load average {load_at_start:.2f} at start")

    train_text, val_text, test_text = (load_shakespeare(split) for split in ("train", "val", "test"))
    test_bytes = len(test_text.encode("utf-8"))
    started = time.perf_counter()
    tokenizer = BPETokenizer.train(train_text, COURSE_SETTINGS.vocab_size)
    bpe_train, bpe_val, bpe_test = (tokenizer.encode(text) for text in (train_text, val_text, test_text))
    print(f"BPE tokenizer ({tokenizer.vocab_size} tokens) trained and applied in {time.perf_counter() - started:.1f} s "
          "(not counted in the budget)")
    characters = sorted(set(train_text))
    char_to_id = {ch: i for i, ch in enumerate(characters)}
    char_train, char_val, char_test = ([char_to_id[ch] for ch in text] for text in (train_text, val_text, test_text))

    course_config = COURSE_SETTINGS.model_config()
    baby_config = GPTConfig(vocab_size=len(characters), dropout=0.0,
                            **{k: v for k, v in BABY_GPT.items() if k != "batch_size"})
    modern = dict(muon_lr=MODERN_RECIPE["muon_lr"], max_lr=MODERN_RECIPE["max_lr"])
    models = [
        (f"baby GPT, {len(characters)} characters", baby_config, BABY_GPT["batch_size"], char_train, char_val,
         char_test, {}),
        (f"course GPT, BPE {tokenizer.vocab_size}", course_config, COURSE_SETTINGS.batch_size, bpe_train, bpe_val,
         bpe_test, {}),
        ("course GPT, modern recipe", modern_model_config(tokenizer.vocab_size), MODERN_RECIPE["batch_size"],
         bpe_train, bpe_val, bpe_test, modern),
    ]
    results = []
    for name, config, batch_size, train_ids, val_ids, test_ids, options in models:
        runs = [run(name, config, batch_size, train_ids, val_ids, test_ids, test_bytes, args.budget, device, clock,
                    seed, **options) for seed in range(args.seeds)]
        results.append({"model": name, "parameters": runs[0]["parameters"],
                        "test_bits_per_byte": [r["bits per byte"] for r in runs], "runs": runs})
    print(f"\n{'model':28s} {'parameters':>10s} {'steps':>6s} {'bits/byte':>9s}")
    for r in results:
        print(f"{r['model']:28s} {r['parameters']:>10,d} {r['runs'][0]['steps']:>6d} "
              f"{statistics.mean(r['test_bits_per_byte']):>9.3f}")
    baby = statistics.mean(results[0]["test_bits_per_byte"])
    for r in results[1:]:
        print(f"{r['model']} / baby GPT bits per byte on the test plays: "
              f"{statistics.mean(r['test_bits_per_byte']) / baby:.3f}")
    comparisons = []
    if args.seeds >= 3:
        for a, b in ((0, 1), (1, 2)):
            comparisons.append(comparison_record(results[a]["model"], results[a]["test_bits_per_byte"],
                                                 results[b]["model"], results[b]["test_bits_per_byte"]))
            print(f"{results[a]['model']} - {results[b]['model']}: {comparisons[-1]['difference']:+.4f} ± "
                  f"{comparisons[-1]['standard_error']:.4f} ({comparisons[-1]['verdict']})")
    load_at_end = os.getloadavg()[0]
    print(f"load average {load_at_end:.2f} at the end")
    RESULTS.write_text(json.dumps({
        "about": "bench/pretrain.py: three GPTs at the same budget, bits per byte on the test plays",
        "budget_seconds": args.budget, "clock": "wall clock" if args.wall_clock else "CPU time, 1 thread",
        "threads": torch.get_num_threads(), "load_average_start": round(load_at_start, 2),
        "load_average_end": round(load_at_end, 2), "choices": [], "comparisons": comparisons,
        "models": results}, indent=1) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
