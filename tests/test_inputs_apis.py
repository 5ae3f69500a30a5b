"""Bad inputs to the fine-tuning helpers and the small chapter-1 and chapter-5 APIs fail at once and clearly,
instead of returning a plausible but wrong answer."""

import math
import time

import numpy as np
import pytest
import torch

from llmcourse.bow import count_vectors
from llmcourse.classify import (GPTClassifier, accuracy, add_classification_head, confusion_matrix, macro_f1,
                                train_classifier)
from llmcourse.data import load_plays
from llmcourse.finetune import fit
from llmcourse.instruct import collate_instructions, respond
from llmcourse.lora import add_lora
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.ngram import NGramModel
from llmcourse.seq2seq import build_model, predict
from llmcourse.tasks import reversal_pairs
from llmcourse.tokenizer import BPETokenizer
from llmcourse.word2vec import analogy, nearest_neighbours

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_gpt(vocab_size: int = 50, context_length: int = 16) -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(GPTConfig(vocab_size=vocab_size, context_length=context_length, d_model=16, n_heads=2,
                              n_layers=1, dropout=0.0))


def tiny_classifier() -> GPTClassifier:
    return GPTClassifier(add_classification_head(tiny_gpt(), 3))


# --- fine-tuning data and metrics -------------------------------------------------------------------------

def test_fit_refuses_an_empty_dataset_and_zero_epochs():
    classifier = tiny_classifier()
    with pytest.raises(ValueError, match="batches\\(0\\) gave no batch: there is nothing to train on"):
        fit(classifier, lambda epoch: [], epochs=2, lr=1e-3)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        fit(classifier, lambda epoch: [(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, dtype=torch.long))],
            epochs=0, lr=1e-3)


@pytest.mark.parametrize("which, labels, message", [
    ("val", [0, 1, 3, 2], "val_labels must be class indices 0 .. 2, got values 0 .. 3"),
    ("val", [0, 1, -1, 2], "val_labels must be class indices 0 .. 2, got values -1 .. 2"),
    ("train", [0, 1, 2, 7], "train_labels must be class indices 0 .. 2, got values 0 .. 7"),
    ("train", [0.0, 1.0, 2.0, 1.0], "train_labels must be a 1-D tensor of integer class indices"),
    ("val", [0, 1, 2], "val_labels has 3 entries for 4 examples"),
])
def test_train_classifier_refuses_labels_outside_the_classes(which, labels, message):
    inputs, good = torch.randint(0, 50, (4, 6), generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 1])
    labels = torch.tensor(labels)
    train_labels, val_labels = (labels, good) if which == "train" else (good, labels)
    with pytest.raises(ValueError, match=message):
        train_classifier(tiny_classifier(), inputs, train_labels, inputs, val_labels, epochs=1, lr=1e-3)


def test_train_classifier_refuses_empty_inputs():
    ids = torch.zeros(0, 6, dtype=torch.long)
    with pytest.raises(ValueError, match="need training and validation examples, got 0 and 0"):
        train_classifier(tiny_classifier(), ids, torch.zeros(0, dtype=torch.long), ids,
                         torch.zeros(0, dtype=torch.long), epochs=1, lr=1e-3)


@pytest.mark.parametrize("labels, predictions", [([0, 1, 2, 0, 1, 2], [0]), ([0, 1], [0, 1, 1]),
                                                 ([], []), ([[0, 1]], [[0, 1]])])
def test_accuracy_refuses_labels_and_predictions_that_do_not_pair_up(labels, predictions):
    with pytest.raises(ValueError, match="labels and predictions must be two 1-D tensors of the same, non-zero"):
        accuracy(torch.tensor(labels, dtype=torch.long), torch.tensor(predictions, dtype=torch.long))


@pytest.mark.parametrize("labels, predictions, message", [
    ([0, 1, 3], [0, 1, 2], "labels must be class indices 0 .. 2, got values 0 .. 3"),
    ([0, 1, 2], [0, 1, -1], "predictions must be class indices 0 .. 2, got values -1 .. 1"),
    ([0, 1, 2], [0, 1], "labels has 3 entries for 2 examples"),
])
def test_confusion_matrix_and_macro_f1_refuse_labels_outside_the_classes(labels, predictions, message):
    with pytest.raises(ValueError, match=message):
        confusion_matrix(torch.tensor(labels), torch.tensor(predictions), 3)
    with pytest.raises(ValueError, match=message):
        macro_f1(torch.tensor(labels), torch.tensor(predictions), 3)


def test_collate_instructions_refuses_an_empty_prompt():
    with pytest.raises(ValueError, match="row 1 has an empty prompt"):
        collate_instructions([([1, 2], [3, 4]), ([], [5, 6, 7])], pad_id=0)


def test_respond_refuses_a_prompt_that_would_lose_its_instruction_to_cropping():
    tokenizer = BPETokenizer.train("to be or not to be, that is the question " * 20, 270)
    model = tiny_gpt(vocab_size=tokenizer.vocab_size, context_length=32)
    record = {"instruction": "Give the first word of the line.", "input": "to be or not to be " * 4, "output": ""}
    with pytest.raises(ValueError, match="the prompt has \\d+ tokens; with max_new_tokens=12 it does not fit in "
                                         "context_length=32: shorten the input"):
        respond(model, tokenizer, record, max_new_tokens=12)


# --- small APIs -------------------------------------------------------------------------------------------

def test_count_vectors_refuses_one_string_for_a_list_of_texts():
    with pytest.raises(ValueError, match="texts must be a list of texts, got one string"):
        count_vectors("the king the fool", {"the": 0, "king": 1})


@pytest.mark.parametrize("ids", [[1.5, 2.0, 3.0], np.array([0.0, 1.0, 2.0]), [True, False, True]])
def test_ngram_fit_refuses_ids_that_are_not_integers(ids):
    with pytest.raises(ValueError, match="ids must be integer unit ids, got (float64|bool)"):
        NGramModel(2, 4).fit(ids)


def test_analogy_never_returns_an_excluded_word():
    vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="k must be in 1 .. 0 \\(the rows not excluded\\), got 1"):
        analogy(vectors, 0, 1, 2)
    with pytest.raises(ValueError, match="k must be in 1 .. 2 \\(the rows not excluded\\), got 3"):
        nearest_neighbours(vectors, vectors[0], k=3, exclude=[0])
    assert analogy(torch.cat([vectors, torch.tensor([[0.0, 2.0]])]), 0, 1, 2) == 3


def test_predict_names_what_the_caller_passed_for_a_source_too_long_for_the_transformer():
    with pytest.raises(ValueError, match="a source of 60 characters, plus extra_tokens=5, needs 65 output tokens; "
                                         "this transformer's context_length=64") as error:
        predict(build_model("transformer"), ["a" * 60])
    assert "max_new_tokens" not in str(error.value)
    with pytest.raises(ValueError, match="sources must be a list of texts, got one string"):
        predict(build_model("RNN"), "to be or not")


def test_reversal_pairs_refuses_an_impossible_request_at_once():
    plays = load_plays()
    started = time.perf_counter()
    with pytest.raises(ValueError, match="split 'val' has only \\d+ runs of two or more words of 10..50 characters, "
                                         "fewer than the 1000000 pairs asked for"):
        reversal_pairs(plays, "val", 1_000_000)
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("rank, alpha, message", [
    (2.5, 8, "rank must be a positive integer, got 2.5"), (0, 8, "rank must be a positive integer, got 0"),
    (True, 8, "rank must be a positive integer, got True"),
    (4, math.nan, "alpha must be a positive finite number, got nan"),
    (4, 0, "alpha must be a positive finite number, got 0"),
])
def test_add_lora_checks_rank_and_alpha_before_touching_the_model(rank, alpha, message):
    model = tiny_gpt()
    with pytest.raises(ValueError, match=message):
        add_lora(model, rank, alpha)
    assert not any("lora" in type(module).__name__.lower() for module in model.modules())


def test_a_second_add_lora_says_the_model_already_has_lora_layers():
    model = tiny_gpt()
    add_lora(model, 2, 4)
    with pytest.raises(ValueError, match="the model already has LoRA layers"):
        add_lora(model, 2, 4)
