"""Pretraining objectives for an encoder-decoder (chapter 5): the input is a corrupted text, the target
what was taken from it.

T5's **span corruption** drops about 15 % of the tokens in short spans, puts a numbered sentinel where each
span was, and asks for the spans back, each after its sentinel. BART's **text infilling** replaces each span
(lengths drawn from a Poisson distribution, some of length 0) by one mask token and asks for the whole text;
its **sentence permutation** shuffles the sentences and asks for them in order. All work on lists of token
ids, so they serve any vocabulary.
"""

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Corrupted:
    """An encoder input, a decoder target, and the dropped spans as (start, end) positions of the original."""

    source: list[int]
    target: list[int]
    spans: list[tuple[int, int]]


def _split(total: int, parts: int, rng: random.Random, least: int = 1) -> list[int]:
    """`total` cut into `parts` lengths of at least `least`, every such cut equally likely."""
    spare = total - parts * least
    if parts < 1 or spare < 0:
        raise ValueError(f"cannot cut {total} into {parts} parts of at least {least}")
    bars = sorted(rng.sample(range(spare + parts - 1), parts - 1))
    edges = [-1, *bars, spare + parts - 1]
    return [least + edges[i + 1] - edges[i] - 1 for i in range(parts)]


def span_corruption(ids: Sequence[int], sentinels: Sequence[int], rng: random.Random,
                    noise_density: float = 0.15, mean_span_length: float = 3.0) -> Corrupted:
    """T5's objective: drop round(noise_density * len) tokens (at least one) in spans of `mean_span_length` on
    average, separated by at least one kept token. The source keeps the other tokens with sentinel k where
    span k was; the target is sentinel k followed by span k's tokens, for every span in order."""
    ids = list(ids)
    if len(ids) < 2:
        raise ValueError(f"span corruption needs at least 2 tokens, got {len(ids)}")
    if not 0 < noise_density < 1 or mean_span_length < 1:
        raise ValueError(f"noise_density must be in (0, 1) and mean_span_length >= 1, got {noise_density}, "
                         f"{mean_span_length}")
    noise = min(max(1, round(noise_density * len(ids))), len(ids) - 1)
    n_spans = max(1, min(round(noise / mean_span_length), len(ids) - noise))
    if n_spans > len(sentinels):
        raise ValueError(f"{n_spans} spans but only {len(sentinels)} sentinel ids")
    span_lengths = _split(noise, n_spans, rng)
    # kept tokens before, between and after the spans: the first and last gaps may be empty, the inner ones not
    gaps = [g - 1 for g in _split(len(ids) - noise + 2, n_spans + 1, rng)]
    gaps = [gaps[0], *(g + 1 for g in gaps[1:-1]), gaps[-1]]
    source, target, spans, at = [], [], [], 0
    for k, length in enumerate(span_lengths):
        source += ids[at:at + gaps[k]]
        at += gaps[k]
        source.append(sentinels[k])
        target += [sentinels[k], *ids[at:at + length]]
        spans.append((at, at + length))
        at += length
    source += ids[at:]
    return Corrupted(source, target, spans)


def uncorrupt(source: Sequence[int], target: Sequence[int], sentinels: Sequence[int]) -> list[int]:
    """The original tokens: each sentinel of the source replaced by what follows it in the target."""
    position = {s: i for i, s in enumerate(sentinels)}
    fills: dict[int, list[int]] = {}
    current = None
    for token in target:
        if token in position:
            current = token
            fills[current] = []
        elif current is None:
            raise ValueError("the target must start with a sentinel")
        else:
            fills[current].append(token)
    restored = []
    for token in source:
        if token in position:
            if token not in fills:
                raise ValueError(f"sentinel {token} is in the source but not in the target")
            restored += fills[token]
        else:
            restored.append(token)
    return restored


def _poisson(rate: float, rng: random.Random) -> int:
    """A draw from the Poisson distribution (Knuth's method; fine for small rates)."""
    limit, count, product = math.exp(-rate), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def text_infilling(ids: Sequence[int], mask_id: int, rng: random.Random, mask_ratio: float = 0.3,
                   poisson_rate: float = 3.0) -> Corrupted:
    """BART's objective: spans with Poisson(`poisson_rate`) lengths, until about `mask_ratio` of the tokens are
    covered, each replaced by one `mask_id` (a span of length 0 inserts a mask); the target is the whole text.
    Spans never overlap or touch."""
    ids = list(ids)
    if not ids:
        raise ValueError("text infilling needs at least one token")
    budget = max(1, round(mask_ratio * len(ids)))
    near = [False] * len(ids)  # near[i]: token i is masked or borders a span
    spans: list[tuple[int, int]] = []
    covered = 0
    for _ in range(100 * len(ids)):  # draws that would overlap or touch a span are redrawn
        if covered >= budget:
            break
        length = min(_poisson(poisson_rate, rng), budget - covered)
        start = rng.randrange(len(ids) - length + 1)
        if any(near[max(0, start - 1):start + length + 1]):
            continue
        spans.append((start, start + length))
        for i in range(max(0, start - 1), min(start + length + 1, len(ids))):
            near[i] = True
        covered += length
    spans.sort()
    source, at = [], 0
    for start, end in spans:
        source += ids[at:start] + [mask_id]
        at = end
    source += ids[at:]
    return Corrupted(source, ids, spans)


def permute_sentences(sentences: Sequence[Sequence[int]], rng: random.Random) -> Corrupted:
    """BART's sentence permutation: the sentences in a shuffled order as the source, in their order as the target."""
    order = list(range(len(sentences)))
    rng.shuffle(order)
    source = [t for i in order for t in sentences[i]]
    return Corrupted(source, [t for sentence in sentences for t in sentence], [])
