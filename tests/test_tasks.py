"""Tests of llmcourse.tasks: genre passages, instruction records, next-sentence pairs and word-reversal pairs
built from the plays of one split, and the SMS spam parser."""

import hashlib
import zipfile
from collections import Counter

import pytest
import torch

from llmcourse.course import bert_tokenizer
from llmcourse.tasks import (GENRE_CLASSES, IS_NEXT, ORDER_CLASSES, RANDOM_NEXT, TASKS, genre_label, genre_passages,
                             instruction_records, load_sms_spam, normalise_line, nsp_pairs, order_passages,
                             parse_sms_spam, reversal_pairs, reverse_words, speech_words, split_speeches)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bert():
    return bert_tokenizer()


def test_genres_fold_into_three_classes_and_unknown_labels_are_rejected():
    assert [genre_label(g) for g in ("comedies", "problems", "romances", "histories", "roman", "tragedies")] == \
        [0, 0, 0, 1, 2, 2]
    assert genre_label("tragedy") == GENRE_CLASSES.index("tragedy")
    with pytest.raises(ValueError, match="unknown genre 'satire'"):
        genre_label("satire")


def test_genre_passages_are_balanced_of_fixed_length_and_from_the_split(plays, small_bpe):
    passages = genre_passages(plays, small_bpe, "test", per_class=7, n_tokens=24, seed=1)
    test_plays = {p.play: p for p in plays if p.split == "test"}
    assert sorted(torch.bincount(torch.tensor([p.label for p in passages])).tolist()) == [7, 7, 7]
    assert all(len(p.token_ids) == 24 and p.play in test_plays for p in passages)
    assert all(genre_label(test_plays[p.play].genre) == p.label for p in passages)
    assert len({p.text for p in passages}) == len(passages)
    assert [p.text for p in passages] == [p.text for p in genre_passages(plays, small_bpe, "test", 7, 24, seed=1)]


def test_order_passages_differ_only_in_word_order(plays, small_bpe):
    passages = order_passages(plays, small_bpe, "val", per_class=30, n_tokens=16)
    assert len(passages) == 60 and sum(p.label for p in passages) == 30 and len(ORDER_CLASSES) == 2
    val_plays = {p.play for p in plays if p.split == "val"}
    assert {p.play for p in passages} == val_plays and all(len(p.token_ids) == 16 for p in passages)
    for passage in passages:  # lower-case words only: no capital or punctuation can tell the classes apart
        assert passage.text == passage.text.lower() and not any(ch in passage.text for ch in ".,;:!?")
    assert order_passages(plays, small_bpe, "val", per_class=30, n_tokens=16) == passages  # the seed fixes them


def test_instruction_records_have_exact_answers(plays):
    records = instruction_records(plays, "val", per_task=20, seed=3)
    assert sorted({r["task"] for r in records}) == sorted(TASKS) and len(records) == 20 * len(TASKS)
    val_plays = {p.play for p in plays if p.split == "val"}
    assert all(r["play"] in val_plays for r in records)
    for r in records:
        words = [w.strip(".,;:!?-") for w in r["input"].split()]
        named = r["instruction"].removesuffix("?").split()[-1]
        if r["task"] == "second word":
            assert words[1] == r["output"]
        elif r["task"] == "word after":
            assert words.count(named) == 1 and words[words.index(named) + 1] == r["output"]
            assert 1 <= words.index(named) <= len(words) - 3  # the answer is neither the first nor the last word
        elif r["task"] == "word before":
            assert words.count(named) == 1 and words[words.index(named) - 1] == r["output"]
            assert words.index(named) >= 2
        elif r["task"] == "word count":
            assert int(r["output"]) == len(words)
        elif r["task"] == "repeat":
            assert r["output"] == r["input"]
        elif r["task"] == "speaker":
            lines = r["input"].split("\n")
            names = [lines[0].removesuffix(":"), lines[2].removesuffix(":")]
            assert r["output"] == names[0 if "first" in r["instruction"] else 1]
    line_inputs = Counter(r["input"] for r in records if r["task"] != "speaker")
    assert all(count % 5 == 0 for count in line_inputs.values())  # every line is asked all five questions
    assert records == instruction_records(plays, "val", per_task=20, seed=3)


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


@pytest.mark.parametrize("split", ["val", "test"])
def test_nsp_pairs_are_balanced_and_never_leave_their_split(plays, bert, split):
    pairs = nsp_pairs(plays, split, bert, context_length=128, seed=0)
    in_split = {p.play for p in plays if p.split == split}
    labels = [p.label for p in pairs]
    assert len(pairs) > 1000 and abs(labels.count(IS_NEXT) - labels.count(RANDOM_NEXT)) <= 1
    assert all(p.a_play in in_split and p.b_play in in_split for p in pairs)
    random_pairs = [p for p in pairs if p.label == RANDOM_NEXT]
    assert sum(p.a_play != p.b_play for p in random_pairs) > 0.5 * len(random_pairs)  # B is drawn from every play


def test_training_pairs_use_only_training_plays(plays, bert):
    pairs = nsp_pairs(plays, "train", bert, context_length=128, seed=0)
    in_split = {p.play for p in plays if p.split == "train"}
    assert all(p.a_play in in_split and p.b_play in in_split for p in pairs)


def test_is_next_pairs_are_consecutive_speeches_and_random_pairs_are_not(plays, bert):
    speeches = split_speeches(plays, "test", bert)
    pairs = nsp_pairs(plays, "test", bert, context_length=128, seed=1)
    for pair in pairs:
        (a_first, a_stop), (b_first, b_stop) = pair.a_speeches, pair.b_speeches
        assert pair.a_ids == tuple(i for _, ids in speeches[a_first:a_stop] for i in ids)
        assert pair.b_ids == tuple(i for _, ids in speeches[b_first:b_stop] for i in ids)
        assert len({play for play, _ in speeches[a_first:a_stop]}) == 1 and speeches[a_first][0] == pair.a_play
        if pair.label == IS_NEXT:
            assert b_first == a_stop and pair.b_play == pair.a_play
        else:
            assert b_first != a_stop


def test_nsp_pairs_depend_on_the_seed_only(plays, bert):
    first = nsp_pairs(plays, "test", bert, seed=3)
    assert first == nsp_pairs(plays, "test", bert, seed=3)
    assert [p.label for p in first] != [p.label for p in nsp_pairs(plays, "test", bert, seed=4)]


def test_reversing_twice_gives_the_source_back():
    for text in ["to be or not to be", "o", "the king's men"]:
        assert reverse_words(reverse_words(text)) == text
    assert reverse_words("to be or not") == "not or be to"


def test_normalise_line_keeps_lower_case_words_and_apostrophes():
    assert normalise_line("O, Romeo! 'Tis thou -- ROMEO?") == "o romeo tis thou romeo"
    assert normalise_line("What's  there?") == "what's there"


def test_pairs_are_exact_reversals_of_words_from_their_own_split(plays):
    for split in ("train", "val", "test"):
        pairs = reversal_pairs(plays, split, 300, seed=1)
        assert len({p.source for p in pairs}) == 300
        split_plays = {p.play for p in plays if p.split == split}
        texts = {p.play: " " + " ".join(" ".join(words) for words in speech_words(p)) + " " for p in plays}
        for pair in pairs:
            assert pair.target == reverse_words(pair.source) and reverse_words(pair.target) == pair.source
            assert pair.play in split_plays
            assert f" {pair.source} " in texts[pair.play]
            assert 10 <= len(pair.source) <= 50 and len(pair.source.split()) >= 2


def test_splits_share_no_play_and_lengths_cover_the_range(plays):
    seen = {split: {p.play for p in reversal_pairs(plays, split, 400, seed=0)} for split in ("train", "val", "test")}
    assert not seen["train"] & seen["val"] and not seen["train"] & seen["test"] and not seen["val"] & seen["test"]
    lengths = [len(p.source) for p in reversal_pairs(plays, "val", 1000, seed=0)]
    for low in range(10, 50, 10):  # every decade of lengths gets a fair share (uniform would be 25 %)
        assert sum(low <= n < low + 10 for n in lengths) > 0.15 * len(lengths)


def test_pairs_are_reproducible_from_the_seed(plays):
    assert reversal_pairs(plays, "val", 50, seed=3) == reversal_pairs(plays, "val", 50, seed=3)
    assert reversal_pairs(plays, "val", 50, seed=3) != reversal_pairs(plays, "val", 50, seed=4)
