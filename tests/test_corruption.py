"""Tests of llmcourse.corruption: T5's span corruption, BART's text infilling and sentence permutation."""

import random
from itertools import permutations

import pytest

from llmcourse.corruption import permute_sentences, span_corruption, text_infilling, uncorrupt

SENTINELS = list(range(1000, 1100))
MASK = 999


def test_span_corruption_on_a_hand_example():
    ids = list(range(20))
    corrupted = span_corruption(ids, SENTINELS, random.Random(0))
    assert sum(end - start for start, end in corrupted.spans) == 3  # 15 % of 20
    assert corrupted.spans == sorted(corrupted.spans) and len(corrupted.spans) == 1
    start, end = corrupted.spans[0]
    assert corrupted.source == ids[:start] + [SENTINELS[0]] + ids[end:]
    assert corrupted.target == [SENTINELS[0], *ids[start:end]]


@pytest.mark.parametrize("seed", range(200))
def test_span_corruption_properties(seed):
    rng = random.Random(seed)
    ids = [rng.randrange(500) for _ in range(rng.randrange(2, 120))]
    corrupted = span_corruption(ids, SENTINELS, rng, noise_density=rng.choice([0.15, 0.3, 0.5]),
                                mean_span_length=rng.choice([1, 3, 5]))
    spans = corrupted.spans
    assert all(start < end for start, end in spans)
    assert all(end < next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))  # never overlap or touch
    dropped = [i for start, end in spans for i in range(start, end)]
    assert len(dropped) == len(set(dropped))
    # every dropped token appears in the target exactly once, after its span's sentinel, in order
    assert [t for t in corrupted.target if t not in SENTINELS] == [ids[i] for i in dropped]
    used = [t for t in corrupted.source if t in SENTINELS]
    assert used == SENTINELS[:len(spans)] == [t for t in corrupted.target if t in SENTINELS]
    assert uncorrupt(corrupted.source, corrupted.target, SENTINELS) == ids


def test_span_corruption_refuses_bad_settings():
    with pytest.raises(ValueError, match="at least 2 tokens"):
        span_corruption([5], SENTINELS, random.Random(0))
    with pytest.raises(ValueError, match="sentinel"):
        span_corruption(list(range(100)), SENTINELS[:2], random.Random(0), mean_span_length=1)
    with pytest.raises(ValueError, match="noise_density"):
        span_corruption(list(range(10)), SENTINELS, random.Random(0), noise_density=1.5)
    with pytest.raises(ValueError, match="start with a sentinel"):
        uncorrupt([1, SENTINELS[0]], [7, SENTINELS[0]], SENTINELS)


@pytest.mark.parametrize("seed", range(100))
def test_text_infilling_properties(seed):
    rng = random.Random(seed)
    ids = [rng.randrange(500) for _ in range(rng.randrange(1, 120))]
    corrupted = text_infilling(ids, MASK, rng)
    assert corrupted.target == ids
    spans = corrupted.spans
    assert all(end + 1 < next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))  # apart
    assert corrupted.source.count(MASK) == len(spans)  # one mask per span, whatever its length
    masked = sum(end - start for start, end in spans)
    assert len(corrupted.source) == len(ids) - masked + len(spans)
    assert masked <= max(1, round(0.3 * len(ids)))
    spans_left, restored = iter(spans), []  # filling each mask with its span gives the text back
    for token in corrupted.source:
        if token == MASK:
            start, end = next(spans_left)
            restored += ids[start:end]
        else:
            restored.append(token)
    assert restored == ids


def test_permute_sentences_keeps_every_sentence_whole():
    sentences = [[1, 2, 3], [4, 5], [6], [7, 8, 9, 10]]
    corrupted = permute_sentences(sentences, random.Random(1))
    assert corrupted.target == list(range(1, 11))
    assert sorted(corrupted.source) == corrupted.target and corrupted.source != corrupted.target
    assert any(sum((sentences[i] for i in order), []) == corrupted.source for order in permutations(range(4)))
