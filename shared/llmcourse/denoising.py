"""Pretraining an encoder-decoder on plain text (chapter 5): T5's span corruption or BART's text infilling on
the character vocabulary of `llmcourse.seq2seq`, which gains 12 sentinel ids and one mask id.

`pretrain` feeds freshly corrupted texts to the same loop (`train_on_batches`) that fine-tuning uses;
`denoising_scores` measures what each objective asks for: the exact target, and its share of right tokens.
"""

import random
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from llmcourse.corruption import Corrupted, span_corruption, text_infilling
from llmcourse.encoder import EncoderDecoder
from llmcourse.model import GPTConfig
from llmcourse.seq2seq import (BOS_ID, EOS_ID, VOCAB, VOCAB_SIZE, Batch, Seq2SeqHistory, batch_from_ids,
                               char_accuracy, encode, train_on_batches)

SENTINEL_IDS = tuple(range(VOCAB_SIZE, VOCAB_SIZE + 12))
MASK_ID = VOCAB_SIZE + 12
PRETRAIN_VOCAB_SIZE = VOCAB_SIZE + 13
OBJECTIVES = ("t5", "bart")


def render(ids: Sequence[int] | Tensor) -> str:
    """Text of `ids` up to [EOS], with sentinel k shown as <k> and the mask as _ ([PAD] and [BOS] skipped)."""
    out = []
    for i in (ids.tolist() if isinstance(ids, Tensor) else ids):
        if i == EOS_ID:
            break
        if not 0 <= i < PRETRAIN_VOCAB_SIZE:
            raise ValueError(f"id {i} is outside the vocabulary (0 .. {PRETRAIN_VOCAB_SIZE - 1})")
        if i in SENTINEL_IDS:
            out.append(f"<{i - VOCAB_SIZE}>")
        elif i == MASK_ID:
            out.append("_")
        elif i > BOS_ID:
            out.append(VOCAB[i])
    return "".join(out)


def build_denoiser(seed: int = 0) -> EncoderDecoder:
    """5F's transformer (d_model 64, one block each side, 4 heads, ReLU feed-forward of 128, sinusoidal
    positions) with pre-norm blocks and room for the sentinels and the mask: 87k parameters."""
    torch.manual_seed(seed)
    return EncoderDecoder(GPTConfig(vocab_size=PRETRAIN_VOCAB_SIZE, context_length=64, d_model=64, n_heads=4,
                                    n_layers=1, dropout=0.0, d_ff=128, pre_norm=True, ff="relu",
                                    positions="sinusoidal"))


def corrupt(text: str, objective: str, rng: random.Random) -> Corrupted:
    """One training example from `text`: T5's span corruption (15 % in spans of 3) or BART's infilling (30 %)."""
    if objective == "t5":
        return span_corruption(encode(text), SENTINEL_IDS, rng)
    if objective == "bart":
        return text_infilling(encode(text), MASK_ID, rng)
    raise ValueError(f"unknown objective {objective!r}; choose one of {OBJECTIVES}")


def denoising_batch(examples: Sequence[Corrupted]) -> Batch:
    """The corrupted texts as the encoder's input and what they lost as the decoder's target, teacher-forced."""
    return batch_from_ids([e.source for e in examples], [e.target for e in examples])


def denoising_batches(texts: Sequence[str], objective: str, batch_size: int, seed: int) -> Iterator[Batch]:
    """Endless batches of `batch_size` texts drawn at random, each corrupted afresh every time it is drawn."""
    if not texts:
        raise ValueError("no texts to pretrain on")
    rng = random.Random(seed)
    while True:
        yield denoising_batch([corrupt(t, objective, rng) for t in rng.choices(texts, k=batch_size)])


def pretrain(model: nn.Module, texts: Sequence[str], objective: str, budget_seconds: float | None,
             batch_size: int = 32, warmup_steps: int = 100, lr_scale: float = 1.0, label_smoothing: float = 0.1,
             seed: int = 0, max_steps: int | None = None, progress: bool = True, cooldown: float = 0.0,
             clock: Callable[[], float] = time.process_time) -> Seq2SeqHistory:
    """Pretrain `model` on corrupted `texts` for `budget_seconds` of one thread's CPU time or `max_steps` updates,
    with fine-tuning's optimizer, schedule, cooldown and loss (`llmcourse.seq2seq.train_on_batches`)."""
    return train_on_batches(model, denoising_batches(texts, objective, batch_size, seed), budget_seconds,
                            model.cfg.d_model, warmup_steps, lr_scale, label_smoothing, seed, max_steps,
                            clock, progress, cooldown)


def denoising_scores(model: EncoderDecoder, texts: Sequence[str], objective: str, seed: int = 0,
                     batch_size: int = 100) -> dict[str, float]:
    """Greedy targets for `texts` corrupted with `seed`: the share exactly right, and the mean share of target
    positions right (the longer of prediction and target counts, as in `char_accuracy`)."""
    rng = random.Random(seed)
    examples = [corrupt(t, objective, rng) for t in texts]
    exact, accuracy = 0, 0.0
    model.eval()
    for k in range(0, len(examples), batch_size):
        chunk = examples[k:k + batch_size]
        batch = denoising_batch(chunk)
        longest = max(len(e.target) for e in chunk) + 2
        ids = model.greedy_decode(batch.src_ids, BOS_ID, EOS_ID, min(longest, model.cfg.context_length - 1),
                                  batch.src_padding_mask)
        for row, e in zip(ids.tolist(), chunk):
            row = row[:row.index(EOS_ID)] if EOS_ID in row else row
            exact += row == e.target
            accuracy += char_accuracy(row, e.target)
    return {"exact_match": exact / len(examples), "token_accuracy": accuracy / len(examples)}
