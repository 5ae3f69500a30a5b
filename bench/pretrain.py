"""Benchmark: a character-level "baby GPT", the course GPT, and the course GPT with today's recipe, same budget.

All three train on the 26 training plays for the same time budget (3 minutes each by default, wall
clock, or CPU time of one thread with --cpu-time) with warmup then cosine decay stretched to the
budget and gradient clipping. The baby GPT and the course GPT use AdamW; the modern recipe is notebook
5G's (`llmcourse.course.MODERN_RECIPE`: rotary positions, RMSNorm, SwiGLU and an untied head, with Muon
for the blocks' matrices; 5G also tried no biases and QK-norm and kept neither). All are scored on the
6 test plays in bits per byte, which does not depend on the tokenizer. (Nothing here chooses a setting:
the course settings were chosen on the validation plays by bench/sweep_course_settings.py, the modern
recipe by bench/recipe.py.) Usage:

    python bench/pretrain.py                 # 3 minutes per model
    python bench/pretrain.py --budget 30     # a quick look
    python bench/pretrain.py --cpu-time      # on a busy machine: 3 CPU minutes of one thread each
"""

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from llmcourse.course import COURSE_SETTINGS, MODERN_RECIPE, modern_model_config
from llmcourse.data import create_dataloader, load_shakespeare
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
        clock: Callable[[], float], muon_lr: float | None = None) -> dict:
    """Train one model for `budget` seconds (AdamW, or Muon + AdamW with `muon_lr`); score it on the test plays."""
    settings = COURSE_SETTINGS
    set_seed(settings.seed)
    model = GPTModel(config).to(device)
    if muon_lr is None:
        optimizer = configure_optimizer(model, settings.max_lr, settings.weight_decay)
    else:
        optimizer = MuonWithAdamW(model, settings.max_lr, muon_lr, settings.weight_decay)
    train_loader = create_dataloader(train_ids, batch_size, config.context_length, seed=settings.seed)
    val_loader = spread_windows_loader(val_ids, settings.eval_windows, config.context_length, batch_size)
    history = train(model, optimizer, train_loader, val_loader, max_steps=10**9, max_lr=settings.max_lr,
                    min_lr=settings.min_lr, warmup_steps=settings.warmup_steps, grad_clip=settings.grad_clip,
                    eval_every=10**9, time_budget=budget, seed=settings.seed, clock=clock)
    bpb = evaluate_bits_per_byte(model, test_ids, test_bytes, batch_size=32)
    return {"model": name, "parameters": count_parameters(model), "steps": history.steps[-1],
            "tokens": history.tokens_seen[-1], "seconds": history.seconds, "bits per byte": bpb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=180.0, help="training seconds per model (default: 180)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="budget CPU seconds of one thread instead of wall-clock seconds: a fair comparison "
                             "when other programs share the machine")
    args = parser.parse_args()
    device = get_device() if args.device == "auto" else torch.device(args.device)
    clock = time.perf_counter
    if args.cpu_time:
        torch.set_num_threads(1)
        clock = time.process_time
    load_at_start = os.getloadavg()[0]
    print(f"device {device}, {torch.get_num_threads()} threads, budget {args.budget:.0f} "
          f"{'CPU' if args.cpu_time else 'wall-clock'} seconds per model, load average {load_at_start:.2f} at start")

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
    results = [
        run(f"baby GPT, {len(characters)} characters", baby_config, BABY_GPT["batch_size"], char_train, char_val,
            char_test, test_bytes, args.budget, device, clock),
        run(f"course GPT, BPE {tokenizer.vocab_size}", course_config, COURSE_SETTINGS.batch_size, bpe_train,
            bpe_val, bpe_test, test_bytes, args.budget, device, clock),
        run("course GPT, modern recipe", modern_model_config(tokenizer.vocab_size), MODERN_RECIPE["batch_size"],
            bpe_train, bpe_val, bpe_test, test_bytes, args.budget, device, clock, muon_lr=MODERN_RECIPE["muon_lr"]),
    ]
    print(f"\n{'model':28s} {'parameters':>10s} {'steps':>6s} {'tokens':>10s} {'seconds':>7s} {'bits/byte':>9s}")
    for r in results:
        print(f"{r['model']:28s} {r['parameters']:>10,d} {r['steps']:>6d} {r['tokens']:>10,d} "
              f"{r['seconds']:>7.1f} {r['bits per byte']:>9.3f}")
    baby = results[0]["bits per byte"]
    for r in results[1:]:
        print(f"{r['model']} / baby GPT bits per byte on the test plays: {r['bits per byte'] / baby:.3f}")
    load_at_end = os.getloadavg()[0]
    print(f"load average {load_at_end:.2f} at the end")
    RESULTS.write_text(json.dumps({
        "budget_seconds": args.budget, "clock": "CPU time, 1 thread" if args.cpu_time else "wall clock",
        "threads": torch.get_num_threads(), "load_average_start": round(load_at_start, 2),
        "load_average_end": round(load_at_end, 2),
        "models": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in results],
    }, indent=1))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
