"""n-gram language models (chapter 1): count tables kept as sorted integer keys, add-k, interpolated
absolute-discounting and Kneser-Ney smoothing, log-probabilities of a text, bits per byte, seeded sampling.

An n-gram of token ids (t1, ..., tk) over a vocabulary of V units is stored as the integer
t1 * V**(k-1) + ... + tk, so counting is a sort (`np.unique`) and looking up is a binary search.
"""

import math
from collections.abc import Sequence

import numpy as np

SMOOTHINGS = ("add-k", "interpolated", "kneser-ney")


def ngram_keys(ids: np.ndarray, order: int, vocab_size: int) -> np.ndarray:
    """The integer key of every n-gram of `order` units in `ids`: one key per position from order - 1 on."""
    keys = np.zeros(len(ids) - order + 1, dtype=np.int64)
    for offset in range(order):
        keys = keys * vocab_size + ids[offset:len(ids) - order + 1 + offset]
    return keys


def context_table(keys: np.ndarray, counts: np.ndarray, vocab_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For sorted n-gram keys and their counts: each context's key, its total count and its number of distinct
    next units (the n-gram without its last unit is key // vocab_size, so contexts come out sorted too)."""
    contexts, starts, types = np.unique(keys // vocab_size, return_index=True, return_counts=True)
    totals = np.add.reduceat(counts, starts) if len(counts) else counts
    return contexts, totals, types


def lookup(table_keys: np.ndarray, table_values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The value of each query key in a sorted table, 0 where the key is absent."""
    if len(table_keys) == 0:
        return np.zeros(np.shape(queries), dtype=np.int64)
    index = np.minimum(np.searchsorted(table_keys, queries), len(table_keys) - 1)
    return np.where(table_keys[index] == queries, table_values[index], 0)


class NGramModel:
    """p(next unit | the previous order - 1 units), estimated from counts and smoothed so that every unit of
    the vocabulary gets a non-zero probability in every context.

    smoothing: "add-k" (k extra counts for every unit, highest order only), "interpolated" (subtract
    `discount` from every seen count and give the freed mass to the next lower order, down to uniform) or
    "kneser-ney" (the same, with lower orders counting the distinct units seen before an n-gram).
    """

    def __init__(self, order: int, vocab_size: int, smoothing: str = "kneser-ney", k: float = 1.0,
                 discount: float = 0.75):
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be an integer >= 1, got {order!r}")
        if vocab_size < 1 or vocab_size ** order >= 2 ** 63:
            raise ValueError(f"vocab_size={vocab_size} ** order={order} must fit in a 64-bit key (< 2**63)")
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")
        if smoothing == "add-k" and not k > 0:
            raise ValueError(f"add-k smoothing needs k > 0, got k={k}")
        if smoothing != "add-k" and not 0 < discount <= 1:
            raise ValueError(f"{smoothing} smoothing needs 0 < discount <= 1, got discount={discount}")
        self.order, self.vocab_size, self.smoothing = order, vocab_size, smoothing
        self.k, self.discount = k, discount
        self.tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.contexts: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _check_ids(self, ids: Sequence[int]) -> np.ndarray:
        given = np.asarray(ids)
        if given.size and not np.issubdtype(given.dtype, np.integer):
            raise ValueError(f"ids must be integer unit ids, got {given.dtype} values such as {given.flat[0]!r}")
        array = given.astype(np.int64)
        if array.ndim != 1:
            raise ValueError(f"ids must be a 1-D sequence of unit ids, got shape {array.shape}")
        if len(array) and (array.min() < 0 or array.max() >= self.vocab_size):
            raise ValueError(f"ids must lie in 0..{self.vocab_size - 1}, got {array.min()}..{array.max()}")
        return array

    def fit(self, ids: Sequence[int]) -> "NGramModel":
        """Count every n-gram of every order 1..order in `ids` (a Kneser-Ney model replaces the counts of the
        lower orders by continuation counts)."""
        ids = self._check_ids(ids)
        for order in range(1, self.order + 1):
            keys = ngram_keys(ids, order, self.vocab_size) if len(ids) >= order else np.zeros(0, np.int64)
            self.tables[order] = np.unique(keys, return_counts=True)
        if self.smoothing == "kneser-ney":
            for order in range(1, self.order):  # how many distinct units precede each n-gram
                self.tables[order] = np.unique(self.tables[order + 1][0] % self.vocab_size ** order,
                                               return_counts=True)
        for order in range(1, self.order + 1):
            self.contexts[order] = context_table(*self.tables[order], self.vocab_size)
        return self

    def statistics(self, ids: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """For each order 1..order: the count of each position's n-gram, its context's total and number of
        distinct next units. They do not depend on k or the discount, so a sweep over those computes them once."""
        if not self.tables:
            raise ValueError("the model has no counts yet: call fit() first")
        ids = self._check_ids(ids)
        return [self._lookup_order(order, ngram_keys(ids, order, self.vocab_size))
                for order in range(1, min(self.order, len(ids)) + 1)]

    def _lookup_order(self, order: int, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        contexts, totals, types = self.contexts[order]
        context_keys = keys // self.vocab_size
        return (lookup(*self.tables[order], keys), lookup(contexts, totals, context_keys),
                lookup(contexts, types, context_keys))

    def _smooth(self, lower: np.ndarray, counts: np.ndarray, total: np.ndarray, n_types: np.ndarray) -> np.ndarray:
        """Probabilities of n-grams from their counts, given the probabilities of the next lower order."""
        if self.smoothing == "add-k":
            return (counts + self.k) / (total + self.k * self.vocab_size)
        seen = total > 0
        mixed = (np.maximum(counts - self.discount, 0) + self.discount * n_types * lower) / np.where(seen, total, 1)
        return np.where(seen, mixed, lower)

    def log_probs(self, ids: Sequence[int],
                  statistics: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
        """ln p(ids[i] | the units before it) for every position i; the first positions use what context they
        have. Pass `statistics(ids)` to skip the look-ups when only k or the discount changed."""
        statistics = self.statistics(ids) if statistics is None else statistics
        probs = np.full(len(ids), 1.0 / self.vocab_size)
        for order, stats in enumerate(statistics, start=1):
            probs[order - 1:] = self._smooth(probs[order - 1:], *stats)
        return np.log(probs)

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """p(unit | context) for every unit of the vocabulary (only the last order - 1 units of context count)."""
        if not self.tables:
            raise ValueError("the model has no counts yet: call fit() first")
        context = self._check_ids(context)
        context = context[len(context) - min(len(context), self.order - 1):]
        candidates = np.arange(self.vocab_size, dtype=np.int64)
        probs = np.full(self.vocab_size, 1.0 / self.vocab_size)
        for order in range(1, len(context) + 2):
            prefix = 0
            for unit in context[len(context) - order + 1:]:
                prefix = prefix * self.vocab_size + int(unit)
            probs = self._smooth(probs, *self._lookup_order(order, prefix * self.vocab_size + candidates))
        return probs

    def prob(self, context: Sequence[int], unit: int) -> float:
        """p(unit | context)."""
        return float(self.distribution(context)[unit])

    def bits_per_byte(self, ids: Sequence[int], n_bytes: int,
                      statistics: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None) -> float:
        """Total -log2 p(ids) divided by the number of bytes of the text the ids encode."""
        if n_bytes < 1:
            raise ValueError(f"n_bytes must be >= 1, got {n_bytes}")
        return float(-self.log_probs(ids, statistics).sum() / math.log(2) / n_bytes)

    def sample(self, n_units: int, seed: int, prompt: Sequence[int] = ()) -> list[int]:
        """`n_units` units drawn one at a time from p(unit | what came before), after `prompt`, seeded."""
        rng = np.random.default_rng(seed)
        ids = [int(unit) for unit in prompt]
        for _ in range(n_units):
            probs = self.distribution(ids[len(ids) - min(len(ids), self.order - 1):])
            ids.append(int(rng.choice(self.vocab_size, p=probs / probs.sum())))
        return ids[len(prompt):]
