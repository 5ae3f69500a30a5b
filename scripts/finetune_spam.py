"""Fine-tune GPT-2 small to tell spam from ham in the UCI SMS Spam Collection (an online extra).

Notebook 6A classifies the plays offline with the course GPT. A learner who is online can run the
same recipe on the data set most tutorials use, with OpenAI's GPT-2 small:

    python scripts/finetune_spam.py                  # downloads both once, into .cache/
    python scripts/finetune_spam.py --part all       # train every parameter instead

The collection is balanced (every spam message and as many ham messages, drawn at random), split
70 / 10 / 20 % into training, validation and test messages, encoded with GPT-2's tokenizer and cut
to --max-tokens. A classification head on the last position reads each message; to read the true
last token without padding, batches are made of messages of the same length. The epoch with the
best validation accuracy is kept, and the test accuracy is printed once, beside the majority class.
Offline, the first run stops with a message saying the downloads failed.
"""

import argparse
import random
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

from llmcourse.classify import (TRAINABLE_PARTS, GPTClassifier, accuracy, add_classification_head, predict_proba,
                                set_trainable)
from llmcourse.finetune import fit
from llmcourse.runtime import CACHE_DIR, set_seed
from llmcourse.tasks import SMS_SPAM_URL, load_sms_spam, parse_sms_spam
from llmcourse.tokenizer import gpt2_encoding
from llmcourse.weights import download_gpt2, load_gpt2_safetensors


def balanced_split(messages: list[tuple[str, int]], seed: int) -> dict[str, list[tuple[str, int]]]:
    """Every spam message and an equal number of ham ones, shuffled and split 70 / 10 / 20 %."""
    rng = random.Random(seed)
    spam = [m for m in messages if m[1] == 1]
    ham = rng.sample([m for m in messages if m[1] == 0], min(len(spam), len(messages) - len(spam)))
    chosen = spam + ham
    rng.shuffle(chosen)
    n_train, n_val = int(0.7 * len(chosen)), int(0.1 * len(chosen))
    return {"train": chosen[:n_train], "val": chosen[n_train:n_train + n_val], "test": chosen[n_train + n_val:]}


def same_length_batches(ids: list[list[int]], labels: list[int], batch_size: int,
                        seed: int) -> list[tuple[Tensor, Tensor]]:
    """Batches of messages of equal token length (no padding, so the last position is the last token)."""
    by_length: dict[int, list[int]] = {}
    for index, row in enumerate(ids):
        by_length.setdefault(len(row), []).append(index)
    rng = random.Random(seed)
    batches = []
    for indices in by_length.values():
        rng.shuffle(indices)
        for start in range(0, len(indices), batch_size):
            part = indices[start:start + batch_size]
            batches.append((torch.tensor([ids[i] for i in part]), torch.tensor([labels[i] for i in part])))
    rng.shuffle(batches)
    return batches


def predictions(classifier: GPTClassifier, ids: list[list[int]]) -> Tensor:
    """The predicted class of every message, one message at a time (each its own length)."""
    return torch.cat([predict_proba(classifier, torch.tensor([row])).argmax(-1) for row in ids])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=TRAINABLE_PARTS, default="last block",
                        help="what to train besides the new head (default: last block + final norm + head)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64, help="cut each message to this many tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sms-zip", type=Path, help="a local copy of the collection's zip (skips its download)")
    parser.add_argument("--sms-url", default=SMS_SPAM_URL, help="where to download the collection's zip from")
    parser.add_argument("--weights", type=Path, help="a GPT-2 model.safetensors (skips its download)")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.max_tokens < 1:
        parser.error("--epochs, --batch-size and --max-tokens must be positive")

    try:
        messages = parse_sms_spam(args.sms_zip) if args.sms_zip else load_sms_spam(args.cache_dir / "sms_spam", url=args.sms_url)
        weights = args.weights or download_gpt2("small", cache_dir=args.cache_dir / "gpt2")
    except (RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    set_seed(args.seed)
    model = load_gpt2_safetensors(weights, dropout=0.0)
    if args.max_tokens > model.cfg.context_length:
        parser.error(f"--max-tokens {args.max_tokens} exceeds the model's context of {model.cfg.context_length}")
    encoding = gpt2_encoding()
    data = {}
    for split, rows in balanced_split(messages, args.seed).items():
        ids = [encoding.encode_ordinary(text)[:args.max_tokens] or [encoding.eot_token] for text, _ in rows]
        data[split] = (ids, [label for _, label in rows])
    print({split: len(ids) for split, (ids, _) in data.items()}, "messages (balanced: half spam)")

    add_classification_head(model, n_classes=2, seed=args.seed)
    trainable = set_trainable(model, args.part)
    classifier = GPTClassifier(model, "last")
    val_labels = torch.tensor(data["val"][1])
    started = time.perf_counter()
    history = fit(classifier, lambda epoch: same_length_batches(*data["train"], args.batch_size,
                                                               args.seed * 1000 + epoch),
                  args.epochs, args.lr, after_epoch=lambda: accuracy(val_labels, predictions(classifier, data["val"][0])))
    test_labels = torch.tensor(data["test"][1])
    test_accuracy = accuracy(test_labels, predictions(classifier, data["test"][0]))
    majority = max(test_labels.float().mean().item(), 1 - test_labels.float().mean().item())
    print(f"trained {args.part} ({trainable:,} parameters) for {args.epochs} epochs in "
          f"{time.perf_counter() - started:.0f} s; validation accuracy by epoch "
          f"{[round(s, 3) for s in history.epoch_scores]}, kept epoch {history.best_epoch}")
    print(f"test accuracy {test_accuracy:.3f} (majority class {majority:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
