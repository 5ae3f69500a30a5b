"""Turning logits into text: greedy decoding, temperature, top-k, top-p, and a key-value cache (chapters 4, 5)."""

import math
import operator

import torch
from torch import Tensor

from llmcourse.model import GPTModel


def _integer(value, name: str, least: int, requirement: str) -> int:
    """`value` as a Python int if it is an integer >= least (numpy and 0-d tensor integers too), else a ValueError."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < least:
        raise ValueError(f"{name} must be {requirement}, got {value!r}")
    return number


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Set to -inf every logit outside the top k, and outside the smallest set whose probability reaches top_p.

    Logits tied with the k-th largest are kept too. The most likely token always survives.
    """
    if top_k is not None:
        top_k = _integer(top_k, "top_k", 1, "a positive integer (1 keeps only the most likely token)")
        kth_largest = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] (1 keeps every token), got {top_p!r}")
        if top_p < 1.0:
            sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)
            sorted_probs = torch.softmax(sorted_logits, dim=-1)
            # Drop a token when the tokens ranked above it already reach top_p (the first is always kept).
            drop_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= top_p
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
            logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token(logits: Tensor, temperature: float = 0.0, top_k: int | None = None,
               top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Pick one token id per row from logits (batch, vocab): argmax when temperature is 0, else sample.

    Sampling draws from softmax(logits / temperature) after top-k and top-p filtering. A logit of -inf
    marks a token that cannot be picked; NaN, +inf, or a row with no finite logit raise a ValueError.
    """
    if torch.isnan(logits).any() or (logits == float("inf")).any():
        raise ValueError("logits hold NaN or +inf: only finite numbers, or -inf for a token ruled out, can be "
                         "turned into a choice (are the model's weights or inputs broken?)")
    if not torch.isfinite(logits).any(dim=-1).all():
        raise ValueError("a row of logits is all -inf: at least one token must remain possible")
    return _pick(logits, temperature, top_k, top_p, generator)


def _pick(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None,
          generator: torch.Generator | None) -> Tensor:
    """`next_token` without the check of the logits, for `generate`, which checks them itself."""
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a finite number >= 0 (0 means greedy), got {temperature!r}")
    if temperature == 0:
        filter_logits(logits, top_k, top_p)  # cannot change the argmax, but rejects bad arguments
        return logits.argmax(dim=-1, keepdim=True)
    probs = torch.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


@torch.no_grad()
def generate(model: GPTModel, token_ids: Tensor, max_new_tokens: int, temperature: float = 0.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
             use_cache: bool = True, eos_id: int | None = None) -> Tensor:
    """Extend token_ids (batch, tokens) by up to max_new_tokens tokens.

    temperature 0 is greedy decoding; above 0 it samples, reproducibly when `seed` is given.
    The context is cropped to the model's context_length. With `use_cache` each step feeds
    only the newest token and reuses the keys and values of the earlier ones; the tokens are
    exactly those of the uncached loop. Stops early when every row has produced `eos_id`;
    rows that finished earlier are padded with `eos_id`.
    """
    if not isinstance(token_ids, Tensor) or token_ids.is_floating_point():
        raise ValueError(f"token_ids must be an integer tensor of shape (batch, tokens), got {token_ids!r:.80}")
    if token_ids.dim() != 2 or token_ids.shape[1] == 0:
        raise ValueError(f"token_ids must be (batch, tokens) with at least one token, got {tuple(token_ids.shape)}")
    max_new_tokens = _integer(max_new_tokens, "max_new_tokens", 0, "an integer >= 0")
    generator = None
    if seed is not None:
        generator = torch.Generator(device=token_ids.device).manual_seed(seed)
    context_length = model.cfg.context_length
    cache, fed = None, 0  # fed: how many tokens of token_ids the cache holds
    finished = torch.zeros(token_ids.shape[0], 1, dtype=torch.bool, device=token_ids.device)
    was_training = model.training
    model.eval()
    try:
        for step in range(max_new_tokens):
            if use_cache and token_ids.shape[1] <= context_length:
                if cache is None:
                    cache, fed = model.new_kv_cache(), 0
                logits = model(token_ids[:, fed:], kv_cache=cache)[:, -1]
                fed = token_ids.shape[1]
            else:
                # Past the context the window slides, every position shifts, and cached keys go stale.
                logits = model(token_ids[:, -context_length:])[:, -1]
            if not torch.isfinite(logits).all():
                raise FloatingPointError(f"the model produced NaN or infinite logits at generation step {step} "
                                         f"(token {token_ids.shape[1]}); its weights or inputs are broken")
            new = _pick(logits.float(), temperature, top_k, top_p, generator)
            if eos_id is not None:
                new = new.masked_fill(finished, eos_id)
                finished |= new == eos_id
            token_ids = torch.cat([token_ids, new], dim=1)
            if eos_id is not None and finished.all():
                break
    finally:
        model.train(was_training)
    return token_ids
