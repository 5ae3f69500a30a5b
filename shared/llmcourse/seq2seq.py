"""Sequence to sequence: a transduction task from the plays, RNN encoder-decoders with and without attention,
training and greedy decoding (chapter 5).

The task is word reversal at the character level: "to be or not" becomes "not or be to". The answer is exact,
it needs the whole input (the first output word is the last input word), and its alignment is an
anti-diagonal of words, each word copied left to right. The models share one interface with the 2017
transformer `llmcourse.encoder.EncoderDecoder`: `forward(src_ids, tgt_ids, src_padding_mask, tgt_padding_mask)`
gives logits, `greedy_decode(...)` gives ids and `cross_attention_weights(...)` gives heatmaps, so one training
loop and one evaluation serve all three.
"""

import functools
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from llmcourse.data import SPLITS, Play, check_token_ids
from llmcourse.encoder import EncoderDecoder
from llmcourse.model import GPTConfig
from llmcourse.runtime import threads

SPECIAL_TOKENS = ("[PAD]", "[BOS]", "[EOS]")
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
CHARACTERS = " '" + "abcdefghijklmnopqrstuvwxyz"
VOCAB = SPECIAL_TOKENS + tuple(CHARACTERS)
VOCAB_SIZE = len(VOCAB)
_CHAR_ID = {c: i + len(SPECIAL_TOKENS) for i, c in enumerate(CHARACTERS)}


# --- the task ---------------------------------------------------------------------------------------------

def normalise_line(line: str) -> str:
    """A line of a play as lower-case words of letters and apostrophes, one space apart ("O, Romeo!" -> "o romeo")."""
    words = re.findall(r"[a-z']+", line.lower())
    return " ".join(w for w in (w.strip("'") for w in words) if w)


def reverse_words(text: str) -> str:
    """The task: the words of `text` in reverse order, each word spelt as before."""
    return " ".join(reversed(text.split(" ")))


@functools.lru_cache(maxsize=64)
def play_speeches(play: Play) -> tuple[tuple[str, ...], ...]:
    """The words of each speech of a play, lines joined (speaker names like "HAMLET:" and stage directions left out)."""
    speeches, words = [], []
    for raw in play.text.splitlines():
        raw = raw.strip()
        if raw.endswith(":") and raw[:-1].upper() == raw[:-1]:
            if words:
                speeches.append(tuple(words))
            words = []
        elif raw and not raw.startswith("["):
            words.extend(normalise_line(raw).split())
    if words:
        speeches.append(tuple(words))
    return tuple(speeches)


@dataclass(frozen=True)
class Pair:
    """One example: the source words, the target (the same words reversed) and the play they come from."""

    source: str
    target: str
    play: str


def reversal_pairs(plays: Sequence[Play], split: str, n_pairs: int, min_chars: int = 10, max_chars: int = 50,
                   seed: int = 0) -> list[Pair]:
    """`n_pairs` distinct (source, reversed source) pairs from the plays of `split`, lengths spread evenly.

    Each source is a run of whole consecutive words from one speech of one play (at least two words),
    as long as fits in a length drawn uniformly from `min_chars`..`max_chars` characters (and at most 6
    characters shorter; other draws are redrawn), so that accuracy can be plotted against input length.
    Only the plays of `split` are read: train, val and test share no play.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not (isinstance(min_chars, int) and isinstance(max_chars, int) and 3 <= min_chars <= max_chars):
        raise ValueError(f"need integers 3 <= min_chars <= max_chars, got min_chars={min_chars!r}, "
                         f"max_chars={max_chars!r}")
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 1:
        raise ValueError(f"n_pairs must be an integer >= 1, got {n_pairs!r}")
    lines = [(words, p.play) for p in plays if p.split == split for words in play_speeches(p)]
    lines = [(words, play) for words, play in lines if len(words) >= 2]
    if not lines:
        raise ValueError(f"no play of split {split!r} among the {len(plays)} plays given")
    runs = count_runs([words for words, _ in lines], min_chars, max_chars)
    if runs < n_pairs:
        raise ValueError(f"split {split!r} has only {runs} runs of two or more words of {min_chars}..{max_chars} "
                         f"characters, fewer than the {n_pairs} pairs asked for; ask for fewer or widen the range")
    rng = random.Random(seed)
    pairs: dict[str, Pair] = {}
    attempts = 0
    while len(pairs) < n_pairs:
        attempts += 1
        if attempts > 200 * n_pairs:
            raise ValueError(f"split {split!r} has too few distinct lines for {n_pairs} pairs of "
                             f"{min_chars}..{max_chars} characters; ask for fewer")
        words, play = rng.choice(lines)
        wanted = rng.randint(min_chars, max_chars)
        start = rng.randrange(len(words))
        taken: list[str] = []
        for word in words[start:]:
            if len(" ".join(taken + [word])) > wanted:
                break
            taken.append(word)
        source = " ".join(taken)
        if len(taken) >= 2 and max(min_chars, wanted - 6) <= len(source) and source not in pairs:
            pairs[source] = Pair(source, reverse_words(source), play)
    return list(pairs.values())


def count_runs(speeches: Sequence[Sequence[str]], min_chars: int, max_chars: int) -> int:
    """How many runs of two or more consecutive words of one speech are min_chars..max_chars characters long.

    An upper bound on the distinct sources `reversal_pairs` can find, counted without drawing any.
    """
    sizes = [len(word) + 1 for words in speeches for word in words]  # each word and the space after it
    ends = np.cumsum([len(words) for words in speeches])
    speech_end = np.repeat(ends, [len(words) for words in speeches])  # for each word, where its speech ends
    offset = np.concatenate([[0], np.cumsum(sizes)])  # the run words[i:j] has offset[j] - offset[i] - 1 characters
    start = np.arange(len(sizes))
    first = np.maximum(np.searchsorted(offset, offset[start] + 1 + min_chars), start + 2)
    last = np.minimum(np.searchsorted(offset, offset[start] + 1 + max_chars, side="right") - 1, speech_end)
    return int(np.maximum(last - first + 1, 0).sum())


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


def _pad(rows: list[list[int]]) -> tuple[Tensor, Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return ids, ids != PAD_ID


def make_batch(pairs: Sequence[Pair]) -> Batch:
    """Encode and pad `pairs` into one `Batch`."""
    if not pairs:
        raise ValueError("make_batch needs at least one pair")
    sources = [encode(p.source) for p in pairs]
    targets = [encode(p.target) for p in pairs]
    if any(not s for s in sources):
        raise ValueError("a source is empty; every pair needs at least one character")
    src_ids, src_mask = _pad(sources)
    tgt_in, tgt_mask = _pad([[BOS_ID] + t for t in targets])
    tgt_out, _ = _pad([t + [EOS_ID] for t in targets])
    return Batch(src_ids, src_mask, tgt_in, tgt_out, tgt_mask)


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


# --- the RNN encoder-decoder ------------------------------------------------------------------------------

def _check_mask(name: str, mask: Tensor | None, ids: Tensor) -> Tensor:
    if mask is None:
        return torch.ones_like(ids, dtype=torch.bool)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != ids.shape:
        raise ValueError(f"{name} must be a bool tensor of shape {tuple(ids.shape)} (True for real tokens), "
                         f"got {getattr(mask, 'dtype', type(mask))} {tuple(getattr(mask, 'shape', ()))}")
    if not mask[:, 0].all():
        raise ValueError(f"{name}: every row needs at least one real token, at the start (padding goes at the end)")
    if (mask[:, 1:] & ~mask[:, :-1]).any():
        raise ValueError(f"{name} has a real token (True) after padding (False): each row must be True for its "
                         "tokens, then False for its padding, as the recurrence reads the real tokens in one run")
    return mask


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau) attention: score(s, h) = v · tanh(W_s s + W_h h), softmax over the real source tokens."""

    def __init__(self, query_size: int, key_size: int, attention_size: int):
        super().__init__()
        self.query = nn.Linear(query_size, attention_size, bias=False)
        self.key = nn.Linear(key_size, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def forward(self, queries: Tensor, memory: Tensor, src_padding_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Context vectors (batch, tgt, key_size) and weights (batch, tgt, src) for queries (batch, tgt, query_size)."""
        scores = self.score(torch.tanh(self.query(queries)[:, :, None] + self.key(memory)[:, None])).squeeze(-1)
        scores = scores.masked_fill(~src_padding_mask[:, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return weights @ memory, weights


class RNNEncoderDecoder(nn.Module):
    """A bidirectional GRU encoder and a GRU decoder, with or without additive attention.

    At every step the decoder's state is joined by a context vector before the output layer. Without
    attention the context is the same at every step: the encoder's two final states, one fixed-size
    summary of the whole source (Cho and colleagues' 2014 design, which also starts the decoder from
    it). With attention the context is a fresh mix of all encoder states, weighted by additive scores
    against the decoder's state (Bahdanau's score, in Luong's placement after the GRU step), so all target
    positions still train in parallel under teacher forcing.
    """

    def __init__(self, vocab_size: int = VOCAB_SIZE, d_embed: int = 32, hidden_size: int = 128,
                 attention: bool = True, attention_size: int = 64):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("d_embed", d_embed), ("hidden_size", hidden_size),
                            ("attention_size", attention_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(attention, bool):
            raise ValueError(f"attention must be True or False, got {attention!r}")
        self.vocab_size, self.hidden_size, self.attention = vocab_size, hidden_size, attention
        self.embedding = nn.Embedding(vocab_size, d_embed, padding_idx=PAD_ID)
        self.encoder = nn.GRU(d_embed, hidden_size, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * hidden_size, hidden_size)  # the encoder's final states -> decoder's first state
        self.decoder = nn.GRU(d_embed, hidden_size, batch_first=True)
        self.attend = AdditiveAttention(hidden_size, 2 * hidden_size, attention_size) if attention else None
        self.combine = nn.Linear(3 * hidden_size, hidden_size)  # decoder state + a 2 * hidden context
        self.out_head = nn.Linear(hidden_size, vocab_size)

    def encode(self, src_ids: Tensor, src_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Encoder states (batch, src, 2 * hidden), the summary (batch, 2 * hidden): the two final states, and
        the decoder's first state (1, batch, hidden) made from it."""
        check_token_ids(src_ids, self.vocab_size, device=self.embedding.weight.device, name="src_ids")
        src_padding_mask = _check_mask("src_padding_mask", src_padding_mask, src_ids)
        lengths = src_padding_mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(src_ids), lengths, batch_first=True,
                                                   enforce_sorted=False)
        states, final = self.encoder(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=src_ids.shape[1])
        summary = torch.cat([final[0], final[1]], dim=-1)
        return memory, summary, torch.tanh(self.bridge(summary))[None]

    def _step_logits(self, states: Tensor, encoded: tuple[Tensor, Tensor, Tensor],
                     src_padding_mask: Tensor) -> tuple[Tensor, Tensor | None]:
        memory, summary, _ = encoded
        if self.attend is None:
            context, weights = summary[:, None].expand(-1, states.shape[1], -1), None
        else:
            context, weights = self.attend(states, memory, src_padding_mask)
        return self.out_head(torch.tanh(self.combine(torch.cat([states, context], dim=-1)))), weights

    def decode(self, tgt_ids: Tensor, encoded: tuple[Tensor, Tensor, Tensor], src_padding_mask: Tensor | None = None,
               tgt_padding_mask: Tensor | None = None) -> Tensor:
        """Logits (batch, tgt, vocab) for decoder inputs `tgt_ids` ([BOS] + target), teacher forced.

        `tgt_padding_mask` is accepted for the shared interface; the recurrence only reads leftwards, and
        padding sits at the end, so no real position sees a padded one.
        """
        return self._decode(tgt_ids, encoded, src_padding_mask)[0]

    def _decode(self, tgt_ids: Tensor, encoded: tuple[Tensor, Tensor, Tensor],
                src_padding_mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        check_token_ids(tgt_ids, self.vocab_size, device=self.embedding.weight.device, name="tgt_ids")
        src_padding_mask = _check_mask("src_padding_mask", src_padding_mask, encoded[0][..., 0])
        states, _ = self.decoder(self.embedding(tgt_ids), encoded[2])
        return self._step_logits(states, encoded, src_padding_mask)

    def forward(self, src_ids: Tensor, tgt_ids: Tensor, src_padding_mask: Tensor | None = None,
                tgt_padding_mask: Tensor | None = None) -> Tensor:
        """Logits (batch, tgt, vocab): position t predicts the target token after tgt_ids[:, :t + 1]."""
        return self.decode(tgt_ids, self.encode(src_ids, src_padding_mask), src_padding_mask, tgt_padding_mask)

    def cross_attention_weights(self, src_ids: Tensor, tgt_ids: Tensor,
                                src_padding_mask: Tensor | None = None) -> list[Tensor]:
        """The attention weights as [tensor (batch, 1, tgt, src)]: the transformer's layout, one layer, one head."""
        if self.attend is None:
            raise ValueError("this model has no attention (attention=False): there are no weights to show")
        _, weights = self._decode(tgt_ids, self.encode(src_ids, src_padding_mask), src_padding_mask)
        return [weights[:, None]]

    @torch.no_grad()
    def greedy_decode(self, src_ids: Tensor, bos_id: int, eos_id: int, max_new_tokens: int,
                      src_padding_mask: Tensor | None = None) -> Tensor:
        """Ids (batch, <= max_new_tokens) after [BOS], the likeliest token at each step, one step at a time.

        Stops when every row has produced [EOS]; a finished row keeps its [EOS] and is padded with more.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        encoded = self.encode(src_ids, src_padding_mask)
        state = encoded[2]
        src_padding_mask = _check_mask("src_padding_mask", src_padding_mask, src_ids)
        token = torch.full((src_ids.shape[0], 1), bos_id, dtype=torch.long, device=src_ids.device)
        done = torch.zeros(src_ids.shape[0], dtype=torch.bool, device=src_ids.device)
        out = []
        for _ in range(max_new_tokens):
            step, state = self.decoder(self.embedding(token), state)
            logits, _ = self._step_logits(step, encoded, src_padding_mask)
            token = logits[:, -1].argmax(-1, keepdim=True)
            token = token.masked_fill(done[:, None], eos_id)
            out.append(token)
            done |= token[:, 0] == eos_id
            if done.all():
                break
        return torch.cat(out, dim=1)


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
        return RNNEncoderDecoder(VOCAB_SIZE, d_embed=32, hidden_size=64, attention=False)
    if name == "RNN + attention":
        return RNNEncoderDecoder(VOCAB_SIZE, d_embed=32, hidden_size=64, attention=True, attention_size=32)
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


def train_seq2seq(model: nn.Module, pairs: Sequence[Pair], budget_seconds: float, d_model: int,
                  batch_size: int = 64, warmup_steps: int = 100, lr_scale: float = 1.0,
                  label_smoothing: float = 0.1, seed: int = 0, max_steps: int | None = None,
                  clock: Callable[[], float] = time.process_time, progress: bool = True) -> Seq2SeqHistory:
    """Train any of the course's encoder-decoders on `pairs` until `budget_seconds` of `clock` have passed.

    Adam (β = 0.9, 0.98) with the 2017 warmup schedule `warmup_lr`, label smoothing, [PAD] ignored in
    the loss, gradients clipped at norm 1. The default clock is CPU time of this process, so a model is
    charged for its own work only, and it then runs on one thread; `max_steps` stops earlier (for tests).
    """
    if not budget_seconds > 0:
        raise ValueError(f"budget_seconds must be > 0, got {budget_seconds!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    if not pairs:
        raise ValueError("no training pairs")
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    history = Seq2SeqHistory()
    model.train()
    # A budget of CPU seconds (time.process_time counts every thread) is one thread's: the same budget
    # then buys the same number of updates on a 2-core laptop and a 16-core workstation.
    with threads(1 if clock is time.process_time else torch.get_num_threads()):
        started = clock()
        bar = tqdm(total=round(budget_seconds), unit="cpu s", disable=not progress, leave=False)
        epoch = 0
        while True:
            for batch in shuffled_batches(pairs, batch_size, seed=seed * 1000 + epoch):
                step = history.steps + 1
                lr = warmup_lr(step, d_model, warmup_steps, lr_scale)
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
                bar.n = min(round(used), round(budget_seconds))
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                bar.refresh()
                if used >= budget_seconds or (max_steps is not None and history.steps >= max_steps):
                    bar.close()
                    model.eval()
                    return history
            epoch += 1


# --- evaluation -------------------------------------------------------------------------------------------

def predict(model: nn.Module, sources: Sequence[str], batch_size: int = 100, extra_tokens: int = 5) -> list[str]:
    """Greedy outputs of `model` for `sources`, as text (up to the source length + `extra_tokens` characters).

    Sources are decoded in batches of similar length, so a batch of short lines stops early.
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
        outputs.update((i, decode(row)) for i, row in zip(chunk, ids))
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
