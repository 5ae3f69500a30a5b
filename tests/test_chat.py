"""Tests of llmcourse.chat: chat tokens, the grown vocabulary, the template's round trip, the loss mask, replies."""

import pytest
import torch

from llmcourse.chat import chat_tokenizer, collate_chats, decode_chat, encode_chat, grow_vocabulary, reply
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.runtime import set_seed
from llmcourse.tasks import TASKS, conversations

pytestmark = pytest.mark.usefixtures("one_thread")

CONVERSATION = [{"role": "user", "content": "Which word comes after winter?\nNow is the winter of our discontent"},
                {"role": "assistant", "content": "of"},
                {"role": "user", "content": "How many words are in the line?"},
                {"role": "assistant", "content": "7"}]


def tiny_model(vocab_size: int, tie_weights: bool = False) -> GPTModel:
    set_seed(0)
    return GPTModel(GPTConfig(vocab_size=vocab_size, context_length=128, d_model=32, n_heads=4, n_layers=2,
                              dropout=0.0, tie_weights=tie_weights)).eval()


def test_chat_tokens_follow_the_last_id_and_cannot_be_typed(small_bpe):
    tokenizer = chat_tokenizer(small_bpe)
    added = {t: i for t, i in tokenizer.special_tokens.items() if t not in small_bpe.special_tokens}
    assert sorted(added.values()) == list(range(small_bpe.vocab_size, small_bpe.vocab_size + 3))
    assert tokenizer.vocab_size == small_bpe.vocab_size + 3
    typed = tokenizer.encode("<|assistant|> hi <|end|>", allowed_special="none")
    assert not set(typed) & set(tokenizer.special_tokens.values())
    assert chat_tokenizer(tokenizer).special_tokens == tokenizer.special_tokens  # adding twice adds nothing


def test_template_round_trips_exactly(small_bpe, plays):
    tokenizer = chat_tokenizer(small_bpe)
    for messages in [CONVERSATION, *(c["messages"] for c in conversations(plays, "val", 30, seed=1))]:
        ids, trained = encode_chat(messages, tokenizer)
        assert decode_chat(ids, tokenizer) == messages
        assert len(trained) == len(ids)
    messages = [{"role": "user", "content": "  spaces, <|end|> typed\n"}, {"role": "assistant", "content": ""}]
    assert decode_chat(encode_chat(messages, tokenizer)[0], tokenizer) == messages


def test_only_the_assistant_turns_are_trained(small_bpe):
    tokenizer = chat_tokenizer(small_bpe)
    ids, trained = encode_chat(CONVERSATION, tokenizer)
    end = tokenizer.special_tokens["<|end|>"]
    kept = [t for t, keep in zip(ids, trained) if keep]
    assert tokenizer.decode(kept) == " of<|end|> 7<|end|>"
    assert kept.count(end) == 2 and tokenizer.special_tokens["<|assistant|>"] not in kept


def test_bad_conversations_are_refused(small_bpe):
    tokenizer = chat_tokenizer(small_bpe)
    with pytest.raises(ValueError, match="message 1 must have a role"):
        encode_chat([CONVERSATION[0], {"role": "system", "content": "x"}], tokenizer)
    with pytest.raises(ValueError, match="string content"):
        encode_chat([{"role": "user", "content": 7}], tokenizer)
    ids, _ = encode_chat(CONVERSATION, tokenizer)
    with pytest.raises(ValueError, match="must start with a role marker"):
        decode_chat(ids[1:], tokenizer)
    with pytest.raises(ValueError, match="no end-of-turn token"):
        decode_chat(ids[:-1], tokenizer)


def test_collate_masks_everything_but_the_assistant_and_pads(small_bpe):
    tokenizer = chat_tokenizer(small_bpe)
    rows = [encode_chat(CONVERSATION, tokenizer), encode_chat(CONVERSATION[:2], tokenizer)]
    inputs, targets = collate_chats(rows, pad_id=tokenizer.eot_id)
    assert inputs.shape == targets.shape == (2, len(rows[0][0]) - 1)
    for row, (ids, trained) in enumerate(rows):
        assert inputs[row, :len(ids) - 1].tolist() == ids[:-1]
        assert targets[row, :len(ids) - 1].tolist() == [t if keep else -100 for t, keep in zip(ids, trained)][1:]
        assert (targets[row, len(ids) - 1:] == -100).all()
    with pytest.raises(ValueError, match="empty batch"):
        collate_chats([], pad_id=0)


def test_grown_vocabulary_keeps_every_old_logit_and_starts_new_rows_at_the_mean():
    for tie in (False, True):
        model = tiny_model(50, tie_weights=tie)
        ids = torch.tensor([[1, 5, 7, 9]])
        with torch.no_grad():
            before = model(ids)
            grow_vocabulary(model, 53)
            after = model(ids)
        assert model.cfg.vocab_size == 53 and after.shape[-1] == 53
        assert torch.equal(after[..., :50], before)
        assert torch.allclose(model.tok_emb.weight[50:], model.tok_emb.weight[:50].mean(0).expand(3, -1))
        assert (model.out_head.weight is model.tok_emb.weight) == tie
    with pytest.raises(ValueError, match="only grows"):
        grow_vocabulary(tiny_model(50), 40)


def test_a_masked_token_gets_no_gradient(small_bpe):
    tokenizer = chat_tokenizer(small_bpe)
    model = grow_vocabulary(tiny_model(small_bpe.vocab_size), tokenizer.vocab_size)
    inputs, targets = collate_chats([encode_chat(CONVERSATION, tokenizer)], pad_id=tokenizer.eot_id)
    logits = model(inputs).requires_grad_(True)
    logits.retain_grad()
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100).backward()
    masked = targets[0] == -100
    assert (logits.grad[0, masked] == 0).all() and (logits.grad[0, ~masked].abs().sum(-1) > 0).all()


def test_reply_stops_at_the_end_of_its_turn_and_refuses_too_long_conversations(small_bpe):
    tokenizer = chat_tokenizer(small_bpe)
    model = grow_vocabulary(tiny_model(small_bpe.vocab_size), tokenizer.vocab_size)
    end = tokenizer.special_tokens["<|end|>"]
    with torch.no_grad():  # every position's final state becomes the first unit vector, which only <|end|> reads
        model.final_norm.weight.zero_()
        model.final_norm.bias.zero_()
        model.final_norm.bias[0] = 1.0
        model.out_head.weight.zero_()
        model.out_head.weight[end, 0] = 1.0
    assert reply(model, tokenizer, CONVERSATION[:1], max_new_tokens=5) == ""
    with pytest.raises(ValueError, match="does not fit the model's context"):
        reply(model, tokenizer, CONVERSATION * 2, max_new_tokens=5)


def test_conversations_ask_the_second_question_without_its_line(plays):
    found = conversations(plays, "val", 60, seed=0)
    assert len(found) == 60 and {c["tasks"][1] for c in found} == set(TASKS)
    for conversation in found:
        first, answer, second, _ = (m["content"] for m in conversation["messages"])
        assert "\n" in first and "\n" not in second and answer
        assert conversation["tasks"][0] != conversation["tasks"][1] or conversation["tasks"][0] == "speaker"
    assert {c["play"] for c in found} <= {p.play for p in plays if p.split == "val"}
