"""llmcourse.word2vec: subsampling and noise probabilities, skip-gram pairs, the SGNS loss learning planted pairs."""

import math

import pytest
import torch

from llmcourse.word2vec import (SkipGram, analogy, build_vocabulary, keep_probabilities, nearest_neighbours,
                                noise_distribution, skipgram_pairs, split_words, subsample)


def test_split_words_lowercases_and_keeps_inner_apostrophes():
    assert split_words("O'er the HILL, 'tis Will's.") == ["o'er", "the", "hill", "tis", "will's"]


def test_build_vocabulary_orders_by_count_then_alphabet_and_drops_rare_words():
    words, counts = build_vocabulary(["b", "a", "b", "c", "a", "d", "b"], min_count=2)
    assert words == ["b", "a"]
    assert counts.tolist() == [3.0, 2.0]
    with pytest.raises(ValueError, match="min_count"):
        build_vocabulary(["a"], min_count=0)
    with pytest.raises(ValueError, match="lower min_count"):
        build_vocabulary(["a", "b"], min_count=5)


def test_keep_probability_is_sqrt_of_threshold_over_frequency_capped_at_one():
    counts = torch.tensor([900.0, 90.0, 10.0], dtype=torch.float64)  # frequencies 0.9, 0.09, 0.01
    keep = keep_probabilities(counts, threshold=0.01)
    assert torch.allclose(keep, torch.tensor([math.sqrt(0.01 / 0.9), math.sqrt(0.01 / 0.09), 1.0],
                                             dtype=torch.float64))
    with pytest.raises(ValueError, match="threshold"):
        keep_probabilities(counts, threshold=0.0)


def test_subsample_keeps_the_expected_share_and_is_reproducible():
    keep = torch.tensor([0.1, 1.0], dtype=torch.float64)
    token_ids = torch.tensor([0, 1] * 20000)
    kept = subsample(token_ids, keep, torch.Generator().manual_seed(0))
    assert (kept == 1).sum() == 20000  # a word with keep probability 1 is never dropped
    assert abs((kept == 0).sum().item() - 2000) < 200  # 10% of 20,000, within about 4.5 standard deviations
    assert torch.equal(kept, subsample(token_ids, keep, torch.Generator().manual_seed(0)))


def test_noise_distribution_flattens_frequencies_by_the_power():
    counts = torch.tensor([1000.0, 10.0])
    for power in (0.0, 0.75, 1.0):
        noise = noise_distribution(counts, power)
        assert torch.isclose(noise.sum(), torch.tensor(1.0, dtype=noise.dtype))
        assert torch.isclose(noise[0] / noise[1], torch.tensor(100.0 ** power, dtype=noise.dtype))
    assert noise_distribution(counts, 0.75)[1] > noise_distribution(counts, 1.0)[1]  # rare words drawn more often


def test_skipgram_pairs_with_window_one_are_the_neighbours_in_both_directions():
    centers, contexts = skipgram_pairs(torch.tensor([10, 11, 12]), window=1, generator=torch.Generator().manual_seed(0))
    assert sorted(zip(centers.tolist(), contexts.tolist())) == [(10, 11), (11, 10), (11, 12), (12, 11)]


def test_skipgram_pairs_stay_within_the_window():
    token_ids = torch.arange(200)  # ids equal positions, so a pair's distance is the difference of its ids
    centers, contexts = skipgram_pairs(token_ids, window=3, generator=torch.Generator().manual_seed(1))
    distance = (centers - contexts).abs()
    assert distance.min() == 1 and distance.max() == 3
    assert len(centers) < 2 * 3 * 200  # window sizes drawn per center leave some far pairs out
    with pytest.raises(ValueError, match="window"):
        skipgram_pairs(token_ids, window=0, generator=torch.Generator())


def test_skipgram_loss_starts_at_k_plus_one_log_two_and_rejects_bad_shapes():
    model = SkipGram(vocab_size=10, dim=4, seed=0)
    centers, contexts, negatives = torch.tensor([1, 2]), torch.tensor([3, 4]), torch.tensor([[5, 6, 7], [8, 9, 0]])
    assert math.isclose(model(centers, contexts, negatives).item(), 4 * math.log(2), rel_tol=1e-6)  # context vectors are 0
    with pytest.raises(ValueError, match="negatives"):
        model(centers, contexts, negatives[0])


def test_skipgram_learns_planted_cooccurrences(one_thread):
    # 40 words; words 2i and 2i+1 always appear side by side, in random order among random pairs.
    generator = torch.Generator().manual_seed(0)
    pairs = torch.randint(0, 20, (1000,), generator=generator)
    flip = torch.rand(1000, generator=generator) < 0.5
    first, second = 2 * pairs + flip.long(), 2 * pairs + 1 - flip.long()
    corpus = torch.stack([first, second], dim=1).flatten()
    counts = torch.bincount(corpus, minlength=40).double()
    noise = noise_distribution(counts).float()
    model = SkipGram(40, dim=16, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    losses = []
    for _ in range(80):
        centers, contexts = skipgram_pairs(corpus, window=1, generator=generator)
        negatives = torch.multinomial(noise, len(centers) * 3, replacement=True, generator=generator).view(-1, 3)
        loss = model(centers, contexts, negatives)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    scores = model.center.weight @ model.context.weight.T  # (center word, context word)
    partner = torch.arange(40) ^ 1  # 2i <-> 2i+1
    assert (scores.argmax(dim=1) == partner).float().mean() > 0.9


def test_nearest_neighbours_and_analogy_on_hand_made_vectors():
    # king, queen, man, woman, apple: royalty along x, gender along y.
    vectors = torch.tensor([[3.0, 1.0], [3.0, -1.0], [1.0, 1.0], [1.0, -1.0], [-2.0, 0.1]])
    found = nearest_neighbours(vectors, vectors[0], k=2, exclude=[0])
    assert [row for row, _ in found] == [2, 1]  # man (cosine 0.89) before queen (0.8)
    assert math.isclose(found[1][1], 0.8, rel_tol=1e-6)
    assert analogy(vectors, 2, 3, 0) == 1  # man : woman :: king : queen
