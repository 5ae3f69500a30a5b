"""Retrain the course's published model from the command on its card, and compare (a check, not a test).

`data/course_gpt/card.json` records the command that trained and published the model. This script runs that
command again, with its --out-dir and --publish folders moved to a scratch folder, then compares the new
model card with the committed one: the validation and test bits per byte, the time taken, and whether the
weights came out bit for bit the same (they can only on the same kind of CPU with the same thread count:
sums in another order round differently). The comparison is written to
bench/results/reproduce_published.json. About 25 minutes on one core. Usage:

    python bench/reproduce_published.py
"""

import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from llmcourse.course import published_model
from llmcourse.runtime import REPO_ROOT

RESULTS = Path(__file__).parent / "results" / "reproduce_published.json"


def with_flag(args: list[str], flag: str, value: str) -> list[str]:
    """`args` with the value after `flag` replaced."""
    at = args.index(flag)
    return args[:at + 1] + [value] + args[at + 2:]


def main() -> None:
    _, _, card = published_model("cpu")
    command = shlex.split(card["command"])
    with tempfile.TemporaryDirectory() as scratch:
        args = with_flag(with_flag(command[2:], "--out-dir", f"{scratch}/run"), "--publish", f"{scratch}/published")
        print("running:", shlex.join(["python", command[1], *args]), flush=True)
        subprocess.run([sys.executable, command[1], *args], cwd=REPO_ROOT, check=True)
        again = json.loads((Path(scratch) / "published" / "card.json").read_text())
    keys = ("machine", "wall_seconds", "tokens_seen", "val_bits_per_byte", "test_bits_per_byte")
    weights = "weights/model.safetensors"
    results = {"about": "bench/reproduce_published.py: the published model retrained from its card's command",
               "choices": [], "comparisons": [], "command": card["command"],
               "published": {key: card[key] for key in keys}, "retrained": {key: again[key] for key in keys},
               "test_difference": round(again["test_bits_per_byte"] - card["test_bits_per_byte"], 4),
               "identical_weights": again["files"][weights] == card["files"][weights]}
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
