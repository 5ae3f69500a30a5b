"""Pretrain a GPT on text files, on one device or several (torchrun + DistributedDataParallel).

Every rank reads the same text but trains on different windows of it; gradients are averaged
across ranks, so all ranks hold identical weights. Rank 0 shows the progress bar, writes the
JSON-lines log and the checkpoint (every --save-every updates, at the end, and when SIGINT,
SIGTERM or SIGHUP asks the run to stop), and prints the final validation loss and bits per byte.
--recipe modern trains the course's modern recipe (notebook 5G) instead of GPT-2's: rotary positions,
SwiGLU and an untied head, with Muon for the blocks' weight matrices and AdamW for the rest.
--publish DIR writes the finished model for others to load (`llmcourse.course.published_model`): its
weights in bfloat16, tokenizer and config, and a model card (this command, the machine, the time taken,
the tokens seen, validation and test bits per byte of the published weights, the sha256 of every file).
"""

import argparse
import hashlib
import json
import math
import os
import platform
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import tiktoken
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from llmcourse.checkpoint import Checkpoint, load_checkpoint, restore_optimizer, save_checkpoint
from llmcourse.course import COURSE_SETTINGS, MODERN_RECIPE, publish_model, published_model
from llmcourse.data import SlidingWindowDataset, create_dataloader, load_shakespeare
from llmcourse.model import GPTConfig, GPTModel, count_parameters
from llmcourse.muon import MuonWithAdamW
from llmcourse.runtime import get_device, set_seed
from llmcourse.tokenizer import BPETokenizer, gpt2_encoding
from llmcourse.train import (bits_per_byte, configure_optimizer, evaluate, evaluate_bits_per_byte,
                             spread_windows_loader, train)

PRESETS = {
    "course": dict(n_layers=COURSE_SETTINGS.n_layers, d_model=COURSE_SETTINGS.d_model,
                   n_heads=COURSE_SETTINGS.n_heads, context_length=COURSE_SETTINGS.context_length),
    "tiny": dict(n_layers=2, d_model=64, n_heads=4, context_length=32),
    "gpt2-small": dict(n_layers=12, d_model=768, n_heads=12, context_length=1024),
}


# The signals that ask the run to save and stop (Windows has no SIGHUP).
STOP_SIGNALS = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])


def number(kind: type, least: float, above: bool = False, below: float | None = None):
    """An argparse type: a finite `kind` >= least (> least when `above`; < below when given)."""
    bounds = f"{'>' if above else '>='} {least}" + (f" and < {below}" if below is not None else "")
    name = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}; give {name} {bounds}") from None
        if not math.isfinite(value) or value < least or (above and value == least) or \
                (below is not None and value >= below):
            raise argparse.ArgumentTypeError(f"{text} is out of range; give {name} {bounds}")
        return value
    return parse


def prompt_text(text: str) -> str:
    """An argparse type: a prompt of at least one character (generation needs a token to start from)."""
    if not text:
        raise argparse.ArgumentTypeError("the prompt is empty; give at least one character (the default is a newline)")
    return text


EXAMPLES = """examples:
  python scripts/pretrain.py --max-steps 1200                      the course model on the course corpus
  python scripts/pretrain.py --train-text a.txt b.txt --val-text c.txt --preset tiny --time-budget 60
  python scripts/pretrain.py --max-steps 2400 --resume              continue the run in runs/pretrain
  python scripts/pretrain.py --max-steps 1200 --recipe modern       rotary, SwiGLU, untied head, Muon
  (Ctrl-C, SIGTERM or SIGHUP saves a checkpoint and exits; --resume continues from it)
  torchrun --standalone --nproc_per_node=2 scripts/pretrain.py --preset tiny --max-steps 200
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Pretrain a GPT on UTF-8 text files (default: the course's Shakespeare corpus, with\n"
                    "its six validation plays). Runs with plain python on one device (CPU,\n"
                    "CUDA or Apple MPS), or under torchrun with DistributedDataParallel on several processes.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data and tokenizer")
    data.add_argument("--train-text", nargs="+", type=Path, metavar="FILE",
                      help="training text files (default: the course corpus's training plays)")
    data.add_argument("--val-text", nargs="+", type=Path, metavar="FILE",
                      help="validation text files (needed with --train-text; default: the held-out plays)")
    data.add_argument("--tokenizer", choices=["bpe", "gpt2"], default="bpe",
                      help="bpe: the course's byte-level BPE, trained on the training text; "
                           "gpt2: GPT-2's encoding, 50,257 ids (default: %(default)s)")
    data.add_argument("--vocab-size", type=number(int, 257), default=COURSE_SETTINGS.vocab_size, metavar="N",
                      help="vocabulary size of the BPE tokenizer (default: %(default)s)")

    model = parser.add_argument_group("model: a preset, with any of its sizes overridden by a flag, and a recipe")
    model.add_argument("--preset", choices=sorted(PRESETS), default="course",
                       help="; ".join(f"{name}: {', '.join(f'{k}={v}' for k, v in values.items())}"
                                      for name, values in PRESETS.items()) + " (default: %(default)s)")
    for flag in ("n-layers", "d-model", "n-heads", "context-length"):
        model.add_argument(f"--{flag}", type=number(int, 1), metavar="N")
    model.add_argument("--recipe", choices=["gpt2", "modern"], default="gpt2",
                       help="gpt2: GPT-2's architecture, trained with AdamW; modern: rotary positions, "
                            "SwiGLU and an untied head, trained with Muon for the blocks' weight matrices and "
                            "AdamW for the rest (default: %(default)s)")
    model.add_argument("--dropout", type=number(float, 0, below=1), default=COURSE_SETTINGS.dropout, metavar="P",
                       help="dropout probability (default: %(default)s)")

    optim = parser.add_argument_group("optimization (give --max-steps, --time-budget or both)")
    optim.add_argument("--max-steps", type=number(int, 1), metavar="N", help="number of updates; the schedule ends there")
    optim.add_argument("--time-budget", type=number(float, 0, above=True), metavar="SECONDS",
                       help="stop after this many seconds; the learning rate reaches --min-lr as time runs out")
    optim.add_argument("--batch-size", type=number(int, 1), default=COURSE_SETTINGS.batch_size, metavar="N",
                       help="windows per update on each process (default: %(default)s)")
    optim.add_argument("--lr", type=number(float, 0, above=True), default=COURSE_SETTINGS.max_lr,
                       help="peak learning rate, after warmup; AdamW's part with --recipe modern "
                            "(default: %(default)s)")
    optim.add_argument("--muon-lr", type=number(float, 0, above=True), metavar="LR",
                       help="peak learning rate of Muon, with --recipe modern; it follows the same warmup and "
                            f"decay as --lr (default: {MODERN_RECIPE['muon_lr']})")
    optim.add_argument("--min-lr", type=number(float, 0), default=COURSE_SETTINGS.min_lr,
                       help="learning rate at the end of the cosine decay (default: %(default)s)")
    optim.add_argument("--warmup-steps", type=number(int, 0), default=COURSE_SETTINGS.warmup_steps, metavar="N",
                       help="updates of linear warmup (default: %(default)s)")
    optim.add_argument("--weight-decay", type=number(float, 0), default=COURSE_SETTINGS.weight_decay,
                       help="weight decay of the weight matrices, AdamW's and Muon's (default: %(default)s)")
    optim.add_argument("--grad-clip", type=number(float, 0), default=COURSE_SETTINGS.grad_clip, metavar="NORM",
                       help="clip the global gradient norm to this; 0 turns clipping off (default: %(default)s)")
    optim.add_argument("--seed", type=number(int, 0, below=2**32), default=COURSE_SETTINGS.seed,
                       help="seeds the weights, the batch order and dropout (default: %(default)s)")

    run = parser.add_argument_group("evaluation, checkpoints, logging")
    run.add_argument("--eval-every", type=number(int, 1), default=COURSE_SETTINGS.eval_every, metavar="N",
                     help="updates between validation losses (default: %(default)s)")
    run.add_argument("--eval-windows", type=number(int, 1), default=COURSE_SETTINGS.eval_windows, metavar="N",
                     help="validation windows, spread over the text, for those periodic losses; the final "
                          "loss uses all of it (default: %(default)s)")
    run.add_argument("--sample-every", type=number(int, 0), default=0, metavar="N",
                     help="updates between printed text samples; 0 never samples (default: %(default)s)")
    run.add_argument("--prompt", type=prompt_text, default="\n", help="start of the sampled text (default: a newline)")
    run.add_argument("--out-dir", type=Path, default=Path("runs/pretrain"), metavar="DIR",
                     help="where the run is written: the checkpoint in DIR/checkpoint, the log in DIR/log.jsonl "
                          "(default: %(default)s)")
    run.add_argument("--save-every", type=number(int, 0), default=200, metavar="N",
                     help="updates between checkpoints; 0 saves only at the end or when stopped by Ctrl-C, "
                          "SIGTERM or SIGHUP (default: %(default)s)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run checkpointed in --out-dir: its model, tokenizer, optimizer and step "
                          "are loaded (model flags are ignored); repeat the data and schedule flags")
    run.add_argument("--overwrite", action="store_true",
                     help="start afresh even if --out-dir holds a previous run, replacing its checkpoint and log")
    run.add_argument("--log-file", type=Path, metavar="FILE",
                     help="JSON-lines log of every update, evaluation and sample (default: OUT_DIR/log.jsonl)")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                     help="auto picks CUDA, then Apple MPS, then the CPU; or cpu, cuda, mps (default: %(default)s)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument("--publish", type=Path, metavar="DIR",
                     help="when training ends, write the model to publish to DIR: bfloat16 weights, tokenizer, "
                          "config and a model card (the course's text and BPE tokenizer only)")
    args = parser.parse_args(argv)
    if args.publish and (args.train_text or args.tokenizer != "bpe"):
        parser.error("--publish scores the model on the course's test plays: train on the course's text (no "
                     "--train-text) with --tokenizer bpe")
    if args.train_text and not args.val_text:
        parser.error("--train-text needs --val-text too: the validation loss is measured on held-out text")
    if args.max_steps is None and args.time_budget is None:
        parser.error("give --max-steps, --time-budget, or both")
    if args.resume and args.overwrite:
        parser.error("--resume continues the run in --out-dir, --overwrite replaces it: give one of them")
    if args.muon_lr is not None and args.recipe != "modern":
        parser.error("--muon-lr is Muon's learning rate, which only --recipe modern uses; drop --muon-lr or "
                     "give --recipe modern")
    if args.recipe == "modern" and args.muon_lr is None:
        args.muon_lr = MODERN_RECIPE["muon_lr"]
    if args.min_lr > args.lr:
        parser.error(f"--min-lr {args.min_lr} is above --lr {args.lr}; the schedule decays from --lr down to --min-lr")
    try:
        args.device = get_device(None if args.device == "auto" else args.device)
    except ValueError as error:
        parser.error(f"--device: {error}")
    return args


def fail(message: str) -> NoReturn:
    """Stop the script with a one-line error (exit status 2, like a bad flag)."""
    print(f"pretrain.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def read_texts(paths: list[Path] | None, split: str) -> str:
    """The files' text joined by blank lines, or the course corpus's split when no files are given."""
    if not paths:
        return load_shakespeare(split)
    texts = []
    for path in paths:
        try:
            texts.append(Path(path).read_text(encoding="utf-8"))
        except UnicodeDecodeError as error:
            fail(f"{path} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); "
                 "convert it to UTF-8")
        except OSError as error:
            fail(f"cannot read {path}: {error.strerror}")
    return "\n\n".join(texts)


def check_writable(folder: Path) -> None:
    """Create `folder` and write a file into it now, so an unwritable folder fails before training."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        fail(f"cannot write to {folder} ({error.strerror}); choose a writable --out-dir")


def check_out_dir(args: argparse.Namespace, checkpoint_dir: Path, log_path: Path) -> None:
    """Refuse a fresh run over a previous one (unless --overwrite), and a log the checkpoint's saves would delete."""
    if log_path.resolve().is_relative_to(checkpoint_dir.resolve()):
        fail(f"--log-file {log_path} is inside the checkpoint folder {checkpoint_dir}, which every save "
             "replaces; put the log elsewhere")
    previous = [path.name for path in (checkpoint_dir, log_path) if path.exists()]
    if previous and not (args.resume or args.overwrite):
        fail(f"{args.out_dir} holds a previous run ({', '.join(previous)}); give --resume to continue it or "
             "--overwrite to replace it")


def resume_from(checkpoint_dir: Path, device: torch.device, train_text_sha256: str, recipe: str) -> Checkpoint:
    """The checkpoint to resume, after checking that it was trained on this training text with this recipe."""
    try:
        checkpoint = load_checkpoint(checkpoint_dir, device)
    except FileNotFoundError:
        fail(f"--resume: no checkpoint in {checkpoint_dir}; start the run without --resume")
    except ValueError as error:
        fail(f"--resume: {error}")
    saved = checkpoint.extra.get("train_text_sha256")
    if saved != train_text_sha256:
        fail(f"--resume: the training text is not the one the checkpoint was trained on (its sha256 is "
             f"{train_text_sha256[:12]}..., the checkpoint records {str(saved)[:12]}...); give the same "
             "--train-text files, or start a new run with --overwrite")
    saved = checkpoint.extra.get("recipe", "gpt2")  # runs saved before --recipe existed are gpt2 runs
    if saved != recipe:
        fail(f"--resume: the checkpoint was trained with --recipe {saved}, not --recipe {recipe}; give --recipe "
             f"{saved}, or start a new run with --overwrite")
    if checkpoint.tokenizer is None:
        fail(f"the checkpoint in {checkpoint_dir} has no tokenizer to resume with")
    return checkpoint


def training_windows(train_ids: list[int], val_ids: list[int], context_length: int, batch_size: int,
                     world_size: int) -> SlidingWindowDataset:
    """The training windows, after checking that both texts hold a window and every process a batch."""
    for name, ids in (("training", train_ids), ("validation", val_ids)):
        if len(ids) <= context_length:
            fail(f"the {name} text has {len(ids)} tokens, too few for one window of context_length="
                 f"{context_length}; give more text or a smaller --context-length")
    windows = SlidingWindowDataset(train_ids, context_length, context_length)
    if len(windows) // world_size < batch_size:
        fail(f"the training text gives {len(windows)} windows of context_length={context_length} "
             f"({len(windows) // world_size} per process), fewer than --batch-size={batch_size}; give more text "
             "or a smaller --batch-size or --context-length")
    return windows


class StopRequest:
    """Turns the first SIGINT, SIGTERM or SIGHUP into a request to save and stop; a second one acts as usual."""

    def __init__(self):
        self.signal_name: str | None = None
        for number in STOP_SIGNALS:
            signal.signal(number, self.handle)

    def handle(self, number: int, frame) -> None:
        self.signal_name = signal.Signals(number).name
        signal.signal(number, signal.default_int_handler if number == signal.SIGINT else signal.SIG_DFL)


def model_config(args: argparse.Namespace, vocab_size: int) -> GPTConfig:
    """The preset's sizes, overridden by the size flags, with the recipe's architecture."""
    sizes = dict(PRESETS[args.preset])
    for key in sizes:
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    architecture = MODERN_RECIPE["model"] if args.recipe == "modern" else {}
    return GPTConfig(vocab_size=vocab_size, dropout=args.dropout, **sizes, **architecture)


def recipe_optimizer(model: GPTModel, args: argparse.Namespace) -> torch.optim.Optimizer | MuonWithAdamW:
    """AdamW (gpt2), or Muon for the blocks' weight matrices and AdamW for the rest (modern).

    MuonWithAdamW gives Muon's groups an lr_scale of muon_lr / lr, so `train`'s schedule moves both together.
    """
    if args.recipe == "modern":
        return MuonWithAdamW(model, args.lr, args.muon_lr, args.weight_decay)
    return configure_optimizer(model, args.lr, args.weight_decay)


def restore_state(optimizer: torch.optim.Optimizer | MuonWithAdamW, state: dict, where: str) -> None:
    """Load a saved optimizer state, checked by `restore_optimizer` (MuonWithAdamW's two parts one by one)."""
    if isinstance(optimizer, MuonWithAdamW):
        restore_optimizer(optimizer.muon, state["muon"], f"{where} (Muon's part)")
        restore_optimizer(optimizer.adamw, state["adamw"], f"{where} (AdamW's part)")
    else:
        restore_optimizer(optimizer, state, where)


def parameters_sha256(model: torch.nn.Module) -> str:
    """A fingerprint of the weights: equal on two ranks only if every parameter is bit-for-bit equal."""
    digest = hashlib.sha256()
    for param in model.parameters():
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def machine() -> str:
    """The CPU's name, its cores and the threads used, the OS, and the torch version: what the card records."""
    name = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{name}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s); {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()}, torch {torch.__version__}")


def publish(directory: Path, model: GPTModel, tokenizer: BPETokenizer, history, args: argparse.Namespace,
            train_tokens: int, val_bpb: float, seconds: float) -> None:
    """Write the model and its card to `directory`, then score the published (bfloat16) weights as loaded."""
    lookup = model.tok_emb.weight.numel()
    multiplying = count_parameters(model) - lookup
    tokens = history.tokens_seen[-1]
    card = {"model": "the course's published GPT", "command": "python scripts/pretrain.py " + shlex.join(
                sys.argv[1:]), "seed": args.seed, "machine": machine(), "wall_seconds": round(seconds),
            "config": model.cfg.to_dict(), "parameters": count_parameters(model),
            "multiplying_parameters": multiplying, "steps": history.steps[-1], "tokens_seen": tokens,
            "train_tokens": train_tokens, "epochs": round(tokens / train_tokens, 2),
            "training_flops": 6 * multiplying * tokens, "float32_val_bits_per_byte": round(val_bpb, 4)}
    card_sha256 = publish_model(directory, model, tokenizer, card)
    loaded, loaded_tokenizer, _ = published_model("cpu", directory, card_sha256)
    for split in ("val", "test"):
        text = load_shakespeare(split)
        card[f"{split}_bits_per_byte"] = round(evaluate_bits_per_byte(
            loaded, loaded_tokenizer.encode(text), len(text.encode("utf-8")), args.batch_size), 4)
    card_sha256 = publish_model(directory, model, tokenizer, card)
    print(f"published to {directory}: validation {card['val_bits_per_byte']:.4f}, test "
          f"{card['test_bits_per_byte']:.4f} bits per byte (bfloat16 weights); card.json sha256 {card_sha256}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    device = args.device
    rank, world_size = 0, 1
    if distributed:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank, world_size = dist.get_rank(), dist.get_world_size()
    is_main = rank == 0
    started = time.perf_counter()
    checkpoint_dir = args.out_dir / "checkpoint"
    log_path = args.log_file or args.out_dir / "log.jsonl"
    if is_main:
        check_out_dir(args, checkpoint_dir, log_path)
        check_writable(args.out_dir)
        check_writable(log_path.parent)

    train_text, val_text = read_texts(args.train_text, "train"), read_texts(args.val_text, "val")
    train_text_sha256 = hashlib.sha256(train_text.encode("utf-8")).hexdigest()
    if args.resume:
        checkpoint = resume_from(checkpoint_dir, device, train_text_sha256, args.recipe)
        config, tokenizer, start_step = checkpoint.model.cfg, checkpoint.tokenizer, checkpoint.step
    else:
        tokenizer = BPETokenizer.train(train_text, args.vocab_size) if args.tokenizer == "bpe" else gpt2_encoding()
        vocab_size = tokenizer.n_vocab if isinstance(tokenizer, tiktoken.Encoding) else tokenizer.vocab_size
        try:
            config, start_step = model_config(args, vocab_size), 0
        except ValueError as error:
            fail(f"{error}; change the model flags")
    train_ids, val_ids = tokenizer.encode_ordinary(train_text), tokenizer.encode_ordinary(val_text)
    context_length = config.context_length
    windows = training_windows(train_ids, val_ids, context_length, args.batch_size, world_size)
    if args.resume:
        model = checkpoint.model
    else:
        set_seed(args.seed)  # every rank starts from the same weights
        model = GPTModel(config).to(device)
    optimizer = recipe_optimizer(model, args)
    if args.resume and checkpoint.optimizer_state is not None:
        restore_state(optimizer, checkpoint.optimizer_state, f"{checkpoint_dir}/optimizer.pt")
    max_steps = args.max_steps or 1_000_000_000  # only the time budget stops the run
    if start_step >= max_steps:
        fail(f"the checkpoint is at step {start_step}, already at --max-steps={max_steps}; "
             "raise --max-steps to train further")

    # Each rank trains on its own share of the windows (every world_size-th), shuffled from the seed.
    share = Subset(windows, range(rank, len(windows), world_size))
    train_loader = DataLoader(share, batch_size=args.batch_size, shuffle=True, drop_last=True,
                              generator=torch.Generator().manual_seed(args.seed))
    val_loader = spread_windows_loader(val_ids, args.eval_windows, context_length, args.batch_size)
    settings = json.loads(json.dumps(vars(args), default=str))  # paths as strings

    # Opened only now that every input has been read: a run that fails early leaves the old log alone.
    log_file = open(log_path, "a" if args.resume else "w", encoding="utf-8") if is_main else None

    def log(record: dict) -> None:
        if log_file:
            log_file.write(json.dumps({"time": round(time.perf_counter() - started, 3), **record}) + "\n")
            log_file.flush()
            if record["event"] == "sample":
                tqdm.write(f"--- sample at step {record['step']} ---\n{record['text']}\n")

    saved_step = start_step if args.resume else None

    def save(step: int) -> None:
        nonlocal saved_step
        if is_main and step != saved_step:
            save_checkpoint(checkpoint_dir, model, optimizer, step, tokenizer,
                            extra={"args": settings, "train_text_sha256": train_text_sha256,
                                   "recipe": args.recipe})
            log({"event": "checkpoint", "step": step})
            saved_step = step

    def on_update(step: int) -> bool:
        """Save every --save-every updates; stop (every rank alike) once any rank got a signal."""
        stopping = stop.signal_name is not None
        if distributed:
            flag = torch.tensor([float(stopping)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stopping = flag.item() > 0
        if args.save_every and step % args.save_every == 0:
            save(step)
        return stopping

    log({"event": "start", "args": settings,
         "model": model.cfg.to_dict(), "parameters": count_parameters(model), "world_size": world_size,
         "device": str(device), "start_step": start_step, "train_tokens": len(train_ids),
         "val_tokens": len(val_ids)})

    stop = StopRequest()  # on every rank: torchrun forwards signals to all of them
    wrapped = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if distributed else model
    try:
        history = train(wrapped, optimizer, train_loader, val_loader, max_steps, args.lr, args.min_lr,
                        args.warmup_steps, args.grad_clip or None, args.eval_every,
                        tokenizer=tokenizer, sample_every=args.sample_every or None, prompt=args.prompt,
                        time_budget=args.time_budget, seed=args.seed, start_step=start_step,
                        progress=is_main and not args.no_progress, log=log, on_update=on_update)
    except FloatingPointError as error:
        last = f"the last checkpoint, {checkpoint_dir}, is from step {saved_step}" if saved_step is not None \
            else "no checkpoint was saved"
        fail(f"{error}; {last}")
    step = history.steps[-1] if history.steps else start_step
    save(step)

    fingerprint = parameters_sha256(model)
    fingerprints = [fingerprint] * world_size
    if distributed:
        dist.all_gather_object(fingerprints, fingerprint)
    if is_main:
        if history.stopped_by == "on_update":
            log({"event": "end", "step": step, "stopped_by": stop.signal_name, "seconds": history.seconds})
            print(f"stopped by {stop.signal_name} at step {step}; checkpoint in {checkpoint_dir} "
                  "(continue with --resume)")
        else:
            full_val = create_dataloader(val_ids, args.batch_size, context_length, shuffle=False, drop_last=False)
            val_loss = evaluate(model, full_val)
            val_bpb = bits_per_byte(val_loss * len(val_ids), len(val_text.encode("utf-8")))
            log({"event": "end", "step": step, "stopped_by": history.stopped_by, "val_loss": val_loss,
                 "val_bits_per_byte": val_bpb, "param_sha256": fingerprints, "seconds": history.seconds})
            print(f"step {step} ({history.stopped_by}): validation loss {val_loss:.4f}, "
                  f"bits per byte {val_bpb:.4f}; checkpoint in {checkpoint_dir}")
            if args.publish:
                publish(args.publish, model, tokenizer, history, args, len(train_ids), val_bpb,
                        time.perf_counter() - started)
        log_file.close()
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
