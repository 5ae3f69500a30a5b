"""Byte-level BPE and GPT-2's encoding offline (chapter 2); the word-level tokenizer that comes first is in
`llmcourse.simple_tokenizer`.

`BPETokenizer` learns merges of byte pairs from text, encodes and decodes any string, saves to JSON, and
can load GPT-2's ranks so that it produces exactly the ids of tiktoken's "gpt2" encoding.
"""

import base64
import hashlib
import heapq
import json
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

import regex
import tiktoken
from torch import Tensor
from tqdm.auto import tqdm

ENDOFTEXT = "<|endoftext|>"

# GPT-2's pre-tokenization (tiktoken's r50k pattern): English contractions, runs of letters, of digits
# and of other symbols (each with at most one leading space), and whitespace, kept apart from the
# next word so that " word" stays one chunk.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

GPT2_RANKS_PATH = Path(__file__).resolve().parent / "assets" / "gpt2.tiktoken"
GPT2_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
GPT2_EOT_ID = 50256

# Training splits longer pre-tokens into pieces of this many characters (as production tokenizers cap
# token length): a megabyte without a space would otherwise be one chunk rescanned after every merge.
MAX_TRAIN_PIECE = 32
# The chunk cache keeps at most this many chunks (it starts afresh when full) of at most this length.
CHUNK_CACHE_SIZE = 100_000
CACHED_CHUNK_LENGTH = 64
# A split pattern must cover every character of this probe, or encoding would silently drop text.
PATTERN_PROBE = "Hello, world!  It's 2024.\n\tNaïve café — 東京 🙂 x_y\r\n  end "


def token_ids(ids: Iterable[int] | Tensor) -> list[int]:
    """`ids` as a list of Python ints: a 1-D integer tensor, or any iterable of integers (numpy ones too).

    Floats and booleans are refused rather than truncated.
    """
    if isinstance(ids, Tensor):
        if ids.dim() != 1 or ids.is_floating_point() or ids.is_complex():
            raise ValueError(f"ids must be a 1-D integer tensor, got dtype {ids.dtype} and shape {tuple(ids.shape)}")
        return ids.tolist()
    result = []
    for i in ids:
        if isinstance(i, bool) or not hasattr(i, "__index__"):
            raise ValueError(f"token ids must be integers, got {i!r} ({type(i).__name__})")
        result.append(i.__index__())
    return result


def split_text(split: "regex.Pattern", text: str) -> list[str]:
    """The pre-tokens of `text`; a pattern that skips some characters raises instead of dropping them."""
    chunks = split.findall(text)
    if sum(map(len, chunks)) != len(text):
        covered = set("".join(chunks))
        missing = sorted({c for c in text if c not in covered})[:5]
        raise ValueError(f"the split pattern {split.pattern!r} does not cover every character (it drops "
                         f"{missing}); add an alternative that matches any leftover character, e.g. |\\s|.")
    return chunks


class BPETokenizer:
    """Byte-level byte-pair encoding: text -> chunks (split pattern) -> bytes -> repeatedly merged pairs.

    `merges` maps a pair of ids to the id of the token that joins them; a pair with a smaller new id
    was learned earlier and is applied first. `byte_ids[b]` is the id of the single byte b (the
    identity for trained tokenizers; a permutation for GPT-2). Special tokens get their own ids.
    """

    def __init__(self, merges: dict[tuple[int, int], int], byte_ids: Sequence[int] = tuple(range(256)),
                 special_tokens: dict[str, int] | None = None, pattern: str = GPT2_SPLIT_PATTERN):
        if len(byte_ids) != 256 or len(set(byte_ids)) != 256:
            raise ValueError(f"byte_ids must hold 256 distinct ids (one per byte value), got {len(byte_ids)}")
        self.byte_ids = list(byte_ids)
        self.vocab: dict[int, bytes] = {i: bytes([b]) for b, i in enumerate(self.byte_ids)}
        self.merges: dict[tuple[int, int], int] = {}
        for (left, right), new_id in sorted(merges.items(), key=lambda item: item[1]):
            if left not in self.vocab or right not in self.vocab or new_id in self.vocab:
                raise ValueError(f"merge ({left}, {right}) -> {new_id} must join two known ids into a new id")
            self.vocab[new_id] = self.vocab[left] + self.vocab[right]
            self.merges[(left, right)] = new_id
        self.special_tokens = dict(special_tokens or {})
        for token, token_id in self.special_tokens.items():
            if token_id in self.vocab:
                raise ValueError(f"special token {token!r} has id {token_id}, which is already a byte or merge")
        self._special_bytes = {token_id: token.encode("utf-8") for token, token_id in self.special_tokens.items()}
        if len(self._special_bytes) != len(self.special_tokens):
            raise ValueError(f"two special tokens share an id: {self.special_tokens}")
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"pattern must be a non-empty regular expression, got {pattern!r}")
        self.pattern = pattern
        self._split = regex.compile(pattern)
        split_text(self._split, PATTERN_PROBE)
        self._chunk_cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        """Number of ids: bytes, merges and special tokens (the size of a model's embedding table)."""
        return len(self.vocab) + len(self.special_tokens)

    @property
    def eot_id(self) -> int:
        """The id of <|endoftext|>, the separator between documents."""
        if ENDOFTEXT not in self.special_tokens:
            raise ValueError(f"this tokenizer has no {ENDOFTEXT} token; its specials are {list(self.special_tokens)}")
        return self.special_tokens[ENDOFTEXT]

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes that one id stands for (a special token's text, UTF-8 encoded)."""
        if token_id in self.vocab:
            return self.vocab[token_id]
        if token_id in self._special_bytes:
            return self._special_bytes[token_id]
        raise ValueError(f"id {token_id} is not in this tokenizer's vocabulary of {self.vocab_size} ids")

    # --- training ---------------------------------------------------------------------------------

    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens: Sequence[str] = (ENDOFTEXT,),
              pattern: str = GPT2_SPLIT_PATTERN, show_progress: bool = False) -> "BPETokenizer":
        """Learn `vocab_size - 256 - len(special_tokens)` merges from `text`, most frequent pair first.

        Pair counts are kept up to date incrementally: a merge only revisits the chunks that contain
        the merged pair. Ties between equally frequent pairs go to the smaller pair of ids.
        """
        n_merges = vocab_size - 256 - len(special_tokens)
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"special_tokens must be distinct, got {list(special_tokens)}")
        if n_merges < 0:
            raise ValueError(f"vocab_size={vocab_size} is too small: 256 bytes and {len(special_tokens)} "
                             f"special tokens need at least {256 + len(special_tokens)}")
        chunk_counts = Counter(chunk[i:i + MAX_TRAIN_PIECE] for chunk in split_text(regex.compile(pattern), text)
                               for i in range(0, len(chunk), MAX_TRAIN_PIECE))
        chunks = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
        weights = list(chunk_counts.values())

        pair_counts: Counter[tuple[int, int]] = Counter()
        chunks_with_pair: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
        for index, (ids, weight) in enumerate(zip(chunks, weights)):
            for pair in zip(ids, ids[1:]):
                pair_counts[pair] += weight
                chunks_with_pair[pair].add(index)
        heap = [(-count, pair) for pair, count in pair_counts.items()]
        heapq.heapify(heap)

        merges: dict[tuple[int, int], int] = {}
        for new_id in tqdm(range(256, 256 + n_merges), desc="BPE merges", disable=not show_progress):
            best = None
            while heap:
                negative_count, pair = heapq.heappop(heap)
                if pair_counts.get(pair) == -negative_count:  # else the entry is out of date
                    best = pair
                    break
            if best is None:
                raise ValueError(f"the text has only {new_id - 256} distinct pairs to merge; "
                                 f"vocab_size={vocab_size} needs {n_merges}")
            merges[best] = new_id
            changed: set[tuple[int, int]] = set()
            for index in chunks_with_pair.pop(best):
                old = chunks[index]
                new = _merge(old, best, new_id)
                if len(new) == len(old):
                    continue
                weight = weights[index]
                for pair in zip(old, old[1:]):
                    pair_counts[pair] -= weight
                    changed.add(pair)
                for pair in zip(new, new[1:]):
                    pair_counts[pair] += weight
                    chunks_with_pair[pair].add(index)
                    changed.add(pair)
                chunks[index] = new
            for pair in changed:
                count = pair_counts[pair]
                if count > 0:
                    heapq.heappush(heap, (-count, pair))
                else:
                    del pair_counts[pair]
                    chunks_with_pair.pop(pair, None)
        n_ids = 256 + n_merges
        specials = {token: n_ids + i for i, token in enumerate(special_tokens)}
        return cls(merges, special_tokens=specials, pattern=pattern)

    # --- encoding and decoding --------------------------------------------------------------------

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of `text`, treating special-token strings as plain text (each distinct chunk is encoded once)."""
        ids: list[int] = []
        for chunk in split_text(self._split, text):
            chunk_ids = self._chunk_cache.get(chunk)
            if chunk_ids is None:
                chunk_ids = self._encode_chunk(chunk.encode("utf-8"))
                if len(chunk) <= CACHED_CHUNK_LENGTH:
                    if len(self._chunk_cache) >= CHUNK_CACHE_SIZE:
                        self._chunk_cache.clear()
                    self._chunk_cache[chunk] = chunk_ids
            ids.extend(chunk_ids)
        return ids

    def encode(self, text: str, allowed_special: str | Collection[str] = "none_raise") -> list[int]:
        """Ids of `text`. Special-token strings in the text raise a ValueError unless allowed.

        allowed_special: "none_raise" (default, like tiktoken), "all", a set of special tokens (any other
        special string raises), or "none" (special strings are encoded as ordinary text).
        """
        if allowed_special == "none":
            return self.encode_ordinary(text)
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        elif allowed_special == "none_raise":
            allowed = set()
        elif isinstance(allowed_special, str):
            raise ValueError(f"allowed_special must be 'all', 'none', 'none_raise' or a set of special "
                             f"tokens, got {allowed_special!r}")
        else:
            allowed = set(allowed_special)
            unknown = allowed - set(self.special_tokens)
            if unknown:
                raise ValueError(f"{sorted(unknown)} are not special tokens of this tokenizer "
                                 f"(it has {list(self.special_tokens)})")
        for token in self.special_tokens:
            if token not in allowed and token in text:
                raise ValueError(f"the text contains the special token {token!r}; pass "
                                 f"allowed_special={{{token!r}}} (or 'all') to encode it as one id, or "
                                 f"allowed_special='none' to encode it as plain text")
        if not allowed:
            return self.encode_ordinary(text)
        special_pattern = "(" + "|".join(regex.escape(t) for t in sorted(allowed, key=len, reverse=True)) + ")"
        ids: list[int] = []
        for i, part in enumerate(regex.split(special_pattern, text)):
            if i % 2 == 1:
                ids.append(self.special_tokens[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    def _encode_chunk(self, data: bytes) -> list[int]:
        """Merge the bytes of one chunk, always applying the earliest-learned merge present (leftmost first).

        The tokens form a linked list and the candidate merges a heap, so a long chunk takes
        O(n log n) steps rather than a rescan of the chunk after every merge.
        """
        ids = [self.byte_ids[b] for b in data]
        following = list(range(1, len(ids))) + [-1]
        preceding = list(range(-1, len(ids) - 1))
        heap = [(self.merges[pair], i, *pair) for i, pair in enumerate(zip(ids, ids[1:])) if pair in self.merges]
        heapq.heapify(heap)
        while heap:
            new_id, i, left, right = heapq.heappop(heap)
            j = following[i]
            if ids[i] != left or j < 0 or ids[j] != right:
                continue  # out of date: a neighbour was merged since this entry was pushed
            ids[i], ids[j] = new_id, -1
            following[i] = following[j]
            if following[j] >= 0:
                preceding[following[j]] = i
            for a, b in ((preceding[i], i), (i, following[i])):
                if a >= 0 and b >= 0 and (ids[a], ids[b]) in self.merges:
                    heapq.heappush(heap, (self.merges[(ids[a], ids[b])], a, ids[a], ids[b]))
        return [i for i in ids if i >= 0]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes the ids stand for, joined."""
        return b"".join(self.token_bytes(i) for i in token_ids(ids))

    def decode(self, ids: Iterable[int]) -> str:
        """The text of the ids; bytes that are not valid UTF-8 become U+FFFD, as in tiktoken."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # --- saving and loading -----------------------------------------------------------------------

    def to_json(self) -> str:
        """The tokenizer (pattern, byte ids, merges in order, special tokens) as JSON text."""
        state = {
            "format": "llmcourse-bpe",
            "version": 1,
            "pattern": self.pattern,
            "byte_ids": self.byte_ids,
            "merges": [[left, right, new_id] for (left, right), new_id in self.merges.items()],
            "special_tokens": self.special_tokens,
        }
        return json.dumps(state)

    def save(self, path: str | Path) -> None:
        """Write the tokenizer to a JSON file (see `to_json`)."""
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def from_json(cls, text: str, where: str = "the tokenizer JSON") -> "BPETokenizer":
        """A tokenizer from `to_json` text; anything malformed raises a ValueError that names `where`."""
        try:
            state = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where} is not a valid tokenizer file (truncated or not JSON): {error}") from None
        if not isinstance(state, dict) or state.get("format") != "llmcourse-bpe" or state.get("version") != 1:
            raise ValueError(f"{where} is not a tokenizer file written by BPETokenizer.save "
                             "(expected format 'llmcourse-bpe', version 1)")
        try:
            merges = {}
            for left, right, new_id in state["merges"]:
                merges[(_json_int(left), _json_int(right))] = _json_int(new_id)
            specials = {token: _json_int(token_id) for token, token_id in state["special_tokens"].items()}
            if not all(isinstance(token, str) and token for token in specials):
                raise ValueError("special tokens must be non-empty strings")
            return cls(merges, [_json_int(i) for i in state["byte_ids"]], specials, state["pattern"])
        except (KeyError, TypeError, ValueError, AttributeError, regex.error) as error:
            raise ValueError(f"{where} is a malformed tokenizer file: {error}") from None

    @classmethod
    def load(cls, path: str | Path) -> "BPETokenizer":
        """Read a tokenizer written by `save`; a malformed or truncated file raises a ValueError."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{Path(path).name} is not a valid tokenizer file (not UTF-8 text): {error}") from None
        return cls.from_json(text, Path(path).name)

    # --- GPT-2 ------------------------------------------------------------------------------------

    @classmethod
    def from_tiktoken_ranks(cls, ranks: dict[bytes, int], pattern: str = GPT2_SPLIT_PATTERN,
                            special_tokens: dict[str, int] | None = None) -> "BPETokenizer":
        """Our tokenizer with ids = tiktoken ranks: each multi-byte token becomes a merge of two tokens.

        The pair is recovered by running rank-order BPE on the token's own bytes with only the
        lower ranks allowed, which stops at exactly two parts.
        """
        byte_ids = []
        for b in range(256):
            if bytes([b]) not in ranks:
                raise ValueError(f"the ranks have no token for the single byte {b}; byte-level BPE needs all 256")
            byte_ids.append(ranks[bytes([b])])
        merges = {}
        for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
            if len(token) == 1:
                continue
            parts = _bpe_by_rank(ranks, token, max_rank=rank)
            if len(parts) != 2:
                raise ValueError(f"token {token!r} (rank {rank}) cannot be built from two lower-ranked tokens")
            merges[(ranks[parts[0]], ranks[parts[1]])] = rank
        return cls(merges, byte_ids, special_tokens, pattern)

    @classmethod
    def from_gpt2(cls) -> "BPETokenizer":
        """GPT-2's tokenizer from the bundled ranks: the same ids as tiktoken's "gpt2" encoding."""
        return cls.from_tiktoken_ranks(load_gpt2_ranks(), GPT2_SPLIT_PATTERN, {ENDOFTEXT: GPT2_EOT_ID})


def _json_int(value) -> int:
    """An id read from JSON: a whole int, never a float, bool or string that would be converted."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"ids must be non-negative integers, got {value!r}")
    return value


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair` in `ids`, left to right, by `new_id`."""
    merged = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def _bpe_by_rank(ranks: dict[bytes, int], data: bytes, max_rank: int) -> list[bytes]:
    """tiktoken's rule: join the adjacent parts whose concatenation has the lowest rank below `max_rank`."""
    parts = [bytes([b]) for b in data]
    while len(parts) >= 2:
        best_rank, best_index = max_rank, None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best_rank, best_index = rank, i
        if best_index is None:
            break
        parts[best_index:best_index + 2] = [parts[best_index] + parts[best_index + 1]]
    return parts


def load_gpt2_ranks(path: str | Path = GPT2_RANKS_PATH) -> dict[bytes, int]:
    """GPT-2's 50,256 BPE ranks (token bytes -> rank) from the bundled file, checked against its sha256."""
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != GPT2_RANKS_SHA256:
        raise ValueError(f"{Path(path).name} has sha256 {digest}, expected {GPT2_RANKS_SHA256}: the file is "
                         "corrupted; rebuild it with `python scripts/fetch_gpt2_ranks.py`")
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


# Anything the course's code accepts as a tokenizer: ours, or a tiktoken encoding.
Tokenizer = BPETokenizer | tiktoken.Encoding


def gpt2_encoding() -> tiktoken.Encoding:
    """tiktoken's "gpt2" encoding built offline from the bundled ranks (no download)."""
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_SPLIT_PATTERN, mergeable_ranks=load_gpt2_ranks(),
                             special_tokens={ENDOFTEXT: GPT2_EOT_ID}, explicit_n_vocab=GPT2_EOT_ID + 1)
