"""Tokenizers: BPE round trips, parity of our GPT-2 encoder with tiktoken, save/load, bad files."""

import json

import pytest

from llmcourse.data import load_shakespeare
from llmcourse.tokenizer import (
    ENDOFTEXT,
    GPT2_RANKS_PATH,
    UNKNOWN,
    BPETokenizer,
    SimpleTokenizer,
    gpt2_encoding,
    load_gpt2_ranks,
)

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
    {"format": "llmcourse-bpe", "version": 1, "pattern": "x", "byte_ids": list(range(256)),
     "special_tokens": {}},
    {"format": "llmcourse-bpe", "version": 1, "pattern": "x", "byte_ids": list(range(256)),
     "merges": [[1, 2]], "special_tokens": {}},
    {"format": "llmcourse-bpe", "version": 1, "pattern": "x", "byte_ids": list(range(255)),
     "merges": [], "special_tokens": {}},
    {"format": "llmcourse-bpe", "version": 1, "pattern": "x", "byte_ids": list(range(256)),
     "merges": [[1, 999, 256]], "special_tokens": {}},
])
def test_malformed_tokenizer_file_raises(tmp_path, state):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(state))
    with pytest.raises(ValueError):
        BPETokenizer.load(path)


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


def test_simple_tokenizer_maps_unknown_words_to_unk():
    tokenizer = SimpleTokenizer.from_text("To be, or not to be: that is the question.")
    ids = tokenizer.encode(f"To be a king {ENDOFTEXT} or not")
    words = [tokenizer.id_to_str[i] for i in ids]
    assert words == ["To", "be", UNKNOWN, UNKNOWN, ENDOFTEXT, "or", "not"]
    assert tokenizer.decode(tokenizer.encode("To be, or not to be: that is the question.")) == \
        "To be, or not to be: that is the question."


def test_simple_tokenizer_decode_of_unknown_id_raises():
    tokenizer = SimpleTokenizer.from_text("a b c")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tokenizer.decode([tokenizer.vocab_size])
