"""Benchmark: the models the course counts rather than trains, scored on the test plays (chapter 1).

Uniform guessing over the characters and over the course's 2,048 BPE tokens, the unigrams, and the two
Kneser-Ney n-grams notebook 1C keeps (characters, n = 5; BPE tokens, n = 4). Each discount is chosen on
the validation plays by `llmcourse.experiment.widened_sweep` (it cannot pass 1, a hard bound); the test
plays are scored once. Counting needs no seeds: the same counts give the same numbers on every machine.
Writes bench/results/counted_models.json, one of the sources of the course's report card
(scripts/report_card.py). Usage:

    python bench/counted.py      # about a minute
"""

import json
import math
from pathlib import Path

import numpy as np

from llmcourse.course import course_tokenizer
from llmcourse.data import load_shakespeare
from llmcourse.experiment import widened_sweep
from llmcourse.ngram import NGramModel

RESULTS = Path(__file__).resolve().parent / "results" / "counted_models.json"
DISCOUNTS = (0.6, 0.75, 0.9)  # the sweep's first grid; it widens by a factor of 1.1 up to the bound of 1


def main() -> None:
    texts = {split: load_shakespeare(split) for split in ("train", "val", "test")}
    n_bytes = {split: len(text.encode("utf-8")) for split, text in texts.items()}
    characters = sorted(set(texts["train"]))
    char_id = {ch: i for i, ch in enumerate(characters)}
    tokenizer = course_tokenizer()
    units = {"character": ({s: np.array([char_id[ch] for ch in t]) for s, t in texts.items()}, len(characters)),
             "BPE token": ({s: np.array(tokenizer.encode(t)) for s, t in texts.items()}, tokenizer.vocab_size)}
    models, choices = [], []
    for unit, (ids, vocab_size) in units.items():
        uniform = len(ids["test"]) * math.log2(vocab_size) / n_bytes["test"]
        models.append({"model": f"uniform over {vocab_size:,} {unit}s", "kind": "counted",
                       "test_bits_per_byte": round(uniform, 4), "budget": "none"})
        unigram = NGramModel(1, vocab_size).fit(ids["train"])
        models.append({"model": f"{unit} unigram", "kind": "counted", "budget": "one pass of counting",
                       "test_bits_per_byte": round(unigram.bits_per_byte(ids["test"], n_bytes["test"]), 4)})
        order = 5 if unit == "character" else 4
        model = NGramModel(order, vocab_size, "kneser-ney").fit(ids["train"])
        val_statistics = model.statistics(ids["val"])

        def score(discount: float, model=model, ids=ids, val_statistics=val_statistics) -> float:
            model.discount = discount
            return -model.bits_per_byte(ids["val"], n_bytes["val"], val_statistics)

        sweep = widened_sweep(score, DISCOUNTS, factor=1.1, high=1.0)
        choices.append(sweep.record(f"{unit} {order}-gram discount", "better (minus validation bits per byte)"))
        model.discount = sweep.chosen
        test = model.bits_per_byte(ids["test"], n_bytes["test"])
        stored = sum(len(model.tables[n][0]) for n in model.tables)
        models.append({"model": f"{unit} {order}-gram, Kneser-Ney (d = {sweep.chosen:.2f})", "kind": "counted",
                       "budget": "one pass of counting", "stored_counts": stored,
                       "test_bits_per_byte": round(test, 4)})
        print(f"{unit} {order}-gram: d = {sweep.chosen:.3f} from {sorted(sweep.scores)}, test {test:.4f} bits per byte")
    RESULTS.write_text(json.dumps({
        "about": "bench/counted.py: models made by counting, bits per byte on the test plays",
        "choices": choices, "comparisons": [], "models": models}, indent=1) + "\n")
    for row in models:
        print(f"{row['model']:44s} {row['test_bits_per_byte']:.3f}")


if __name__ == "__main__":
    main()
