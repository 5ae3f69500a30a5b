"""Tests of llmcourse.simple_tokenizer: the word-level tokenizer maps unknown words to <|unk|> and refuses unknown ids."""

import pytest

from llmcourse.simple_tokenizer import UNKNOWN, SimpleTokenizer
from llmcourse.tokenizer import ENDOFTEXT


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
