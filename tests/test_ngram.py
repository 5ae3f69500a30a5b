"""Tests of llmcourse.ngram: probabilities that sum to 1, unseen events, agreement of the two ways of scoring,
the uniform model's bits per byte, seeded sampling and clear errors."""

import itertools
import math

import numpy as np
import pytest

from llmcourse.ngram import SMOOTHINGS, NGramModel, ngram_keys

TEXT = [0, 1, 2, 0, 1, 1, 2, 0, 2, 2, 1, 0, 0, 1, 2]  # 15 units over a vocabulary of 4 (unit 3 never appears)


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("order", [1, 2, 3])
def test_probabilities_sum_to_one_for_every_context(smoothing, order):
    model = NGramModel(order, 4, smoothing, k=0.5, discount=0.7).fit(TEXT)
    for length in range(order):
        for context in itertools.product(range(4), repeat=length):
            assert model.distribution(list(context)).sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_unseen_events_get_nonzero_probability(smoothing):
    model = NGramModel(3, 4, smoothing, k=0.1, discount=0.9).fit(TEXT)
    assert model.prob([0, 1], 3) > 0  # unit 3 is never seen at all
    assert model.prob([3, 3], 0) > 0  # an unseen context
    assert model.prob([0, 1], 0) > 0  # "0 1 0" is never seen, "0 1" is


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_log_probs_of_a_text_match_the_distribution_at_each_position(smoothing):
    model = NGramModel(3, 4, smoothing, k=0.5, discount=0.6).fit(TEXT)
    text = [2, 1, 0, 3, 0, 1, 2]
    expected = [math.log(model.prob(text[:i], text[i])) for i in range(len(text))]
    assert np.allclose(model.log_probs(text), expected, atol=1e-12)


def test_add_k_bigram_by_hand():
    model = NGramModel(2, 4, "add-k", k=1.0).fit(TEXT)
    # "0" is followed by 1, 1, 2, 0, 1: three of five times by "1"; add one to each of 4 counts
    assert model.prob([0], 1) == pytest.approx((3 + 1) / (5 + 4))
    assert model.prob([0], 3) == pytest.approx((0 + 1) / (5 + 4))


def test_uniform_model_bits_per_byte_equals_its_formula():
    model = NGramModel(1, 256, "add-k", k=1.0).fit([])  # no counts: every unit has p = 1/256
    text = list(b"to be or not to be")
    assert model.bits_per_byte(text, len(text)) == pytest.approx(8.0)
    model = NGramModel(1, 50, "kneser-ney").fit([])
    assert model.bits_per_byte([1, 2, 3], n_bytes=7) == pytest.approx(3 * math.log2(50) / 7)


def test_ngram_keys_encode_units_in_base_vocab_size():
    assert ngram_keys(np.array([1, 2, 3]), 2, 10).tolist() == [12, 23]


def test_sampling_is_seeded_and_stays_in_the_vocabulary():
    model = NGramModel(2, 4).fit(TEXT)
    first, again, other = model.sample(30, seed=1), model.sample(30, seed=1), model.sample(30, seed=2)
    assert first == again and first != other
    assert all(0 <= unit < 4 for unit in first)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="order"):
        NGramModel(0, 4)
    with pytest.raises(ValueError, match="smoothing"):
        NGramModel(2, 4, "laplace")
    with pytest.raises(ValueError, match="64-bit"):
        NGramModel(6, 2 ** 16)
    with pytest.raises(ValueError, match="fit"):
        NGramModel(2, 4).log_probs([0, 1])
    with pytest.raises(ValueError, match="0..3"):
        NGramModel(2, 4).fit([0, 4])
