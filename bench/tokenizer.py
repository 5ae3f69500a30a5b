"""Tokenizer benchmark: our BPE's training time, our GPT-2 encoder's speed next to tiktoken's, and
both on hostile input (one long run of letters, a megabyte without a space, a million distinct words).

    python bench/tokenizer.py

Prints wall-clock times (best of a few runs), so run it on an idle machine for fair numbers.
"""

import random
import time

from llmcourse.data import load_shakespeare
from llmcourse.tokenizer import CHUNK_CACHE_SIZE, BPETokenizer, gpt2_encoding


def best_time(function, repeats: int) -> float:
    """The fastest of `repeats` calls, in seconds (the least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def time_encode(tokenizer: BPETokenizer, text: str) -> float:
    """Seconds for one encode of `text` by `tokenizer`."""
    start = time.perf_counter()
    tokenizer.encode_ordinary(text)
    return time.perf_counter() - start


def random_letters(n: int, seed: int = 0) -> str:
    """`n` random lowercase letters: one pre-token, with no space to split it."""
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))


def hostile() -> None:
    tiktoken_encoding, ours = gpt2_encoding(), BPETokenizer.from_gpt2()
    print("hostile input:")
    for n in (20_000, 80_000):
        text = random_letters(n)
        mine = best_time(lambda: ours.encode_ordinary(text), repeats=2)
        theirs = best_time(lambda: tiktoken_encoding.encode_ordinary(text), repeats=2)
        print(f"  GPT-2 encode of one run of {n:,} letters: ours {mine:6.2f} s, tiktoken {theirs:6.3f} s")
    text = random_letters(1_000_000)
    seconds = best_time(lambda: BPETokenizer.train(text, vocab_size=512), repeats=1)
    print(f"  BPE training, 1 MB without a space, vocab_size=512: {seconds:6.2f} s")
    words = " ".join(f"w{i}" for i in range(1_000_000))
    ours.encode_ordinary(words)
    print(f"  chunk cache after 1,000,000 distinct words: {len(ours._chunk_cache):,} chunks "
          f"(bound {CHUNK_CACHE_SIZE:,})")


def main() -> None:
    train_text = load_shakespeare("train")
    text = load_shakespeare("all")
    megabytes = len(text.encode("utf-8")) / 1e6
    print(f"train split: {len(train_text):,} characters; encode text: {megabytes:.2f} MB (all 38 plays)")

    seconds = best_time(lambda: BPETokenizer.train(train_text, vocab_size=4096), repeats=2)
    print(f"our BPE training, vocab_size=4096:       {seconds:6.2f} s")

    seconds = best_time(BPETokenizer.from_gpt2, repeats=2)
    print(f"our GPT-2 tokenizer from ranks:          {seconds:6.2f} s")

    tiktoken_encoding = gpt2_encoding()
    n_tokens = len(tiktoken_encoding.encode_ordinary(text))
    ours_cold = min(time_encode(BPETokenizer.from_gpt2(), text) for _ in range(2))  # empty chunk cache
    ours = BPETokenizer.from_gpt2()
    ours_warm = min(time_encode(ours, text) for _ in range(4))  # the first run fills the cache
    theirs = best_time(lambda: tiktoken_encoding.encode_ordinary(text), repeats=3)
    print(f"GPT-2 encode of {n_tokens:,} tokens:")
    for name, t in [("ours, empty chunk cache", ours_cold), ("ours, warm chunk cache", ours_warm),
                    ("tiktoken (Rust)", theirs)]:
        print(f"  {name:24s} {t:6.2f} s  {megabytes / t:6.2f} MB/s  {n_tokens / t / 1e6:5.2f} M tokens/s"
              f"  ({t / theirs:4.1f}x tiktoken's time)")
    hostile()


if __name__ == "__main__":
    main()
