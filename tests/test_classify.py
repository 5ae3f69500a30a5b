"""Tests of llmcourse.classify: the classification head and its pooling, training parts of a model, a short
fine-tune, and the metrics."""


import pytest
import torch

from llmcourse.classify import (GPTClassifier, accuracy, add_classification_head, confusion_matrix, hidden_states,
                                macro_f1, pool, predict_proba, set_trainable, EncoderClassifier, with_cls_and_sep)
from llmcourse.course import bert_tokenizer
from llmcourse.encoder import BertModel
from llmcourse.finetune import fit, shuffled_batches
from llmcourse.mlm import EncoderSettings
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.runtime import set_seed


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed: int = 0, vocab_size: int = 64, context_length: int = 32) -> GPTModel:
    set_seed(seed)
    return GPTModel(GPTConfig(vocab_size=vocab_size, context_length=context_length, d_model=32, n_heads=4, n_layers=2,
                              dropout=0.0))


def test_classification_head_replaces_the_output_head():
    model = add_classification_head(tiny_model(), n_classes=3)
    ids = torch.randint(0, 64, (5, 10))
    assert model(ids).shape == (5, 10, 3)
    assert model.out_head.weight is not model.tok_emb.weight and model.tok_emb.weight.shape == (64, 32)
    assert GPTClassifier(model, "last")(ids).shape == (5, 3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        add_classification_head(tiny_model(), n_classes=1)


def test_pooling_picks_last_first_or_mean():
    logits = torch.arange(24.0).view(2, 4, 3)
    assert torch.equal(pool(logits, "last"), logits[:, 3])
    assert torch.equal(pool(logits, "first"), logits[:, 0])
    assert torch.equal(pool(logits, "mean"), logits.mean(1))
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool(logits, "max")


def test_classifier_from_cached_states_equals_the_full_forward():
    model = add_classification_head(tiny_model(), n_classes=3).eval()
    ids = torch.randint(0, 64, (4, 12))
    full = GPTClassifier(model, "mean")(ids)
    for start in (1, 2):
        tail = GPTClassifier(model, "mean", start_block=start)(hidden_states(model, ids, start))
        torch.testing.assert_close(tail, full, rtol=0, atol=1e-6)


def test_set_trainable_counts_the_chosen_parts():
    model = add_classification_head(tiny_model(), n_classes=3)
    head = 32 * 3 + 3
    assert set_trainable(model, "head") == head
    last_block = sum(p.numel() for p in model.blocks[-1].parameters())
    assert set_trainable(model, "last block") == head + last_block + 2 * 32
    assert set_trainable(model, "all") == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="part must be one of"):
        set_trainable(model, "embeddings")


def test_metrics_on_a_hand_checked_example():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    predictions = torch.tensor([0, 1, 1, 1, 0, 0])
    assert confusion_matrix(labels, predictions, 3).tolist() == [[1, 1, 0], [0, 2, 0], [2, 0, 0]]
    assert accuracy(labels, predictions) == pytest.approx(0.5)
    # F1: class 0: precision 1/3, recall 1/2 -> 0.4; class 1: 2/3, 1 -> 0.8; class 2: 0
    assert macro_f1(labels, predictions, 3) == pytest.approx((0.4 + 0.8 + 0.0) / 3)


def test_a_short_fine_tune_beats_the_majority_class():
    """Label = whether token 7 occurs in the sequence; the majority class is about 60 %."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(8, 64, (480, 12), generator=generator)
    has_seven = torch.rand(480, generator=generator) < 0.4
    ids[has_seven, torch.randint(0, 12, (int(has_seven.sum()),), generator=generator)] = 7
    labels = has_seven.long()
    model = add_classification_head(tiny_model(), n_classes=2)
    classifier = GPTClassifier(model, "last")
    set_trainable(model, "all")
    train_x, train_y, test_x, test_y = ids[:360], labels[:360], ids[360:], labels[360:]
    fit(classifier, lambda epoch: shuffled_batches(train_x, train_y, 32, seed=epoch), epochs=12, lr=3e-3)
    majority = max(test_y.float().mean().item(), 1 - test_y.float().mean().item())
    assert accuracy(test_y, predict_proba(classifier, test_x).argmax(-1)) > majority + 0.15


def test_encoder_classifier_reads_cls_and_sep_framed_passages():
    tokenizer = bert_tokenizer()
    set_seed(0)
    encoder = BertModel(EncoderSettings(d_model=16, n_heads=2, n_layers=1, context_length=32).model_config())
    ids = with_cls_and_sep(torch.tensor([[5, 6, 7], [8, 9, 10]]), tokenizer)
    assert ids[:, 0].eq(tokenizer.special_tokens["[CLS]"]).all() and ids[:, -1].eq(tokenizer.special_tokens["[SEP]"]).all()
    classifier = EncoderClassifier(encoder, n_classes=3, seed=0)
    assert classifier(ids).shape == (2, 3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        EncoderClassifier(encoder, n_classes=1)


def test_encoder_classifier_ignores_padding_when_it_knows_the_pad_id():
    tokenizer = bert_tokenizer()
    pad = tokenizer.special_tokens["[PAD]"]
    set_seed(0)
    encoder = BertModel(EncoderSettings(d_model=16, n_heads=2, n_layers=1, context_length=32).model_config()).eval()
    short = with_cls_and_sep(torch.tensor([[5, 6, 7]]), tokenizer)
    long = with_cls_and_sep(torch.tensor([[8, 9, 10, 11, 12, 13]]), tokenizer)
    batch = torch.cat([torch.cat([short, torch.full((1, 3), pad)], dim=1), long])
    classifier = EncoderClassifier(encoder, 3, seed=0, pad_id=pad)
    with torch.no_grad():
        classifier.head.weight.mul_(1000)  # an untrained [CLS] state varies little: make its changes visible
        alone, masked = classifier(short), classifier(batch)
        unmasked = classifier(batch, padding_mask=torch.ones_like(batch, dtype=torch.bool))
    assert torch.allclose(masked[0], alone[0], atol=1e-4) and torch.allclose(masked[1], classifier(long)[0], atol=1e-4)
    assert (unmasked[0] - alone[0]).abs().max() > 1e-3  # attending to [PAD] changes the short row
