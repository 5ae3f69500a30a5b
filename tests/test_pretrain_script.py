"""Tests of scripts/pretrain.py: two CPU processes under torchrun, and a single-process run resumed."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from llmcourse.data import load_shakespeare
from llmcourse.runtime import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "pretrain.py"
TINY = ["--preset", "tiny", "--vocab-size", "300", "--warmup-steps", "5", "--eval-every", "10",
        "--eval-windows", "32", "--batch-size", "8", "--device", "cpu", "--no-progress"]


@pytest.fixture
def texts(tmp_path):
    (tmp_path / "train.txt").write_text(load_shakespeare("train")[:40_000], encoding="utf-8")
    (tmp_path / "val.txt").write_text(load_shakespeare("val")[:6_000], encoding="utf-8")
    return ["--train-text", str(tmp_path / "train.txt"), "--val-text", str(tmp_path / "val.txt")]


def launch(args: list[str], torchrun_processes: int = 0) -> str:
    launcher = [sys.executable]
    if torchrun_processes:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun_processes}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(launcher + [str(SCRIPT)] + args, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def read_log(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_two_processes_end_with_identical_weights_and_a_lower_loss(tmp_path, texts):
    out = launch(texts + TINY + ["--max-steps", "40", "--out-dir", str(tmp_path / "run")], torchrun_processes=2)
    log = read_log(tmp_path / "run" / "log.jsonl")
    start, end = log[0], log[-1]
    assert start["world_size"] == 2 and end["event"] == "end"
    first, second = end["param_sha256"]
    assert first == second
    val_losses = [record["val_loss"] for record in log if record["event"] == "eval"]
    assert val_losses[-1] < 0.9 * val_losses[0]
    assert "bits per byte" in out


def test_single_process_run_resumes_from_its_checkpoint(tmp_path, texts):
    run = ["--out-dir", str(tmp_path / "run")]
    launch(texts + TINY + run + ["--max-steps", "20"])
    launch(texts + TINY + run + ["--max-steps", "40", "--resume"])
    log = read_log(tmp_path / "run" / "log.jsonl")
    starts = [record for record in log if record["event"] == "start"]
    ends = [record for record in log if record["event"] == "end"]
    assert [s["start_step"] for s in starts] == [0, 20] and [e["step"] for e in ends] == [20, 40]
    steps = [record["step"] for record in log if record["event"] == "step"]
    assert steps == list(range(1, 41))
    assert ends[1]["val_loss"] < ends[0]["val_loss"]


def load_script():
    spec = importlib.util.spec_from_file_location("pretrain_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arguments_that_cannot_work_are_refused_with_a_clear_message(capsys):
    script = load_script()
    with pytest.raises(SystemExit):
        script.parse_args(["--train-text", "a.txt", "--max-steps", "5"])
    assert "--train-text needs --val-text too" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.parse_args([])
    assert "give --max-steps, --time-budget, or both" in capsys.readouterr().err


def test_flags_override_the_preset():
    script = load_script()
    config = script.model_config(script.parse_args(["--preset", "tiny", "--d-model", "96", "--max-steps", "1"]), 300)
    assert (config.n_layers, config.d_model, config.n_heads, config.context_length, config.vocab_size) == \
        (2, 96, 4, 32, 300)
