"""Bag of words (chapter 1): a word vocabulary, count vectors, TF-IDF weights and cosine similarity, and the
log-count features of chapter 6's bag-of-words baseline classifier."""

from collections import Counter
from collections.abc import Iterable, Sequence

import regex
import torch
from torch import Tensor

WORD_PATTERN = r"[a-z]+(?:'[a-z]+)*"


def words(text: str) -> list[str]:
    """The lower-cased words of a text: runs of letters, with inner apostrophes ("i'll", "o'er")."""
    return regex.findall(WORD_PATTERN, text.lower())


def word_vocabulary(texts: Iterable[str], min_count: int = 2) -> dict[str, int]:
    """Lower-cased words seen at least `min_count` times, sorted, mapped to column indices."""
    counts: dict[str, int] = {}
    for text in texts:
        for word in words(text):
            counts[word] = counts.get(word, 0) + 1
    return {word: i for i, word in enumerate(sorted(w for w, c in counts.items() if c >= min_count))}


def count_vectors(texts: Sequence[str], vocabulary: dict[str, int]) -> Tensor:
    """How many times every vocabulary word occurs in every text (texts, words); unknown words are dropped."""
    if isinstance(texts, str):
        raise ValueError("texts must be a list of texts, got one string (it would be read character by character); "
                         "pass [text] for a single text")
    counts = torch.zeros(len(texts), len(vocabulary))
    for row, text in enumerate(texts):
        found = Counter(word for word in words(text) if word in vocabulary)
        if found:
            counts[row, [vocabulary[word] for word in found]] = torch.tensor(list(found.values()), dtype=counts.dtype)
    return counts


def bag_of_words(texts: Sequence[str], vocabulary: dict[str, int]) -> Tensor:
    """log(1 + count) of every vocabulary word in every text (texts, words); unknown words are dropped."""
    return count_vectors(texts, vocabulary).log1p()


def inverse_document_frequency(counts: Tensor) -> Tensor:
    """ln(number of documents / number of documents containing the word), for every column of (documents, words).

    A word in every document gets 0: it cannot tell documents apart.
    """
    if counts.dim() != 2 or len(counts) == 0:
        raise ValueError(f"counts must be a (documents, words) matrix with at least one document, "
                         f"got shape {tuple(counts.shape)}")
    document_frequency = (counts > 0).sum(dim=0)
    if (document_frequency == 0).any():
        missing = int((document_frequency == 0).sum())
        raise ValueError(f"{missing} word(s) occur in no document: build the vocabulary from these documents "
                         "or drop those columns")
    return torch.log(len(counts) / document_frequency.double()).to(counts.dtype)


def tf_idf(counts: Tensor, idf: Tensor | None = None) -> Tensor:
    """Term frequency times inverse document frequency: counts (documents, words) weighted column by column.

    Pass the `idf` of a reference collection to weight new documents the same way.
    """
    return counts * (inverse_document_frequency(counts) if idf is None else idf)


def cosine_similarity(a: Tensor, b: Tensor | None = None) -> Tensor:
    """Cosine of the angle between every row of `a` and every row of `b` (default: `a` itself); 0 for an all-zero row."""
    b = a if b is None else b
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two matrices with the same number of columns, got shapes {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    unit_a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    unit_b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return unit_a @ unit_b.T
