"""Masked-LM masking and next-sentence pairs, and the course encoder (chapter 5).

`mask_tokens` hides 15 % of the tokens the way BERT does (80 % [MASK], 10 % a random token, 10 %
unchanged); `nsp_pairs` builds next-sentence pairs from the speeches of the plays of one split and
`collate_pairs` packs them as [CLS] A [SEP] B [SEP]; `course_encoder()` is the BertModel of the course
GPT's size pretrained on both tasks, cached like `llmcourse.train.course_model()`.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from llmcourse.data import Play
from llmcourse.finetune import _speeches
from llmcourse.tokenizer import BPETokenizer
from llmcourse.train import course_tokenizer

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")
IGNORE_INDEX = -100  # the label of a position the masked-LM loss skips
IS_NEXT, RANDOM_NEXT = 0, 1  # next-sentence labels: B follows A in the play, or B is a random speech


# --- the tokenizer --------------------------------------------------------------------------------


def bert_tokenizer() -> BPETokenizer:
    """The course tokenizer with BERT's four special tokens added after its ids: [PAD] [CLS] [SEP] [MASK].

    Text encodes exactly as with `course_tokenizer()`; only the vocabulary grows (2,048 -> 2,052 ids).
    """
    base = course_tokenizer()
    specials = dict(base.special_tokens)
    for offset, token in enumerate(SPECIAL_TOKENS):
        specials[token] = base.vocab_size + offset
    return BPETokenizer(base.merges, base.byte_ids, specials, base.pattern)


# --- masked language modelling ----------------------------------------------------------------------


def mask_tokens(token_ids: Tensor, mask_id: int, vocab_size: int, special_ids: Sequence[int], rate: float = 0.15,
                generator: torch.Generator | int = 0) -> tuple[Tensor, Tensor]:
    """BERT's masking of a batch (batch, tokens) or one sequence (tokens): returns (inputs, labels).

    In each row, round(rate * n) of its n non-special positions are chosen at random (at least one if
    n > 0); special tokens (padding included) are never chosen. Of the chosen positions about 80 %
    become `mask_id`, 10 % a random non-special token and 10 % keep their token. `labels` holds the
    original id at the chosen positions and IGNORE_INDEX (-100) everywhere else. All randomness
    comes from `generator` (or a generator seeded with it), never from the global seed.
    """
    if not isinstance(token_ids, Tensor) or token_ids.dtype not in (torch.int32, torch.int64) \
            or token_ids.dim() not in (1, 2):
        raise ValueError("token_ids must be an integer tensor of shape (tokens,) or (batch, tokens), got "
                         f"{getattr(token_ids, 'dtype', type(token_ids).__name__)} of shape "
                         f"{tuple(getattr(token_ids, 'shape', ()))}")
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rate must be in (0, 1], got {rate}")
    special = torch.tensor(sorted(set(special_ids)), dtype=torch.long)
    if mask_id not in special.tolist():
        raise ValueError(f"mask_id={mask_id} must be one of special_ids {special.tolist()} (a [MASK] must "
                         "never be chosen for masking itself)")
    if token_ids.numel() and (token_ids.min() < 0 or token_ids.max() >= vocab_size):
        raise ValueError(f"token ids must be in 0..{vocab_size - 1}, got ids from {token_ids.min().item()} "
                         f"to {token_ids.max().item()}")
    if isinstance(generator, int):
        generator = torch.Generator().manual_seed(generator)
    rows = token_ids.long().reshape(-1, token_ids.shape[-1])
    candidate = ~torch.isin(rows, special)
    n_candidates = candidate.sum(dim=1)
    n_chosen = torch.where(n_candidates > 0, (rate * n_candidates).round().long().clamp(min=1), 0)
    # A random order of each row's candidates (non-candidates sort last): the first n_chosen are chosen.
    scores = torch.rand(rows.shape, generator=generator).masked_fill(~candidate, 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)
    chosen = rank < n_chosen[:, None]
    labels = torch.where(chosen, rows, IGNORE_INDEX)
    action = torch.rand(rows.shape, generator=generator)
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in set(special.tolist())])
    random_ids = ordinary[torch.randint(len(ordinary), rows.shape, generator=generator)]
    inputs = torch.where(chosen & (action < 0.8), mask_id, rows)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs.reshape(token_ids.shape), labels.reshape(token_ids.shape)


# --- next-sentence pairs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SentencePair:
    """Two segments of whole speeches and whether B follows A (IS_NEXT) or is a random run (RANDOM_NEXT).

    `a_speeches` and `b_speeches` are (first, stop) indices into the split's list of speeches (plays
    in plays.csv order, speeches in play order), so "B follows A" means b_speeches[0] == a_speeches[1]
    within one play.
    """

    a_ids: tuple[int, ...]
    b_ids: tuple[int, ...]
    label: int
    a_play: str
    b_play: str
    a_speeches: tuple[int, int]
    b_speeches: tuple[int, int]


def split_speeches(plays: Sequence[Play], split: str, tokenizer: BPETokenizer) -> list[tuple[str, list[int]]]:
    """(play, token ids) of every speech in the plays of `split`, in order; a speech is its lines without
    the speaker's name, each line ending in a newline."""
    chosen = [p for p in plays if p.split == split]
    if not chosen:
        raise ValueError(f"no plays in split {split!r}")
    return [(play.play, tokenizer.encode("".join(line + "\n" for line in lines), allowed_special="none"))
            for play in chosen for _, lines in _speeches(play)]


def _run(speeches: list[tuple[str, list[int]]], first: int, budget: int) -> tuple[int, list[int]]:
    """Consecutive speeches of one play from `first` until they hold `budget` tokens (at least one speech)."""
    stop, ids = first, []
    while stop < len(speeches) and speeches[stop][0] == speeches[first][0] and (not ids or len(ids) < budget):
        ids += speeches[stop][1]
        stop += 1
    return stop, ids


def nsp_pairs(plays: Sequence[Play], split: str, tokenizer: BPETokenizer, context_length: int = 128,
              seed: int = 0) -> list[SentencePair]:
    """Next-sentence pairs from the plays of `split` only, half IS_NEXT and half RANDOM_NEXT.

    Each play is walked from its start in segments of whole consecutive speeches, each grown until it
    holds about half a context ((context_length - 3) // 2 tokens). Every segment A that has a
    following segment in its play gets a partner B: the following segment (IS_NEXT), or a segment
    starting at a random speech of any play of the same split, never the true next one (RANDOM_NEXT).
    Which A's get which label is drawn from `seed` so that the two labels are equally frequent (they
    differ by at most one).
    """
    if context_length < 5:
        raise ValueError(f"context_length must be at least 5 ([CLS] A [SEP] B [SEP]), got {context_length}")
    speeches = split_speeches(plays, split, tokenizer)
    budget = (context_length - 3) // 2
    segments = []  # (first, stop, ids) of each A that has a following segment in its play
    first = 0
    while first < len(speeches):
        stop, ids = _run(speeches, first, budget)
        if stop < len(speeches) and speeches[stop][0] == speeches[first][0]:
            segments.append((first, stop, ids))
        first = stop
    rng = random.Random(seed)
    order = list(range(len(segments)))
    rng.shuffle(order)
    is_next = set(order[:(len(segments) + 1) // 2])
    pairs = []
    for index, (first, stop, a_ids) in enumerate(segments):
        if index in is_next:
            label, b_first = IS_NEXT, stop
        else:
            label, b_first = RANDOM_NEXT, rng.randrange(len(speeches))
            while b_first == stop:
                b_first = rng.randrange(len(speeches))
        b_stop, b_ids = _run(speeches, b_first, budget)
        pairs.append(SentencePair(tuple(a_ids), tuple(b_ids), label, speeches[first][0], speeches[b_first][0],
                                  (first, stop), (b_first, b_stop)))
    return pairs


def pack_pair(a_ids: Sequence[int], b_ids: Sequence[int], cls_id: int, sep_id: int,
              context_length: int) -> tuple[list[int], list[int]]:
    """[CLS] A [SEP] B [SEP] and its segment ids (0 up to the first [SEP], 1 after), at most context_length long.

    If too long, the longer segment loses one token at a time (A from its start, B from its end), so
    the tokens kept are those next to the A|B boundary, where "does B follow A?" is decided.
    """
    if context_length < 5:
        raise ValueError(f"context_length must be at least 5 ([CLS] A [SEP] B [SEP]), got {context_length}")
    if not a_ids or not b_ids:
        raise ValueError(f"both segments need at least one token, got {len(a_ids)} and {len(b_ids)}")
    a_start, b_stop = 0, len(b_ids)
    while (len(a_ids) - a_start) + b_stop > context_length - 3:
        if len(a_ids) - a_start >= b_stop:
            a_start += 1
        else:
            b_stop -= 1
    a, b = list(a_ids[a_start:]), list(b_ids[:b_stop])
    return [cls_id, *a, sep_id, *b, sep_id], [0] * (len(a) + 2) + [1] * (len(b) + 1)


@dataclass
class PairBatch:
    """Packed pairs padded to the batch's longest: ids, segment ids and padding mask (batch, tokens)
    (True for real tokens), and the next-sentence labels (batch,)."""

    token_ids: Tensor
    segment_ids: Tensor
    padding_mask: Tensor
    nsp_labels: Tensor


def collate_pairs(pairs: Sequence[SentencePair], tokenizer: BPETokenizer, context_length: int) -> PairBatch:
    """Pack every pair with `pack_pair` and pad the rows with [PAD] to the longest one."""
    if not pairs:
        raise ValueError("cannot collate an empty batch of pairs")
    specials = tokenizer.special_tokens
    missing = [t for t in SPECIAL_TOKENS if t not in specials]
    if missing:
        raise ValueError(f"the tokenizer lacks the special tokens {missing}: use bert_tokenizer()")
    packed = [pack_pair(p.a_ids, p.b_ids, specials["[CLS]"], specials["[SEP]"], context_length) for p in pairs]
    longest = max(len(ids) for ids, _ in packed)
    token_ids = torch.full((len(pairs), longest), specials["[PAD]"], dtype=torch.long)
    segment_ids = torch.zeros((len(pairs), longest), dtype=torch.long)
    padding_mask = torch.zeros((len(pairs), longest), dtype=torch.bool)
    for row, (ids, segments) in enumerate(packed):
        token_ids[row, :len(ids)] = torch.tensor(ids)
        segment_ids[row, :len(ids)] = torch.tensor(segments)
        padding_mask[row, :len(ids)] = True
    return PairBatch(token_ids, segment_ids, padding_mask, torch.tensor([p.label for p in pairs]))
