"""Tests of llmcourse.instruct: Alpaca records, the prompt template, collate with -100 and exact match."""

import json

import pytest
import torch

from llmcourse.generate import generate
from llmcourse.instruct import (collate_instructions, encode_record, exact_match_by_task, format_prompt,
                                load_instruction_json, respond)
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.runtime import set_seed


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed: int = 0, vocab_size: int = 64, context_length: int = 32) -> GPTModel:
    set_seed(seed)
    return GPTModel(GPTConfig(vocab_size=vocab_size, context_length=context_length, d_model=32, n_heads=4, n_layers=2,
                              dropout=0.0))


def test_collate_pads_and_masks_with_minus_100():
    pairs = [([1, 2, 3], [4, 5]), ([6, 7], [8])]
    inputs, targets = collate_instructions(pairs, pad_id=0, mask_prompt=False)
    assert inputs.tolist() == [[1, 2, 3, 4], [6, 7, 0, 0]]
    assert targets.tolist() == [[2, 3, 4, 5], [7, 8, -100, -100]]
    inputs, targets = collate_instructions(pairs, pad_id=0, mask_prompt=True)
    assert inputs.tolist() == [[1, 2, 3, 4], [6, 7, 0, 0]]
    assert targets.tolist() == [[-100, -100, 4, 5], [-100, 8, -100, -100]]
    with pytest.raises(ValueError, match="empty response"):
        collate_instructions([([1, 2], [])], pad_id=0)


def test_load_instruction_json_reads_alpaca_records_and_names_bad_ones(tmp_path):
    path = tmp_path / "records.json"
    path.write_text(json.dumps([{"instruction": "Say hi.", "output": "hi"},
                                {"instruction": "Echo.", "input": "x", "output": "x"}]))
    assert load_instruction_json(path) == [{"instruction": "Say hi.", "input": "", "output": "hi"},
                                           {"instruction": "Echo.", "input": "x", "output": "x"}]
    path.write_text(json.dumps([{"instruction": "Say hi.", "output": "hi"}, {"instruction": "Echo.", "input": "x"}]))
    with pytest.raises(ValueError, match=r"record 1: field 'output' is missing"):
        load_instruction_json(path)
    path.write_text(json.dumps([{"instruction": "Count.", "input": "a b", "output": 2}]))
    with pytest.raises(ValueError, match=r"record 0: field 'output' must be a string, got int"):
        load_instruction_json(path)
    path.write_text(json.dumps({"instruction": "Say hi.", "output": "hi"}))
    with pytest.raises(ValueError, match="must hold a JSON list"):
        load_instruction_json(path)
    path.write_text("[{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_instruction_json(path)


def test_prompt_template_and_encoding(small_bpe):
    record = {"instruction": "Give the first word of the line.", "input": "Now is the winter", "output": "Now"}
    assert format_prompt(record) == ("### Instruction:\nGive the first word of the line.\n\n"
                                     "### Input:\nNow is the winter\n\n### Response:\n")
    assert format_prompt({**record, "input": ""}) == "### Instruction:\nGive the first word of the line.\n\n### Response:\n"
    prompt, response = encode_record(record, small_bpe)
    assert small_bpe.decode(prompt) == format_prompt(record)
    assert response[-1] == small_bpe.eot_id and small_bpe.decode(response[:-1]) == "Now"


def test_the_answer_is_spelled_as_in_the_prompt(small_bpe):
    record = {"instruction": "Which word comes after the?", "input": "Now is the winter", "output": "winter"}
    prompt, response = encode_record(record, small_bpe)
    spaced = small_bpe.encode(" winter", allowed_special="none")
    assert response[:-1] == spaced and any(prompt[i:i + len(spaced)] == spaced for i in range(len(prompt)))
    assert small_bpe.decode(encode_record(record, small_bpe, as_in_prompt=False)[1][:-1]) == "winter"
    at_start = {**record, "output": "Now"}  # a line's first word follows a newline: no space before it
    assert small_bpe.decode(encode_record(at_start, small_bpe)[1][:-1]) == "Now"
    absent = {**record, "output": "4"}  # an answer that is not in the prompt is written as it is
    assert small_bpe.decode(encode_record(absent, small_bpe)[1][:-1]) == "4"


def test_exact_match_by_task_and_respond(small_bpe):
    records = [{"task": "a", "output": "x"}, {"task": "a", "output": "y"}, {"task": "b", "output": "z"}]
    assert exact_match_by_task(records, [" x ", "x", "z"]) == {"a": 0.5, "b": 1.0, "all": 2 / 3}
    model = tiny_model(vocab_size=small_bpe.vocab_size, context_length=48)  # room for the prompt and the response
    record = {"instruction": "Hi.", "input": "", "output": ""}
    response = respond(model, small_bpe, record, max_new_tokens=4)
    prompt = small_bpe.encode(format_prompt(record), allowed_special="none")
    new = generate(model, torch.tensor([prompt]), 4, eos_id=small_bpe.eot_id)[0, len(prompt):].tolist()
    assert len(new) <= 4 and response == small_bpe.decode(new[:new.index(small_bpe.eot_id)] if small_bpe.eot_id in new
                                                         else new).strip()
