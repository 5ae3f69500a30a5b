"""Sequence to sequence (chapter 5): the character vocabulary and batches, the three models compared, the
2017 schedule, the training loop, greedy decoding and scores.

The task is `llmcourse.tasks.reversal_pairs`'s word reversal at the character level: "to be or not" becomes
"not or be to". The RNN encoder-decoders (`llmcourse.rnn.RNNEncoderDecoder`) share one interface with the
2017 transformer `llmcourse.encoder.EncoderDecoder`: `forward(src_ids, tgt_ids, src_padding_mask, tgt_padding_mask)`
gives logits, `greedy_decode(...)` gives ids and `cross_attention_weights(...)` gives heatmaps, so one training
loop and one evaluation serve all three.
"""

import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from llmcourse.encoder import EncoderDecoder
from llmcourse.model import GPTConfig
from llmcourse.rnn import RNNEncoderDecoder
from llmcourse.runtime import threads
from llmcourse.tasks import Pair

SPECIAL_TOKENS = ("[PAD]", "[BOS]", "[EOS]")
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
CHARACTERS = " '" + "abcdefghijklmnopqrstuvwxyz"
VOCAB = SPECIAL_TOKENS + tuple(CHARACTERS)
VOCAB_SIZE = len(VOCAB)
_CHAR_ID = {c: i + len(SPECIAL_TOKENS) for i, c in enumerate(CHARACTERS)}


# --- characters to ids and batches ------------------------------------------------------------------------

def encode(text: str) -> list[int]:
    """Character ids of `text` (no [BOS] or [EOS]); a character outside the vocabulary raises a ValueError."""
    if not isinstance(text, str):
        raise ValueError(f"encode takes a string, got {type(text).__name__}")
    bad = sorted(set(text) - set(CHARACTERS))
    if bad:
        raise ValueError(f"characters {bad} are not in the vocabulary (lower-case letters, apostrophe and "
                         "space); pass the text through normalise_line() first")
    return [_CHAR_ID[c] for c in text]


def decode(ids: Sequence[int] | Tensor) -> str:
    """The text of `ids`, stopping at the first [EOS]; [PAD] and [BOS] are skipped."""
    chars = []
    for i in (ids.tolist() if isinstance(ids, Tensor) else ids):
        if i == EOS_ID:
            break
        if not 0 <= i < VOCAB_SIZE:
            raise ValueError(f"id {i} is outside the vocabulary (0 .. {VOCAB_SIZE - 1})")
        if i >= len(SPECIAL_TOKENS):
            chars.append(VOCAB[i])
    return "".join(chars)


@dataclass
class Batch:
    """Padded tensors for a batch of pairs; masks are True for real tokens and False for [PAD]."""

    src_ids: Tensor  # (batch, src_tokens): the source characters
    src_padding_mask: Tensor
    tgt_in: Tensor  # (batch, tgt_tokens): [BOS] + target, what the decoder reads (teacher forcing)
    tgt_out: Tensor  # (batch, tgt_tokens): target + [EOS], what it must predict, [PAD] where nothing is
    tgt_padding_mask: Tensor


def pad_ids(rows: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Rows of ids padded with [PAD] into one (rows, longest) tensor, and the mask of real tokens."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return ids, ids != PAD_ID


def batch_from_ids(sources: list[list[int]], targets: list[list[int]]) -> Batch:
    """A teacher-forced `Batch`: the sources padded, the decoder reading [BOS] + target, predicting target + [EOS]."""
    src_ids, src_mask = pad_ids(sources)
    tgt_in, tgt_mask = pad_ids([[BOS_ID] + t for t in targets])
    tgt_out, _ = pad_ids([t + [EOS_ID] for t in targets])
    return Batch(src_ids, src_mask, tgt_in, tgt_out, tgt_mask)


def make_batch(pairs: Sequence[Pair]) -> Batch:
    """Encode and pad `pairs` into one `Batch`."""
    if not pairs:
        raise ValueError("make_batch needs at least one pair")
    sources = [encode(p.source) for p in pairs]
    if any(not s for s in sources):
        raise ValueError("a source is empty; every pair needs at least one character")
    return batch_from_ids(sources, [encode(p.target) for p in pairs])


def shuffled_batches(pairs: Sequence[Pair], batch_size: int, seed: int, bucket_batches: int = 20) -> Iterator[Batch]:
    """One epoch of `pairs` in batches of `batch_size`, seeded: shuffled, then sorted by source length within
    runs of `bucket_batches` batches so that a batch holds similar lengths (less padding, faster steps), and
    the batches shuffled again. Each batch is encoded only when it is asked for."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    rng = random.Random(seed)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    run = batch_size * bucket_batches
    order = [i for k in range(0, len(order), run) for i in sorted(order[k:k + run], key=lambda i: len(pairs[i].source))]
    batches = [[pairs[i] for i in order[k:k + batch_size]] for k in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return (make_batch(b) for b in batches)



MODEL_NAMES = ("RNN", "RNN + attention", "transformer")


def build_model(name: str, seed: int = 0) -> nn.Module:
    """One of the three models notebook 5F and bench/seq2seq.py compare, initialised from `seed`.

    The two RNNs have a 64-wide GRU state (a bidirectional encoder, so 128-wide encoder states); the
    transformer is the 2017 design (post-norm, ReLU, sinusoidal positions) at d_model 64, one encoder and
    one decoder block, 4 heads and a feed-forward of 128: 80k, 86k and 86k parameters. (Two blocks each
    reached a third of the character accuracy on the validation plays at 30 CPU seconds: fewer, slower
    steps.) They are compared at equal CPU time.
    """
    torch.manual_seed(seed)
    if name == "RNN":
        return RNNEncoderDecoder(VOCAB_SIZE, d_embed=32, hidden_size=64, attention=False, pad_id=PAD_ID)
    if name == "RNN + attention":
        return RNNEncoderDecoder(VOCAB_SIZE, d_embed=32, hidden_size=64, attention=True, attention_size=32,
                                 pad_id=PAD_ID)
    if name == "transformer":
        return EncoderDecoder(GPTConfig(vocab_size=VOCAB_SIZE, context_length=64, d_model=64, n_heads=4,
                                        n_layers=1, dropout=0.0, d_ff=128, pre_norm=False, ff="relu",
                                        positions="sinusoidal"))
    raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")


def model_width(model: nn.Module) -> int:
    """The width the warmup schedule's d_model^-0.5 uses: the transformer's d_model, the RNN's state size."""
    return model.cfg.d_model if isinstance(model, EncoderDecoder) else model.hidden_size


# --- training ---------------------------------------------------------------------------------------------

def warmup_lr(step: int, d_model: int, warmup_steps: int, scale: float = 1.0) -> float:
    """The 2017 schedule: scale · d_model^-0.5 · min(step^-0.5, step · warmup^-1.5), for steps 1, 2, ...

    It rises linearly for `warmup_steps` steps, peaks at scale · (d_model · warmup_steps)^-0.5 and then
    decays as one over the square root of the step.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"step counts from 1, got {step!r}")
    if d_model < 1 or warmup_steps < 1 or scale <= 0:
        raise ValueError(f"need d_model >= 1, warmup_steps >= 1 and scale > 0, got {d_model}, {warmup_steps}, {scale}")
    return scale * d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)


def seq2seq_loss(logits: Tensor, tgt_out: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy over the real target tokens ([PAD] ignored), optionally label-smoothed."""
    return F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID,
                           label_smoothing=label_smoothing)


@dataclass
class Seq2SeqHistory:
    """What a training run did: the loss at each step, and the CPU seconds it had used by then."""

    losses: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.losses)


def train_seq2seq(model: nn.Module, pairs: Sequence[Pair], budget_seconds: float | None, d_model: int,
                  batch_size: int = 64, warmup_steps: int = 100, lr_scale: float = 1.0,
                  label_smoothing: float = 0.1, seed: int = 0, max_steps: int | None = None,
                  clock: Callable[[], float] = time.process_time, progress: bool = True,
                  cooldown: float = 0.0) -> Seq2SeqHistory:
    """Train any of the course's encoder-decoders on `pairs` until `budget_seconds` of `clock` have passed, or
    `max_steps` updates are done, whichever comes first (`budget_seconds=None`: updates only, the same run on
    every machine).

    Adam (β = 0.9, 0.98) with the 2017 warmup schedule `warmup_lr`, label smoothing, [PAD] ignored in
    the loss, gradients clipped at norm 1. The default clock is CPU time of this process, so a model is
    charged for its own work only, and it then runs on one thread.
    With `cooldown` > 0 the rate falls linearly to 0 over that last share of the budget (of the updates, when
    there is no time budget), so the run ends settled instead of wherever the noise of a high rate left it.
    """
    if not pairs:
        raise ValueError("no training pairs")

    def epochs() -> Iterator[Batch]:
        epoch = 0
        while True:
            yield from shuffled_batches(pairs, batch_size, seed=seed * 1000 + epoch)
            epoch += 1

    return train_on_batches(model, epochs(), budget_seconds, d_model, warmup_steps, lr_scale, label_smoothing,
                            seed, max_steps, clock, progress, cooldown)


def train_on_batches(model: nn.Module, batches: Iterator[Batch], budget_seconds: float | None, d_model: int,
                     warmup_steps: int = 100, lr_scale: float = 1.0, label_smoothing: float = 0.1, seed: int = 0,
                     max_steps: int | None = None, clock: Callable[[], float] = time.process_time,
                     progress: bool = True, cooldown: float = 0.0) -> Seq2SeqHistory:
    """The loop of `train_seq2seq` on any endless stream of batches (pretraining makes its batches as it goes)."""
    if budget_seconds is None and max_steps is None:
        raise ValueError("give a time budget (budget_seconds), a number of updates (max_steps), or both")
    if budget_seconds is not None and not budget_seconds > 0:
        raise ValueError(f"budget_seconds must be > 0, got {budget_seconds!r}")
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be an integer >= 1, got {max_steps!r}")
    if not 0.0 <= cooldown <= 1.0:
        raise ValueError(f"cooldown is a share of the budget, in [0, 1]; got {cooldown!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    history = Seq2SeqHistory()
    model.train()
    # A budget of CPU seconds (time.process_time counts every thread) is one thread's: the same budget
    # then buys the same number of updates on a 2-core laptop and a 16-core workstation.
    with threads(1 if clock is time.process_time else torch.get_num_threads()):
        started = clock()
        timed = budget_seconds is not None
        bar = tqdm(total=round(budget_seconds) if timed else max_steps, unit="cpu s" if timed else "step",
                   disable=not progress, leave=False)
        for batch in batches:
            step = history.steps + 1
            lr = warmup_lr(step, d_model, warmup_steps, lr_scale)
            if cooldown > 0:  # the share of the budget still ahead, over the cooldown's share: from 1 down to 0
                ahead = 1 - (clock() - started) / budget_seconds if timed else 1 - (step - 1) / max_steps
                lr *= min(1.0, max(0.0, ahead / cooldown))
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits = model(batch.src_ids, batch.tgt_in, batch.src_padding_mask, batch.tgt_padding_mask)
            loss = seq2seq_loss(logits, batch.tgt_out, label_smoothing)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower lr_scale")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            used = clock() - started
            history.losses.append(loss.item())
            history.seconds.append(used)
            history.lrs.append(lr)
            bar.n = min(round(used), round(budget_seconds)) if timed else history.steps
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            bar.refresh()
            if (timed and used >= budget_seconds) or (max_steps is not None and history.steps >= max_steps):
                break
        bar.close()
    model.eval()
    return history


# --- evaluation -------------------------------------------------------------------------------------------

def predict(model: nn.Module, sources: Sequence[str], batch_size: int = 100, extra_tokens: int = 5,
            to_text: Callable[[Sequence[int]], str] = decode) -> list[str]:
    """Greedy outputs of `model` for `sources`, as text (up to the source length + `extra_tokens` characters).

    Sources are decoded in batches of similar length, so a batch of short lines stops early. `to_text` turns
    a row of ids into text (`decode` refuses ids outside the vocabulary; a model with extra tokens passes its own).
    """
    if isinstance(sources, str):
        raise ValueError("sources must be a list of texts, got one string; pass [text] for a single source")
    longest = max(map(len, sources), default=0)
    if isinstance(model, EncoderDecoder) and longest + extra_tokens >= model.cfg.context_length:
        raise ValueError(f"a source of {longest} characters, plus extra_tokens={extra_tokens}, needs "
                         f"{longest + extra_tokens} output tokens; this transformer's context_length="
                         f"{model.cfg.context_length} leaves room for {model.cfg.context_length - 1} after [BOS]: "
                         "shorten the sources or lower extra_tokens")
    model.eval()
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    outputs: dict[int, str] = {}
    for k in range(0, len(order), batch_size):
        chunk = order[k:k + batch_size]
        batch = make_batch([Pair(sources[i], sources[i], "") for i in chunk])
        ids = model.greedy_decode(batch.src_ids, BOS_ID, EOS_ID, batch.src_ids.shape[1] + extra_tokens,
                                  batch.src_padding_mask)
        outputs.update((i, to_text(row)) for i, row in zip(chunk, ids))
    return [outputs[i] for i in range(len(sources))]


def char_accuracy(prediction: str, target: str) -> float:
    """Share of positions where the prediction has the target's character, over the longer of the two."""
    longest = max(len(prediction), len(target))
    if longest == 0:
        return 1.0
    return sum(p == t for p, t in zip(prediction, target)) / longest


def scores(predictions: Sequence[str], targets: Sequence[str]) -> dict[str, float]:
    """Exact-match rate and mean character accuracy of `predictions` against `targets`."""
    if len(predictions) != len(targets) or not targets:
        raise ValueError(f"need as many predictions as targets (and at least one), got {len(predictions)} "
                         f"and {len(targets)}")
    return {"exact_match": sum(p == t for p, t in zip(predictions, targets)) / len(targets),
            "char_accuracy": sum(char_accuracy(p, t) for p, t in zip(predictions, targets)) / len(targets)}


def scores_by_length(sources: Sequence[str], predictions: Sequence[str], targets: Sequence[str],
                     edges: Sequence[int] = (10, 20, 30, 40, 51)) -> list[dict]:
    """`scores` per bucket of source length [edges[i], edges[i + 1]), with the bucket and its size."""
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        chosen = [i for i, s in enumerate(sources) if low <= len(s) < high]
        if chosen:
            rows.append({"min_chars": low, "max_chars": high - 1, "n": len(chosen),
                         **scores([predictions[i] for i in chosen], [targets[i] for i in chosen])})
    return rows
