"""Fine-tuning a pretrained GPT (chapter 6): genre passages and a classification head with its pooling,
training parts of a model, metrics, and instruction records with their template, collate and masking,
and exact-match evaluation."""

import json
import random
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import regex
import torch
from torch import Tensor, nn

# The bag-of-words features of chapter 6's baseline are built in chapter 1; they stay importable from here.
from llmcourse.bow import bag_of_words, word_vocabulary  # noqa: F401
from llmcourse.data import Play, speaker_speeches
from llmcourse.download import fetch, file_sha256
from llmcourse.generate import generate
from llmcourse.model import GPTModel
from llmcourse.runtime import CACHE_DIR
from llmcourse.tokenizer import BPETokenizer
from llmcourse.train import configure_optimizer, cross_entropy

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


# --- a classification head on a GPT ----------------------------------------------------------------

POOLINGS = ("last", "first", "mean")


def add_classification_head(model: GPTModel, n_classes: int, seed: int = 0) -> GPTModel:
    """Replace the model's output head (d_model -> vocab) by a fresh linear layer d_model -> n_classes.

    The model then gives class logits at every position; `pool` picks the one to use. A tied output
    head is untied: the token embedding keeps its matrix, the new head has its own.
    """
    if n_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
    generator = torch.Generator().manual_seed(seed)
    head = nn.Linear(model.cfg.d_model, n_classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.02)
        head.bias.zero_()
    model.out_head = head.to(model.tok_emb.weight.device)
    return model


def pool(logits: Tensor, pooling: str = "last") -> Tensor:
    """One vector per sequence from per-position outputs (batch, tokens, n): the last, the first, or their mean.

    With causal attention only the last position has seen the whole sequence.
    """
    if pooling == "last":
        return logits[:, -1]
    if pooling == "first":
        return logits[:, 0]
    if pooling == "mean":
        return logits.mean(dim=1)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def hidden_states(model: GPTModel, token_ids: Tensor, n_blocks: int) -> Tensor:
    """The residual stream (batch, tokens, d_model) after the embeddings and the first `n_blocks` blocks."""
    if not 0 <= n_blocks <= len(model.blocks):
        raise ValueError(f"n_blocks must be in 0..{len(model.blocks)}, got {n_blocks}")
    x = model.embed(token_ids)
    for block in model.blocks[:n_blocks]:
        x = block(x)
    return x


class GPTClassifier(nn.Module):
    """A GPT with a classification head, pooled to one logit vector per sequence.

    With `start_block = 0` it reads token ids. With `start_block = k > 0` it reads the residual stream
    after block k - 1 (from `hidden_states`, computed once) and runs only blocks k.. and the head:
    frozen lower blocks compute the same thing in every epoch, so they need to run only once.
    """

    def __init__(self, model: GPTModel, pooling: str = "last", start_block: int = 0):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if not 0 <= start_block <= len(model.blocks):
            raise ValueError(f"start_block must be in 0..{len(model.blocks)}, got {start_block}")
        self.model = model
        self.pooling = pooling
        self.start_block = start_block

    def forward(self, inputs: Tensor) -> Tensor:
        if self.start_block == 0:
            return pool(self.model(inputs), self.pooling)
        x = inputs
        for block in self.model.blocks[self.start_block:]:
            x = block(x)
        return pool(self.model.out_head(self.model.final_norm(x)), self.pooling)


TRAINABLE_PARTS = ("head", "last block", "all")


def set_trainable(model: GPTModel, part: str) -> int:
    """Freeze the model except `part`: "head", "last block" (+ final norm + head) or "all". Returns the count.

    The position and token embeddings count as part of "all" only.
    """
    if part not in TRAINABLE_PARTS:
        raise ValueError(f"part must be one of {TRAINABLE_PARTS}, got {part!r}")
    trainable = {"head": ("out_head.",),
                 "last block": ("out_head.", "final_norm.", f"blocks.{len(model.blocks) - 1}."),
                 "all": ("",)}[part]
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(trainable)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- training and measuring ------------------------------------------------------------------------


def shuffled_batches(inputs: Tensor, labels: Tensor, batch_size: int, seed: int) -> list[tuple[Tensor, Tensor]]:
    """(inputs, labels) in batches of `batch_size`, in an order drawn from `seed` (the last batch may be short)."""
    if len(inputs) != len(labels):
        raise ValueError(f"{len(inputs)} inputs but {len(labels)} labels")
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(seed))
    return [(inputs[i], labels[i]) for i in order.split(batch_size)]


@dataclass
class FitHistory:
    """What `fit` recorded: the loss of every update, and whatever `after_epoch` returned each epoch."""

    train_loss: list[float]
    epoch_scores: list[float]
    best_epoch: int  # 1-based; 0 when no after_epoch was given


def fit(module: nn.Module, batches: Callable[[int], Iterable[tuple[Tensor, Tensor]]], epochs: int, lr: float,
        weight_decay: float = 0.0, after_epoch: Callable[[], float] | None = None) -> FitHistory:
    """Train the module's trainable parameters with AdamW at a constant `lr` on `batches(epoch)`, for `epochs`.

    The loss is cross-entropy (targets of -100 are ignored). If `after_epoch` is given it scores the
    module after every epoch (e.g. validation accuracy) and the weights of the best-scoring epoch are
    restored at the end: early stopping, chosen on that score.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    optimizer = configure_optimizer(module, lr, weight_decay)
    history = FitHistory([], [], 0)
    best_state = None
    module.train()
    for epoch in range(epochs):
        updates = len(history.train_loss)
        for inputs, targets in batches(epoch):
            loss = cross_entropy(module(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.train_loss.append(loss.item())
        if len(history.train_loss) == updates:
            raise ValueError(f"batches({epoch}) gave no batch: there is nothing to train on")
        if after_epoch is not None:
            module.eval()
            history.epoch_scores.append(after_epoch())
            module.train()
            if history.epoch_scores[-1] > max(history.epoch_scores[:-1], default=float("-inf")):
                history.best_epoch = epoch + 1
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return history


def train_classifier(classifier: nn.Module, train_inputs: Tensor, train_labels: Tensor, val_inputs: Tensor,
                     val_labels: Tensor, epochs: int, lr: float, batch_size: int = 32, seed: int = 0,
                     weight_decay: float = 0.0) -> FitHistory:
    """`fit` on shuffled batches (an order per epoch, drawn from `seed`), keeping the epoch of best validation accuracy.

    Labels must be class indices 0 .. n_classes - 1, n_classes being the width of the classifier's output.
    """
    if len(train_inputs) == 0 or len(val_inputs) == 0:
        raise ValueError(f"need training and validation examples, got {len(train_inputs)} and {len(val_inputs)}")
    n_classes = predict_proba(classifier, val_inputs[:1]).shape[-1]
    check_labels(train_labels, n_classes, len(train_inputs), "train_labels")
    check_labels(val_labels, n_classes, len(val_inputs), "val_labels")
    return fit(classifier, lambda epoch: shuffled_batches(train_inputs, train_labels, batch_size, seed * 1000 + epoch),
               epochs, lr, weight_decay,
               after_epoch=lambda: accuracy(val_labels, predict_proba(classifier, val_inputs).argmax(-1)))


@torch.no_grad()
def predict_proba(module: nn.Module, inputs: Tensor, batch_size: int = 64) -> Tensor:
    """Class probabilities (n, classes) for every input, in eval mode."""
    if len(inputs) == 0:
        raise ValueError("inputs is empty: there is nothing to predict")
    was_training = module.training
    module.eval()
    probs = torch.cat([torch.softmax(module(batch).float(), dim=-1) for batch in inputs.split(batch_size)])
    module.train(was_training)
    return probs


def check_labels(labels: Tensor, n_classes: int, n_examples: int, name: str = "labels") -> None:
    """Refuse anything but `n_examples` class indices 0 .. n_classes - 1 in a 1-D integer tensor."""
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.dtype.is_floating_point \
            or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-D tensor of integer class indices, "
                         f"got {getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}")
    if len(labels) != n_examples:
        raise ValueError(f"{name} has {len(labels)} entries for {n_examples} examples")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{name} must be class indices 0 .. {n_classes - 1}, got values "
                         f"{labels.min().item()} .. {labels.max().item()}")


def confusion_matrix(labels: Tensor, predictions: Tensor, n_classes: int) -> Tensor:
    """Counts (n_classes, n_classes): row = true class, column = predicted class."""
    check_labels(labels, n_classes, len(predictions), "labels")
    check_labels(predictions, n_classes, len(labels), "predictions")
    return torch.bincount(labels * n_classes + predictions, minlength=n_classes * n_classes).view(n_classes, n_classes)


def accuracy(labels: Tensor, predictions: Tensor) -> float:
    """Share of predictions equal to the label."""
    if not isinstance(labels, Tensor) or not isinstance(predictions, Tensor) or labels.dim() != 1 \
            or labels.shape != predictions.shape or len(labels) == 0:
        raise ValueError(f"labels and predictions must be two 1-D tensors of the same, non-zero length, got shapes "
                         f"{tuple(getattr(labels, 'shape', ()))} and {tuple(getattr(predictions, 'shape', ()))}")
    return (labels == predictions).float().mean().item()


def macro_f1(labels: Tensor, predictions: Tensor, n_classes: int) -> float:
    """Mean over classes of F1 = 2 precision recall / (precision + recall); a class never predicted scores 0.

    Unlike accuracy it weighs every class alike, so always answering the biggest class scores low.
    """
    counts = confusion_matrix(labels, predictions, n_classes).double()
    true_positive = counts.diag()
    f1 = 2 * true_positive / (counts.sum(0) + counts.sum(1)).clamp(min=1)
    return f1.mean().item()


# --- instruction records -------------------------------------------------------------------------

INSTRUCTION_FIELDS = ("instruction", "input", "output")


def check_instruction_record(record: object, where: str) -> dict:
    """The record with "input" defaulting to ""; a record that is not Alpaca-shaped raises a ValueError."""
    if not isinstance(record, dict):
        raise ValueError(f"{where} must be an object with keys {INSTRUCTION_FIELDS}, got {type(record).__name__}")
    for field_name in INSTRUCTION_FIELDS:
        value = record.get(field_name, "" if field_name == "input" else None)
        if not isinstance(value, str):
            problem = "is missing" if value is None else f"must be a string, got {type(value).__name__}"
            raise ValueError(f"{where}: field {field_name!r} {problem}")
    if not record["instruction"].strip():
        raise ValueError(f"{where}: field 'instruction' is empty")
    return {**record, "input": record.get("input", "")}


def load_instruction_json(path: str | Path) -> list[dict]:
    """Records from an Alpaca-format JSON file: a list of {"instruction", "input" (optional), "output"}.

    A malformed record raises a ValueError that names its index and the field at fault.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path.name} is not valid JSON: {error}") from None
    if not isinstance(data, list):
        raise ValueError(f"{path.name} must hold a JSON list of records, got {type(data).__name__}")
    return [check_instruction_record(record, f"{path.name}: record {i}") for i, record in enumerate(data)]


def format_prompt(record: dict) -> str:
    """The prompt for a record: instruction, input (if any), then the cue after which the response follows.

    A short template: the model's context is only 128 tokens, so every token of boilerplate counts.
    """
    prompt = f"### Instruction:\n{record['instruction']}\n\n"
    if record.get("input"):
        prompt += f"### Input:\n{record['input']}\n\n"
    return prompt + "### Response:\n"


def encode_record(record: dict, tokenizer: BPETokenizer) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of the response; the response ends with the end-of-text token."""
    return (tokenizer.encode(format_prompt(record), allowed_special="none"),
            tokenizer.encode(record["output"], allowed_special="none") + [tokenizer.eot_id])


def collate_instructions(pairs: Sequence[tuple[list[int], list[int]]], pad_id: int, mask_prompt: bool = True,
                         ignore_index: int = -100) -> tuple[Tensor, Tensor]:
    """Inputs and targets (batch, longest - 1) for next-token training on prompt + response pairs.

    Each row is shifted by one as in pretraining and padded to the batch's longest row: inputs with
    `pad_id`, targets with `ignore_index`, which the loss skips. With `mask_prompt` the targets inside
    the prompt are `ignore_index` too, so the loss counts only the response (and its end token).
    """
    if not pairs:
        raise ValueError("cannot collate an empty batch")
    longest = max(len(prompt) + len(response) for prompt, response in pairs)
    inputs = torch.full((len(pairs), longest - 1), pad_id, dtype=torch.long)
    targets = torch.full((len(pairs), longest - 1), ignore_index, dtype=torch.long)
    for row, (prompt, response) in enumerate(pairs):
        if not response:
            raise ValueError(f"row {row} has an empty response: it needs at least the end-of-text token")
        if not prompt:
            raise ValueError(f"row {row} has an empty prompt: the response's first token needs a token before it")
        ids = torch.tensor(prompt + response)
        inputs[row, :len(ids) - 1] = ids[:-1]
        targets[row, :len(ids) - 1] = ids[1:]
        if mask_prompt:
            targets[row, :len(prompt) - 1] = ignore_index  # the first kept target is the response's first token
    return inputs, targets


def instruction_batches(pairs: Sequence[tuple[list[int], list[int]]], batch_size: int, pad_id: int,
                        mask_prompt: bool, seed: int) -> list[tuple[Tensor, Tensor]]:
    """Collated batches of the pairs in an order drawn from `seed` (the last batch may be short)."""
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed)).tolist()
    return [collate_instructions([pairs[i] for i in order[start:start + batch_size]], pad_id, mask_prompt)
            for start in range(0, len(order), batch_size)]


def respond(model: GPTModel, tokenizer: BPETokenizer, record: dict, max_new_tokens: int = 12) -> str:
    """The model's greedy response to a record's prompt, up to the end-of-text token, stripped of spaces.

    The prompt and the response must fit in the model's context together, or the instruction would be cropped.
    """
    prompt = torch.tensor([tokenizer.encode(format_prompt(record), allowed_special="none")],
                          device=model.tok_emb.weight.device)
    if prompt.shape[1] + max_new_tokens > model.cfg.context_length:
        raise ValueError(f"the prompt has {prompt.shape[1]} tokens; with max_new_tokens={max_new_tokens} it does not "
                         f"fit in context_length={model.cfg.context_length}: shorten the input")
    out = generate(model, prompt, max_new_tokens, eos_id=tokenizer.eot_id)[0, prompt.shape[1]:].tolist()
    if tokenizer.eot_id in out:
        out = out[:out.index(tokenizer.eot_id)]
    return tokenizer.decode(out).strip()


def exact_match(response: str, answer: str) -> bool:
    """True when the response is the answer, ignoring surrounding whitespace (case and punctuation count)."""
    return response.strip() == answer.strip()


def exact_match_by_task(records: Sequence[dict], responses: Sequence[str]) -> dict[str, float]:
    """Share of exact matches for each record's "task", and over all records ("all")."""
    if len(records) != len(responses):
        raise ValueError(f"{len(records)} records but {len(responses)} responses")
    hits: dict[str, list[bool]] = {}
    for record, response in zip(records, responses):
        hit = exact_match(response, record["output"])
        hits.setdefault(record.get("task", "all"), []).append(hit)
        if "task" in record:
            hits.setdefault("all", []).append(hit)
    return {task: sum(h) / len(h) for task, h in hits.items()}


# --- instruction records built from the plays ------------------------------------------------------

TASKS = ("first word", "last word", "speaker", "genre", "word count")


def _words(line: str) -> list[str]:
    """The words of a line without the punctuation around them ("'Tis" and "o'er" keep their apostrophes)."""
    return [w for w in (token.strip(".,;:!?-\"()[]") for token in line.split()) if regex.fullmatch(r"[\p{L}']+", w)]


def _record(task: str, instruction: str, text: str, output: str, play: Play) -> dict:
    return {"instruction": instruction, "input": text, "output": output, "task": task, "play": play.play}


def instruction_records(plays: Sequence[Play], split: str, per_task: int, seed: int = 0) -> list[dict]:
    """`per_task` Alpaca-style records of each task in TASKS from the plays of `split`, shuffled.

    Every answer is exact: a word of the input, a speaker's name, a class name or a number. Lines
    have 4 to 10 words; genre passages are the first 20 words of a speech.
    """
    rng = random.Random(seed)
    chosen = [p for p in plays if p.split == split]
    if not chosen:
        raise ValueError(f"no plays in split {split!r}")
    speeches = [(play, speaker, lines) for play in chosen for speaker, lines in speaker_speeches(play)]
    lines = [(play, line) for play, _, speech in speeches for line in speech
             if 4 <= len(line.split()) <= 10 and len(_words(line)) == len(line.split())]
    exchanges = [(play, first, one[0], second, two[0])  # consecutive speeches by two speakers, a short line each
                 for (play, first, one), (next_play, second, two) in zip(speeches, speeches[1:])
                 if play is next_play and first != second and len(one[0].split()) <= 10 and len(two[0].split()) <= 10]
    long_speeches = [(play, " ".join(" ".join(speech).split()[:20])) for play, _, speech in speeches
                     if len(" ".join(speech).split()) >= 20]
    records = []
    for _ in range(per_task):
        play, line = rng.choice(lines)
        records.append(_record("first word", "Give the first word of the line.", line, _words(line)[0], play))
        play, line = rng.choice(lines)
        records.append(_record("last word", "Give the last word of the line.", line, _words(line)[-1], play))
        play, line = rng.choice(lines)
        records.append(_record("word count", "How many words are in the line?", line, str(len(_words(line))), play))
        play, first, one, second, two = rng.choice(exchanges)
        which = rng.choice(["first", "second"])
        records.append(_record("speaker", f"Who speaks {which}?", f"{first}:\n{one}\n{second}:\n{two}",
                               first if which == "first" else second, play))
        play, passage = rng.choice(long_speeches)
        records.append(_record("genre", "Is this from a comedy, a history or a tragedy?", passage,
                               GENRE_CLASSES[genre_label(play.genre)], play))
    rng.shuffle(records)
    return records


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
