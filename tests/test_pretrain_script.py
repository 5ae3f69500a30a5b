"""Tests of scripts/pretrain.py: two CPU processes under torchrun, resuming, signals, and refused inputs."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from llmcourse.checkpoint import load_checkpoint, save_checkpoint
from llmcourse.course import MODERN_RECIPE, published_model
from llmcourse.data import load_shakespeare
from llmcourse.model import GPTConfig, GPTModel
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
    """Run the script (under torchrun with that many CPU processes, if given) and return what it printed.

    Gloo's TCP transport, which carries the CPU processes' messages, has been seen to abort a process
    (SIGABRT, "terminate called without an active exception") on a busy machine, once in three full test
    runs, never in 14 runs alone. Such a crash, and only it, is run once more, over the same --out-dir.
    """
    launcher = [sys.executable]
    if torchrun_processes:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun_processes}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(2 if torchrun_processes else 1):
        result = subprocess.run(launcher + [str(SCRIPT)] + args, capture_output=True, text=True, env=env,
                                timeout=120)
        if result.returncode == 0 or "Signal 6 (SIGABRT)" not in result.stderr:
            break
        args = args + ["--overwrite"]
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


@pytest.mark.parametrize("flags, message", [
    (["--max-steps", "0"], "--max-steps: 0 is out of range; give an integer >= 1"),
    (["--max-steps", "5", "--grad-clip", "-1"], "--grad-clip: -1 is out of range; give a number >= 0"),
    (["--max-steps", "5", "--eval-every", "0"], "--eval-every: 0 is out of range; give an integer >= 1"),
    (["--max-steps", "5", "--dropout", "1"], "--dropout: 1 is out of range; give a number >= 0 and < 1"),
    (["--max-steps", "5", "--lr", "nan"], "--lr: nan is out of range; give a number > 0"),
    (["--max-steps", "2.5"], "--max-steps: '2.5' is not an integer; give an integer >= 1"),
    (["--time-budget", "0"], "--time-budget: 0 is out of range; give a number > 0"),
    (["--max-steps", "5", "--vocab-size", "100"], "--vocab-size: 100 is out of range; give an integer >= 257"),
    (["--max-steps", "5", "--min-lr", "0.1"], "--min-lr 0.1 is above --lr"),
    (["--max-steps", "5", "--device", "gpu"], "invalid choice: 'gpu'"),
    (["--max-steps", "5", "--seed", "-1"], "--seed: -1 is out of range; give an integer >= 0 and < 4294967296"),
    (["--max-steps", "5", "--seed", "4294967296"], "--seed: 4294967296 is out of range"),
    (["--max-steps", "5", "--prompt", ""], "--prompt: the prompt is empty; give at least one character"),
    (["--max-steps", "5", "--resume", "--overwrite"], "--resume continues the run in --out-dir, --overwrite"),
    (["--max-steps", "5", "--recipe", "modern", "--muon-lr", "0"], "--muon-lr: 0 is out of range; give a number > 0"),
    (["--max-steps", "5", "--recipe", "modern", "--muon-lr", "inf"], "--muon-lr: inf is out of range"),
    (["--max-steps", "5", "--muon-lr", "0.02"], "--muon-lr is Muon's learning rate, which only --recipe modern uses"),
    (["--max-steps", "5", "--recipe", "llama"], "invalid choice: 'llama'"),
    (["--max-steps", "5", "--publish", "out", "--tokenizer", "gpt2"], "--publish scores the model on the course's test"),
    (["--max-steps", "5", "--publish", "out", "--train-text", "a.txt", "--val-text", "b.txt"], "--publish scores"),
])
def test_flags_out_of_range_are_refused_with_what_is_right(capsys, flags, message):
    with pytest.raises(SystemExit):
        load_script().parse_args(flags)
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_refused_with_what_is_right(capsys):
    with pytest.raises(SystemExit):
        load_script().parse_args(["--max-steps", "5", "--device", "cuda"])
    assert "--device: device='cuda', but" in capsys.readouterr().err


def test_unwritable_output_folder_fails_before_training(tmp_path, texts, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(SystemExit):
        load_script().main(texts + TINY + ["--max-steps", "5", "--out-dir", str(tmp_path / "a_file" / "run")])
    assert f"cannot write to {tmp_path / 'a_file' / 'run'}" in capsys.readouterr().err


def test_failed_rerun_keeps_the_previous_log_and_names_the_bad_file(tmp_path, texts, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"event": "end"}\n')
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    bad = ["--train-text", str(tmp_path / "latin1.txt"), "--val-text", texts[3]]
    with pytest.raises(SystemExit):
        load_script().main(bad + TINY + ["--max-steps", "5", "--out-dir", str(run), "--overwrite"])
    assert f"{tmp_path / 'latin1.txt'} is not UTF-8 text (byte 0xe9 at offset 3)" in capsys.readouterr().err
    assert (run / "log.jsonl").read_text() == '{"event": "end"}\n'


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP")
                                                                         else []))
def test_a_signal_saves_the_run_and_resume_continues_it(tmp_path, texts, stop_signal):
    run = ["--out-dir", str(tmp_path / "run"), "--save-every", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, str(SCRIPT)] + texts + TINY + run + ["--max-steps", "100000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    log_path = tmp_path / "run" / "log.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if log_path.exists() and sum(1 for line in log_path.read_text().splitlines() if '"step"' in line) >= 3:
            break
        time.sleep(0.1)
    process.send_signal(stop_signal)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-3000:]
    assert f"stopped by {signal.Signals(stop_signal).name}" in stdout
    log = read_log(log_path)
    stopped_at = log[-1]["step"]
    assert log[-1]["event"] == "end" and {"event": "checkpoint", "step": stopped_at} == \
        {k: log[-2][k] for k in ("event", "step")}
    assert load_checkpoint(tmp_path / "run" / "checkpoint", "cpu").step == stopped_at

    if stop_signal == signal.SIGINT:  # resuming is the same after either signal; test it once
        launch(texts + TINY + run + ["--max-steps", str(stopped_at + 3), "--resume"])
        log = read_log(log_path)
        assert [r["start_step"] for r in log if r["event"] == "start"] == [0, stopped_at]
        assert [r["step"] for r in log if r["event"] == "step"] == list(range(1, stopped_at + 4))
        assert log[-1]["event"] == "end" and log[-1]["stopped_by"] == "max_steps"


def script_that_must_not_build_a_model():
    """The script, with GPTModel replaced by a function that fails the test: refusals must come before it."""
    script = load_script()

    def no_model(config):
        raise AssertionError(f"a model was built for {config} before the inputs were checked")
    script.GPTModel = no_model
    return script


@pytest.mark.parametrize("flags, message", [
    (["--context-length", "100000"], "too few for one window of context_length=100000"),
    (["--batch-size", "5000"], "fewer than --batch-size=5000; give more text or a smaller --batch-size"),
    (["--d-model", "66"], "GPTConfig.d_model=66 must be divisible by n_heads=4"),
])
def test_impossible_sizes_are_refused_before_the_model_is_built(tmp_path, texts, capsys, flags, message):
    with pytest.raises(SystemExit):
        script_that_must_not_build_a_model().main(texts + TINY + ["--max-steps", "5", "--out-dir",
                                                                   str(tmp_path / "run")] + flags)
    assert message in capsys.readouterr().err


def test_a_fresh_run_does_not_replace_a_previous_one_without_overwrite(tmp_path, texts, capsys):
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoint", GPTModel(GPTConfig(vocab_size=300, context_length=32, d_model=64, n_heads=4,
                                                           n_layers=2)), step=7)
    (run / "log.jsonl").write_text('{"event": "end"}\n')
    with pytest.raises(SystemExit):
        script_that_must_not_build_a_model().main(texts + TINY + ["--max-steps", "5", "--out-dir", str(run)])
    assert f"{run} holds a previous run (checkpoint, log.jsonl); give --resume to continue it or --overwrite" \
        in capsys.readouterr().err
    assert load_checkpoint(run / "checkpoint", "cpu").step == 7
    assert (run / "log.jsonl").read_text() == '{"event": "end"}\n'
    with pytest.raises(AssertionError, match="a model was built"):  # --overwrite gets past the check
        script_that_must_not_build_a_model().main(texts + TINY + ["--max-steps", "5", "--out-dir", str(run),
                                                                   "--overwrite"])


def test_a_log_file_inside_the_checkpoint_folder_is_refused_at_the_start(tmp_path, texts, capsys):
    run = tmp_path / "run"
    log = run / "checkpoint" / "log.jsonl"
    with pytest.raises(SystemExit):
        script_that_must_not_build_a_model().main(texts + TINY + ["--max-steps", "5", "--out-dir", str(run),
                                                                   "--log-file", str(log)])
    assert f"--log-file {log} is inside the checkpoint folder {run / 'checkpoint'}" in capsys.readouterr().err


def test_resume_with_another_training_text_is_refused(tmp_path, texts, capsys):
    run = ["--out-dir", str(tmp_path / "run")]
    launch(texts + TINY + run + ["--max-steps", "2"])
    other = tmp_path / "other.txt"
    other.write_text(load_shakespeare("train")[40_000:80_000], encoding="utf-8")
    with pytest.raises(SystemExit):
        script_that_must_not_build_a_model().main(["--train-text", str(other), "--val-text", texts[3]] + TINY + run
                                                  + ["--max-steps", "4", "--resume"])
    assert "--resume: the training text is not the one the checkpoint was trained on" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script_that_must_not_build_a_model().main(texts + TINY + ["--out-dir", str(tmp_path / "none"),
                                                                   "--max-steps", "4", "--resume"])
    assert f"--resume: no checkpoint in {tmp_path / 'none' / 'checkpoint'}" in capsys.readouterr().err


def test_the_modern_recipe_trains_a_modern_model_with_muon(tmp_path, texts):
    launch(texts + TINY + ["--max-steps", "40", "--recipe", "modern", "--out-dir", str(tmp_path / "run")])
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint", "cpu")
    config = checkpoint.model.cfg
    assert (config.positions, config.ff, config.tie_weights) == ("rotary", "swiglu", False)
    assert {k: getattr(config, k) for k in MODERN_RECIPE["model"]} == MODERN_RECIPE["model"]
    assert (config.n_layers, config.d_model, config.n_heads, config.context_length) == (2, 64, 4, 32)
    assert set(checkpoint.optimizer_state) == {"muon", "adamw"}
    assert checkpoint.extra["recipe"] == "modern"
    log = read_log(tmp_path / "run" / "log.jsonl")
    assert (log[0]["args"]["recipe"], log[0]["args"]["muon_lr"]) == ("modern", MODERN_RECIPE["muon_lr"])
    val_losses = [record["val_loss"] for record in log if record["event"] == "eval"]
    assert val_losses[-1] < 0.9 * val_losses[0]


def script_stopped_after(stop_step: int | None):
    """The script, run in this process: its run stops after `stop_step` updates as if by Ctrl-C (None: never).
    No signal handler is installed, so the test process keeps its own."""
    script = load_script()
    stop = SimpleNamespace(signal_name=None)
    script.StopRequest = lambda: stop
    real_train = script.train

    def train(*args, on_update, **kwargs):
        def update(step: int) -> bool:
            if step == stop_step:
                stop.signal_name = "SIGINT"
            return on_update(step)
        return real_train(*args, on_update=update, **kwargs)
    script.train = train
    return script


@pytest.mark.parametrize("recipe", ["gpt2", "modern"])
def test_a_resumed_run_continues_exactly_like_an_unbroken_one(tmp_path, texts, one_thread, recipe):
    flags = texts + TINY + ["--max-steps", "8", "--recipe", recipe, "--save-every", "0"]
    script_stopped_after(None).main(flags + ["--out-dir", str(tmp_path / "unbroken")])
    script_stopped_after(4).main(flags + ["--out-dir", str(tmp_path / "broken")])
    assert load_checkpoint(tmp_path / "broken" / "checkpoint", "cpu").step == 4
    script_stopped_after(None).main(flags + ["--out-dir", str(tmp_path / "broken"), "--resume"])
    unbroken, resumed = read_log(tmp_path / "unbroken" / "log.jsonl"), read_log(tmp_path / "broken" / "log.jsonl")
    assert [r["step"] for r in resumed if r["event"] == "step"] == list(range(1, 9))
    for key in ("loss", "lr", "grad_norm"):
        assert [r[key] for r in resumed if r["event"] == "step"] == [r[key] for r in unbroken if r["event"] == "step"]
    assert resumed[-1]["val_loss"] == unbroken[-1]["val_loss"]
    assert resumed[-1]["param_sha256"] == unbroken[-1]["param_sha256"]


def test_resume_with_another_recipe_is_refused(tmp_path, texts, capsys):
    run = ["--out-dir", str(tmp_path / "run")]
    launch(texts + TINY + run + ["--max-steps", "2", "--recipe", "modern"])
    with pytest.raises(SystemExit):
        script_that_must_not_build_a_model().main(texts + TINY + run + ["--max-steps", "4", "--resume"])
    assert "--resume: the checkpoint was trained with --recipe modern, not --recipe gpt2; give --recipe modern" \
        in capsys.readouterr().err


def test_publish_writes_a_model_that_loads_with_its_card(tmp_path):
    """A tiny run on the course's text, published: the card records the command and the published weights'
    scores, and `published_model` loads it (the run's card sha256 is the one it prints)."""
    out = launch(["--preset", "tiny", "--vocab-size", "260", "--max-steps", "3", "--warmup-steps", "1",
                  "--eval-every", "3", "--eval-windows", "4", "--batch-size", "4", "--device", "cpu", "--no-progress",
                  "--recipe", "modern", "--out-dir", str(tmp_path / "run"), "--publish", str(tmp_path / "pub")])
    card_sha256 = out.strip().split()[-1]
    model, tokenizer, card = published_model("cpu", tmp_path / "pub", card_sha256)
    assert card["command"].startswith("python scripts/pretrain.py --preset tiny") and card["steps"] == 3
    assert card["tokens_seen"] == 3 * 4 * 32 and tokenizer.vocab_size == 260
    assert abs(card["val_bits_per_byte"] - card["float32_val_bits_per_byte"]) < 0.01  # bfloat16 rounding only
    assert card["test_bits_per_byte"] > 0 and model.cfg.to_dict() == card["config"]
