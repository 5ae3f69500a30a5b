"""Tests of llmcourse.course: the BERT tokenizer, and the course model and tokenizer trained once and cached."""

import dataclasses

import pytest
import torch

import llmcourse.course as course_module
from llmcourse.course import bert_tokenizer, course_model, course_tokenizer
from llmcourse.data import load_shakespeare
from llmcourse.encoder import SPECIAL_TOKENS
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
