"""Test-run settings shared by the unit tests and the notebooks (nbval starts their kernels).

The course picks its device with `llmcourse.device.get_device()`, which honours LLMCOURSE_DEVICE;
pinning it here makes every notebook kernel started by this pytest run use the CPU, so the stored
outputs compare equal on machines with and without a GPU.
"""

import os

os.environ["LLMCOURSE_DEVICE"] = "cpu"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
