"""Tests of llmcourse.bow: words, vocabulary, counts, TF-IDF and cosine similarity on hand-checkable examples."""

import math

import pytest
import torch

from llmcourse.bow import (bag_of_words, cosine_similarity, count_vectors, inverse_document_frequency, tf_idf,
                           word_vocabulary, words)


def test_words_are_lower_cased_with_inner_apostrophes():
    assert words("I'll go, O'er the HILL!") == ["i'll", "go", "o'er", "the", "hill"]


def test_count_vectors_count_known_words_and_drop_unknown_ones():
    vocabulary = word_vocabulary(["the dog bit the man"], min_count=1)
    assert vocabulary == {"bit": 0, "dog": 1, "man": 2, "the": 3}
    counts = count_vectors(["The man bit the dog", "a cat"], vocabulary)
    assert counts.tolist() == [[1, 1, 1, 2], [0, 0, 0, 0]]
    assert torch.equal(bag_of_words(["The man bit the dog"], vocabulary), counts[:1].log1p())


def test_idf_by_hand():
    # three documents; "the" is in all three, "king" in two, "fool" in one
    vocabulary = {"the": 0, "king": 1, "fool": 2}
    counts = count_vectors(["the king", "the king the king", "the fool"], vocabulary)
    idf = inverse_document_frequency(counts)
    assert idf.tolist() == pytest.approx([0.0, math.log(3 / 2), math.log(3)])
    weights = tf_idf(counts)
    assert weights[1].tolist() == pytest.approx([0.0, 2 * math.log(1.5), 0.0])


def test_idf_refuses_a_word_in_no_document():
    with pytest.raises(ValueError, match="no document"):
        inverse_document_frequency(torch.tensor([[1.0, 0.0]]))


def test_cosine_similarity_by_hand():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    similarity = cosine_similarity(a)
    assert similarity[0, 1].item() == pytest.approx(1 / math.sqrt(2))
    assert similarity[0, 0].item() == pytest.approx(1.0)
    assert similarity[2].tolist() == [0.0, 0.0, 0.0]  # an empty document is similar to nothing
    with pytest.raises(ValueError, match="columns"):
        cosine_similarity(a, torch.ones(2, 3))


def test_word_order_is_invisible():
    vocabulary = word_vocabulary(["the dog bit the man"], min_count=1)
    a, b = count_vectors(["the dog bit the man", "the man bit the dog"], vocabulary)
    assert torch.equal(a, b)


def test_bag_of_words_counts_known_words():
    vocabulary = word_vocabulary(["the king, the crown", "the fool"], min_count=1)
    assert vocabulary == {"crown": 0, "fool": 1, "king": 2, "the": 3}
    features = bag_of_words(["The king! The KING, a jester"], vocabulary)
    assert torch.allclose(features, torch.tensor([[0.0, 0.0, 2.0, 2.0]]).log1p())
