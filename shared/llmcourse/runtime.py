"""Where the course runs: device and thread-count choice, seeding, and the repository's data and cache folders."""

import os
import random
from pathlib import Path

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
