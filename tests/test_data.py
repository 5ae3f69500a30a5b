"""Corpus loading and sliding-window datasets: window counts, shifted targets, stride, shuffling."""

import shutil

import pytest
import torch

from llmcourse.data import SHAKESPEARE_DIR, SlidingWindowDataset, create_dataloader, load_plays, load_shakespeare


@pytest.mark.parametrize("n_tokens, context_length, stride, expected", [
    (10, 4, 4, 2),   # windows start at 0 and 4; one starting at 8 would need tokens up to 12
    (10, 4, 1, 6),   # starts 0..5: the last input is 5..8 and its target ends at token 9
    (10, 4, 2, 3),   # starts 0, 2, 4
    (5, 4, 4, 1),    # exactly context_length + 1 tokens give one window
    (101, 10, 10, 10),
    (100, 10, 3, 30),
])
def test_number_of_windows(n_tokens, context_length, stride, expected):
    dataset = SlidingWindowDataset(list(range(n_tokens)), context_length, stride)
    assert len(dataset) == expected
    last_input, last_target = dataset[len(dataset) - 1]
    assert int(last_target[-1]) < n_tokens


def test_targets_are_inputs_shifted_by_one():
    ids = [7, 3, 9, 1, 4, 8, 2, 6]
    dataset = SlidingWindowDataset(ids, context_length=3, stride=2)
    inputs, targets = dataset[1]
    assert inputs.tolist() == [9, 1, 4]
    assert targets.tolist() == [1, 4, 8]
    for inputs, targets in dataset:
        assert inputs[1:].tolist() == targets[:-1].tolist()


def test_stride_sets_where_windows_start():
    dataset = SlidingWindowDataset(list(range(20)), context_length=4, stride=3)
    assert [dataset[i][0][0].item() for i in range(len(dataset))] == [0, 3, 6, 9, 12, 15]


def test_out_of_range_window_raises():
    dataset = SlidingWindowDataset(list(range(10)), context_length=4, stride=4)
    with pytest.raises(IndexError):
        dataset[2]


def test_text_shorter_than_one_window_raises():
    with pytest.raises(ValueError, match="too short for one window"):
        SlidingWindowDataset(list(range(8)), context_length=8, stride=1)


def test_bad_context_length_or_stride_raises():
    with pytest.raises(ValueError, match=">= 1"):
        SlidingWindowDataset(list(range(8)), context_length=4, stride=0)


def test_dataloader_batches_have_the_right_shape():
    loader = create_dataloader(list(range(1000)), batch_size=8, context_length=16, shuffle=False)
    inputs, targets = next(iter(loader))
    assert inputs.shape == targets.shape == (8, 16)
    assert inputs.dtype == torch.long
    assert len(loader) == len(SlidingWindowDataset(list(range(1000)), 16, 16)) // 8


def _first_tokens(seed: int) -> list[int]:
    loader = create_dataloader(list(range(2000)), batch_size=4, context_length=10, seed=seed)
    return [int(inputs[0, 0]) for inputs, _ in loader]


def test_shuffling_is_reproducible_from_the_seed():
    assert _first_tokens(seed=1) == _first_tokens(seed=1)
    assert _first_tokens(seed=1) != _first_tokens(seed=2)
    assert _first_tokens(seed=1) != sorted(_first_tokens(seed=1))


def test_corpus_splits_by_whole_play_with_every_genre_in_val_and_test():
    plays = load_plays()
    assert len(plays) == 38
    genres = {p.genre for p in plays}
    for split, size in (("train", 26), ("val", 6), ("test", 6)):
        chosen = [p for p in plays if p.split == split]
        assert len(chosen) == size
        assert {p.genre for p in chosen} == genres
    assert {p.split for p in plays} == {"train", "val", "test"}
    texts = {split: load_shakespeare(split) for split in ("train", "val", "test")}
    assert len(texts["val"]) < len(texts["train"]) and len(texts["test"]) < len(texts["train"])
    assert texts["val"][:2000] not in texts["train"] and texts["test"][:2000] not in texts["val"]


def test_unknown_split_raises():
    with pytest.raises(ValueError, match="split must be"):
        load_shakespeare("validation")


def test_tampered_corpus_file_raises(tmp_path):
    folder = tmp_path / "shakespeare"
    shutil.copytree(SHAKESPEARE_DIR, folder)
    path = folder / "hamlet.txt"
    path.write_text(path.read_text(encoding="utf-8").replace("Who's there?", "Who is there?", 1),
                    encoding="utf-8")
    with pytest.raises(ValueError, match="does not match the sha256"):
        load_plays(folder)


def test_missing_corpus_file_raises(tmp_path):
    folder = tmp_path / "shakespeare"
    shutil.copytree(SHAKESPEARE_DIR, folder)
    (folder / "macbeth.txt").unlink()
    with pytest.raises(FileNotFoundError, match="macbeth"):
        load_plays(folder)


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_truncated_or_emptied_index_raises(tmp_path, damage):
    folder = tmp_path / "shakespeare"
    shutil.copytree(SHAKESPEARE_DIR, folder)
    index = folder / "plays.csv"
    text = index.read_text(encoding="utf-8")
    index.write_text(text[:len(text) // 2] if damage == "truncate" else "", encoding="utf-8")
    with pytest.raises(ValueError, match="plays.csv does not match its recorded sha256"):
        load_shakespeare("train", folder)


def test_stride_zero_is_refused_not_replaced_by_the_context_length():
    with pytest.raises(ValueError, match="stride must be an integer >= 1, got 0"):
        create_dataloader(list(range(100)), batch_size=2, context_length=4, stride=0)


@pytest.mark.parametrize("ids", [[1.5, 2.0, 3.0] * 10, torch.tensor([1.0, 2.0] * 10), [True, False] * 10])
def test_non_integer_token_ids_are_refused_not_truncated(ids):
    with pytest.raises(ValueError, match="token_ids must be a 1-D sequence of integer ids"):
        SlidingWindowDataset(ids, context_length=4, stride=1)


def test_negative_token_ids_are_refused():
    with pytest.raises(ValueError, match="token ids must be >= 0, got -1"):
        SlidingWindowDataset([3, -1, 2, 5, 6, 7], context_length=4, stride=1)


def test_numpy_token_ids_are_accepted():
    import numpy as np
    inputs, targets = SlidingWindowDataset(np.arange(10), context_length=4, stride=1)[2]
    assert inputs.tolist() == [2, 3, 4, 5] and targets.tolist() == [3, 4, 5, 6]
