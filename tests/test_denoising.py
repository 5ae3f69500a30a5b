"""Tests of llmcourse.denoising (pretraining the encoder-decoder on corrupted text) and the spacing task."""

import random

import pytest
import torch

from llmcourse.corruption import uncorrupt
from llmcourse.denoising import (MASK_ID, PRETRAIN_VOCAB_SIZE, SENTINEL_IDS, build_denoiser, corrupt,
                                 denoising_batch, denoising_batches, denoising_scores, pretrain, render)
from llmcourse.seq2seq import BOS_ID, EOS_ID, PAD_ID, encode, predict
from llmcourse.tasks import Pair, spacing_pairs

TEXTS = ["to be or not to be", "that is the question", "whether 'tis nobler in the mind to suffer",
         "the slings and arrows of outrageous fortune"]


def test_render_shows_sentinels_and_the_mask_and_refuses_unknown_ids():
    assert render([BOS_ID, *encode("to "), SENTINEL_IDS[0], *encode(" be"), MASK_ID,
                   EOS_ID, *encode("after")]) == "to <0> be_"
    assert render(torch.tensor([SENTINEL_IDS[11], PAD_ID])) == "<11>"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        render([PRETRAIN_VOCAB_SIZE])


@pytest.mark.parametrize("seed", range(20))
def test_corrupted_texts_restore_the_text(seed):
    rng = random.Random(seed)
    text = rng.choice(TEXTS)
    t5 = corrupt(text, "t5", rng)
    assert uncorrupt(t5.source, t5.target, SENTINEL_IDS) == encode(text)
    bart = corrupt(text, "bart", rng)
    assert bart.target == encode(text) and bart.source.count(MASK_ID) == len(bart.spans)
    with pytest.raises(ValueError, match="unknown objective"):
        corrupt(text, "gpt", rng)


def test_a_denoising_batch_is_teacher_forced_and_padded():
    examples = [corrupt(t, "t5", random.Random(i)) for i, t in enumerate(TEXTS)]
    batch = denoising_batch(examples)
    for row, e in enumerate(examples):
        n = len(e.target)
        assert batch.src_ids[row, :len(e.source)].tolist() == e.source
        assert batch.src_padding_mask[row].sum() == len(e.source)
        assert batch.tgt_in[row, :n + 1].tolist() == [BOS_ID, *e.target]
        assert batch.tgt_out[row, :n + 1].tolist() == [*e.target, EOS_ID]
        assert (batch.tgt_out[row, n + 1:] == PAD_ID).all()


def test_batches_are_drawn_afresh_and_reproducibly():
    first, second = next(denoising_batches(TEXTS, "bart", 8, seed=0)), next(denoising_batches(TEXTS, "bart", 8, seed=0))
    assert torch.equal(first.src_ids, second.src_ids)
    stream = denoising_batches(TEXTS, "bart", 8, seed=0)
    next(stream)
    assert not torch.equal(next(stream).src_ids, first.src_ids)
    with pytest.raises(ValueError, match="no texts"):
        next(denoising_batches([], "t5", 8, seed=0))


def test_pretraining_lowers_the_loss_and_is_reproducible():
    runs = []
    for _ in range(2):
        model = build_denoiser(seed=0)
        runs.append(pretrain(model, TEXTS, "bart", budget_seconds=60, batch_size=8, warmup_steps=10, max_steps=60,
                             progress=False))
    assert runs[0].losses == runs[1].losses and runs[0].steps == 60
    assert sum(runs[0].losses[-10:]) / 10 < sum(runs[0].losses[:10]) / 10 - 0.5


def test_denoising_scores_lie_in_range_and_predict_renders_extra_ids():
    model = build_denoiser(seed=0)
    result = denoising_scores(model, TEXTS, "t5", seed=0)
    assert 0 <= result["exact_match"] <= 1 and 0 <= result["token_accuracy"] <= 1
    outputs = predict(model, TEXTS[:2], to_text=render)  # an untrained model may emit sentinels: shown, not refused
    assert len(outputs) == 2 and all(isinstance(o, str) for o in outputs)


def test_spacing_pairs_remove_only_the_spaces():
    pairs = spacing_pairs([Pair("to be or not", "not or be to", "hamlet")])
    assert pairs == [Pair("tobeornot", "to be or not", "hamlet")]


def test_a_cooldown_lowers_the_rate_to_zero_over_the_end_of_the_budget():
    ticks = iter(range(10_000))
    model = build_denoiser(seed=0)
    history = pretrain(model, TEXTS, "t5", budget_seconds=40, batch_size=4, warmup_steps=1, progress=False,
                       cooldown=0.5, clock=lambda: float(next(ticks)))
    plain = [history.lrs[0] * (1 / (k + 1)) ** 0.5 for k in range(history.steps)]  # the 2017 decay after warmup 1
    ratios = [lr / p for lr, p in zip(history.lrs, plain)]
    assert ratios[0] == pytest.approx(1.0) and ratios[-1] < 0.1
    assert all(later <= earlier + 1e-12 for earlier, later in zip(ratios, ratios[1:]))  # only ever falls
    with pytest.raises(ValueError, match="cooldown"):
        pretrain(model, TEXTS, "t5", budget_seconds=1, cooldown=1.5, progress=False)
