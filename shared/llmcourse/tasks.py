"""Tasks built from the plays, each with exact answers and split by play (chapters 5 and 6).

Genre passages and word-order passages (classification), instruction records (instruction tuning),
two-turn conversations (the chat format), next-sentence pairs (the encoder's pretraining) and word-reversal
pairs (sequence to sequence) are all read from the plays of one split only, so that train, validation and test
never share a play. Every task cuts the plays into speeches with `llmcourse.data.speaker_speeches`. The SMS Spam
Collection, an optional online extra, is the one task not built from the plays.
"""

import functools
import random
import re
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import regex

from llmcourse.data import SPLITS, Play, speaker_speeches
from llmcourse.download import fetch, file_sha256
from llmcourse.runtime import CACHE_DIR
from llmcourse.tokenizer import BPETokenizer

# --- genre passages -------------------------------------------------------------------------------

# The First Folio of 1623 sorted the plays into comedies, histories and tragedies. The finer genres
# of plays.csv are later critics' labels; we fold them back into the Folio's three classes.
GENRE_CLASSES = ("comedy", "history", "tragedy")
CLASS_OF_GENRE = {"comedies": "comedy", "problems": "comedy", "romances": "comedy",
                  "histories": "history", "roman": "tragedy", "tragedies": "tragedy"}


@dataclass(frozen=True)
class Passage:
    """A run of exactly `len(token_ids)` tokens from one play, with its class index into GENRE_CLASSES."""

    text: str
    token_ids: tuple[int, ...]
    label: int
    play: str


def genre_label(genre: str) -> int:
    """The class index (into GENRE_CLASSES) of a genre of plays.csv, or of a class name itself."""
    name = CLASS_OF_GENRE.get(genre, genre)
    if name not in GENRE_CLASSES:
        raise ValueError(f"unknown genre {genre!r}: expected one of {sorted(CLASS_OF_GENRE)} "
                         f"or a class name {GENRE_CLASSES}")
    return GENRE_CLASSES.index(name)


def genre_passages(plays: Sequence[Play], tokenizer: BPETokenizer, split: str, per_class: int,
                   n_tokens: int = 64, seed: int = 0) -> list[Passage]:
    """`per_class` passages of `n_tokens` tokens for each class, from the plays of `split`, shuffled.

    Each class's passages are shared as evenly as possible among its plays, so that no long play
    dominates; within a play they are distinct, non-overlapping stretches that start at a line.
    """
    chosen = [p for p in plays if p.split == split]
    if not chosen:
        raise ValueError(f"no plays in split {split!r}")
    rng = random.Random(seed)
    passages = []
    for label in range(len(GENRE_CLASSES)):
        in_class = [p for p in chosen if genre_label(p.genre) == label]
        if not in_class:
            raise ValueError(f"split {split!r} has no play of class {GENRE_CLASSES[label]!r}")
        for index, play in enumerate(in_class):
            wanted = per_class // len(in_class) + (index < per_class % len(in_class))
            passages += _play_passages(play, tokenizer, label, wanted, n_tokens, rng)
    rng.shuffle(passages)
    return passages


def _play_passages(play: Play, tokenizer: BPETokenizer, label: int, wanted: int, n_tokens: int,
                   rng: random.Random) -> list[Passage]:
    """`wanted` passages from non-overlapping stretches of lines (each long enough for n_tokens), at random."""
    stretches, current = [], ""
    for line in play.text.splitlines(keepends=True):
        current += line
        if len(current) >= 5 * n_tokens:  # ~2.7 characters per token: always enough for n_tokens
            stretches.append(current)
            current = ""
    if len(stretches) < wanted:
        raise ValueError(f"{play.title} has only {len(stretches)} stretches of {n_tokens} tokens, {wanted} wanted")
    passages = []
    for stretch in rng.sample(stretches, wanted):
        ids = tuple(tokenizer.encode(stretch, allowed_special="none")[:n_tokens])
        passages.append(Passage(tokenizer.decode(ids), ids, label, play.play))
    return passages


# --- word order: a real stretch of a speech, or the same words shuffled ---------------------------

ORDER_CLASSES = ("shuffled", "in order")


def order_passages(plays: Sequence[Play], tokenizer: BPETokenizer, split: str, per_class: int,
                   n_tokens: int = 32, seed: int = 0) -> list[Passage]:
    """`per_class` passages of each class from the plays of `split`, shuffled: `n_tokens` tokens of a speech's
    words in their order (label 1) or the same words in a random order (label 0).

    The words are lower-cased and stripped of punctuation in both classes, so word order is the only
    difference: any model that sees only which words occur (a bag of words) is at chance by construction.
    Each stretch of words is used once, in one class only, and the passages are shared as evenly as
    possible among the plays.
    """
    chosen = [p for p in plays if p.split == split]
    if not chosen:
        raise ValueError(f"no plays in split {split!r}")
    rng = random.Random(seed)
    passages = []
    for index, play in enumerate(chosen):
        wanted = 2 * per_class // len(chosen) + (index < 2 * per_class % len(chosen))
        stretches = _word_stretches(play, n_tokens)
        if len(stretches) < wanted:
            raise ValueError(f"{play.title} has only {len(stretches)} stretches of {n_tokens} tokens, {wanted} wanted")
        for number, words in enumerate(rng.sample(stretches, wanted)):
            label = (number + index) % 2  # alternating: each play gives both classes, equally (within one)
            words = _enough_words(words, tokenizer, n_tokens)  # the same words in both classes, not a prefix of one
            if label == 0:
                words = _shuffled(words, rng)
            ids = tuple(tokenizer.encode(" ".join(words), allowed_special="none")[:n_tokens])
            if len(ids) < n_tokens:
                raise ValueError(f"a stretch of {play.title} gave {len(ids)} tokens, fewer than {n_tokens}")
            passages.append(Passage(tokenizer.decode(ids), ids, label, play.play))
    rng.shuffle(passages)
    return passages


def _word_stretches(play: Play, n_tokens: int) -> list[list[str]]:
    """Non-overlapping runs of a speech's lower-cased words, each long enough for `n_tokens` tokens."""
    stretches = []
    for _, lines in speaker_speeches(play):
        words = [w.lower() for line in lines for w in line_words(line)]
        size = n_tokens + 2  # a word is at least one token, so these always hold n_tokens tokens and the margin
        stretches += [words[i:i + size] for i in range(0, len(words) - size + 1, size)]
    return stretches


def _enough_words(words: list[str], tokenizer: BPETokenizer, n_tokens: int) -> list[str]:
    """The first words of `words` that hold `n_tokens` tokens and two more (a margin: a word's tokens can
    change with its neighbours). Shuffling only these keeps the same words in a passage of either class;
    shuffling all and cutting would keep words from anywhere in the stretch, while the in-order passage
    keeps the words that open it, such as those that open a speech: a clue a bag of words could use."""
    total = 0
    for count, word in enumerate(words, start=1):
        total += len(tokenizer.encode(" " + word, allowed_special="none"))
        if total >= n_tokens + 2:
            return words[:count]
    return words


def _shuffled(words: list[str], rng: random.Random) -> list[str]:
    """The words in a random order that differs from the given one."""
    shuffled = list(words)
    while shuffled == words and len(set(words)) > 1:
        rng.shuffle(shuffled)
    return shuffled


# --- instruction records built from the plays ------------------------------------------------------

TASKS = ("second word", "word after", "word before", "word count", "repeat", "speaker")


def line_words(line: str) -> list[str]:
    """The words of a line without the punctuation around them ("'Tis" and "o'er" keep their apostrophes)."""
    return [w for w in (token.strip(".,;:!?-\"()[]") for token in line.split()) if regex.fullmatch(r"[\p{L}']+", w)]


def _record(task: str, instruction: str, text: str, output: str, play: Play) -> dict:
    return {"instruction": instruction, "input": text, "output": output, "task": task, "play": play.play}


def _line_records(play: Play, line: str, rng: random.Random) -> list[dict]:
    """Five records over the same line, so the line alone cannot tell which answer is wanted.

    No one-word answer is the line's first or last word, and the word named in "word after" / "word
    before" occurs once in the line: every answer is exact and must be looked up, not copied from an end.
    """
    words = line_words(line)
    after_at, before_at = _named_word_positions(words)
    after, before = rng.choice(after_at), rng.choice(before_at)
    return [_record("second word", "Give the second word of the line.", line, words[1], play),
            _record("word after", f"Which word comes after {words[after]}?", line, words[after + 1], play),
            _record("word before", f"Which word comes before {words[before]}?", line, words[before - 1], play),
            _record("word count", "How many words are in the line?", line, str(len(words)), play),
            _record("repeat", "Repeat the line.", line, line, play)]


def _named_word_positions(words: list[str]) -> tuple[list[int], list[int]]:
    """Where a word occurring once can be named: for "word after" (the answer, at i + 1, is neither the first
    nor the last word) and for "word before" (the answer, at i - 1, is not the first word)."""
    unique = [i for i, w in enumerate(words) if words.count(w) == 1]
    return [i for i in unique if 1 <= i <= len(words) - 3], [i for i in unique if 2 <= i <= len(words) - 1]


def _lines_and_exchanges(plays: Sequence[Play], split: str) -> tuple[list, list]:
    """The lines the line tasks ask about (4 to 10 words, every word nameable) and the exchanges the speaker
    task asks about (consecutive speeches by two speakers, a short first line each, as (play, first speaker, text,
    second speaker)), from the plays of `split`."""
    chosen = [p for p in plays if p.split == split]
    if not chosen:
        raise ValueError(f"no plays in split {split!r}")
    speeches = [(play, speaker, lines) for play in chosen for speaker, lines in speaker_speeches(play)]
    lines = [(play, line) for play, _, speech in speeches for line in speech
             if 4 <= len(line.split()) <= 10 and len(line_words(line)) == len(line.split())
             and all(_named_word_positions(line_words(line)))]
    exchanges = [(play, first, f"{first}:\n{one[0]}\n{second}:\n{two[0]}", second)
                 for (play, first, one), (next_play, second, two) in zip(speeches, speeches[1:])
                 if play is next_play and first != second and len(one[0].split()) <= 10 and len(two[0].split()) <= 10]
    return lines, exchanges


def instruction_records(plays: Sequence[Play], split: str, per_task: int, seed: int = 0) -> list[dict]:
    """`per_task` Alpaca-style records of each task in TASKS from the plays of `split`, shuffled.

    Every answer is exact: a word of the input, the line itself, a speaker's name or a number. The five
    line tasks ask about the same lines (lines of 4 to 10 words); "speaker" asks who speaks first and who
    speaks second in the same exchange of two short speeches. Several instructions over one input: the
    model must read the instruction to know the answer.
    """
    rng = random.Random(seed)
    lines, exchanges = _lines_and_exchanges(plays, split)
    records = []
    for k in range(per_task):
        records += _line_records(*rng.choice(lines), rng)
        if k % 2 == 0:
            play, first, text, second = rng.choice(exchanges)
        which = "first" if k % 2 == 0 else "second"
        records.append(_record("speaker", f"Who speaks {which}?", text, first if which == "first" else second, play))
    rng.shuffle(records)
    return records


def conversations(plays: Sequence[Play], split: str, n: int, seed: int = 0) -> list[dict]:
    """`n` two-turn conversations from the plays of `split`, each {"messages", "tasks", "play"}.

    The first question carries its line (or exchange of two speeches); the second asks another question
    about the same one without repeating it, so it can be answered only from the conversation. Five in six
    are about a line (two different line tasks), one in six about an exchange (who speaks first, who second).
    """
    rng = random.Random(seed)
    lines, exchanges = _lines_and_exchanges(plays, split)
    found = []
    for k in range(n):
        if k % 6 == 5:
            play, first, text, second = rng.choice(exchanges)
            order = [("first", first), ("second", second)]
            rng.shuffle(order)
            questions = [("speaker", f"Who speaks {which}?", name) for which, name in order]
        else:
            play, line = rng.choice(lines)
            text = line
            asked = rng.sample(_line_records(play, line, rng), 2)
            questions = [(r["task"], r["instruction"], r["output"]) for r in asked]
        (task_1, question_1, answer_1), (task_2, question_2, answer_2) = questions
        messages = [{"role": "user", "content": f"{question_1}\n{text}"}, {"role": "assistant", "content": answer_1},
                    {"role": "user", "content": question_2}, {"role": "assistant", "content": answer_2}]
        found.append({"messages": messages, "tasks": [task_1, task_2], "play": play.play})
    rng.shuffle(found)
    return found


# --- next-sentence pairs (the encoder's pretraining) ----------------------------------------------

IS_NEXT, RANDOM_NEXT = 0, 1  # next-sentence labels: B follows A in the play, or B is a random speech


@dataclass(frozen=True)
class SentencePair:
    """Two segments of whole speeches and whether B follows A (IS_NEXT) or is a random run (RANDOM_NEXT).

    `a_speeches` and `b_speeches` are (first, stop) indices into the split's list of speeches (plays
    in plays.csv order, speeches in play order), so "B follows A" means b_speeches[0] == a_speeches[1]
    within one play.
    """

    a_ids: tuple[int, ...]
    b_ids: tuple[int, ...]
    label: int
    a_play: str
    b_play: str
    a_speeches: tuple[int, int]
    b_speeches: tuple[int, int]


def split_speeches(plays: Sequence[Play], split: str, tokenizer: BPETokenizer) -> list[tuple[str, list[int]]]:
    """(play, token ids) of every speech in the plays of `split`, in order; a speech is its lines without
    the speaker's name, each line ending in a newline."""
    chosen = [p for p in plays if p.split == split]
    if not chosen:
        raise ValueError(f"no plays in split {split!r}")
    return [(play.play, tokenizer.encode("".join(line + "\n" for line in lines), allowed_special="none"))
            for play in chosen for _, lines in speaker_speeches(play)]


def _run(speeches: list[tuple[str, list[int]]], first: int, budget: int) -> tuple[int, list[int]]:
    """Consecutive speeches of one play from `first` until they hold `budget` tokens (at least one speech)."""
    stop, ids = first, []
    while stop < len(speeches) and speeches[stop][0] == speeches[first][0] and (not ids or len(ids) < budget):
        ids += speeches[stop][1]
        stop += 1
    return stop, ids


def nsp_pairs(plays: Sequence[Play], split: str, tokenizer: BPETokenizer, context_length: int = 128,
              seed: int = 0) -> list[SentencePair]:
    """Next-sentence pairs from the plays of `split` only, half IS_NEXT and half RANDOM_NEXT.

    Each play is walked from its start in segments of whole consecutive speeches, each grown until it
    holds about half a context ((context_length - 3) // 2 tokens). Every segment A that has a
    following segment in its play gets a partner B: the following segment (IS_NEXT), or a segment
    starting at a random speech of any play of the same split, never the true next one (RANDOM_NEXT).
    Which A's get which label is drawn from `seed` so that the two labels are equally frequent (they
    differ by at most one).
    """
    if context_length < 5:
        raise ValueError(f"context_length must be at least 5 ([CLS] A [SEP] B [SEP]), got {context_length}")
    speeches = split_speeches(plays, split, tokenizer)
    budget = (context_length - 3) // 2
    segments = []  # (first, stop, ids) of each A that has a following segment in its play
    first = 0
    while first < len(speeches):
        stop, ids = _run(speeches, first, budget)
        if stop < len(speeches) and speeches[stop][0] == speeches[first][0]:
            segments.append((first, stop, ids))
        first = stop
    rng = random.Random(seed)
    order = list(range(len(segments)))
    rng.shuffle(order)
    is_next = set(order[:(len(segments) + 1) // 2])
    pairs = []
    for index, (first, stop, a_ids) in enumerate(segments):
        if index in is_next:
            label, b_first = IS_NEXT, stop
        else:
            label, b_first = RANDOM_NEXT, rng.randrange(len(speeches))
            while b_first == stop:
                b_first = rng.randrange(len(speeches))
        b_stop, b_ids = _run(speeches, b_first, budget)
        pairs.append(SentencePair(tuple(a_ids), tuple(b_ids), label, speeches[first][0], speeches[b_first][0],
                                  (first, stop), (b_first, b_stop)))
    return pairs


# --- word reversal (sequence to sequence) -----------------------------------------------------------


def normalise_line(line: str) -> str:
    """A line of a play as lower-case words of letters and apostrophes, one space apart ("O, Romeo!" -> "o romeo")."""
    words = re.findall(r"[a-z']+", line.lower())
    return " ".join(w for w in (w.strip("'") for w in words) if w)


def reverse_words(text: str) -> str:
    """The task: the words of `text` in reverse order, each word spelt as before."""
    return " ".join(reversed(text.split(" ")))


@functools.lru_cache(maxsize=64)
def speech_words(play: Play) -> tuple[tuple[str, ...], ...]:
    """The normalised words of each speech of a play (as `speaker_speeches` cuts it), its lines joined;
    stage directions in brackets, like "[Aside]", are left out."""
    speeches = []
    for _, lines in speaker_speeches(play):
        words = tuple(w for line in lines if not line.strip().startswith("[") for w in normalise_line(line).split())
        if words:
            speeches.append(words)
    return tuple(speeches)


@dataclass(frozen=True)
class Pair:
    """One example: the source words, the target (the same words reversed) and the play they come from."""

    source: str
    target: str
    play: str


def reversal_pairs(plays: Sequence[Play], split: str, n_pairs: int, min_chars: int = 10, max_chars: int = 50,
                   seed: int = 0) -> list[Pair]:
    """`n_pairs` distinct (source, reversed source) pairs from the plays of `split`, lengths spread evenly.

    Each source is a run of whole consecutive words from one speech of one play (at least two words),
    as long as fits in a length drawn uniformly from `min_chars`..`max_chars` characters and at most 6
    characters shorter (a run that falls short is drawn again from another place, for the same length), so
    that lengths are spread evenly and accuracy can be plotted against input length.
    Only the plays of `split` are read: train, val and test share no play.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not (isinstance(min_chars, int) and isinstance(max_chars, int) and 3 <= min_chars <= max_chars):
        raise ValueError(f"need integers 3 <= min_chars <= max_chars, got min_chars={min_chars!r}, "
                         f"max_chars={max_chars!r}")
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 1:
        raise ValueError(f"n_pairs must be an integer >= 1, got {n_pairs!r}")
    lines = [(words, p.play) for p in plays if p.split == split for words in speech_words(p)]
    lines = [(words, play) for words, play in lines if len(words) >= 2]
    if not lines:
        raise ValueError(f"no play of split {split!r} among the {len(plays)} plays given")
    runs = count_runs([words for words, _ in lines], min_chars, max_chars)
    if runs < n_pairs:
        raise ValueError(f"split {split!r} has only {runs} runs of two or more words of {min_chars}..{max_chars} "
                         f"characters, fewer than the {n_pairs} pairs asked for; ask for fewer or widen the range")
    rng = random.Random(seed)
    pairs: dict[str, Pair] = {}
    attempts = 0
    wanted = rng.randint(min_chars, max_chars)
    while len(pairs) < n_pairs:
        attempts += 1
        if attempts > 200 * n_pairs:
            raise ValueError(f"split {split!r} has too few distinct lines for {n_pairs} pairs of "
                             f"{min_chars}..{max_chars} characters; ask for fewer")
        words, play = rng.choice(lines)
        start = rng.randrange(len(words))
        taken: list[str] = []
        for word in words[start:]:
            if len(" ".join(taken + [word])) > wanted:
                break
            taken.append(word)
        source = " ".join(taken)
        if len(taken) >= 2 and max(min_chars, wanted - 6) <= len(source) and source not in pairs:
            pairs[source] = Pair(source, reverse_words(source), play)
            wanted = rng.randint(min_chars, max_chars)  # a new length only once this one is found
    return list(pairs.values())


def spacing_pairs(pairs: Sequence[Pair]) -> list[Pair]:
    """The word-spacing task on the sources of `pairs`: the text with its spaces removed, to be restored
    ("tobeornottobe" -> "to be or not to be"). Only knowing the words tells where one ends."""
    return [Pair(p.source.replace(" ", ""), p.source, p.play) for p in pairs]


def count_runs(speeches: Sequence[Sequence[str]], min_chars: int, max_chars: int) -> int:
    """How many runs of two or more consecutive words of one speech are min_chars..max_chars characters long.

    An upper bound on the distinct sources `reversal_pairs` can find, counted without drawing any.
    """
    sizes = [len(word) + 1 for words in speeches for word in words]  # each word and the space after it
    ends = np.cumsum([len(words) for words in speeches])
    speech_end = np.repeat(ends, [len(words) for words in speeches])  # for each word, where its speech ends
    offset = np.concatenate([[0], np.cumsum(sizes)])  # the run words[i:j] has offset[j] - offset[i] - 1 characters
    start = np.arange(len(sizes))
    first = np.maximum(np.searchsorted(offset, offset[start] + 1 + min_chars), start + 2)
    last = np.minimum(np.searchsorted(offset, offset[start] + 1 + max_chars, side="right") - 1, speech_end)
    return int(np.maximum(last - first + 1, 0).sum())


# --- optional online extra: the SMS Spam Collection ----------------------------------------------

SMS_SPAM_URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
# sha256 of the zip as the UCI archive serves it (as recorded by other projects that pin it; the
# course's own CI is offline and cannot re-check it). A mismatch stops with both digests.
SMS_SPAM_SHA256 = "1587ea43e58e82b14ff1f5425c88e17f8496bfcdb67a583dbff9eefaf9963ce3"
SMS_SPAM_LABELS = ("ham", "spam")


def parse_sms_spam(zip_path: str | Path) -> list[tuple[str, int]]:
    """(message, label) pairs from the collection's zip: label 0 = ham, 1 = spam.

    The zip holds `SMSSpamCollection`, one message per line as "ham<TAB>text" or "spam<TAB>text";
    a line in any other shape raises a ValueError that names its line number.
    """
    try:
        with zipfile.ZipFile(zip_path) as archive:
            raw = archive.read("SMSSpamCollection")
    except zipfile.BadZipFile:
        raise ValueError(f"{zip_path} is not a readable zip file (corrupt or truncated download?)") from None
    except KeyError:
        raise ValueError(f"{zip_path} has no file named SMSSpamCollection") from None
    messages = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        label, tab, text = line.partition("\t")
        if not tab or label not in SMS_SPAM_LABELS or not text.strip():
            raise ValueError(f"SMSSpamCollection line {number}: expected 'ham' or 'spam', a tab and a message, "
                             f"got {line[:60]!r}")
        messages.append((text, SMS_SPAM_LABELS.index(label)))
    if not messages:
        raise ValueError(f"{zip_path}: SMSSpamCollection holds no messages")
    return messages


def load_sms_spam(cache_dir: str | Path = CACHE_DIR / "sms_spam", url: str = SMS_SPAM_URL,
                  sha256: str = SMS_SPAM_SHA256, timeout: float = 30.0) -> list[tuple[str, int]]:
    """The UCI SMS Spam Collection as (message, label) pairs, downloaded once into the cache.

    An online extra: nothing in the course needs it. The zip's sha256 is checked before it is
    kept; offline, the download fails within `timeout` seconds with a message that says so.
    """
    path = Path(cache_dir) / "sms_spam_collection.zip"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        download = path.with_name(path.name + ".download")
        try:
            fetch(url, download, "SMS Spam Collection", timeout, time.monotonic() + 10 * timeout)
        except OSError as err:  # URLError, HTTPError, timeouts and refused connections are all OSErrors
            raise RuntimeError(f"could not download the SMS Spam Collection from {url} (no network?): {err}. "
                               "It is an optional extra; the course's notebooks run offline without it") from err
        digest = file_sha256(download)
        if digest != sha256:
            download.unlink()
            raise RuntimeError(f"the downloaded SMS Spam Collection has sha256 {digest}, expected {sha256}; "
                               "the file was not kept")
        download.replace(path)
    return parse_sms_spam(path)
