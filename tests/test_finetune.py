"""Tests of llmcourse.finetune: the shared fine-tuning loop keeps the best epoch."""

import pytest
import torch

from llmcourse.classify import GPTClassifier, add_classification_head
from llmcourse.finetune import fit, shuffled_batches
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.runtime import set_seed

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed: int = 0, vocab_size: int = 64, context_length: int = 32) -> GPTModel:
    set_seed(seed)
    return GPTModel(GPTConfig(vocab_size=vocab_size, context_length=context_length, d_model=32, n_heads=4, n_layers=2,
                              dropout=0.0))


def test_fit_keeps_the_epoch_with_the_best_score():
    model = add_classification_head(tiny_model(), n_classes=2)
    classifier = GPTClassifier(model, "last")
    scores = iter([0.2, 0.9, 0.1])
    snapshots = []

    def after_epoch() -> float:
        snapshots.append(model.out_head.weight.detach().clone())
        return next(scores)

    ids, labels = torch.randint(0, 64, (16, 6)), torch.randint(0, 2, (16,))
    history = fit(classifier, lambda epoch: shuffled_batches(ids, labels, 8, seed=epoch), epochs=3, lr=1e-2,
                  after_epoch=after_epoch)
    assert history.best_epoch == 2 and len(history.train_loss) == 6
    assert torch.equal(model.out_head.weight, snapshots[1])
