"""Where the course runs: device and thread-count choice, seeding, and the repository's data and cache folders."""

import os
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("LLMCOURSE_DATA", REPO_ROOT / "data"))
CACHE_DIR = Path(os.environ.get("LLMCOURSE_CACHE", REPO_ROOT / ".cache"))


def get_device(requested: str | None = None) -> torch.device:
    """The device the course uses: `requested` ("cpu", "cuda", "cuda:1", "mps", ...) if given, else
    $LLMCOURSE_DEVICE if set (tests pin it to "cpu"), else CUDA, MPS or CPU, whichever is available.

    A requested CUDA or MPS device that this machine or PyTorch build lacks raises a ValueError.
    """
    source = "device" if requested else "LLMCOURSE_DEVICE"
    requested = requested or os.environ.get("LLMCOURSE_DEVICE")
    if not requested:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ValueError(f"{source}={requested!r} is not a device name; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        build = "this PyTorch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ValueError(f"{source}={requested!r}, but {build}; use cpu (or leave the device unset to pick "
                         "the best available)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{source}={requested!r}, but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{source}={requested!r}, but Apple MPS is not available here; use cpu")
    return device


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so that a notebook gives the same numbers on every run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def recommended_threads() -> int:
    """CPU threads for PyTorch: $LLMCOURSE_THREADS if set, else one fewer than the cores this process may use.

    PyTorch's default (one thread per core) collapses when another program takes a core: every
    parallel region waits for its slowest thread. Leaving one core free costs a little speed on an
    idle machine and avoids that collapse; bench/threads.py measures both.
    """
    requested = os.environ.get("LLMCOURSE_THREADS")
    if requested:
        if not requested.isdigit() or int(requested) < 1:
            raise ValueError(f"LLMCOURSE_THREADS must be a positive integer, got {requested!r}")
        return int(requested)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(torch.get_num_threads(), cores - 1))


def use_recommended_threads() -> int:
    """Set PyTorch's intra-op thread count to `recommended_threads()` and return it."""
    threads = recommended_threads()
    torch.set_num_threads(threads)
    return threads


@contextmanager
def threads(count: int) -> Iterator[None]:
    """Run the body with PyTorch on `count` intra-op threads, then restore the previous count.

    Budgets in CPU seconds (`time.process_time`) count every thread's time, so a run budgeted that way
    pins one thread: the same budget then buys the same number of updates on a 2-core or a 16-core machine.
    """
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"threads needs a positive whole number of threads, got {count!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def cache_lock(artifact: str | Path, timeout: float = 1800.0) -> Iterator[None]:
    """Hold the lock file `<artifact>.lock` while a cached artifact (a folder or file) is read, built or saved.

    Two notebooks (or two test workers) that both need the course model then never build it at once:
    the second waits for the first and loads what it saved. Waiting longer than `timeout` seconds raises
    a TimeoutError that names the lock file.
    """
    artifact = Path(artifact)
    artifact.parent.mkdir(parents=True, exist_ok=True)
    path = artifact.parent / f"{artifact.name}.lock"
    lock = FileLock(str(path), timeout=timeout)
    try:
        lock.acquire()
    except TimeoutError:
        raise TimeoutError(f"waited {timeout:.0f} s for {path}: another process is still building "
                           f"{artifact.name}") from None
    try:
        yield
    finally:
        lock.release()
