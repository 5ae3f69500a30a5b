"""Tokenizers: BPE round trips, parity of our GPT-2 encoder with tiktoken, save/load, bad files, hostile input."""

import json
import random
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmcourse import tokenizer as tokenizer_module

from llmcourse.data import load_shakespeare
from llmcourse.simple_tokenizer import SimpleTokenizer
from llmcourse.tokenizer import (ENDOFTEXT, GPT2_RANKS_PATH, GPT2_SPLIT_PATTERN, MAX_TRAIN_PIECE, BPETokenizer,
                                 gpt2_encoding, load_gpt2_ranks)

HARD_STRINGS = [
    "",
    " ",
    "     ",
    "\n",
    "\n\n\n\n",
    "  \n \n\t\n   ",
    "trailing spaces   ",
    "two  spaces,   three   spaces\n\nand a blank line\n",
    "\r\nWindows line ends\r\n",
    "café, naïve façade, Ångström, résumé",
    "emoji 🤖👍🏽 and a family 👨‍👩‍👧 in a row",
    "Ελληνικά: γνῶθι σεαυτόν",
    "中文字符和标点。",
    "العربية من اليمين إلى اليسار",
    "mixed: Hello Ωmega 世界 مرحبا 123",
    "don't, I'll, we've, they're, she'd, I'm, 'tis, O'ER",
    "numbers 1234567890 3.14159 -42 1e10",
    "symbols <<>> ((())) ... --- !!! ??? @#$%^&*",
    "\u200b zero width, \ufeff BOM, \x00 NUL",
]


@pytest.fixture(scope="module")
def corpus() -> str:
    return load_shakespeare("train")


@pytest.fixture(scope="module")
def small_bpe(corpus) -> BPETokenizer:
    return BPETokenizer.train(corpus[:300_000], vocab_size=600)


@pytest.fixture(scope="module")
def gpt2_ours() -> BPETokenizer:
    return BPETokenizer.from_gpt2()


@pytest.fixture(scope="module")
def gpt2_tiktoken():
    return gpt2_encoding()


@pytest.mark.parametrize("text", HARD_STRINGS)
def test_trained_bpe_round_trips_hard_strings(small_bpe, text):
    ids = small_bpe.encode(text)
    assert small_bpe.decode(ids) == text
    assert all(0 <= i < small_bpe.vocab_size for i in ids)


def test_trained_bpe_ids_below_256_are_single_bytes(small_bpe):
    assert all(small_bpe.token_bytes(i) == bytes([i]) for i in range(256))
    assert small_bpe.encode_ordinary("\u20ac") == [0xE2, 0x82, 0xAC]  # the euro sign: 3 bytes, unmerged


def test_trained_bpe_vocab_size_counts_bytes_merges_and_specials(small_bpe):
    assert small_bpe.vocab_size == 600
    assert len(small_bpe.merges) == 600 - 256 - 1
    assert small_bpe.eot_id == 599


def test_training_is_reproducible_and_smaller_vocab_is_a_prefix(corpus):
    text = corpus[:100_000]
    big = BPETokenizer.train(text, vocab_size=400)
    again = BPETokenizer.train(text, vocab_size=400)
    small = BPETokenizer.train(text, vocab_size=300)
    assert list(big.merges.items()) == list(again.merges.items())
    assert list(small.merges.items()) == list(big.merges.items())[:len(small.merges)]


def test_first_merge_is_the_most_frequent_pair():
    text = "aaab aaab aab"  # chunks "aaab", " aaab", " aab": the pair (a, a) occurs 2+2+1 = 5 times
    tokenizer = BPETokenizer.train(text, vocab_size=258, special_tokens=())
    assert tokenizer.merges == {(ord("a"), ord("a")): 256, (ord(" "), 256): 257}


def test_train_refuses_a_vocab_smaller_than_the_bytes():
    with pytest.raises(ValueError, match="too small"):
        BPETokenizer.train("some text", vocab_size=200)


def test_special_token_in_text_is_refused_unless_allowed(small_bpe):
    text = f"the end{ENDOFTEXT}a new start"
    with pytest.raises(ValueError, match="special token"):
        small_bpe.encode(text)
    for allowed in ("all", {ENDOFTEXT}):
        ids = small_bpe.encode(text, allowed_special=allowed)
        assert ids.count(small_bpe.eot_id) == 1
        assert small_bpe.decode(ids) == text
    plain = small_bpe.encode(text, allowed_special="none")
    assert small_bpe.eot_id not in plain and small_bpe.decode(plain) == text


def test_unknown_allowed_special_is_refused(small_bpe):
    with pytest.raises(ValueError, match="not special tokens"):
        small_bpe.encode("hi", allowed_special={"<|pad|>"})


def test_decode_of_unknown_id_raises(small_bpe):
    with pytest.raises(ValueError, match="not in this tokenizer's vocabulary"):
        small_bpe.decode([1, 2, small_bpe.vocab_size])


def test_hello_world_gets_gpt2_ids(gpt2_ours, gpt2_tiktoken):
    assert gpt2_tiktoken.encode("Hello, world") == [15496, 11, 995]
    assert gpt2_ours.encode("Hello, world") == [15496, 11, 995]
    assert gpt2_tiktoken.encode(ENDOFTEXT, allowed_special="all") == [50256]
    assert gpt2_ours.encode(ENDOFTEXT, allowed_special="all") == [50256]
    assert gpt2_ours.vocab_size == gpt2_tiktoken.n_vocab == 50257


def test_gpt2_parity_with_tiktoken_on_the_corpus(gpt2_ours, gpt2_tiktoken, corpus):
    text = corpus[:600_000] + load_shakespeare("val")[:200_000]
    ours = gpt2_ours.encode(text)
    assert ours == gpt2_tiktoken.encode_ordinary(text)
    assert gpt2_ours.decode(ours) == text


@pytest.mark.parametrize("text", HARD_STRINGS)
def test_gpt2_parity_with_tiktoken_on_hard_strings(gpt2_ours, gpt2_tiktoken, text):
    ids = gpt2_tiktoken.encode(text)
    assert gpt2_ours.encode(text) == ids
    assert gpt2_ours.decode(ids) == gpt2_tiktoken.decode(ids) == text


def test_gpt2_special_tokens_match_tiktoken(gpt2_ours, gpt2_tiktoken):
    text = f"first document{ENDOFTEXT}second document{ENDOFTEXT}"
    assert gpt2_ours.encode(text, allowed_special="all") == gpt2_tiktoken.encode(text, allowed_special="all")
    with pytest.raises(ValueError):
        gpt2_tiktoken.encode(text)
    with pytest.raises(ValueError):
        gpt2_ours.encode(text)


def test_invalid_utf8_decodes_to_replacement_like_tiktoken(gpt2_ours, gpt2_tiktoken):
    first_bytes = [gpt2_ours.byte_ids[b] for b in "🤖".encode("utf-8")[:2]]  # half of a 4-byte character
    robot = gpt2_tiktoken.encode(" robot")
    for sequence in (first_bytes[:1], first_bytes, first_bytes + robot, robot + first_bytes + robot):
        assert gpt2_ours.decode(sequence) == gpt2_tiktoken.decode(sequence)
        assert "\ufffd" in gpt2_ours.decode(sequence)


def test_save_load_round_trip(small_bpe, tmp_path, corpus):
    path = tmp_path / "bpe.json"
    small_bpe.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded.merges == small_bpe.merges
    assert loaded.special_tokens == small_bpe.special_tokens
    text = corpus[-20_000:]
    assert loaded.encode(text) == small_bpe.encode(text)


def test_gpt2_tokenizer_survives_save_load(gpt2_ours, tmp_path):
    path = tmp_path / "gpt2.json"
    gpt2_ours.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded.encode("Hello, world") == [15496, 11, 995]
    assert loaded.eot_id == 50256


def test_truncated_tokenizer_file_raises(small_bpe, tmp_path):
    path = tmp_path / "bpe.json"
    small_bpe.save(path)
    path.write_text(path.read_text()[:-50])
    with pytest.raises(ValueError, match="not a valid tokenizer file"):
        BPETokenizer.load(path)


@pytest.mark.parametrize("state", [
    [1, 2, 3],
    {"format": "something-else", "version": 1},
    {"format": "llmcourse-bpe", "version": 1, "pattern": GPT2_SPLIT_PATTERN, "byte_ids": list(range(256)),
     "special_tokens": {}},
    {"format": "llmcourse-bpe", "version": 1, "pattern": GPT2_SPLIT_PATTERN, "byte_ids": list(range(256)),
     "merges": [[1, 2]], "special_tokens": {}},
    {"format": "llmcourse-bpe", "version": 1, "pattern": GPT2_SPLIT_PATTERN, "byte_ids": list(range(255)),
     "merges": [], "special_tokens": {}},
    {"format": "llmcourse-bpe", "version": 1, "pattern": GPT2_SPLIT_PATTERN, "byte_ids": list(range(256)),
     "merges": [[1, 999, 256]], "special_tokens": {}},
])
def test_malformed_tokenizer_file_raises(tmp_path, state):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match="bad.json is (not a tokenizer file|a malformed tokenizer file)"):
        BPETokenizer.load(path)


GOOD_STATE = {"format": "llmcourse-bpe", "version": 1, "pattern": GPT2_SPLIT_PATTERN,
              "byte_ids": list(range(256)), "merges": [[97, 98, 256]], "special_tokens": {ENDOFTEXT: 257}}


@pytest.mark.parametrize("change, message", [
    ({"merges": [[97.0, 98, 256]]}, "ids must be non-negative integers, got 97.0"),
    ({"merges": [[97, 98, 256.5]]}, "ids must be non-negative integers, got 256.5"),
    ({"merges": [[True, 98, 256]]}, "ids must be non-negative integers, got True"),
    ({"special_tokens": {ENDOFTEXT: "257"}}, "ids must be non-negative integers, got '257'"),
    ({"byte_ids": [float(i) for i in range(256)]}, "ids must be non-negative integers, got 0.0"),
    ({"pattern": ""}, "pattern must be a non-empty regular expression"),
    ({"pattern": None}, "pattern must be a non-empty regular expression"),
    ({"pattern": r"\w+"}, "does not cover every character"),
])
def test_tokenizer_file_with_wrong_types_or_pattern_is_refused(tmp_path, change, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**GOOD_STATE, **change}))
    with pytest.raises(ValueError, match="bad.json is a malformed tokenizer file: .*" + message.replace("(", r"\(")):
        BPETokenizer.load(path)


def test_non_utf8_tokenizer_file_is_named(tmp_path):
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match="bad.json is not a valid tokenizer file \\(not UTF-8 text\\)"):
        BPETokenizer.load(tmp_path / "bad.json")


def test_corrupted_ranks_file_raises(tmp_path):
    data = bytearray(GPT2_RANKS_PATH.read_bytes())
    data[100] = ord("A") if data[100] != ord("A") else ord("B")
    path = tmp_path / "gpt2.tiktoken"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_gpt2_ranks(path)


def test_gpt2_ranks_have_50256_tokens():
    ranks = load_gpt2_ranks()
    assert len(ranks) == 50256
    assert sorted(ranks.values()) == list(range(50256))


# --- inputs that used to be accepted silently -----------------------------------------------------


def test_duplicated_special_tokens_are_refused():
    with pytest.raises(ValueError, match="special_tokens must be distinct"):
        BPETokenizer.train("some text to learn from", 300, special_tokens=(ENDOFTEXT, ENDOFTEXT))


def test_pattern_that_drops_characters_is_refused_instead_of_losing_text():
    with pytest.raises(ValueError, match="does not cover every character"):
        BPETokenizer({}, pattern=r"\w+")
    with pytest.raises(ValueError, match="does not cover every character"):
        BPETokenizer.train("some words", 260, pattern=r"\w+| ")
    covers_the_probe_only = BPETokenizer({}, pattern=r"[^§]+")
    with pytest.raises(ValueError, match=r"does not cover every character \(it drops \['§'\]\)"):
        covers_the_probe_only.encode("a § b")


def test_decode_takes_tensors_and_numpy_ids_but_refuses_floats(gpt2_ours):
    ids = gpt2_ours.encode("Hello, world")
    assert gpt2_ours.decode(torch.tensor(ids)) == gpt2_ours.decode(np.array(ids)) == "Hello, world"
    with pytest.raises(ValueError, match="ids must be a 1-D integer tensor, got dtype torch.float32"):
        gpt2_ours.decode(torch.tensor(ids, dtype=torch.float32))
    with pytest.raises(ValueError, match=r"token ids must be integers, got 15496.0"):
        gpt2_ours.decode([15496.0])
    simple = SimpleTokenizer.from_text("a b c")
    assert simple.decode(torch.tensor(simple.encode("a c"))) == "a c"


# --- hostile input --------------------------------------------------------------------------------


def random_letters(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))


@pytest.mark.parametrize("n", [20_000, 80_000])
def test_gpt2_encoding_of_one_long_run_of_letters_is_fast_and_matches_tiktoken(gpt2_ours, gpt2_tiktoken, n):
    text = random_letters(n)
    started = time.perf_counter()
    ids = gpt2_ours.encode_ordinary(text)
    seconds = time.perf_counter() - started
    assert ids == gpt2_tiktoken.encode_ordinary(text)
    assert seconds < 10 * n / 80_000  # quadratic merging took 12 s for 20k letters and 93 s for 80k
    assert gpt2_ours.encode_ordinary("a" * n) == gpt2_tiktoken.encode_ordinary("a" * n)


def test_bpe_training_on_a_long_run_without_spaces_is_fast_and_caps_token_length():
    text = random_letters(50_000) + "a" * 50_000  # one pre-token of 100,000 letters
    started = time.perf_counter()
    tokenizer = BPETokenizer.train(text, 300)
    assert time.perf_counter() - started < 8  # about 11 s before pre-tokens were capped, 2-3 s after
    # Uncapped, "a" * 50,000 merges into tokens of 2, 4, 8, ... 32,768 letters.
    assert max(len(tokenizer.token_bytes(i)) for i in range(256, 299)) == MAX_TRAIN_PIECE


def test_chunk_cache_is_bounded(gpt2_ours, monkeypatch):
    tokenizer = BPETokenizer.from_tiktoken_ranks(load_gpt2_ranks())
    monkeypatch.setattr(tokenizer_module, "CHUNK_CACHE_SIZE", 1000)
    words = " ".join(f"w{i}" for i in range(5000))
    assert tokenizer.encode_ordinary(words) == gpt2_ours.encode_ordinary(words)
    assert len(tokenizer._chunk_cache) <= 1000
    tokenizer.encode_ordinary(random_letters(5000))
    assert all(len(chunk) <= tokenizer_module.CACHED_CHUNK_LENGTH for chunk in tokenizer._chunk_cache)


# --- property-based round trips -------------------------------------------------------------------

# Random Unicode, and text drawn from the characters the split pattern treats specially.
unicode_text = st.text(max_size=200) | st.text(alphabet=" \t\n\r'sdmtlvre aZ09.,!é中🙂\u200b", max_size=200)
property_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@property_settings
@given(text=unicode_text)
def test_gpt2_ids_equal_tiktoken_and_round_trip_on_random_unicode(gpt2_ours, gpt2_tiktoken, text):
    ids = gpt2_ours.encode_ordinary(text)
    assert ids == gpt2_tiktoken.encode_ordinary(text)
    assert gpt2_ours.decode(ids) == text


@property_settings
@given(text=unicode_text)
def test_trained_bpe_round_trips_random_unicode(small_bpe, text):
    assert small_bpe.decode(small_bpe.encode(text, allowed_special="none")) == text


@property_settings
@given(text=unicode_text)
def test_bpe_trained_on_random_unicode_round_trips_it(text):
    tokenizer = BPETokenizer.train(text + " the cat sat on the mat" * 5, 256 + 1 + 12)
    assert tokenizer.decode(tokenizer.encode(text, allowed_special="none")) == text


@property_settings
@given(text=unicode_text)
def test_simple_tokenizer_round_trips_the_words_of_random_unicode(text):
    tokenizer = SimpleTokenizer.from_text(text)
    words = SimpleTokenizer.split(text)
    assert [tokenizer.id_to_str[i] for i in tokenizer.encode(text)] == words
    assert SimpleTokenizer.split(tokenizer.decode(tokenizer.encode(text))) == words
