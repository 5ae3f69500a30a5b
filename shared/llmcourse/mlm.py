"""Pretraining an encoder (chapter 5): BERT's masking, [CLS] A [SEP] B [SEP] packing, both losses, and the
pretraining loop with its check for a stalled run.

`mask_tokens` hides 15 % of the tokens the way BERT does (80 % [MASK], 10 % a random token, 10 %
unchanged); `collate_pairs` packs the next-sentence pairs of `llmcourse.tasks.nsp_pairs`;
`pretrain_encoder` trains a BertModel on both tasks. The course's own encoder, pretrained once and
cached, is `llmcourse.course.course_encoder()`.
"""

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from llmcourse.checkpoint import load_checkpoint, save_checkpoint
from llmcourse.data import load_plays
from llmcourse.encoder import BertModel, SPECIAL_TOKENS, encoder_config
from llmcourse.model import GPTConfig
from llmcourse.runtime import get_device, set_seed
from llmcourse.tasks import SentencePair, nsp_pairs
from llmcourse.tokenizer import BPETokenizer
from llmcourse.train import PretrainSettings, configure_optimizer, cross_entropy, lr_at

IGNORE_INDEX = -100  # the label of a position the masked-LM loss skips
COURSE_GPT = PretrainSettings()  # the course GPT's settings (PretrainSettings' defaults): the encoder's size


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

# --- packing pairs as [CLS] A [SEP] B [SEP] -------------------------------------------------------------


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
        raise ValueError(f"the tokenizer lacks the special tokens {missing}: use llmcourse.course.bert_tokenizer()")
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


# --- pretraining the course encoder -----------------------------------------------------------------


@dataclass(frozen=True)
class EncoderSettings:
    """Everything that fixes a pretraining run of the course encoder: model, data, optimizer, seed.

    The model has the course GPT's size; one update reads the same 8 x 128 tokens as the GPT's.
    `nsp=False` trains the masked-LM loss alone (on the same packed pairs).
    """

    vocab_size: int = COURSE_GPT.vocab_size + len(SPECIAL_TOKENS)
    context_length: int = COURSE_GPT.context_length
    d_model: int = COURSE_GPT.d_model
    n_heads: int = COURSE_GPT.n_heads
    n_layers: int = COURSE_GPT.n_layers
    dropout: float = COURSE_GPT.dropout
    batch_size: int = COURSE_GPT.batch_size
    max_steps: int = 700
    max_lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    mask_rate: float = 0.15
    nsp: bool = True
    eval_every: int = 100
    eval_pairs: int = 256  # validation pairs scored at every evaluation
    seed: int = 0

    def model_config(self) -> GPTConfig:
        return encoder_config(vocab_size=self.vocab_size, context_length=self.context_length, d_model=self.d_model,
                              n_heads=self.n_heads, n_layers=self.n_layers, dropout=self.dropout)


@dataclass
class EncoderHistory:
    """What `pretrain_encoder` recorded: both losses of every update and the validation scores."""

    mlm_loss: list[float] = field(default_factory=list)
    nsp_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    val_mlm_loss: list[float] = field(default_factory=list)
    val_nsp_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    seed: int | None = None  # the seed that trained the model (see `pretrain_until_healthy`)


def special_ids(tokenizer: BPETokenizer) -> list[int]:
    """Every special token's id ([PAD] [CLS] [SEP] [MASK] and <|endoftext|>): never masked, never a random pick."""
    return sorted(tokenizer.special_tokens.values())


def encoder_losses(model: BertModel, batch: PairBatch, tokenizer: BPETokenizer, mask_rate: float,
                   generator: torch.Generator | int) -> tuple[Tensor, Tensor, dict]:
    """Masked-LM loss (mean over the masked positions) and next-sentence loss of one batch, and what was scored.

    The vocabulary scores are computed only at the chosen positions: the other 85 % have no label.
    """
    device = next(model.parameters()).device
    inputs, labels = mask_tokens(batch.token_ids, tokenizer.special_tokens["[MASK]"], model.cfg.vocab_size,
                                 special_ids(tokenizer), mask_rate, generator)
    hidden = model.encode(inputs.to(device), batch.segment_ids.to(device), batch.padding_mask.to(device))
    chosen = (labels != IGNORE_INDEX).to(device)
    mlm_logits = model.mlm_logits(hidden[chosen])
    nsp_logits = model.nsp_head(model.pool(hidden))
    mlm_loss = cross_entropy(mlm_logits, labels.to(device)[chosen])
    nsp_loss = cross_entropy(nsp_logits, batch.nsp_labels.to(device))
    return mlm_loss, nsp_loss, {"labels": labels[labels != IGNORE_INDEX], "mlm_logits": mlm_logits,
                                "nsp_labels": batch.nsp_labels, "nsp_logits": nsp_logits}


@torch.no_grad()
def evaluate_encoder(model: BertModel, pairs: Sequence[SentencePair], tokenizer: BPETokenizer,
                     mask_rate: float = 0.15, batch_size: int = 32, seed: int = 0) -> dict[str, float]:
    """Masked-LM loss and accuracy (top-1 at the masked positions) and next-sentence loss and accuracy.

    The masking is drawn from `seed`, so two models are scored on the same masked tokens.
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    totals = {"mlm_loss": 0.0, "mlm_hits": 0, "masked": 0, "nsp_loss": 0.0, "nsp_hits": 0, "pairs": 0}
    for start in range(0, len(pairs), batch_size):
        batch = collate_pairs(pairs[start:start + batch_size], tokenizer, model.cfg.context_length)
        mlm_loss, nsp_loss, scored = encoder_losses(model, batch, tokenizer, mask_rate, generator)
        n_masked, n_pairs = len(scored["labels"]), len(scored["nsp_labels"])
        totals["mlm_loss"] += mlm_loss.item() * n_masked
        totals["mlm_hits"] += (scored["mlm_logits"].argmax(-1).cpu() == scored["labels"]).sum().item()
        totals["masked"] += n_masked
        totals["nsp_loss"] += nsp_loss.item() * n_pairs
        totals["nsp_hits"] += (scored["nsp_logits"].argmax(-1).cpu() == scored["nsp_labels"]).sum().item()
        totals["pairs"] += n_pairs
    model.train(was_training)
    return {"mlm_loss": totals["mlm_loss"] / totals["masked"], "mlm_accuracy": totals["mlm_hits"] / totals["masked"],
            "nsp_loss": totals["nsp_loss"] / totals["pairs"], "nsp_accuracy": totals["nsp_hits"] / totals["pairs"],
            "masked_tokens": totals["masked"], "pairs": totals["pairs"]}


def _epoch_batches(n_pairs: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Indices of the pairs in batches of `batch_size`, a new order every epoch drawn from (seed, epoch)."""
    epoch = 0
    while True:
        order = torch.randperm(n_pairs, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
        for start in range(0, n_pairs - batch_size + 1, batch_size):
            yield order[start:start + batch_size]
        epoch += 1


def pretrain_encoder(settings: EncoderSettings, tokenizer: BPETokenizer, device: torch.device | str | None = None,
                     progress: bool = True) -> tuple[BertModel, BPETokenizer, EncoderHistory]:
    """Pretrain a BertModel on the training plays with masked LM (+ next-sentence prediction if `settings.nsp`).

    The pairs are built once (seed `settings.seed`); each update masks its batch afresh (dynamic masking,
    from (seed, step)). AdamW with warmup and cosine decay as for the GPT; validation pairs are
    scored every `eval_every` updates and at the end.
    """
    device = torch.device(device or get_device())
    missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.special_tokens]
    if missing:
        raise ValueError(f"the tokenizer lacks the special tokens {missing}: use llmcourse.course.bert_tokenizer()")
    if tokenizer.vocab_size != settings.vocab_size:
        raise ValueError(f"settings.vocab_size={settings.vocab_size}, but the tokenizer has "
                         f"{tokenizer.vocab_size} ids")
    plays = load_plays()
    train_pairs = nsp_pairs(plays, "train", tokenizer, settings.context_length, settings.seed)
    val_pairs = nsp_pairs(plays, "val", tokenizer, settings.context_length, seed=0)
    val_pairs = val_pairs[::max(1, len(val_pairs) // settings.eval_pairs)][:settings.eval_pairs]
    set_seed(settings.seed)
    model = BertModel(settings.model_config()).to(device)
    optimizer = configure_optimizer(model, settings.max_lr, settings.weight_decay)
    history = EncoderHistory(seed=settings.seed)
    batches = _epoch_batches(len(train_pairs), settings.batch_size, settings.seed)
    started = time.perf_counter()

    def measure(step: int) -> None:
        scores = evaluate_encoder(model, val_pairs, tokenizer, settings.mask_rate)
        history.eval_steps.append(step)
        history.val_mlm_loss.append(scores["mlm_loss"])
        history.val_nsp_loss.append(scores["nsp_loss"])

    model.train()
    for step in tqdm(range(settings.max_steps), desc="pretraining the encoder", disable=not progress,
                     mininterval=2.0):
        if step % settings.eval_every == 0:
            measure(step)
        lr = lr_at(step, settings.max_lr, settings.max_lr * settings.min_lr_ratio, settings.warmup_steps,
                   settings.max_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = collate_pairs([train_pairs[i] for i in next(batches)], tokenizer, settings.context_length)
        torch.manual_seed(settings.seed * 1_000_003 + step)  # dropout, if any
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + step)
        mlm_loss, nsp_loss, _ = encoder_losses(model, batch, tokenizer, settings.mask_rate, generator)
        loss = mlm_loss + nsp_loss if settings.nsp else mlm_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        if not (torch.isfinite(loss) and torch.isfinite(norm)):
            raise FloatingPointError(f"update {step + 1}: loss {loss.item()}, gradient norm {norm.item()}; "
                                     f"lower max_lr={settings.max_lr}")
        optimizer.step()
        history.mlm_loss.append(mlm_loss.item())
        history.nsp_loss.append(nsp_loss.item())
    measure(settings.max_steps)
    history.seconds = time.perf_counter() - started
    return model.eval(), tokenizer, history


# --- saving, and a check for a stalled run ----------------------------------------------------------


def save_encoder(directory: str | Path, model: BertModel, settings: EncoderSettings, history: EncoderHistory) -> None:
    """A checkpoint (see `save_checkpoint`) of the encoder, with its settings and history in config.json."""
    if model.cfg != settings.model_config():
        raise ValueError(f"the settings do not describe the model: settings.model_config() is "
                         f"{settings.model_config()}, the model's config is {model.cfg}")
    save_checkpoint(directory, model, extra={"settings": asdict(settings), "history": asdict(history)})


def load_encoder(directory: str | Path, device: torch.device | str | None = None) -> tuple[BertModel, dict]:
    """The encoder saved by `save_encoder` and its record: {"settings": ..., "history": ...} as dicts.

    A missing folder raises FileNotFoundError; a corrupt or altered file a ValueError that says which.
    """
    try:
        checkpoint = load_checkpoint(directory, device or "cpu")
    except FileNotFoundError as error:
        raise FileNotFoundError(f"no encoder is saved in {directory}: {error}") from None
    if not isinstance(checkpoint.model, BertModel) or checkpoint.extra.keys() != {"settings", "history"}:
        raise ValueError(f"{directory} holds a {type(checkpoint.model).__name__}, not an encoder saved by "
                         "save_encoder (a BertModel with its settings and history)")
    return checkpoint.model, checkpoint.extra


def has_stalled(model: BertModel, tokenizer: BPETokenizer, threshold: float = 1.5) -> bool:
    """Whether pretraining stalled at token frequencies: on the validation pairs the masked-token accuracy
    is below `threshold` times the share of the commonest token (what always guessing it would score).

    The course encoder and a sibling from the next seed score 1.9 times that share; the stalled run of
    seed 2, which learned little beyond how often each token occurs, 1.2 times.
    """
    pairs = nsp_pairs(load_plays(), "val", tokenizer, model.cfg.context_length, seed=0)
    scores = evaluate_encoder(model, pairs, tokenizer)
    tokens = torch.tensor([t for pair in pairs for t in pair.a_ids + pair.b_ids])
    commonest_share = torch.bincount(tokens).max().item() / len(tokens)
    return scores["mlm_accuracy"] < threshold * commonest_share


def pretrain_until_healthy(settings: EncoderSettings, tokenizer: BPETokenizer,
                           device: torch.device | str | None = None,
                           progress: bool = True,
                           restarts: int = 2) -> tuple[BertModel, BPETokenizer, EncoderHistory, int]:
    """`pretrain_encoder`, started again with the next seed (up to `restarts` times) if it stalls.

    At the course's learning rate one seed in three stalls (bench/encoder_vs_decoder.py); another CPU
    trains, in effect, another seed, so the course encoder checks for a stall instead of hoping. Returns
    the model, tokenizer, history and the seed that trained it.
    """
    for seed in range(settings.seed, settings.seed + restarts + 1):
        model, tokenizer, history = pretrain_encoder(replace(settings, seed=seed), tokenizer, device, progress)
        if not has_stalled(model, tokenizer):
            return model, tokenizer, history, seed
        print(f"pretraining with seed {seed} stalled at token frequencies (masked-token accuracy no better than "
              f"guessing the commonest token); starting again with seed {seed + 1}")
    raise RuntimeError(f"pretraining stalled with seeds {settings.seed} to {settings.seed + restarts}; "
                       f"lower max_lr={settings.max_lr} or lengthen warmup_steps={settings.warmup_steps}")
