"""Instruction tuning (chapter 6): Alpaca-style records, the prompt template, answers spelled as in the
prompt, collate with the prompt's targets masked (-100), batches, the model's response and exact-match
scoring."""

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from llmcourse.generate import generate
from llmcourse.model import GPTModel
from llmcourse.tokenizer import BPETokenizer

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


def _occurs_in(ids: list[int], part: list[int]) -> bool:
    return any(ids[i:i + len(part)] == part for i in range(len(ids) - len(part) + 1))


def encode_record(record: dict, tokenizer: BPETokenizer, as_in_prompt: bool = True) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of the response; the response ends with the end-of-text token.

    A word inside a line carries the space before it, so " thrive" and "thrive" are different tokens.
    With `as_in_prompt` the response is spelled as the answer appears in the prompt: " " + output when
    those tokens occur there, else output alone, so the answer can be copied token for token.
    """
    prompt = tokenizer.encode(format_prompt(record), allowed_special="none")
    response = tokenizer.encode(record["output"], allowed_special="none")
    spaced = tokenizer.encode(" " + record["output"], allowed_special="none")
    if as_in_prompt and _occurs_in(prompt, spaced):
        response = spaced
    return prompt, response + [tokenizer.eot_id]


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


def respond(model: GPTModel, tokenizer: BPETokenizer, record: dict, max_new_tokens: int = 32) -> str:
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
