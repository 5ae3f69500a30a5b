"""Tests of llmcourse.finetune: the shared fine-tuning loop keeps the best epoch."""

import pytest
import torch
from torch import nn

from llmcourse.finetune import fit, shuffled_batches
from llmcourse.runtime import set_seed

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fit_keeps_the_epoch_with_the_best_score():
    set_seed(0)
    head = nn.Linear(6 * 8, 2)
    classifier = nn.Sequential(nn.Embedding(64, 8), nn.Flatten(), head)
    scores = iter([0.2, 0.9, 0.1])
    snapshots = []

    def after_epoch() -> float:
        snapshots.append(head.weight.detach().clone())
        return next(scores)

    ids, labels = torch.randint(0, 64, (16, 6)), torch.randint(0, 2, (16,))
    history = fit(classifier, lambda epoch: shuffled_batches(ids, labels, 8, seed=epoch), epochs=3, lr=1e-2,
                  after_epoch=after_epoch)
    assert history.best_epoch == 2 and len(history.train_loss) == 6
    assert torch.equal(head.weight, snapshots[1]) and not torch.equal(snapshots[1], snapshots[2])
