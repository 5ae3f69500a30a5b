"""Tuning for people (chapter 6): preference tuning with DPO, and learning from a checkable reward with
group-relative advantages (as in GRPO).

Both start from a tuned model and a frozen copy of it, the reference. DPO raises the log-probability of a
preferred answer relative to a rejected one, each measured against the reference; the policy gradient
samples several answers per prompt, scores them with a program and raises the better ones.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from llmcourse.generate import generate
from llmcourse.instruct import collate_instructions, encode_record
from llmcourse.model import GPTModel
from llmcourse.tokenizer import BPETokenizer


def token_logprobs(model: GPTModel, inputs: Tensor, targets: Tensor, ignore_index: int = -100) -> Tensor:
    """(batch, tokens) log-probabilities the model gives each target; 0 where the target is `ignore_index`."""
    logprobs = F.log_softmax(model(inputs).float(), dim=-1)
    kept = targets != ignore_index
    picked = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked * kept


def sequence_logprobs(model: GPTModel, inputs: Tensor, targets: Tensor, ignore_index: int = -100) -> Tensor:
    """Per row, the log-probability of the whole response: the sum over its kept targets."""
    return token_logprobs(model, inputs, targets, ignore_index).sum(-1)


def dpo_loss(chosen: Tensor, rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
             beta: float) -> tuple[Tensor, Tensor]:
    """The DPO loss (mean over pairs) and each pair's reward margin, from sequence log-probabilities.

    An answer's implicit reward is beta times its log-ratio, how much more likely the policy makes it than
    the reference does; the loss is -log sigmoid(reward of chosen - reward of rejected). At the reference
    every log-ratio is 0, so the loss is log 2.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not chosen.shape == rejected.shape == ref_chosen.shape == ref_rejected.shape:
        raise ValueError(f"the four log-probabilities must have one shape, got {chosen.shape}, {rejected.shape}, "
                         f"{ref_chosen.shape}, {ref_rejected.shape}")
    margin = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
    return -F.logsigmoid(margin).mean(), margin.detach()


def token_kl(model: GPTModel, reference: GPTModel, inputs: Tensor, targets: Tensor,
             ignore_index: int = -100) -> Tensor:
    """KL(model || reference) of the next-token distributions, summed over the vocabulary, at each kept
    target position: a flat tensor with one value per response token."""
    with torch.no_grad():
        logp = F.log_softmax(model(inputs).float(), dim=-1)
        logq = F.log_softmax(reference(inputs).float(), dim=-1)
    kl = (logp.exp() * (logp - logq)).sum(-1)
    return kl[targets != ignore_index]


def mean_response_kl(model: GPTModel, reference: GPTModel, tokenizer: BPETokenizer, records: Sequence[dict],
                     batch_size: int = 64) -> float:
    """`token_kl` averaged over every token of the records' right answers (each after its prompt)."""
    if not records:
        raise ValueError("no records to measure the KL on")
    rows = [encode_record(record, tokenizer) for record in records]
    return torch.cat([token_kl(model, reference, *collate_instructions(rows[i:i + batch_size], tokenizer.eot_id))
                      for i in range(0, len(rows), batch_size)]).mean().item()


def sample_group(model: GPTModel, prompt: Sequence[int], samples: int, eot_id: int, max_new_tokens: int,
                 temperature: float = 1.0, seed: int | None = None) -> list[list[int]]:
    """`samples` responses to one prompt, sampled at `temperature`, each cut after its end-of-text token
    (kept, so that the policy also learns when to stop)."""
    if samples < 2:
        raise ValueError(f"a group needs at least 2 samples to compare, got {samples}")
    if len(prompt) + max_new_tokens > model.cfg.context_length:
        raise ValueError(f"the prompt has {len(prompt)} tokens; with max_new_tokens={max_new_tokens} it does not "
                         f"fit in context_length={model.cfg.context_length}")
    ids = torch.tensor([list(prompt)] * samples, device=model.tok_emb.weight.device)
    out = generate(model, ids, max_new_tokens, temperature=temperature, seed=seed, eos_id=eot_id)
    responses = []
    for row in out[:, len(prompt):].tolist():
        responses.append(row[:row.index(eot_id) + 1] if eot_id in row else row)
    return responses


def group_advantages(rewards: Tensor, eps: float = 1e-6) -> Tensor:
    """Rewards (groups, samples per group) centred and scaled within each group: a sample's advantage is how
    much better it did than its siblings for the same prompt. Each group's advantages sum to zero; a group
    whose samples all scored the same has advantages of zero and teaches nothing."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (groups, samples) with at least 2 samples, got {tuple(rewards.shape)}")
    centred = rewards - rewards.mean(1, keepdim=True)
    return centred / (rewards.std(1, keepdim=True) + eps)


def policy_gradient_loss(logprobs: Tensor, advantages: Tensor, mask: Tensor, ref_logprobs: Tensor | None = None,
                         kl_coef: float = 0.0) -> Tensor:
    """REINFORCE with group-relative advantages, averaged over the response tokens (`mask`, 1 where kept).

    `logprobs` (samples, tokens) are the policy's log-probabilities of the sampled tokens and `advantages`
    (samples,) one per sample. With `ref_logprobs` and `kl_coef` > 0 it adds a penalty for drifting from the
    reference: the estimate exp(r) - r - 1 of the KL, r = ref - policy log-probability, which is never negative.
    """
    if kl_coef < 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
    per_token = -advantages.unsqueeze(1) * logprobs
    if ref_logprobs is not None and kl_coef > 0:
        log_ratio = ref_logprobs - logprobs
        per_token = per_token + kl_coef * (log_ratio.exp() - log_ratio - 1)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)
