"""Benchmark: training speed of the course GPT by thread count, on an idle machine and beside a busy one.

A learner's laptop always runs something else. PyTorch's default uses one thread per core, and each
parallel region waits for its slowest thread, so one busy background program can slow every step
to a crawl. This script trains the course model for a fixed number of updates with 1, 2, ... threads,
first alone and then beside `--busy` processes that spin on a core each, and prints tokens per
second side by side with the thread count `llmcourse.runtime.recommended_threads()` picks.

    python bench/threads.py               # 30 updates per measurement, one busy process
    python bench/threads.py --steps 60 --busy 2
"""

import argparse
import multiprocessing as mp
import os
import time

import torch

from llmcourse.course import COURSE_SETTINGS
from llmcourse.model import GPTModel
from llmcourse.runtime import recommended_threads, set_seed
from llmcourse.train import configure_optimizer


def spin(stop: mp.Event) -> None:
    """Keep one core busy until told to stop (a stand-in for a browser, a build, a video call)."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def tokens_per_second(threads: int, steps: int) -> float:
    """Tokens per second of `steps` AdamW updates of the course model with `threads` threads."""
    torch.set_num_threads(threads)
    settings = COURSE_SETTINGS
    set_seed(0)
    model = GPTModel(settings.model_config())
    optimizer = configure_optimizer(model, settings.max_lr, settings.weight_decay)
    inputs = torch.randint(settings.vocab_size, (settings.batch_size, settings.context_length))
    targets = torch.randint(settings.vocab_size, (settings.batch_size, settings.context_length))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):  # warm up the allocator and kernels
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * inputs.numel() / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="updates per measurement (default: 30)")
    parser.add_argument("--busy", type=int, default=1, help="busy background processes (default: 1)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    thread_counts = sorted({1, 2, cores, recommended_threads()})
    print(f"{cores} cores, torch {torch.__version__}, recommended_threads() = {recommended_threads()}, "
          f"load average {os.getloadavg()[0]:.2f} at start")

    results = {}
    for label, busy in [("idle", 0), (f"{args.busy} busy", args.busy)]:
        stop = mp.Event()
        spinners = [mp.Process(target=spin, args=(stop,), daemon=True) for _ in range(busy)]
        for p in spinners:
            p.start()
        time.sleep(0.5 if busy else 0)
        try:
            for threads in thread_counts:
                results[label, threads] = tokens_per_second(threads, args.steps)
        finally:
            stop.set()
            for p in spinners:
                p.join()

    print(f"\n{'threads':>7s} {'idle tok/s':>11s} {args.busy} busy tok/s {'busy / idle':>11s}")
    for threads in thread_counts:
        idle, busy = results["idle", threads], results[f"{args.busy} busy", threads]
        mark = "  <- recommended" if threads == recommended_threads() else ""
        print(f"{threads:>7d} {idle:>11,.0f} {busy:>12,.0f} {busy / idle:>11.2f}{mark}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
