"""Fixtures shared by the unit tests."""

import pytest
import torch

from llmcourse.data import load_plays
from llmcourse.tokenizer import BPETokenizer


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def plays():
    """Every play of the corpus, read once per test process."""
    return load_plays()


@pytest.fixture(scope="session")
def small_bpe(plays):
    """A 300-token BPE trained on the first 20,000 characters of one play: quick, and enough for real text."""
    return BPETokenizer.train(plays[0].text[:20_000], 300)
