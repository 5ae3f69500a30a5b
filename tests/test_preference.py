"""Tests of llmcourse.preference: the DPO loss, the KL to the reference, group sampling, group-relative
advantages and the policy-gradient loss."""

import copy
import math

import pytest
import torch

from llmcourse.instruct import collate_instructions, encode_record
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.preference import (dpo_loss, group_advantages, mean_response_kl, policy_gradient_loss, sample_group,
                                  sequence_logprobs, token_kl, token_logprobs)
from llmcourse.runtime import set_seed

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRS = [([5, 6, 7], [8, 9, 1]), ([5, 6], [3, 1])]  # (prompt, response) ids; 1 ends the response


def tiny_model() -> GPTModel:
    set_seed(0)
    return GPTModel(GPTConfig(vocab_size=16, context_length=16, d_model=16, n_heads=2, n_layers=1,
                              dropout=0.0)).eval()


def test_sequence_logprobs_sum_the_response_tokens_only():
    model = tiny_model()
    inputs, targets = collate_instructions(PAIRS, pad_id=1)
    logprobs = torch.log_softmax(model(inputs), -1)
    by_hand = [logprobs[0, 2, 8] + logprobs[0, 3, 9] + logprobs[0, 4, 1], logprobs[1, 1, 3] + logprobs[1, 2, 1]]
    assert torch.allclose(sequence_logprobs(model, inputs, targets), torch.stack(by_hand), atol=1e-5)
    assert (token_logprobs(model, inputs, targets)[targets == -100] == 0).all()


def test_dpo_loss_is_log_2_at_the_reference():
    chosen, rejected = torch.tensor([-3.0, -7.5]), torch.tensor([-2.0, -9.0])
    loss, margin = dpo_loss(chosen, rejected, chosen.clone(), rejected.clone(), beta=0.1)
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6)
    assert (margin == 0).all()


def test_dpo_gradient_raises_the_chosen_and_lowers_the_rejected():
    chosen, rejected = torch.tensor([-4.0], requires_grad=True), torch.tensor([-3.0], requires_grad=True)
    loss, margin = dpo_loss(chosen, rejected, torch.tensor([-5.0]), torch.tensor([-3.5]), beta=0.5)
    # log-ratios: chosen +1, rejected +0.5, so the margin is 0.5 * (1 - 0.5) = 0.25
    assert math.isclose(margin.item(), 0.25, rel_tol=1e-6)
    assert math.isclose(loss.item(), -math.log(1 / (1 + math.exp(-0.25))), rel_tol=1e-6)
    loss.backward()
    assert chosen.grad.item() < 0 < rejected.grad.item()  # descent raises the chosen, lowers the rejected
    # d loss / d chosen = -beta * sigmoid(-margin)
    assert math.isclose(chosen.grad.item(), -0.5 / (1 + math.exp(0.25)), rel_tol=1e-5)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(chosen, rejected, chosen, rejected, beta=0.0)


def test_token_kl_is_zero_at_the_reference_and_positive_away_from_it():
    model = tiny_model()
    inputs, targets = collate_instructions(PAIRS, pad_id=1)
    assert len(token_kl(model, model, inputs, targets)) == 5  # one value per response token
    assert token_kl(model, model, inputs, targets).abs().max() < 1e-6
    moved = copy.deepcopy(model)
    with torch.no_grad():
        moved.out_head.weight.add_(0.5 * torch.randn_like(moved.out_head.weight))
    assert (token_kl(moved, model, inputs, targets) > 0).all()


def test_mean_response_kl_averages_the_token_kl_over_the_answers(small_bpe):
    model = GPTModel(GPTConfig(vocab_size=small_bpe.vocab_size, context_length=128, d_model=16, n_heads=2,
                               n_layers=1, dropout=0.0)).eval()
    records = [{"instruction": "Repeat the line.", "input": "To be, or not to be", "output": "To be, or not to be"},
               {"instruction": "How many words?", "input": "Now is the winter", "output": "4"}]
    assert mean_response_kl(model, model, small_bpe, records) == 0
    moved = copy.deepcopy(model)
    with torch.no_grad():
        moved.out_head.weight.add_(0.5 * torch.randn_like(moved.out_head.weight))
    rows = [encode_record(r, small_bpe) for r in records]
    by_hand = token_kl(moved, model, *collate_instructions(rows, small_bpe.eot_id)).mean().item()
    assert math.isclose(mean_response_kl(moved, model, small_bpe, records, batch_size=1), by_hand, rel_tol=1e-5)
    with pytest.raises(ValueError, match="no records"):
        mean_response_kl(model, model, small_bpe, [])


def test_group_advantages_sum_to_zero_per_group():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    advantages = group_advantages(rewards)
    assert torch.allclose(advantages.sum(1), torch.zeros(3), atol=1e-5)
    assert (advantages[0, [0, 3]] > 0).all() and (advantages[0, [1, 2]] < 0).all()
    assert (advantages[2] == 0).all()  # every sample alike: nothing to learn from this group
    with pytest.raises(ValueError, match="at least 2 samples"):
        group_advantages(torch.tensor([[1.0], [0.0]]))


def test_a_masked_token_never_receives_gradient():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.2, -2.2]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss = policy_gradient_loss(logprobs, torch.tensor([1.0, -1.0]), mask, logprobs.detach() - 0.1, kl_coef=0.2)
    loss.backward()
    assert (logprobs.grad[mask == 0] == 0).all()
    assert (logprobs.grad[0, :2] < 0).all() and logprobs.grad[1, 0] > 0  # a good sample is raised, a bad one lowered


def test_the_kl_penalty_is_never_negative_and_zero_at_the_reference():
    logprobs = torch.tensor([[-1.0, -2.0]])
    mask = torch.ones(1, 2)
    no_advantage = torch.zeros(1)
    assert policy_gradient_loss(logprobs, no_advantage, mask, logprobs, kl_coef=1.0) == 0
    for shift in (-1.0, 0.5, 2.0):
        assert policy_gradient_loss(logprobs, no_advantage, mask, logprobs + shift, kl_coef=1.0) > 0
    with pytest.raises(ValueError, match="kl_coef"):
        policy_gradient_loss(logprobs, no_advantage, mask, logprobs, kl_coef=-1.0)


def test_sample_group_cuts_each_sample_after_its_end_token():
    model = tiny_model()
    group = sample_group(model, [5, 6, 7], samples=6, eot_id=1, max_new_tokens=8, seed=0)
    assert len(group) == 6
    for response in group:
        assert 1 <= len(response) <= 8
        assert 1 not in response[:-1]
    assert group == sample_group(model, [5, 6, 7], samples=6, eot_id=1, max_new_tokens=8, seed=0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        sample_group(model, [5], samples=1, eot_id=1, max_new_tokens=4)
    with pytest.raises(ValueError, match="does not fit"):
        sample_group(model, list(range(12)), samples=2, eot_id=1, max_new_tokens=8)
