"""Word vectors by skip-gram with negative sampling (word2vec): one static vector per word (chapter 1).

The steps in the order notebook 1D builds them: split text into lower-cased words, keep the words
seen at least `min_count` times, drop frequent words at random (subsampling), pair each word with
its neighbours (skip-gram pairs), draw noise words from the unigram distribution raised to 0.75,
and train `SkipGram` to tell real pairs from noise. Then cosine neighbours and analogies.
"""

import re
from collections import Counter

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WORD_PATTERN = re.compile(r"[a-z]+(?:'[a-z]+)*")


def split_words(text: str) -> list[str]:
    """Lower-cased words of a text: runs of letters, with inner apostrophes kept ("o'er", "ne'er")."""
    return WORD_PATTERN.findall(text.lower())


def build_vocabulary(words: list[str], min_count: int = 5) -> tuple[list[str], Tensor]:
    """Words seen at least `min_count` times, most frequent first (ties alphabetical), and their counts."""
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    counts = Counter(words)
    kept = sorted((word for word, count in counts.items() if count >= min_count), key=lambda w: (-counts[w], w))
    if not kept:
        raise ValueError(f"no word occurs {min_count} times or more; lower min_count")
    return kept, torch.tensor([counts[word] for word in kept], dtype=torch.float64)


def keep_probabilities(counts: Tensor, threshold: float = 1e-4) -> Tensor:
    """Probability of keeping each occurrence of a word of frequency f: min(1, sqrt(threshold / f)).

    Words rarer than `threshold` are always kept; "the", with f = 100 x threshold, keeps one
    occurrence in ten. Frequent words carry little about their neighbours, and dropping most of them
    both speeds training and brings content words closer together.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    frequencies = counts / counts.sum()
    return (threshold / frequencies).sqrt().clamp(max=1.0)


def subsample(token_ids: Tensor, keep: Tensor, generator: torch.Generator) -> Tensor:
    """The token ids with each occurrence kept with probability keep[id], independently."""
    return token_ids[torch.rand(len(token_ids), generator=generator, dtype=keep.dtype) < keep[token_ids]]


def noise_distribution(counts: Tensor, power: float = 0.75) -> Tensor:
    """Probabilities of drawing each word as a noise word: counts ** power, normalised.

    A power below 1 flattens the unigram distribution: rare words are drawn more often than their
    frequency, frequent ones less, so the model sees more informative negatives.
    """
    weights = counts.double() ** power
    return weights / weights.sum()


def skipgram_pairs(token_ids: Tensor, window: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(center, context) id pairs: each token with the tokens up to `window` positions either side.

    As in word2vec, each center draws its own window size uniformly from 1..window, so near
    neighbours are paired more often than far ones.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    n = len(token_ids)
    reach = torch.randint(1, window + 1, (n,), generator=generator)
    centers, contexts = [], []
    for offset in range(1, window + 1):
        position = torch.arange(n - offset)
        for center, context in ((position, position + offset), (position + offset, position)):
            used = reach[center] >= offset
            centers.append(token_ids[center[used]])
            contexts.append(token_ids[context[used]])
    return torch.cat(centers), torch.cat(contexts)


class SkipGram(nn.Module):
    """Two tables of word vectors: `center` for the word read, `context` for the words around it.

    The score of a (center, context) pair is the dot product of their vectors; training pushes
    sigmoid(score) towards 1 for real pairs and towards 0 for noise pairs.
    """

    def __init__(self, vocab_size: int, dim: int, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.center = nn.Embedding(vocab_size, dim)
        self.context = nn.Embedding(vocab_size, dim)
        with torch.no_grad():  # word2vec's start: small random center vectors, zero context vectors
            self.center.weight.copy_((torch.rand(vocab_size, dim, generator=generator) - 0.5) / dim)
            self.context.weight.zero_()

    def forward(self, centers: Tensor, contexts: Tensor, negatives: Tensor) -> Tensor:
        """Mean loss over the batch: -log sigmoid(real score) - sum over noise words of log sigmoid(-score).

        centers, contexts: (batch,) word ids; negatives: (batch, k) noise word ids.
        """
        if centers.shape != contexts.shape or negatives.dim() != 2 or negatives.shape[0] != centers.shape[0]:
            raise ValueError(f"need centers and contexts of one shape (batch,) and negatives (batch, k); got "
                             f"{tuple(centers.shape)}, {tuple(contexts.shape)}, {tuple(negatives.shape)}")
        v = self.center(centers)  # (batch, dim)
        positive = (v * self.context(contexts)).sum(-1)  # (batch,)
        negative = torch.bmm(self.context(negatives), v.unsqueeze(-1)).squeeze(-1)  # (batch, k)
        return -(F.logsigmoid(positive) + F.logsigmoid(-negative).sum(-1)).mean()


def nearest_neighbours(vectors: Tensor, query: Tensor, k: int = 5,
                       exclude: list[int] | None = None) -> list[tuple[int, float]]:
    """The `k` rows of `vectors` with the highest cosine similarity to `query`, as (row, cosine); rows in
    `exclude` are never returned."""
    allowed = torch.ones(len(vectors), dtype=torch.bool, device=vectors.device)
    allowed[exclude or []] = False
    if not 1 <= k <= allowed.sum():
        raise ValueError(f"k must be in 1 .. {int(allowed.sum())} (the rows not excluded), got {k}")
    cosines = F.normalize(vectors, dim=-1) @ F.normalize(query, dim=-1)
    values, rows = cosines.masked_fill(~allowed, float("-inf")).topk(k)
    return list(zip(rows.tolist(), values.tolist()))


def analogy(vectors: Tensor, a: int, b: int, c: int) -> int:
    """The word d that completes a : b :: c : d, the nearest by cosine to b - a + c (a, b, c excluded)."""
    unit = F.normalize(vectors, dim=-1)
    return nearest_neighbours(unit, unit[b] - unit[a] + unit[c], k=1, exclude=[a, b, c])[0][0]
