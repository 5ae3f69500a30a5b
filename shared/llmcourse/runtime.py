"""Where the course runs: device choice, seeding, and the repository's data and cache folders."""

import os
import random
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("LLMCOURSE_DATA", REPO_ROOT / "data"))
CACHE_DIR = Path(os.environ.get("LLMCOURSE_CACHE", REPO_ROOT / ".cache"))


def get_device() -> torch.device:
    """The device the course uses: $LLMCOURSE_DEVICE if set (tests pin it to "cpu"), else CUDA, MPS or CPU."""
    requested = os.environ.get("LLMCOURSE_DEVICE")
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch so that a notebook gives the same numbers on every run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
