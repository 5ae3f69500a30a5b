"""Tests of llmcourse.course: the BERT tokenizer, and the course model and tokenizer trained once and cached."""

import dataclasses
import hashlib
import shutil

import pytest
import torch

import llmcourse.course as course_module
from llmcourse.course import (PUBLISHED_DIR, bert_tokenizer, course_model, course_tokenizer, publish_model,
                              published_model)
from llmcourse.data import load_shakespeare
from llmcourse.encoder import SPECIAL_TOKENS
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.tokenizer import BPETokenizer
from llmcourse.train import PretrainSettings

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bert_tokenizer_adds_the_four_special_tokens_after_the_course_ids():
    base, tokenizer = course_tokenizer(), bert_tokenizer()
    assert tokenizer.vocab_size == base.vocab_size + 4
    assert [tokenizer.special_tokens[t] for t in SPECIAL_TOKENS] == list(range(base.vocab_size, base.vocab_size + 4))
    text = "To be, or not to be: that is the question.\n"
    assert tokenizer.encode(text) == base.encode(text)
    assert tokenizer.encode("[CLS] to be [MASK]", allowed_special="all")[0] == tokenizer.special_tokens["[CLS]"]


def test_course_model_pretrains_once_then_loads_from_the_cache(tmp_path, monkeypatch):
    settings = PretrainSettings(vocab_size=300, context_length=16, d_model=32, n_heads=4, n_layers=1,
                                batch_size=4, max_steps=3, warmup_steps=1, eval_every=2, eval_windows=4)
    monkeypatch.setattr(course_module, "COURSE_SETTINGS", settings)
    monkeypatch.setattr(course_module, "COURSE_MODEL_DIR", tmp_path / "course_gpt")
    monkeypatch.setattr(course_module, "load_shakespeare", lambda split: load_shakespeare(split)[:20_000])
    model, tokenizer = course_model(device="cpu")
    assert not model.training and tokenizer.vocab_size == 300
    monkeypatch.setattr(course_module, "pretrain_course_model", lambda *args, **kwargs: pytest.fail("retrained"))
    again, _ = course_model(device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_course_tokenizer_without_a_cached_model_trains_the_same_tokenizer_every_time(tmp_path, monkeypatch):
    monkeypatch.setattr(course_module, "COURSE_MODEL_DIR", tmp_path / "empty")
    monkeypatch.setattr(course_module, "load_shakespeare", lambda split: load_shakespeare(split)[:30_000])
    monkeypatch.setattr(course_module, "COURSE_SETTINGS", dataclasses.replace(course_module.COURSE_SETTINGS, vocab_size=300))
    alone = course_module.course_tokenizer()
    again = course_module.course_tokenizer()
    text = load_shakespeare("val")[:5_000]
    assert alone.vocab_size == 300 and alone.encode(text) == again.encode(text)


def test_the_published_model_loads_in_float32_with_its_card():
    model, tokenizer, card = published_model("cpu")
    assert all(p.dtype == torch.float32 for p in model.parameters()) and not model.training
    assert model.cfg.to_dict() == card["config"] and tokenizer.vocab_size == model.cfg.vocab_size
    assert card["tokens_seen"] == card["steps"] * 4 * model.cfg.context_length
    assert card["test_bits_per_byte"] < 2.146  # the best count-based model of the report card
    assert set(card["files"]) == {"weights/config.json", "weights/model.safetensors", "weights/tokenizer.json"}


@pytest.mark.parametrize("damage", ["flip a byte of the weights", "truncate the tokenizer", "edit the card",
                                    "delete the config"])
def test_a_damaged_copy_of_the_published_model_is_refused(tmp_path, damage):
    copy = tmp_path / "course_gpt"
    shutil.copytree(PUBLISHED_DIR, copy)
    if damage == "flip a byte of the weights":
        data = bytearray((copy / "weights" / "model.safetensors").read_bytes())
        data[len(data) // 2] ^= 0x01
        (copy / "weights" / "model.safetensors").write_bytes(bytes(data))
    elif damage == "truncate the tokenizer":
        path = copy / "weights" / "tokenizer.json"
        path.write_bytes(path.read_bytes()[:-10])
    elif damage == "edit the card":
        path = copy / "card.json"
        path.write_text(path.read_text().replace('"seed"', '"seed" ', 1))
    else:
        (copy / "weights" / "config.json").unlink()
    with pytest.raises((ValueError, FileNotFoundError), match="sha256|missing|corrupt"):
        published_model("cpu", copy)


def test_publish_model_writes_a_card_that_published_model_verifies(tmp_path):
    torch.manual_seed(0)
    model = GPTModel(GPTConfig(vocab_size=300, context_length=16, d_model=32, n_heads=4, n_layers=1,
                               tie_weights=False, positions="rotary", ff="swiglu")).eval()
    tokenizer = BPETokenizer.train(load_shakespeare("train")[:20_000], 300)
    card_sha256 = publish_model(tmp_path / "pub", model, tokenizer, {"note": "a test"})
    assert card_sha256 == hashlib.sha256((tmp_path / "pub" / "card.json").read_bytes()).hexdigest()
    loaded, _, card = published_model("cpu", tmp_path / "pub", card_sha256)
    assert card["note"] == "a test" and card["weights_dtype"].startswith("bfloat16")
    x = torch.randint(300, (1, 16))
    assert (loaded(x) - model(x)).abs().max() < 0.05  # bfloat16-rounded weights
    with pytest.raises(ValueError, match="does not match the sha256 the package records"):
        published_model("cpu", tmp_path / "pub")  # the package records the committed card's sha256
