"""Pretraining (chapter 5): losses, perplexity and bits per byte, AdamW, the learning-rate schedule and the
training loop. The course's own pretrained GPT is in `llmcourse.course`, checkpoints in `llmcourse.checkpoint`."""

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from llmcourse.data import SlidingWindowDataset, create_dataloader
from llmcourse.generate import generate
from llmcourse.model import GPTConfig
from llmcourse.runtime import threads
from llmcourse.tokenizer import Tokenizer

# --- measuring ------------------------------------------------------------------------------------


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log-probability of each target token: logits (..., vocab), targets (...)."""
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits of shape {tuple(logits.shape)} need targets of shape "
                         f"{tuple(logits.shape[:-1])}, got {tuple(targets.shape)}")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def batch_loss(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """The model's cross-entropy on one batch of (inputs, targets), moved to the model's device."""
    device = next(model.parameters()).device
    return cross_entropy(model(inputs.to(device)), targets.to(device))


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, max_batches: int | None = None) -> float:
    """Mean loss per token over a loader (its first `max_batches`), in eval mode and without gradients.

    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for index, (inputs, targets) in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        total += batch_loss(model, inputs, targets).item() * targets.numel()
        count += targets.numel()
    model.train(was_training)
    if count == 0:
        raise ValueError("the loader gave no batches to evaluate (is it shorter than one batch with drop_last?)")
    return total / count


def perplexity(loss: float) -> float:
    """exp(loss): the number of equally likely tokens that would leave a model just as uncertain."""
    return math.exp(loss)


def bits_per_byte(total_nats: float, n_bytes: int) -> float:
    """Total loss of a text (nats, summed over its tokens) in bits per UTF-8 byte of that text.

    Loss per token depends on how long the tokens are; bits per byte does not, so it compares
    models with different tokenizers on the same text.
    """
    if n_bytes <= 0:
        raise ValueError(f"n_bytes must be positive, got {n_bytes}")
    return total_nats / math.log(2) / n_bytes


def evaluate_bits_per_byte(model: nn.Module, token_ids: list[int] | Tensor, n_bytes: int,
                           batch_size: int = 16) -> float:
    """Bits per byte of a whole tokenized text of `n_bytes` bytes: mean loss over non-overlapping windows.

    The mean loss per token is scaled by the text's tokens per byte (the last partial window,
    under one context of tokens, is left out of the mean).
    """
    context_length = _unwrap(model).cfg.context_length
    loader = create_dataloader(token_ids, batch_size, context_length, shuffle=False, drop_last=False)
    return bits_per_byte(evaluate(model, loader) * len(token_ids), n_bytes)


# --- optimizing -----------------------------------------------------------------------------------


def weight_decay_groups(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the parameters that get weight decay (matrices) and of those that do not (vectors).

    Tied weights appear once, under the first module that owns them.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(name)
    return decay, no_decay


def configure_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.1,
                        betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW that decays only the weight matrices of Linear and Embedding layers.

    Weight decay pulls weights towards zero to keep them small. For a matrix that is a mild
    prior; for a bias or a LayerNorm scale (whose neutral value is 1, not 0) it only fights the
    parameter's job, and those vectors hold too few numbers to overfit, so they are left alone.
    """
    decay, no_decay = weight_decay_groups(model)
    params = dict(model.named_parameters())
    groups = [{"params": [params[n] for n in decay], "weight_decay": weight_decay},
              {"params": [params[n] for n in no_decay], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def lr_at(step: int, max_lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Learning rate of update `step` (0-based): linear warmup to max_lr, then cosine decay to min_lr.

    Update warmup_steps - 1 is the first at max_lr and update max_steps - 1 the first at min_lr.
    """
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - 1 - warmup_steps))
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


# --- the training loop ----------------------------------------------------------------------------


@dataclass
class History:
    """What `train` recorded: every update, every evaluation and every sample."""

    steps: list[int] = field(default_factory=list)  # updates done, 1, 2, ...
    train_loss: list[float] = field(default_factory=list)  # loss of the batch of that update
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)  # global gradient norm before clipping
    tokens_seen: list[int] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    samples: list[tuple[int, str]] = field(default_factory=list)
    stopped_by: str = "max_steps"  # or "time_budget", or "on_update" when that callback stopped the run
    seconds: float = 0.0


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def _endless_batches(loader: DataLoader, skip: int) -> Iterator[tuple[Tensor, Tensor]]:
    """The loader's batches, epoch after epoch, without the first `skip` (already trained on)."""
    seen = 0
    while True:
        for batch in loader:
            if seen >= skip:
                yield batch
            seen += 1
        if seen == 0:
            raise ValueError("the training loader gives no batches: the text is shorter than one batch")


def _from_rank0(value: float, device: torch.device) -> float:
    """Under torch.distributed, rank 0's `value` on every rank (so all ranks decide alike); else `value`."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    shared = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(shared, src=0)
    return shared.item()


def sample_text(model: nn.Module, tokenizer: Tokenizer, prompt: str = "\n", max_new_tokens: int = 60,
                seed: int = 0) -> str:
    """A continuation of `prompt`, sampled at temperature 0.8 among the top 40 tokens, reproducibly."""
    model = _unwrap(model)
    device = next(model.parameters()).device
    ids = torch.tensor([tokenizer.encode(prompt)], device=device)
    out = generate(model, ids, max_new_tokens, temperature=0.8, top_k=40, seed=seed)
    return tokenizer.decode(out[0].tolist())


def _check_train_arguments(max_steps: int, max_lr: float, min_lr: float, warmup_steps: int,
                           grad_clip: float | None, eval_every: int, sample_every: int | None,
                           time_budget: float | None) -> None:
    """Refuse settings that would train wrongly in silence (a negative clip ascends the gradient)."""
    def is_int(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    checks = [
        ("max_steps", max_steps, is_int(max_steps) and max_steps >= 1, "an integer >= 1"),
        ("warmup_steps", warmup_steps, is_int(warmup_steps) and warmup_steps >= 0, "an integer >= 0"),
        ("eval_every", eval_every, is_int(eval_every) and eval_every >= 1, "an integer >= 1"),
        ("sample_every", sample_every, sample_every is None or (is_int(sample_every) and sample_every >= 1),
         "None or an integer >= 1"),
        ("max_lr", max_lr, math.isfinite(max_lr) and max_lr >= 0, "a finite number >= 0"),
        ("min_lr", min_lr, math.isfinite(min_lr) and min_lr >= 0, "a finite number >= 0"),
        ("grad_clip", grad_clip, grad_clip is None or (math.isfinite(grad_clip) and grad_clip >= 0),
         "None or 0 (no clipping), or a finite number > 0"),
        ("time_budget", time_budget, time_budget is None or time_budget >= 0, "None or a number of seconds >= 0"),
    ]
    for name, value, ok, requirement in checks:
        if not ok:
            raise ValueError(f"{name} must be {requirement}, got {value!r}")


def train(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: DataLoader,
          val_loader: DataLoader | None, max_steps: int, max_lr: float, min_lr: float = 0.0,
          warmup_steps: int = 0, grad_clip: float | None = 1.0, eval_every: int = 100,
          eval_batches: int | None = None, tokenizer: Tokenizer | None = None, sample_every: int | None = None,
          prompt: str = "\n", sample_tokens: int = 60, time_budget: float | None = None, seed: int = 0,
          start_step: int = 0, until_step: int | None = None, progress: bool = True,
          log: Callable[[dict], None] | None = None, clock: Callable[[], float] = time.perf_counter,
          on_update: Callable[[int], bool] | None = None) -> History:
    """Train until `max_steps` updates (or `time_budget` seconds), evaluating and sampling on the way.

    Each update: learning rate from `lr_at`, one batch, loss, gradients, global-norm clipping at
    `grad_clip`, an optimizer step. Validation loss is measured every `eval_every` updates and at the
    end; with a tokenizer, text is sampled every `sample_every` updates. Dropout is seeded from
    (seed, step). `until_step` pauses the run early (the schedule still spans `max_steps`). To
    resume, pass a model and optimizer loaded from a checkpoint, `start_step`, and a loader built as
    in the original run: its first `start_step` batches are skipped, so the run continues exactly
    where it stopped. With a time budget the cosine is stretched to end when the budget does, at
    the speed measured so far; `clock` measures it (wall time, or `time.process_time` for CPU time, in which
    case the run uses one thread).
    Works on a DistributedDataParallel model too: the clock is then rank 0's, shared by all ranks,
    so they stop and schedule alike. `on_update(step)` runs after every update (to save a checkpoint,
    say); if it returns True the run stops there. A NaN or infinite loss or gradient stops the run
    with a FloatingPointError before the optimizer step.
    """
    until_step = max_steps if until_step is None else until_step
    _check_train_arguments(max_steps, max_lr, min_lr, warmup_steps, grad_clip, eval_every, sample_every,
                           time_budget)
    if not 0 <= start_step <= until_step <= max_steps:
        raise ValueError(f"need 0 <= start_step <= until_step <= max_steps, got start_step={start_step}, "
                         f"until_step={until_step}, max_steps={max_steps}")
    raw = _unwrap(model)
    device = next(raw.parameters()).device
    world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    history = History()
    batches = _endless_batches(train_loader, skip=start_step)
    model.train()
    # A budget of CPU seconds (time.process_time counts every thread) is one thread's: the same budget
    # then buys the same number of updates on a 2-core laptop and a 16-core workstation.
    pinned = 1 if time_budget is not None and clock is time.process_time else torch.get_num_threads()
    with threads(pinned):
        started = clock()
        # Redraw at most once every 2 s: a notebook's progress widget sends messages on every redraw,
        # and thousands of them overflow the kernel's output queue. With a time budget the number of
        # updates is unknown, so the bar counts the budget's seconds instead.
        if time_budget is None:
            bar = tqdm(total=until_step, initial=start_step, desc="training", disable=not progress,
                       mininterval=2.0)
        else:
            bar = tqdm(total=time_budget, desc="training", unit="s", disable=not progress, mininterval=2.0,
                       bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of the budget [{postfix}]")

        def measure(step: int, final: bool = False) -> None:
            """Evaluate and sample when due at `step` (always at the end), once per step."""
            eval_due = final or step % eval_every == 0
            if val_loader is not None and eval_due and step not in history.eval_steps[-1:]:
                history.eval_steps.append(step)
                history.val_loss.append(evaluate(raw, val_loader, eval_batches))
                if log:
                    log({"event": "eval", "step": step, "val_loss": history.val_loss[-1]})
            due = sample_every and (final or step % sample_every == 0)
            if tokenizer is not None and due and step not in [s for s, _ in history.samples[-1:]]:
                history.samples.append((step, sample_text(raw, tokenizer, prompt, sample_tokens, seed)))
                if log:
                    log({"event": "sample", "step": step, "text": history.samples[-1][1]})

        step = start_step
        while step < until_step:
            measure(step)
            planned = max_steps
            if time_budget is not None:
                elapsed = _from_rank0(clock() - started, device)
                if elapsed > time_budget:
                    history.stopped_by = "time_budget"
                    break
                done = step - start_step
                if done >= 10:  # stretch the cosine to end when the budget does, at the speed so far
                    planned = min(max_steps, start_step + int(done * time_budget / elapsed))
            lr = lr_at(step, max_lr, min_lr, warmup_steps, planned)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            inputs, targets = next(batches)
            # Seeding from (seed, step) gives a resumed run the same dropout masks as an unbroken one.
            torch.manual_seed(seed * 1_000_003 + step)
            loss = batch_loss(model, inputs, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip else float("inf"))
            # Under DistributedDataParallel the gradients are averaged, so a NaN on any rank stops every rank here.
            if not (torch.isfinite(loss) and torch.isfinite(norm)):
                bar.close()
                raise FloatingPointError(f"update {step + 1}: the loss is {loss.item()} and the gradient norm "
                                         f"{norm.item()}; training diverged (lower max_lr={max_lr}, keep grad_clip "
                                         "on) or the model or data hold NaN or infinite values")
            optimizer.step()
            step += 1
            history.steps.append(step)
            history.train_loss.append(loss.item())
            history.lr.append(lr)
            history.grad_norm.append(norm.item())
            history.tokens_seen.append(step * inputs.numel() * world_size)
            bar.set_postfix(step=step, loss=f"{history.train_loss[-1]:.3f}",
                            val_loss=f"{history.val_loss[-1]:.3f}" if history.val_loss else "-", refresh=False)
            bar.update(1 if time_budget is None else min(time_budget, clock() - started) - bar.n)
            if log:
                log({"event": "step", "step": step, "loss": history.train_loss[-1], "lr": lr,
                     "grad_norm": history.grad_norm[-1], "tokens": history.tokens_seen[-1]})
            if on_update is not None and on_update(step):
                history.stopped_by = "on_update"
                break
        measure(step, final=True)
        bar.close()
        history.seconds = clock() - started
        return history


# --- what fixes a run, and a fixed validation sample ----------------------------------------------


@dataclass(frozen=True)
class PretrainSettings:
    """Everything that fixes a pretraining run on the Shakespeare corpus: tokenizer, model, optimizer, seed.

    The defaults are the course GPT's (`llmcourse.course.COURSE_SETTINGS`)."""

    vocab_size: int = 2048
    context_length: int = 128
    d_model: int = 96
    n_heads: int = 4
    n_layers: int = 4
    dropout: float = 0.0
    batch_size: int = 8
    max_steps: int = 1785
    max_lr: float = 4e-3
    min_lr: float = 4e-4
    warmup_steps: int = 60
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 200
    eval_windows: int = 128  # validation windows spread evenly over the validation plays
    seed: int = 123

    def model_config(self) -> GPTConfig:
        return GPTConfig(vocab_size=self.vocab_size, context_length=self.context_length, d_model=self.d_model,
                         n_heads=self.n_heads, n_layers=self.n_layers, dropout=self.dropout)


def spread_windows_loader(token_ids: list[int] | Tensor, n_windows: int, context_length: int,
                          batch_size: int) -> DataLoader:
    """`n_windows` windows spread evenly over a text (a cheap, fixed sample for periodic evaluation)."""
    span = len(token_ids) - context_length - 1
    stride = max(1, span // max(1, n_windows - 1))
    dataset = SlidingWindowDataset(token_ids, context_length, stride)
    return DataLoader(Subset(dataset, range(min(n_windows, len(dataset)))), batch_size=batch_size)
