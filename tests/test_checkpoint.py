"""Tests of llmcourse.checkpoint: round trips, checksums, refusals, and saves killed at random moments."""

import hashlib
import json
import os
import random
import shutil
import signal
import time

import pytest
import tiktoken
import torch

from llmcourse.checkpoint import (SAVE_MARKER, _config_digest, load_checkpoint, restore_optimizer, save_checkpoint,
                                  weights_sha256)
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.runtime import set_seed
from llmcourse.tokenizer import BPETokenizer, gpt2_encoding
from llmcourse.train import configure_optimizer


def tiny_model(seed: int = 0, tie_weights: bool = True, d_model: int = 32) -> GPTModel:
    set_seed(seed)
    return GPTModel(GPTConfig(vocab_size=256, context_length=16, d_model=d_model, n_heads=4, n_layers=2,
                              dropout=0.0, tie_weights=tie_weights))


def trained_optimizer(model: GPTModel) -> torch.optim.Optimizer:
    """An AdamW that has taken one step, so its state holds moments."""
    optimizer = configure_optimizer(model, 1e-3)
    model(torch.randint(0, 256, (2, 8))).sum().backward()
    optimizer.step()
    return optimizer


def folder_bytes(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture
def saved(tmp_path):
    model = tiny_model()
    return save_checkpoint(tmp_path / "ckpt", model, trained_optimizer(model), step=3)


def rewrite(directory, name: str, data: bytes) -> None:
    """Replace one file and update every checksum, as a consistent but wrong checkpoint would be."""
    (directory / name).write_bytes(data)
    config = json.loads((directory / "config.json").read_text())
    config["files"][name] = hashlib.sha256(data).hexdigest()
    config["sha256"] = _config_digest(config)
    (directory / "config.json").write_text(json.dumps(config))


def rewrite_config(directory, change) -> None:
    config = json.loads((directory / "config.json").read_text())
    change(config)
    config["sha256"] = _config_digest(config)
    (directory / "config.json").write_text(json.dumps(config))


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tie_weights", [True, False])
def test_checkpoint_round_trip_gives_identical_logits(tmp_path, tie_weights):
    model = tiny_model(tie_weights=tie_weights).eval()
    save_checkpoint(tmp_path / "ckpt", model, step=5, extra={"note": "round trip"})
    checkpoint = load_checkpoint(tmp_path / "ckpt", device="cpu")
    inputs = torch.randint(0, 256, (1, 16))
    assert torch.equal(model(inputs), checkpoint.model(inputs))
    assert checkpoint.step == 5 and checkpoint.extra == {"note": "round trip"}
    assert checkpoint.optimizer_state is None and checkpoint.tokenizer is None
    assert (checkpoint.model.out_head.weight is checkpoint.model.tok_emb.weight) == tie_weights


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_16_bit_weights_halve_the_file_and_load_back_as_float32(tmp_path, dtype):
    model = tiny_model(tie_weights=False).eval()
    save_checkpoint(tmp_path / "full", model)
    save_checkpoint(tmp_path / "half", model, weights_dtype=dtype)
    sizes = [(tmp_path / name / "model.safetensors").stat().st_size for name in ("full", "half")]
    assert 0.45 < sizes[1] / sizes[0] < 0.55
    loaded = load_checkpoint(tmp_path / "half", "cpu").model
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    rounded = {name: t.to(getattr(torch, dtype)).float() for name, t in model.state_dict().items()}
    assert all(torch.equal(loaded.state_dict()[name], t) for name, t in rounded.items())


def test_an_unknown_weights_dtype_is_refused(tmp_path):
    with pytest.raises(ValueError, match="weights_dtype must be one of"):
        save_checkpoint(tmp_path / "ckpt", tiny_model(), weights_dtype="int8")


def test_tokenizers_round_trip(tmp_path):
    bpe = BPETokenizer.train("to be or not to be, that is the question " * 20, vocab_size=270)
    save_checkpoint(tmp_path / "bpe", tiny_model(), tokenizer=bpe)
    assert load_checkpoint(tmp_path / "bpe", "cpu").tokenizer.merges == bpe.merges
    save_checkpoint(tmp_path / "gpt2", tiny_model(), tokenizer=gpt2_encoding())
    assert load_checkpoint(tmp_path / "gpt2", "cpu").tokenizer.name == "gpt2"


def test_a_second_save_replaces_every_file_of_the_first(saved):
    save_checkpoint(saved, tiny_model(seed=1), step=9)
    checkpoint = load_checkpoint(saved, "cpu")
    assert checkpoint.step == 9 and checkpoint.optimizer_state is None
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]  # no sibling folders left


# --- corrupt or changed files ---------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "flip a bit", "NaN bytes"])
def test_damaged_weights_are_refused_by_their_checksum(saved, damage):
    path = saved / "model.safetensors"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "flip a bit":
        data[-100] ^= 0x01
    else:
        data[-64:-32] = b"\xff" * 32  # 0xffffffff is a NaN as float32
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="ckpt/model.safetensors does not match the sha256 recorded in config.json"):
        load_checkpoint(saved)


@pytest.mark.parametrize("field, value", [("n_heads", 2), ("pre_norm", False), ("dropout", 0.5)])
def test_config_edits_that_keep_tensor_shapes_are_refused(saved, field, value):
    config = json.loads((saved / "config.json").read_text())
    config["model"][field] = value
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="config.json was changed after it was saved"):
        load_checkpoint(saved)


def test_invalid_json_config_is_refused(saved):
    text = (saved / "config.json").read_text()
    (saved / "config.json").write_text(text[:len(text) // 2])
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        load_checkpoint(saved)


def test_config_that_does_not_match_the_tensors_is_refused(saved):
    rewrite_config(saved, lambda config: config["model"].update(d_model=64))
    with pytest.raises(ValueError, match=r"tok_emb.weight has shape \(256, 32\), the config needs \(256, 64\)"):
        load_checkpoint(saved)


def test_config_with_unknown_settings_is_refused(saved):
    rewrite_config(saved, lambda config: config["model"].update(n_experts=8))
    with pytest.raises(ValueError, match="GPTConfig does not take"):
        load_checkpoint(saved)


def test_checkpoint_without_checksums_is_refused_with_what_to_do(saved):
    rewrite_config(saved, lambda config: config.update(version=1))
    with pytest.raises(ValueError, match="version 1; this llmcourse reads version 2.*save the model again"):
        load_checkpoint(saved)


def test_missing_and_extra_tensors_are_refused(saved):
    from safetensors.torch import load_file, save
    tensors = load_file(saved / "model.safetensors")
    del tensors["final_norm.bias"]
    rewrite(saved, "model.safetensors", save(tensors))
    with pytest.raises(ValueError, match=r"missing tensors \['final_norm.bias'\]"):
        load_checkpoint(saved)
    tensors["final_norm.bias"] = torch.zeros(32)
    tensors["blocks.9.norm1.weight"] = torch.ones(32)
    rewrite(saved, "model.safetensors", save(tensors))
    with pytest.raises(ValueError, match=r"unexpected tensors \['blocks.9.norm1.weight'\]"):
        load_checkpoint(saved)


@pytest.mark.parametrize("content", [b"garbage", b"\x80\x02}q\x00.", b""])
def test_garbage_optimizer_state_is_refused_without_suggesting_unsafe_loading(saved, content):
    rewrite(saved, "optimizer.pt", content)
    with pytest.raises(ValueError, match="optimizer.pt is not an optimizer state.*do not load it with weights_only"):
        load_checkpoint(saved)


def test_missing_file_is_named(saved):
    (saved / "optimizer.pt").unlink()
    with pytest.raises(FileNotFoundError, match="ckpt/optimizer.pt is missing"):
        load_checkpoint(saved)


def test_missing_checkpoint_is_a_clear_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        load_checkpoint(tmp_path)


def test_optimizer_state_of_another_model_is_refused_before_a_step(saved):
    checkpoint = load_checkpoint(saved, "cpu")
    other = tiny_model(d_model=64)
    optimizer = configure_optimizer(other, 1e-3)
    with pytest.raises(ValueError, match=r"moment of shape \(256, 32\) where the parameter has shape \(256, 64\)"):
        restore_optimizer(optimizer, checkpoint.optimizer_state)
    with pytest.raises(ValueError, match="parameter groups"):
        restore_optimizer(torch.optim.AdamW(other.parameters()), checkpoint.optimizer_state)


# --- saves that fail their own checks leave the previous checkpoint alone --------------------------


class NotJSON:
    pass


@pytest.mark.parametrize("bad", ["extra", "nan extra", "tokenizer", "tiktoken", "step", "nan weights"])
def test_a_refused_save_leaves_the_previous_checkpoint_untouched(saved, bad):
    before = folder_bytes(saved)
    model = tiny_model(seed=1)
    kwargs = {"extra": {"x": NotJSON()}} if bad == "extra" else {"extra": {"x": float("nan")}} \
        if bad == "nan extra" else {"tokenizer": object()} if bad == "tokenizer" else \
        {"tokenizer": tiktoken.Encoding(name="other", pat_str=r"\S+|\s+",
                                        mergeable_ranks={bytes([b]): b for b in range(256)},
                                        special_tokens={})} if bad == "tiktoken" else {"step": -1} if bad == "step" else {}
    if bad == "nan weights":
        with torch.no_grad():
            model.final_norm.weight[0] = float("nan")
    with pytest.raises(ValueError):
        save_checkpoint(saved, model, **kwargs)
    assert folder_bytes(saved) == before


def test_a_folder_with_other_files_is_not_replaced(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match=r"holds files that are not part of a checkpoint \(log.jsonl\)"):
        save_checkpoint(tmp_path / "run", tiny_model())
    assert (tmp_path / "run" / "log.jsonl").read_text() == "{}\n"


# --- crashes --------------------------------------------------------------------------------------


def test_leftovers_of_an_interrupted_save_are_handled(saved):
    old_step = load_checkpoint(saved, "cpu").step
    # Killed while writing the new folder: the partial new folder is ignored, then cleaned up.
    partial = saved.with_name("ckpt.checkpoint-new")
    partial.mkdir()
    (partial / SAVE_MARKER).touch()
    (partial / "model.safetensors").write_bytes(b"half")
    assert load_checkpoint(saved, "cpu").step == old_step
    # Killed between the two renames: only the old folder, marked and moved aside, is left.
    (saved / SAVE_MARKER).touch()
    os.replace(saved, saved.with_name("ckpt.checkpoint-old"))
    assert load_checkpoint(saved, "cpu").step == old_step
    save_checkpoint(saved, tiny_model(seed=2), step=old_step + 1)
    assert load_checkpoint(saved, "cpu").step == old_step + 1
    assert sorted(p.name for p in saved.parent.iterdir()) == ["ckpt"]
    assert SAVE_MARKER not in {p.name for p in saved.iterdir()}


def fingerprint(checkpoint) -> tuple:
    weights = tuple(t.sum().item() for t in checkpoint.model.state_dict().values())
    moments = None if checkpoint.optimizer_state is None else \
        tuple(s["exp_avg"].sum().item() for s in checkpoint.optimizer_state["state"].values())
    return checkpoint.step, weights, moments, json.dumps(checkpoint.extra)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork to start the saving process quickly")
def test_saves_killed_at_random_moments_leave_exactly_the_old_or_the_new_checkpoint(tmp_path):
    """A child process saves checkpoints A and B in turn over the same folder; it is SIGKILLed at random
    moments, and each time the folder must load as exactly A or exactly B."""
    set_seed(0)
    big = GPTModel(GPTConfig(vocab_size=2000, context_length=64, d_model=128, n_heads=4, n_layers=2, dropout=0.0))
    versions = []
    for step in (1, 2):
        with torch.no_grad():
            big.tok_emb.weight.add_(0.01)
        directory = save_checkpoint(tmp_path / f"reference{step}", big, trained_optimizer(big), step=step,
                                    extra={"version": step})
        versions.append(fingerprint(load_checkpoint(directory, "cpu")))
    target = tmp_path / "ckpt"
    shutil.copytree(tmp_path / "reference1", target)
    rng = random.Random(0)
    kills, deadline = 0, time.monotonic() + 10
    while kills < 30 and time.monotonic() < deadline:
        pid = os.fork()
        if pid == 0:  # the child: save A and B in turn until killed
            try:
                sources = [load_checkpoint(tmp_path / f"reference{step}", "cpu") for step in (1, 2)]
                optimizers = []
                for source in sources:
                    optimizer = configure_optimizer(source.model, 1e-3)
                    optimizer.load_state_dict(source.optimizer_state)
                    optimizers.append(optimizer)
                for turn in range(10**6):
                    source, optimizer = sources[turn % 2], optimizers[turn % 2]
                    save_checkpoint(target, source.model, optimizer, source.step, extra=source.extra)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        kills += 1
        loaded = load_checkpoint(target, "cpu")
        assert fingerprint(loaded) in versions
    assert kills >= 10


def test_weights_sha256_changes_with_any_weight_and_not_with_a_copy():
    model = GPTModel(GPTConfig(vocab_size=32, context_length=8, d_model=16, n_heads=2, n_layers=1))
    copy_of_it = GPTModel(model.cfg)
    copy_of_it.load_state_dict(model.state_dict())
    assert weights_sha256(model) == weights_sha256(copy_of_it)
    with torch.no_grad():
        copy_of_it.blocks[0].ff.fc_in.weight[0, 0] += 1e-6
    assert weights_sha256(model) != weights_sha256(copy_of_it)
