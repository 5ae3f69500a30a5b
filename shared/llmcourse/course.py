"""The course's settings and its trained artifacts (chapter 5 onwards), each trained once and cached.

`course_tokenizer()`, `course_model()` (the GPT of notebook 5B) and `course_encoder()` (the BertModel of
notebook 5D) are built from the settings below on first use and then loaded from the cache folder.
Every one is saved and loaded through `llmcourse.checkpoint`, under a lock, so that two notebooks run
side by side train it once; a cached artifact is used only if it was trained with today's settings.

`published_model()` is different: the course's published GPT (notebook 5H chose its size), trained once by
`scripts/pretrain.py --publish` and committed under data/, with a model card; `publish_model` writes it.
"""

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import torch

from llmcourse.checkpoint import load_checkpoint, save_checkpoint
from llmcourse.data import create_dataloader, load_shakespeare
from llmcourse.encoder import SPECIAL_TOKENS, BertModel
from llmcourse.mlm import EncoderHistory, EncoderSettings, load_encoder, pretrain_until_healthy, save_encoder
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.runtime import CACHE_DIR, DATA_DIR, cache_lock, get_device, set_seed
from llmcourse.tokenizer import BPETokenizer
from llmcourse.train import (History, PretrainSettings, configure_optimizer, evaluate_bits_per_byte,
                             spread_windows_loader, train)

# --- the settings -----------------------------------------------------------------------------------


# The chapter-5 model: chosen on the validation plays by bench/sweep_course_settings.py (the best of its
# table), trained with these settings by notebook 5B, reloaded by `course_model()`.
COURSE_SETTINGS = PretrainSettings()
COURSE_MODEL_DIR = CACHE_DIR / "course_gpt"


# Notebook 5G's recipe, chosen on the validation plays by bench/recipe.py, each change kept only beyond the
# noise of three seeds: the course GPT's size with rotary positions, SwiGLU and an untied head; Muon for
# the blocks' matrices and AdamW for the rest (each rate tuned for the ablation's budget); and batches of
# 4 windows, which made more updates of the same tokens.
MODERN_RECIPE = {
    "model": dict(positions="rotary", ff="swiglu", tie_weights=False),
    "max_lr": 4e-3,  # AdamW's peak rate (embeddings, norms, biases) and the schedule's
    "muon_lr": 5e-3,
    "batch_size": 4,
    "context_length": 128,
}


def modern_model_config(vocab_size: int = COURSE_SETTINGS.vocab_size) -> GPTConfig:
    """The course GPT's size with MODERN_RECIPE's architecture."""
    return replace(COURSE_SETTINGS.model_config(), vocab_size=vocab_size,
                   context_length=MODERN_RECIPE["context_length"], **MODERN_RECIPE["model"])


# --- the course's pretrained GPT and its tokenizer ------------------------------------------------


def pretrain_course_model(settings: PretrainSettings = COURSE_SETTINGS, directory: str | Path = COURSE_MODEL_DIR,
                          device: torch.device | str | None = None,
                          progress: bool = True) -> tuple[GPTModel, BPETokenizer, History]:
    """Train the BPE tokenizer and the GPT on the training plays, then save both to `directory`."""
    device = torch.device(device or get_device())
    train_text, val_text = load_shakespeare("train"), load_shakespeare("val")
    tokenizer = BPETokenizer.train(train_text, settings.vocab_size)
    train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
    set_seed(settings.seed)
    model = GPTModel(settings.model_config()).to(device)
    optimizer = configure_optimizer(model, settings.max_lr, settings.weight_decay)
    train_loader = create_dataloader(train_ids, settings.batch_size, settings.context_length, seed=settings.seed)
    val_loader = spread_windows_loader(val_ids, settings.eval_windows, settings.context_length, settings.batch_size)
    history = train(model, optimizer, train_loader, val_loader, settings.max_steps, settings.max_lr,
                    settings.min_lr, settings.warmup_steps, settings.grad_clip, settings.eval_every,
                    seed=settings.seed, progress=progress)
    val_bpb = evaluate_bits_per_byte(model, val_ids, len(val_text.encode("utf-8")), settings.batch_size)
    save_checkpoint(directory, model, optimizer, settings.max_steps, tokenizer,
                    extra={"settings": asdict(settings), "val_bits_per_byte": val_bpb})
    return model.eval(), tokenizer, history


def _cached_course_model(device: torch.device | str | None) -> tuple[GPTModel, BPETokenizer] | None:
    """The cached course model and tokenizer if the cache holds one trained with `COURSE_SETTINGS`."""
    try:
        checkpoint = load_checkpoint(COURSE_MODEL_DIR, device)
    except (FileNotFoundError, ValueError):
        return None
    if checkpoint.extra.get("settings") == asdict(COURSE_SETTINGS) and isinstance(checkpoint.tokenizer, BPETokenizer):
        return checkpoint.model, checkpoint.tokenizer
    return None


def course_model(device: torch.device | str | None = None,
                 progress: bool = True) -> tuple[GPTModel, BPETokenizer]:
    """The chapter-5 GPT and its tokenizer, in eval mode: loaded from the cache, or pretrained (~3 min on a CPU).

    A cached checkpoint is used only if it was trained with `COURSE_SETTINGS`.
    """
    with cache_lock(COURSE_MODEL_DIR):
        cached = _cached_course_model(device)
        if cached is not None:
            return cached
        model, tokenizer, _ = pretrain_course_model(COURSE_SETTINGS, COURSE_MODEL_DIR, device, progress=progress)
    return model, tokenizer


def course_tokenizer() -> BPETokenizer:
    """The course GPT's BPE tokenizer: from the cached model, or trained alone on the training plays (seconds).

    Both give the same tokenizer (training is deterministic), so chapters before chapter 5 can use it
    without pretraining the GPT.
    """
    cached = _cached_course_model("cpu")
    if cached is not None:
        return cached[1]
    return BPETokenizer.train(load_shakespeare("train"), COURSE_SETTINGS.vocab_size)


# --- the course's pretrained encoder -------------------------------------------------------------

COURSE_ENCODER_SETTINGS = EncoderSettings()
COURSE_ENCODER_DIR = CACHE_DIR / "course_bert"  # a checkpoint folder ("course_encoder" held an older format)


def bert_tokenizer() -> BPETokenizer:
    """The course tokenizer with BERT's four special tokens added after its ids: [PAD] [CLS] [SEP] [MASK].

    Text encodes exactly as with `course_tokenizer()`; only the vocabulary grows (2,048 -> 2,052 ids).
    """
    base = course_tokenizer()
    specials = dict(base.special_tokens)
    for offset, token in enumerate(SPECIAL_TOKENS):
        specials[token] = base.vocab_size + offset
    return BPETokenizer(base.merges, base.byte_ids, specials, base.pattern)


def course_encoder(device: torch.device | str | None = None,
                   progress: bool = True) -> tuple[BertModel, BPETokenizer, EncoderHistory]:
    """The chapter-5 encoder, its tokenizer and its pretraining history: from the cache if it was trained with
    `COURSE_ENCODER_SETTINGS`, else pretrained (about 90 s on one CPU thread, again if it stalls) and saved."""
    with cache_lock(COURSE_ENCODER_DIR):
        try:
            model, record = load_encoder(COURSE_ENCODER_DIR, device)
            if record["settings"] == asdict(COURSE_ENCODER_SETTINGS):
                return model, bert_tokenizer(), EncoderHistory(**record["history"])
        except FileNotFoundError:
            pass
        model, tokenizer, history, _ = pretrain_until_healthy(COURSE_ENCODER_SETTINGS, bert_tokenizer(), device, progress)
        save_encoder(COURSE_ENCODER_DIR, model, COURSE_ENCODER_SETTINGS, history)
    return model, tokenizer, history


# --- the course's published GPT -------------------------------------------------------------------

PUBLISHED_DIR = DATA_DIR / "course_gpt"
# sha256 of the committed card.json, which records the sha256 of every file of the model: a changed card or
# file is refused. Publishing a new model means updating this line (scripts/pretrain.py --publish prints it).
PUBLISHED_CARD_SHA256 = "7664aefb0e825ed1a69d46349a3e89f57e31994ee453e27d6c34ff5aebee8c76"


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def publish_model(directory: str | Path, model: GPTModel, tokenizer: BPETokenizer, card: dict) -> str:
    """Write a model to publish: its checkpoint in bfloat16 (half the bytes; loading restores float32) under
    `directory`/weights, and card.json, `card` plus the sha256 of every file. Returns card.json's sha256."""
    directory = Path(directory)
    save_checkpoint(directory / "weights", model, tokenizer=tokenizer, weights_dtype="bfloat16")
    files = {f"weights/{path.name}": _file_sha256(path) for path in sorted((directory / "weights").iterdir())}
    card = {**card, "weights_dtype": "bfloat16 (loading restores float32)", "files": files}
    (directory / "card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    return _file_sha256(directory / "card.json")


def published_model(device: torch.device | str | None = None, directory: str | Path = PUBLISHED_DIR,
                    card_sha256: str | None = None) -> tuple[GPTModel, BPETokenizer, dict]:
    """The course's published GPT (float32, eval mode), its tokenizer and its model card.

    card.json must match `card_sha256` (the committed card's, by default), and every file must match the
    sha256 the card records; anything changed, truncated or missing raises a ValueError that names it.
    """
    directory = Path(directory)
    card_sha256 = card_sha256 or PUBLISHED_CARD_SHA256
    card_path = directory / "card.json"
    if not card_path.exists():
        raise FileNotFoundError(f"no published model in {directory}: card.json is missing")
    if _file_sha256(card_path) != card_sha256:
        raise ValueError(f"{card_path} does not match the sha256 the package records: the card was changed "
                         "or belongs to another model")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    for name, digest in card["files"].items():
        path = directory / name
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing (card.json lists it)")
        if _file_sha256(path) != digest:
            raise ValueError(f"{path} does not match the sha256 in card.json: the file is corrupt, truncated "
                             "or was changed")
    checkpoint = load_checkpoint(directory / "weights", device)
    return checkpoint.model, checkpoint.tokenizer, card
