"""A word-level tokenizer (chapter 2): words and punctuation looked up in a fixed vocabulary, and what it
cannot do (unknown words), which byte-level BPE (`llmcourse.tokenizer`) solves."""

from collections import Counter
from collections.abc import Iterable

import regex

from llmcourse.tokenizer import ENDOFTEXT, token_ids

UNKNOWN = "<|unk|>"
# Words (with inner apostrophes, as in "who's"), special tokens like <|endoftext|>, or single symbols.
SIMPLE_SPLIT_PATTERN = r"<\|\w+\|>|\w+(?:'\w+)*|[^\w\s]"


class SimpleTokenizer:
    """Word-level tokenizer: splits text into words and punctuation and looks each up in a vocabulary."""

    def __init__(self, vocab: dict[str, int]):
        for special in (ENDOFTEXT, UNKNOWN):
            if special not in vocab:
                raise ValueError(f"the vocabulary must contain the special token {special!r}")
        self.str_to_id = dict(vocab)
        self.id_to_str = {i: s for s, i in vocab.items()}
        if len(self.id_to_str) != len(self.str_to_id):
            raise ValueError("the vocabulary maps two words to the same id; ids must be unique")
        self.unk_id = self.str_to_id[UNKNOWN]
        self.eot_id = self.str_to_id[ENDOFTEXT]

    @staticmethod
    def split(text: str) -> list[str]:
        """The words, punctuation marks and special tokens of `text`, whitespace dropped."""
        return regex.findall(SIMPLE_SPLIT_PATTERN, text)

    @classmethod
    def from_text(cls, text: str, min_count: int = 1) -> "SimpleTokenizer":
        """A vocabulary of every word seen at least `min_count` times, sorted, then the two special tokens."""
        counts = Counter(cls.split(text))
        words = sorted(w for w, c in counts.items() if c >= min_count and w not in (ENDOFTEXT, UNKNOWN))
        return cls({w: i for i, w in enumerate(words + [ENDOFTEXT, UNKNOWN])})

    @property
    def vocab_size(self) -> int:
        """Number of ids: the words and the two special tokens."""
        return len(self.str_to_id)

    def encode(self, text: str) -> list[int]:
        """Ids of the words of `text`; words outside the vocabulary become <|unk|>."""
        return [self.str_to_id.get(word, self.unk_id) for word in self.split(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Words joined by spaces, with no space before punctuation (the original spacing is lost)."""
        try:
            words = [self.id_to_str[i] for i in token_ids(ids)]
        except KeyError as error:
            raise ValueError(f"id {error.args[0]} is not in the vocabulary (0..{self.vocab_size - 1})") from None
        return regex.sub(r" ([,.:;?!)\]])", r"\1", " ".join(words))
