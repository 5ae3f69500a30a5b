"""Crash-safe checkpoints: a model, its optimizer state and tokenizer in one folder (chapter 5).

A checkpoint folder holds model.safetensors, config.json and optionally optimizer.pt and
tokenizer.json. config.json records the model's class (a GPTModel or a BertModel) and GPTConfig,
the step, the tokenizer's kind, any JSON `extra`, the sha256 of every other file, and a sha256 of
its own content; `load_checkpoint` verifies all of them. `save_checkpoint` writes the new checkpoint
into a sibling folder and swaps it in with renames, so a crash at any moment leaves the old or the
new checkpoint, never a mix.
"""

import hashlib
import io
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import tiktoken
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from llmcourse.encoder import BertModel
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.runtime import get_device
from llmcourse.tokenizer import BPETokenizer, Tokenizer, gpt2_encoding

CHECKPOINT_FORMAT = "llmcourse-checkpoint"
CHECKPOINT_VERSION = 2
CHECKPOINT_FILES = ("config.json", "model.safetensors", "optimizer.pt", "tokenizer.json")
# An empty file that marks the folders a save works on: only such folders (or empty ones) are ever deleted.
SAVE_MARKER = ".llmcourse-save"
# The models a checkpoint can hold, by the class name config.json records, and the output matrix of each
# that is tied to the token embedding (stored once).
MODEL_CLASSES = {"GPTModel": GPTModel, "BertModel": BertModel}
TIED_OUTPUT = {"GPTModel": "out_head.weight", "BertModel": "mlm_head.weight"}
# How long a load keeps reading again while a save in another process keeps replacing the folder.
RELOAD_SECONDS = 10.0


@dataclass
class Checkpoint:
    """What `load_checkpoint` returns: the model (eval mode) and what is needed to resume training."""

    model: GPTModel | BertModel
    step: int
    optimizer_state: dict | None
    tokenizer: Tokenizer | None
    extra: dict


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _config_digest(config: dict) -> str:
    """The sha256 of config.json's content apart from its own "sha256" entry."""
    content = {key: value for key, value in config.items() if key != "sha256"}
    return _sha256(json.dumps(content, sort_keys=True).encode("utf-8"))


def weights_sha256(model: nn.Module) -> str:
    """A fingerprint of a model's weights: the sha256 of its state dict's names and bytes, in order.

    Two models share it only if every weight is bit-identical, e.g. the course model retrained on
    another CPU or thread count gets a different one; results files record it to say which model
    they were measured on.
    """
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _class_name(model: nn.Module) -> str:
    """The name config.json records for the model's class; a model of any other class is refused."""
    for name, model_class in MODEL_CLASSES.items():
        if isinstance(model, model_class):
            return name
    raise ValueError(f"save_checkpoint saves a GPTModel or a BertModel, got {type(model).__name__}")


def _check_unmodified(model: nn.Module, model_class: str) -> None:
    """Refuse a model whose layers are not those its config builds (LoRA layers, a new head): a checkpoint
    rebuilds the model from its config, so anything added or replaced would be lost or fail to load."""
    with torch.device("meta"):
        expected = set(MODEL_CLASSES[model_class](model.cfg).state_dict())
    extra = sorted(set(model.state_dict()) - expected)
    missing = sorted(expected - set(model.state_dict()))
    if extra or missing:
        found = f"{len(extra)} tensors its config does not build ({', '.join(extra[:3])}, ...)" if extra else \
            f"{len(missing)} tensors missing ({', '.join(missing[:3])}, ...)"
        raise ValueError(f"the {model_class} has {found}, so a checkpoint could not rebuild it; a model with LoRA "
                         "layers must be merged first with llmcourse.lora.merge_lora(model)")


# The floating-point formats a checkpoint can store its weights in: loading always restores float32.
WEIGHT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _saved_tensors(model: GPTModel | BertModel, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """The state dict as stored, floating-point tensors in `dtype`: a tied output head is the embedding
    matrix, so it is stored once."""
    tensors = {name: t.detach().cpu().to(dtype if t.is_floating_point() else t.dtype).contiguous()
               for name, t in model.state_dict().items()}
    if model.cfg.tie_weights:
        del tensors[TIED_OUTPUT[_class_name(model)]]
    return tensors


def _tokenizer_files(tokenizer: Tokenizer | None) -> tuple[str | None, dict[str, bytes]]:
    """The tokenizer's kind as config.json records it, and its files."""
    if isinstance(tokenizer, BPETokenizer):
        return "bpe", {"tokenizer.json": tokenizer.to_json().encode("utf-8")}
    if isinstance(tokenizer, tiktoken.Encoding):
        if tokenizer.name != "gpt2":
            raise ValueError(f"only GPT-2's tiktoken encoding can be saved by name, got {tokenizer.name!r}")
        return "gpt2", {}
    if tokenizer is None:
        return None, {}
    raise ValueError(f"tokenizer must be a BPETokenizer, GPT-2's tiktoken encoding or None, "
                     f"got {type(tokenizer).__name__}")


def _checkpoint_files(model: nn.Module, optimizer: torch.optim.Optimizer | None = None, step: int = 0,
                     tokenizer: Tokenizer | None = None, extra: dict | None = None,
                     weights_dtype: str = "float32") -> dict[str, bytes]:
    """Every file of a checkpoint, as bytes, after checking all inputs (nothing is written)."""
    if isinstance(model, DistributedDataParallel):
        model = model.module
    model_class = _class_name(model)
    _check_unmodified(model, model_class)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an integer >= 0 (updates done), got {step!r}")
    if weights_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weights_dtype must be one of {sorted(WEIGHT_DTYPES)}, got {weights_dtype!r}")
    tensors = _saved_tensors(model, WEIGHT_DTYPES[weights_dtype])
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            where = "" if weights_dtype == "float32" else f" in {weights_dtype} (too large for it?)"
            raise ValueError(f"parameter {name} holds NaN or infinite values{where}; refusing to save a broken model")
    try:
        extra_json = json.loads(json.dumps(extra or {}, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"extra must be JSON data (dicts, lists, strings, finite numbers, booleans, None): "
                         f"{error}") from None
    if not isinstance(extra_json, dict):
        raise ValueError(f"extra must be a dict, got {type(extra).__name__}")
    tokenizer_kind, files = _tokenizer_files(tokenizer)
    files["model.safetensors"] = save_safetensors(tensors)
    if optimizer is not None:
        buffer = io.BytesIO()
        torch.save(optimizer.state_dict(), buffer)
        files["optimizer.pt"] = buffer.getvalue()
    config = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model_class": model_class,
              "model": model.cfg.to_dict(), "weights_dtype": weights_dtype, "step": step,
              "tokenizer": tokenizer_kind, "extra": extra_json,
              "files": {name: _sha256(data) for name, data in sorted(files.items())}}
    config["sha256"] = _config_digest(config)
    files["config.json"] = json.dumps(config, indent=2).encode("utf-8")
    return files


def _fsync_folder(path: Path) -> None:
    """Flush a folder's entries (new names, renames) to the disk; Windows cannot open folders, nor needs to."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _siblings(directory: Path) -> tuple[Path, Path]:
    """The folders a save writes the new checkpoint into and moves the old one aside to."""
    return (directory.with_name(directory.name + ".checkpoint-new"),
            directory.with_name(directory.name + ".checkpoint-old"))


def _made_by_save(folder: Path) -> bool:
    """Whether `folder` is one a save worked on: a real folder holding SAVE_MARKER, or an empty one."""
    return folder.is_dir() and not folder.is_symlink() and (
        (folder / SAVE_MARKER).exists() or not any(folder.iterdir()))


def _remove_sibling(folder: Path) -> None:
    """Delete a sibling left by an interrupted save; refuse to touch anything a save did not make."""
    if not (folder.exists() or folder.is_symlink()):
        return
    if not _made_by_save(folder):
        raise ValueError(f"{folder} was not made by save_checkpoint (it lacks the {SAVE_MARKER} marker), but "
                         "a save uses that name and would delete it: rename or move it")
    shutil.rmtree(folder)


def _recover(directory: Path) -> None:
    """Undo a save interrupted between its two renames: the old checkpoint goes back in place."""
    new, old = _siblings(directory)
    if not directory.exists() and _made_by_save(old):
        os.replace(old, directory)
    _remove_sibling(old)
    _remove_sibling(new)


def _target_folder(directory: str | Path) -> Path:
    """The real folder a save replaces: symlinks followed; the current folder, those above it and files refused."""
    folder = Path(directory).resolve()
    here = Path.cwd().resolve()
    if folder == here or folder in here.parents:
        raise ValueError(f"cannot save a checkpoint to {str(directory)!r}: {folder} is the current folder or one "
                         "above it, and a save replaces the whole folder; give a folder of its own, "
                         "e.g. 'checkpoints/run1'")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{directory} is a file; a checkpoint is a folder")
    existing = next(parent for parent in folder.parents if parent.exists())
    if not existing.is_dir():
        raise ValueError(f"{existing} is a file, not a folder: cannot save a checkpoint inside it ({directory})")
    return folder


def _write_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Create `folder` with SAVE_MARKER and the files, all flushed to the disk."""
    folder.mkdir()
    (folder / SAVE_MARKER).touch()
    for name, data in files.items():
        with open(folder / name, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    _fsync_folder(folder)


def save_checkpoint(directory: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    step: int = 0, tokenizer: Tokenizer | None = None, extra: dict | None = None,
                    weights_dtype: str = "float32") -> Path:
    """Save a model, and optionally its optimizer, step, tokenizer and `extra` JSON data, to a folder.

    `weights_dtype` "bfloat16" or "float16" stores the weights in half the bytes (to publish a model;
    loading restores float32, rounded to what 16 bits hold).

    Everything is checked first. The new checkpoint is written into `<directory>.checkpoint-new`
    and flushed to disk; then the old folder is renamed aside, the new one renamed into place,
    and the old one deleted. The folder may hold only checkpoint files (they are replaced as one),
    and one process at a time may save to it; a symlink to a folder saves into that folder.
    A model with LoRA layers must be merged first (`merge_lora`). A tiktoken encoding can only be
    GPT-2's, recorded by name. Returns `directory`.
    """
    files = _checkpoint_files(model, optimizer, step, tokenizer, extra, weights_dtype)
    folder = _target_folder(directory)
    _recover(folder)
    if folder.exists():
        foreign = sorted(p.name for p in folder.iterdir() if p.name not in (*CHECKPOINT_FILES, SAVE_MARKER))
        if foreign:
            raise ValueError(f"{directory} holds files that are not part of a checkpoint ({', '.join(foreign[:5])}); "
                             "save the checkpoint to a folder of its own")
    new, old = _siblings(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _write_folder(new, files)
    if folder.exists():
        (folder / SAVE_MARKER).touch()
        os.replace(folder, old)
    os.replace(new, folder)
    (folder / SAVE_MARKER).unlink()
    _fsync_folder(folder.parent)
    shutil.rmtree(old, ignore_errors=True)
    return Path(directory)


# --- loading --------------------------------------------------------------------------------------


def _read_config(directory: Path, data: bytes) -> dict:
    """config.json parsed and checked: format, version, its own sha256 and the types of its entries."""
    where = f"{directory.name}/config.json"
    try:
        config = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{where} is not valid JSON (corrupt or truncated): {error}") from None
    if not isinstance(config, dict) or config.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{where} was not written by save_checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    if config.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{where} has version {config.get('version')!r}; this llmcourse reads version "
                         f"{CHECKPOINT_VERSION} (checksummed): save the model again with save_checkpoint")
    if config.get("sha256") != _config_digest(config):
        raise ValueError(f"{where} was changed after it was saved (its content does not match the sha256 "
                         "it records); restore the saved file or save the checkpoint again")
    for key, kind in (("model", dict), ("step", int), ("extra", dict), ("files", dict)):
        if not isinstance(config.get(key), kind):
            raise ValueError(f"{where} needs {key!r} as {kind.__name__}, got {config.get(key)!r}")
    return config


def _read_files(directory: Path) -> tuple[dict, dict[str, bytes]]:
    """config.json and the files it lists, each checked against its recorded sha256."""
    config_path = directory / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"no checkpoint in {directory}: config.json is missing")
    config = _read_config(directory, config_path.read_bytes())
    files = {}
    for name, digest in config["files"].items():
        if name not in CHECKPOINT_FILES:
            raise ValueError(f"{directory.name}/config.json lists an unknown file {name!r}")
        path = directory / name
        if not path.exists():
            raise FileNotFoundError(f"{directory.name}/{name} is missing (config.json lists it)")
        files[name] = path.read_bytes()
        if _sha256(files[name]) != digest:
            raise ValueError(f"{directory.name}/{name} does not match the sha256 recorded in config.json: "
                             "the file is corrupt, truncated or was changed")
    if "model.safetensors" not in files:
        raise ValueError(f"{directory.name}/config.json lists no model.safetensors")
    return config, files


def _check_tensors(tensors: dict[str, Tensor], expected: dict[str, Tensor], where: str) -> None:
    """Refuse tensors that do not fit the model the config describes, naming the first differences."""
    missing = sorted(expected.keys() - tensors.keys())
    unexpected = sorted(tensors.keys() - expected.keys())
    if missing or unexpected:
        raise ValueError(f"{where} does not match config.json: missing tensors {missing[:5]}, "
                         f"unexpected tensors {unexpected[:5]}")
    for name, tensor in expected.items():
        if tensors[name].shape != tensor.shape:
            raise ValueError(f"{where} does not match config.json: {name} has shape "
                             f"{tuple(tensors[name].shape)}, the config needs {tuple(tensor.shape)}")
        if tensors[name].dtype != tensor.dtype:
            raise ValueError(f"{where} does not match config.json: {name} is {tensors[name].dtype}, the config "
                             f"records {tensor.dtype}")


def _build_model(directory: Path, config: dict, data: bytes, device: torch.device) -> GPTModel | BertModel:
    class_name = config.get("model_class", "GPTModel")  # checkpoints saved before BertModel could be saved
    if class_name not in MODEL_CLASSES:
        raise ValueError(f"{directory.name}/config.json names model class {class_name!r}; expected one of "
                         f"{sorted(MODEL_CLASSES)}")
    try:
        model_config = GPTConfig(**config["model"])
    except TypeError as error:
        raise ValueError(f"{directory.name}/config.json has model settings GPTConfig does not take: {error}") from None
    model = MODEL_CLASSES[class_name](model_config)
    where = f"{directory.name}/model.safetensors"
    try:
        tensors = load_safetensors(data)
    except SafetensorError as error:
        raise ValueError(f"{where} is corrupt or truncated: {error}") from None
    weights_dtype = config.get("weights_dtype", "float32")  # checkpoints saved before it was recorded
    if weights_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"{directory.name}/config.json names weights_dtype {weights_dtype!r}; expected one of "
                         f"{sorted(WEIGHT_DTYPES)}")
    _check_tensors(tensors, _saved_tensors(model, WEIGHT_DTYPES[weights_dtype]), where)
    if model_config.tie_weights:
        tensors[TIED_OUTPUT[class_name]] = tensors["tok_emb.weight"]  # copied into the one shared matrix
    model.load_state_dict(tensors)
    return model.to(device).eval()


def _read_optimizer_state(directory: Path, data: bytes, device: torch.device) -> dict:
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as error:  # an unpickling error can be of many types; all mean the same here
        raise ValueError(f"{directory.name}/optimizer.pt is not an optimizer state written by save_checkpoint "
                         f"({type(error).__name__}); do not load it with weights_only=False, which would run "
                         "any code it holds") from None


def _load_tokenizer(directory: Path, kind, files: dict[str, bytes]) -> Tokenizer | None:
    if kind == "bpe" and "tokenizer.json" in files:
        return BPETokenizer.from_json(files["tokenizer.json"].decode("utf-8"), f"{directory.name}/tokenizer.json")
    if kind == "gpt2":
        return gpt2_encoding()
    if kind is None:
        return None
    raise ValueError(f"{directory.name}/config.json names tokenizer {kind!r} without its file "
                     "(expected 'bpe' with tokenizer.json, 'gpt2' or null)")


def _config_identity(directory: Path) -> tuple[int, int] | None:
    """What tells one save's config.json from the next one's (each save writes a new file); None if absent."""
    try:
        stat = (directory / "config.json").stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _read_whole_checkpoint(directory: Path) -> tuple[dict, dict[str, bytes]]:
    """`_read_files` of one whole checkpoint, even while another process saves over it.

    A save renames folders under us, so a read can mix two checkpoints or miss a file; such a read
    fails its checksums, and it is tried again if config.json changed meanwhile (for up to
    RELOAD_SECONDS). A failure while the folder stays the same is a real one, and is raised.
    """
    old = _siblings(directory)[1]
    deadline = time.monotonic() + RELOAD_SECONDS
    while True:
        before = _config_identity(directory)
        # Between a save's two renames, or after a save interrupted there, only the old folder is whole.
        source = directory if before is not None or not old.exists() else old
        try:
            return _read_files(source)
        except (FileNotFoundError, ValueError):
            if _config_identity(directory) == before or time.monotonic() > deadline:
                raise


def load_checkpoint(directory: str | Path, device: torch.device | str | None = None) -> Checkpoint:
    """Load a folder written by `save_checkpoint` (or a symlink to one), verifying every file's sha256.

    Corrupt, changed or mismatched files raise a ValueError that names the file. A save that was
    interrupted (or is running now, in another process) is handled: the complete old or new
    checkpoint is loaded. `model` is a GPTModel or a BertModel, whichever was saved.
    """
    directory = Path(directory).resolve()
    device = torch.device(device or get_device())
    config, files = _read_whole_checkpoint(directory)
    model = _build_model(directory, config, files["model.safetensors"], device)
    optimizer_state = None
    if "optimizer.pt" in files:
        optimizer_state = _read_optimizer_state(directory, files["optimizer.pt"], device)
    tokenizer = _load_tokenizer(directory, config["tokenizer"], files)
    return Checkpoint(model, config["step"], optimizer_state, tokenizer, config["extra"])


def restore_optimizer(optimizer: torch.optim.Optimizer, state: dict, where: str = "the optimizer state") -> None:
    """`optimizer.load_state_dict(state)` after checking that the state fits the optimizer's parameters,
    group by group, so a state from another model fails here and not at the next `step()`."""
    groups = state.get("param_groups") if isinstance(state, dict) else None
    if not isinstance(groups, list) or len(groups) != len(optimizer.param_groups):
        raise ValueError(f"{where} has {len(groups) if isinstance(groups, list) else 'no'} parameter groups, "
                         f"the optimizer has {len(optimizer.param_groups)}: it belongs to another optimizer")
    for index, (saved, group) in enumerate(zip(groups, optimizer.param_groups)):
        if len(saved["params"]) != len(group["params"]):
            raise ValueError(f"{where} has {len(saved['params'])} parameters in group {index}, the optimizer "
                             f"has {len(group['params'])}: it belongs to another model")
        for param_id, param in zip(saved["params"], group["params"]):
            moment = state["state"].get(param_id, {}).get("exp_avg")
            if moment is not None and moment.shape != param.shape:
                raise ValueError(f"{where} does not fit this optimizer: group {index} has a moment of shape "
                                 f"{tuple(moment.shape)} where the parameter has shape {tuple(param.shape)}")
    optimizer.load_state_dict(state)
