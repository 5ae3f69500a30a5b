"""The fine-tuning loop shared by classification and instruction tuning (chapter 6): AdamW at a constant
learning rate over batches of (inputs, targets), with early stopping on a validation score."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from llmcourse.train import configure_optimizer, cross_entropy


def shuffled_batches(inputs: Tensor, labels: Tensor, batch_size: int, seed: int) -> list[tuple[Tensor, Tensor]]:
    """(inputs, labels) in batches of `batch_size`, in an order drawn from `seed` (the last batch may be short)."""
    if len(inputs) != len(labels):
        raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(seed))
    return [(inputs[i], labels[i]) for i in order.split(batch_size)]


@dataclass
class FitHistory:
    """What `fit` recorded: the loss of every update, and whatever `after_epoch` returned each epoch."""

    train_loss: list[float]
    epoch_scores: list[float]
    best_epoch: int  # 1-based; 0 when no after_epoch was given


def fit(module: nn.Module, batches: Callable[[int], Iterable[tuple[Tensor, Tensor]]], epochs: int, lr: float,
        weight_decay: float = 0.0, after_epoch: Callable[[], float] | None = None) -> FitHistory:
    """Train the module's trainable parameters with AdamW at a constant `lr` on `batches(epoch)`, for `epochs`.

    The loss is cross-entropy (targets of -100 are ignored). If `after_epoch` is given it scores the
    module after every epoch (e.g. validation accuracy) and the weights of the best-scoring epoch are
    restored at the end: early stopping, chosen on that score.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    optimizer = configure_optimizer(module, lr, weight_decay)
    history = FitHistory([], [], 0)
    best_state = None
    module.train()
    for epoch in range(epochs):
        updates = len(history.train_loss)
        for inputs, targets in batches(epoch):
            loss = cross_entropy(module(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.train_loss.append(loss.item())
        if len(history.train_loss) == updates:
            raise ValueError(f"batches({epoch}) gave no batch: there is nothing to train on")
        if after_epoch is not None:
            module.eval()
            history.epoch_scores.append(after_epoch())
            module.train()
            if history.epoch_scores[-1] > max(history.epoch_scores[:-1], default=float("-inf")):
                history.best_epoch = epoch + 1
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return history
