"""Tests of scripts/finetune_spam.py on a collection and a tiny GPT-2 that the test builds (no network)."""

import importlib.util
import json
import zipfile

import pytest
import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

from llmcourse.runtime import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_thread")


def load_script():
    spec = importlib.util.spec_from_file_location("finetune_spam", REPO_ROOT / "scripts" / "finetune_spam.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def collection(tmp_path):
    spam = [f"WIN a free prize {i}! Call now" for i in range(30)]
    ham = [f"See you at {i} tonight, ok?" for i in range(60)]
    with zipfile.ZipFile(tmp_path / "sms.zip", "w") as archive:
        archive.writestr("SMSSpamCollection", "\n".join([f"spam\t{m}" for m in spam] + [f"ham\t{m}" for m in ham]))
    return tmp_path / "sms.zip"


@pytest.fixture
def tiny_gpt2(tmp_path):
    """A GPT-2 with GPT-2's vocabulary but one tiny block, saved in the published safetensors layout."""
    torch.manual_seed(0)
    hf_model = GPT2LMHeadModel(GPT2Config(n_embd=8, n_layer=1, n_head=2, n_positions=32))
    state = {name.removeprefix("transformer."): tensor.clone() for name, tensor in hf_model.state_dict().items()
             if name != "lm_head.weight"}
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(hf_model.config.to_dict()))
    return tmp_path / "model.safetensors"


def test_balanced_split_and_same_length_batches(collection):
    script = load_script()
    from llmcourse.tasks import parse_sms_spam
    split = script.balanced_split(parse_sms_spam(collection), seed=0)
    assert [len(split[s]) for s in ("train", "val", "test")] == [42, 6, 12]
    everything = split["train"] + split["val"] + split["test"]
    assert sum(label for _, label in everything) == 30 and len(set(everything)) == 60
    batches = script.same_length_batches([[1, 2], [3], [4, 5], [6, 7], [8]], [0, 1, 0, 1, 1], batch_size=2, seed=0)
    assert all(ids.shape[0] == labels.shape[0] for ids, labels in batches)
    assert sorted(sum((ids.tolist() for ids, _ in batches), [])) == [[1, 2], [3], [4, 5], [6, 7], [8]]


def test_the_script_trains_and_reports_test_accuracy(collection, tiny_gpt2, capsys):
    script = load_script()
    assert script.main(["--sms-zip", str(collection), "--weights", str(tiny_gpt2), "--epochs", "2",
                        "--lr", "1e-2", "--max-tokens", "16"]) == 0
    out = capsys.readouterr().out
    assert "{'train': 42, 'val': 6, 'test': 12} messages" in out
    assert "kept epoch" in out and "test accuracy" in out and "(majority class 0.5" in out


def test_the_script_says_so_when_the_download_fails(tmp_path, tiny_gpt2, capsys):
    script = load_script()
    assert script.main(["--weights", str(tiny_gpt2), "--cache-dir", str(tmp_path / "cache"),
                        "--sms-url", (tmp_path / "missing.zip").as_uri()]) == 1
    assert "could not download the SMS Spam Collection" in capsys.readouterr().err
