"""Chat format (chapter 6): roles and turns as special tokens, a conversation to tokens and back, the loss on
the assistant's turns only, and a reply that stops at the end of its turn."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from llmcourse.generate import generate
from llmcourse.model import GPTModel
from llmcourse.tokenizer import BPETokenizer

ROLES = {"user": "<|user|>", "assistant": "<|assistant|>"}
END_OF_TURN = "<|end|>"


def chat_tokenizer(tokenizer: BPETokenizer) -> BPETokenizer:
    """The same tokenizer with the role markers and the end-of-turn token added after its last id."""
    added = [t for t in (*ROLES.values(), END_OF_TURN) if t not in tokenizer.special_tokens]
    specials = {**tokenizer.special_tokens, **{t: tokenizer.vocab_size + i for i, t in enumerate(added)}}
    return BPETokenizer(tokenizer.merges, tokenizer.byte_ids, specials, tokenizer.pattern)


def grow_vocabulary(model: GPTModel, vocab_size: int) -> GPTModel:
    """Give the model rows for new token ids, in place: each new embedding and output row starts as the mean
    of the old ones, so a new token begins as an average token. The old rows, and every old logit, are kept."""
    old = model.cfg.vocab_size
    if vocab_size < old:
        raise ValueError(f"vocab_size={vocab_size} is below the model's {old}: a vocabulary only grows")
    with torch.no_grad():
        for name in ("tok_emb", "out_head"):
            layer = getattr(model, name)
            weight = torch.cat([layer.weight, layer.weight.mean(0, keepdim=True).expand(vocab_size - old, -1)])
            grown = (nn.Embedding(vocab_size, weight.shape[1]) if name == "tok_emb"
                     else nn.Linear(weight.shape[1], vocab_size, bias=False))
            grown.weight.copy_(weight)
            setattr(model, name, grown.to(layer.weight.device))
    if model.cfg.tie_weights:
        model.out_head.weight = model.tok_emb.weight
    model.cfg = type(model.cfg)(**{**vars(model.cfg), "vocab_size": vocab_size})
    return model


def encode_chat(messages: Sequence[dict], tokenizer: BPETokenizer) -> tuple[list[int], list[bool]]:
    """Token ids of a conversation and, per id, whether the loss trains on it (the assistant's words and end).

    Each turn is its role marker, a space, its text and the end-of-turn token. The space makes a one-word
    answer the same token as that word inside a line (" such", not "such")."""
    ids, trained = [], []
    for i, message in enumerate(messages):
        if not (isinstance(message, dict) and message.get("role") in ROLES and isinstance(message.get("content"), str)):
            raise ValueError(f"message {i} must have a role in {list(ROLES)} and a string content, got {message!r:.80}")
        text = tokenizer.encode(" " + message["content"], allowed_special="none")
        turn = [tokenizer.special_tokens[ROLES[message["role"]]], *text, tokenizer.special_tokens[END_OF_TURN]]
        ids += turn
        trained += [False] + [message["role"] == "assistant"] * (len(turn) - 1)
    return ids, trained


def decode_chat(ids: Sequence[int], tokenizer: BPETokenizer) -> list[dict]:
    """The conversation that `encode_chat` turned into `ids`; ids that are not whole turns raise a ValueError."""
    role_of = {tokenizer.special_tokens[marker]: role for role, marker in ROLES.items()}
    end = tokenizer.special_tokens[END_OF_TURN]
    ids = list(ids)
    messages, start = [], 0
    while start < len(ids):
        if ids[start] not in role_of:
            raise ValueError(f"position {start}: a turn must start with a role marker, got id {ids[start]}")
        if end not in ids[start:]:
            raise ValueError(f"the turn at position {start} has no end-of-turn token")
        stop = ids.index(end, start)
        text = tokenizer.decode(ids[start + 1:stop])
        if not text.startswith(" "):
            raise ValueError(f"the turn at position {start} does not start with the template's space")
        messages.append({"role": role_of[ids[start]], "content": text[1:]})
        start = stop + 1
    return messages


def collate_chats(rows: Sequence[tuple[list[int], list[bool]]], pad_id: int,
                  ignore_index: int = -100) -> tuple[Tensor, Tensor]:
    """Inputs and targets (batch, longest - 1), shifted by one and padded; a target is kept only where the
    loss trains on it (the assistant's turns), every other one is `ignore_index`."""
    if not rows:
        raise ValueError("cannot collate an empty batch")
    longest = max(len(ids) for ids, _ in rows)
    inputs = torch.full((len(rows), longest - 1), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), longest - 1), ignore_index, dtype=torch.long)
    for row, (ids, trained) in enumerate(rows):
        if len(ids) != len(trained) or len(ids) < 2:
            raise ValueError(f"row {row} needs at least 2 ids and one flag per id, got {len(ids)} and {len(trained)}")
        kept = [t if keep else ignore_index for t, keep in zip(ids, trained)]
        inputs[row, :len(ids) - 1] = torch.tensor(ids[:-1])
        targets[row, :len(ids) - 1] = torch.tensor(kept[1:])
    return inputs, targets


def reply(model: GPTModel, tokenizer: BPETokenizer, messages: Sequence[dict], max_new_tokens: int = 32) -> str:
    """The assistant's next turn (greedy), generated until its end-of-turn token."""
    ids, _ = encode_chat(messages, tokenizer)
    prompt = torch.tensor([ids + [tokenizer.special_tokens[ROLES["assistant"]]]], device=model.tok_emb.weight.device)
    if prompt.shape[1] + max_new_tokens > model.cfg.context_length:
        raise ValueError(f"the conversation has {prompt.shape[1]} tokens; with max_new_tokens={max_new_tokens} it "
                         f"does not fit the model's context of {model.cfg.context_length}: drop its oldest turns")
    end = tokenizer.special_tokens[END_OF_TURN]
    out = generate(model, prompt, max_new_tokens, eos_id=end)[0, prompt.shape[1]:].tolist()
    return tokenizer.decode(out[:out.index(end)] if end in out else out).strip()
