"""Tests of llmcourse.finetune: genre labels and passages, the classification head, metrics, instruction records,
collate masking and exact match."""

import hashlib
import json
import zipfile

import pytest
import torch

from llmcourse.data import load_plays
from llmcourse.finetune import (GENRE_CLASSES, GPTClassifier, TASKS, accuracy, add_classification_head,
                                bag_of_words, collate_instructions, confusion_matrix, encode_record,
                                exact_match_by_task, fit, format_prompt, genre_label, genre_passages,
                                hidden_states, instruction_records, load_instruction_json, load_sms_spam, macro_f1,
                                parse_sms_spam, pool,
                                predict_proba, respond, set_trainable, shuffled_batches, word_vocabulary)
from llmcourse.generate import generate
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.runtime import set_seed
from llmcourse.tokenizer import BPETokenizer


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed: int = 0, vocab_size: int = 64, context_length: int = 32) -> GPTModel:
    set_seed(seed)
    return GPTModel(GPTConfig(vocab_size=vocab_size, context_length=context_length, d_model=32, n_heads=4, n_layers=2,
                              dropout=0.0))


@pytest.fixture(scope="module")
def plays():
    return load_plays()


@pytest.fixture(scope="module")
def tokenizer(plays):
    return BPETokenizer.train(plays[0].text[:20_000], 300)


def test_genres_fold_into_three_classes_and_unknown_labels_are_rejected():
    assert [genre_label(g) for g in ("comedies", "problems", "romances", "histories", "roman", "tragedies")] == \
        [0, 0, 0, 1, 2, 2]
    assert genre_label("tragedy") == GENRE_CLASSES.index("tragedy")
    with pytest.raises(ValueError, match="unknown genre 'satire'"):
        genre_label("satire")


def test_genre_passages_are_balanced_of_fixed_length_and_from_the_split(plays, tokenizer):
    passages = genre_passages(plays, tokenizer, "test", per_class=7, n_tokens=24, seed=1)
    test_plays = {p.play: p for p in plays if p.split == "test"}
    assert sorted(torch.bincount(torch.tensor([p.label for p in passages])).tolist()) == [7, 7, 7]
    assert all(len(p.token_ids) == 24 and p.play in test_plays for p in passages)
    assert all(genre_label(test_plays[p.play].genre) == p.label for p in passages)
    assert len({p.text for p in passages}) == len(passages)
    assert [p.text for p in passages] == [p.text for p in genre_passages(plays, tokenizer, "test", 7, 24, seed=1)]


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


def test_bag_of_words_counts_known_words():
    vocabulary = word_vocabulary(["the king, the crown", "the fool"], min_count=1)
    assert vocabulary == {"crown": 0, "fool": 1, "king": 2, "the": 3}
    features = bag_of_words(["The king! The KING, a jester"], vocabulary)
    assert torch.allclose(features, torch.tensor([[0.0, 0.0, 2.0, 2.0]]).log1p())


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


def test_collate_pads_and_masks_with_minus_100():
    pairs = [([1, 2, 3], [4, 5]), ([6, 7], [8])]
    inputs, targets = collate_instructions(pairs, pad_id=0, mask_prompt=False)
    assert inputs.tolist() == [[1, 2, 3, 4], [6, 7, 0, 0]]
    assert targets.tolist() == [[2, 3, 4, 5], [7, 8, -100, -100]]
    inputs, targets = collate_instructions(pairs, pad_id=0, mask_prompt=True)
    assert inputs.tolist() == [[1, 2, 3, 4], [6, 7, 0, 0]]
    assert targets.tolist() == [[-100, -100, 4, 5], [-100, 8, -100, -100]]
    with pytest.raises(ValueError, match="empty response"):
        collate_instructions([([1, 2], [])], pad_id=0)


def test_load_instruction_json_reads_alpaca_records_and_names_bad_ones(tmp_path):
    path = tmp_path / "records.json"
    path.write_text(json.dumps([{"instruction": "Say hi.", "output": "hi"},
                                {"instruction": "Echo.", "input": "x", "output": "x"}]))
    assert load_instruction_json(path) == [{"instruction": "Say hi.", "input": "", "output": "hi"},
                                           {"instruction": "Echo.", "input": "x", "output": "x"}]
    path.write_text(json.dumps([{"instruction": "Say hi.", "output": "hi"}, {"instruction": "Echo.", "input": "x"}]))
    with pytest.raises(ValueError, match=r"record 1: field 'output' is missing"):
        load_instruction_json(path)
    path.write_text(json.dumps([{"instruction": "Count.", "input": "a b", "output": 2}]))
    with pytest.raises(ValueError, match=r"record 0: field 'output' must be a string, got int"):
        load_instruction_json(path)
    path.write_text(json.dumps({"instruction": "Say hi.", "output": "hi"}))
    with pytest.raises(ValueError, match="must hold a JSON list"):
        load_instruction_json(path)
    path.write_text("[{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_instruction_json(path)


def test_prompt_template_and_encoding(tokenizer):
    record = {"instruction": "Give the first word of the line.", "input": "Now is the winter", "output": "Now"}
    assert format_prompt(record) == ("### Instruction:\nGive the first word of the line.\n\n"
                                     "### Input:\nNow is the winter\n\n### Response:\n")
    assert format_prompt({**record, "input": ""}) == "### Instruction:\nGive the first word of the line.\n\n### Response:\n"
    prompt, response = encode_record(record, tokenizer)
    assert tokenizer.decode(prompt) == format_prompt(record)
    assert response[-1] == tokenizer.eot_id and tokenizer.decode(response[:-1]) == "Now"


def test_instruction_records_have_exact_answers(plays):
    records = instruction_records(plays, "val", per_task=20, seed=3)
    assert sorted({r["task"] for r in records}) == sorted(TASKS) and len(records) == 20 * len(TASKS)
    val_plays = {p.play for p in plays if p.split == "val"}
    assert all(r["play"] in val_plays for r in records)
    for r in records:
        words = r["input"].split()
        if r["task"] == "first word":
            assert words[0].strip(".,;:!?-") == r["output"]
        elif r["task"] == "word count":
            assert int(r["output"]) == len(words)
        elif r["task"] == "speaker":
            lines = r["input"].split("\n")
            names = [lines[0].removesuffix(":"), lines[2].removesuffix(":")]
            assert r["output"] == names[0 if "first" in r["instruction"] else 1]
        elif r["task"] == "genre":
            assert r["output"] in GENRE_CLASSES
    assert records == instruction_records(plays, "val", per_task=20, seed=3)


def test_exact_match_by_task_and_respond(tokenizer):
    records = [{"task": "a", "output": "x"}, {"task": "a", "output": "y"}, {"task": "b", "output": "z"}]
    assert exact_match_by_task(records, [" x ", "x", "z"]) == {"a": 0.5, "b": 1.0, "all": 2 / 3}
    model = tiny_model(vocab_size=tokenizer.vocab_size, context_length=48)  # room for the prompt and the response
    record = {"instruction": "Hi.", "input": "", "output": ""}
    response = respond(model, tokenizer, record, max_new_tokens=4)
    prompt = tokenizer.encode(format_prompt(record), allowed_special="none")
    new = generate(model, torch.tensor([prompt]), 4, eos_id=tokenizer.eot_id)[0, len(prompt):].tolist()
    assert len(new) <= 4 and response == tokenizer.decode(new[:new.index(tokenizer.eot_id)] if tokenizer.eot_id in new
                                                         else new).strip()


def sms_zip(path, lines: list[str]):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("SMSSpamCollection", "\n".join(lines) + "\n")
    return path


def test_sms_spam_parser_reads_labels_and_names_a_bad_line(tmp_path):
    good = sms_zip(tmp_path / "good.zip", ["ham\tSee you at eight.", "spam\tWIN a prize! Call now", ""])
    assert parse_sms_spam(good) == [("See you at eight.", 0), ("WIN a prize! Call now", 1)]
    bad = sms_zip(tmp_path / "bad.zip", ["ham\tfine", "eggs\tnot a label"])
    with pytest.raises(ValueError, match="line 2: expected 'ham' or 'spam'"):
        parse_sms_spam(bad)
    (tmp_path / "broken.zip").write_bytes(good.read_bytes()[:40])
    with pytest.raises(ValueError, match="not a readable zip"):
        parse_sms_spam(tmp_path / "broken.zip")


def test_load_sms_spam_checks_the_sha256_and_fails_clearly_offline(tmp_path):
    source = sms_zip(tmp_path / "published.zip", ["spam\tFree entry", "ham\tOk lar"])
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    with pytest.raises(RuntimeError, match="sha256 .* expected 0+; the file was not kept"):
        load_sms_spam(tmp_path / "cache", url=source.as_uri(), sha256="0" * 64)
    assert not any((tmp_path / "cache").iterdir())
    assert load_sms_spam(tmp_path / "cache", url=source.as_uri(), sha256=digest) == [("Free entry", 1), ("Ok lar", 0)]
    assert load_sms_spam(tmp_path / "cache", url="file:///nowhere", sha256=digest)[0] == ("Free entry", 1)  # cached
    with pytest.raises(RuntimeError, match=r"could not download the SMS Spam Collection .*no network\?.*optional"):
        load_sms_spam(tmp_path / "other", url=(tmp_path / "missing.zip").as_uri())
