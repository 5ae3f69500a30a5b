"""Text data: the Shakespeare corpus and sliding-window datasets of token ids (chapter 2)."""

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from llmcourse.runtime import DATA_DIR

SHAKESPEARE_DIR = DATA_DIR / "shakespeare"
SPLITS = ("train", "val", "test")
# sha256 of the committed plays.csv: the index is checked like the plays it lists (see data/README.md).
PLAYS_INDEX_SHA256 = "4d2e131a3b411d6d1433398110204034d0deafd2ac95f93cba517c8739d2f715"


@dataclass(frozen=True)
class Play:
    """One play of the corpus: its file name, title, genre, split ("train", "val" or "test") and text."""

    play: str
    title: str
    genre: str
    split: str
    text: str


def load_plays(folder: Path = SHAKESPEARE_DIR, index_sha256: str | None = PLAYS_INDEX_SHA256) -> list[Play]:
    """All plays listed in plays.csv, the index checked against `index_sha256` (None skips that, for a
    corpus of your own) and each play against the sha256 the index records."""
    index = Path(folder) / "plays.csv"
    if not index.exists():
        raise FileNotFoundError(f"{index} is missing: rebuild it with `python scripts/build_shakespeare.py`")
    if index_sha256 is not None and hashlib.sha256(index.read_bytes()).hexdigest() != index_sha256:
        raise ValueError(f"{index} does not match its recorded sha256: the index was changed, truncated or "
                         "corrupted; rebuild it with `python scripts/build_shakespeare.py`")
    plays = []
    with open(index, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            path = Path(folder) / f"{row['play']}.txt"
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing: rebuild it with `python scripts/build_shakespeare.py`")
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != row["sha256"]:
                raise ValueError(f"{path} does not match the sha256 in plays.csv: the file was changed or "
                                 "corrupted; rebuild it with `python scripts/build_shakespeare.py`")
            if row["split"] not in SPLITS:
                raise ValueError(f"{index}: play {row['play']!r} has split {row['split']!r}; expected one of {SPLITS}")
            plays.append(Play(row["play"], row["title"], row["genre"], row["split"], data.decode("utf-8")))
    if not plays:
        raise ValueError(f"{index} lists no plays: rebuild it with `python scripts/build_shakespeare.py`")
    return plays


def speaker_speeches(play: Play) -> list[tuple[str, list[str]]]:
    """The play as (speaker, lines) pairs, one per speech, in order;
    blocks that are not 'SPEAKER:' followed by lines are skipped."""
    speeches = []
    for block in play.text.split("\n\n"):
        lines = block.strip("\n").split("\n")
        if len(lines) >= 2 and lines[0].endswith(":") and lines[0][:-1].isupper():
            speeches.append((lines[0][:-1], lines[1:]))
    return speeches


def load_shakespeare(split: str = "train", folder: Path = SHAKESPEARE_DIR) -> str:
    """The text of every play in `split`, joined by blank lines.

    "train" is for fitting, "val" for every choice (settings, learning rates, early stopping), "test" for
    the number reported once at the end; "all" joins every play.
    """
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be 'train', 'val', 'test' or 'all', got {split!r}")
    return "\n\n".join(p.text for p in load_plays(folder) if split == "all" or p.split == split)


def _as_token_tensor(token_ids: list[int] | Tensor) -> Tensor:
    """Token ids as a 1-D int64 tensor; floats, booleans and negative ids are refused, never truncated."""
    ids = token_ids
    if not isinstance(ids, Tensor):
        ids = torch.as_tensor(ids) if len(ids) else torch.zeros(0, dtype=torch.long)
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex() or ids.dim() != 1:
        raise ValueError(f"token_ids must be a 1-D sequence of integer ids, got dtype {ids.dtype} and shape "
                         f"{tuple(ids.shape)}")
    if len(ids) and ids.min() < 0:
        raise ValueError(f"token ids must be >= 0, got {ids.min().item()}")
    return ids.long()


class SlidingWindowDataset(Dataset):
    """Windows of `context_length` token ids, each paired with the same window shifted by one.

    Window i starts at token i * stride; the targets are the next token at every position.
    """

    def __init__(self, token_ids: list[int] | Tensor, context_length: int, stride: int):
        for name, value in (("context_length", context_length), ("stride", stride)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.token_ids = _as_token_tensor(token_ids)
        if len(self.token_ids) < context_length + 1:
            raise ValueError(f"text of {len(self.token_ids)} tokens is too short for one window: "
                             f"context_length={context_length} needs at least {context_length + 1} tokens")
        self.context_length = context_length
        self.stride = stride

    def __len__(self) -> int:
        return (len(self.token_ids) - self.context_length - 1) // self.stride + 1

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        start = index * self.stride
        window = self.token_ids[start:start + self.context_length + 1]
        return window[:-1], window[1:]


def create_dataloader(token_ids: list[int] | Tensor, batch_size: int, context_length: int,
                      stride: int | None = None, shuffle: bool = True, drop_last: bool = True,
                      seed: int = 0) -> DataLoader:
    """Batches of (inputs, targets) windows; shuffled reproducibly from `seed`. Stride defaults to context_length."""
    dataset = SlidingWindowDataset(token_ids, context_length, context_length if stride is None else stride)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      generator=generator)


def check_token_ids(ids: Tensor, vocab_size: int, context_length: int | None = None,
                    device: torch.device | None = None, past: int = 0, name: str = "token_ids") -> None:
    """Refuse what a model cannot read: anything but a non-empty integer tensor (batch, tokens) of ids in
    0 .. vocab_size - 1, on `device`, that fits in `context_length` after `past` cached tokens."""
    if not isinstance(ids, Tensor):
        raise ValueError(f"{name} must be a tensor of token ids (batch, tokens), got {type(ids).__name__}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers (token ids), got dtype {ids.dtype}; use torch.long")
    if ids.dim() != 2:
        raise ValueError(f"{name} must be (batch, tokens), got shape {tuple(ids.shape)}")
    if ids.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(ids.shape)}): need at least one row of at least one token")
    if device is not None and ids.device != device:
        raise ValueError(f"{name} is on {ids.device} but the model is on {device}; move it with .to({str(device)!r})")
    if context_length is not None and past + ids.shape[1] > context_length:
        raise ValueError(f"sequence of {past + ids.shape[1]} tokens exceeds context_length={context_length}")
    if ids.min() < 0 or ids.max() >= vocab_size:
        bad = ids[(ids < 0) | (ids >= vocab_size)][0].item()
        raise ValueError(f"token id {bad} is outside the vocabulary (0 .. {vocab_size - 1})")
