"""Test-run settings shared by the unit tests and the notebooks (nbval starts their kernels).

- The device: the course picks it with `llmcourse.runtime.get_device()`, which honours LLMCOURSE_DEVICE;
  pinning the CPU here makes every notebook kernel started by this run use it, so the stored outputs
  compare equal on machines with and without a GPU.
- Threads: pyproject.toml runs two pytest-xdist workers. Each gets an equal share of the cores for
  PyTorch (one each on two cores), so the two never fight over a core.
- nbval's wait for a cell's output: after a cell finishes, nbval reads its output messages and gives up
  if none arrives for 5 s. A kernel on a busy machine (another process using the memory or the cores)
  can send them later than that, and the cell then fails although it ran; we wait a minute instead.
- Order: the notebook that first needs the course GPT runs first, so its three minutes of pretraining
  overlap with the unit tests and the chapters that need no trained model (chapters 2 to 4) on the other
  worker. `llmcourse.runtime.cache_lock` makes anyone else who needs the model wait for it, not rebuild it.
"""

import os

os.environ["LLMCOURSE_DEVICE"] = "cpu"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("LLMCOURSE_THREADS", str(max(1, cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

OUTPUT_TIMEOUT_SECONDS = 60

# Run order by path prefix (the rest keeps its place after these): the GPT is pretrained first.
RUN_FIRST = ["ch01_intro/01_", "tests/", "ch02_", "ch03_", "ch04_"]


def _rank(path: str) -> int:
    return next((i for i, prefix in enumerate(RUN_FIRST) if path.startswith(prefix)), len(RUN_FIRST))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if hasattr(item, "output_timeout"):  # an nbval notebook cell
            item.output_timeout = OUTPUT_TIMEOUT_SECONDS
    items.sort(key=lambda item: _rank(item.nodeid))
