"""Tests of llmcourse.lora: zero-initialised LoRA changes nothing, merging is exact, only A and B train."""

import pytest
import torch
from torch import nn

from llmcourse.lora import LORA_TARGETS, LoRALinear, add_lora, freeze_except_lora, merge_lora
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.runtime import set_seed


def tiny_model(seed: int = 0) -> GPTModel:
    set_seed(seed)
    return GPTModel(GPTConfig(vocab_size=64, context_length=16, d_model=32, n_heads=4, n_layers=2, dropout=0.0))


def test_fresh_lora_layer_computes_the_original_output():
    linear = nn.Linear(8, 5)
    lora = LoRALinear(linear, rank=2, alpha=4)
    x = torch.randn(3, 8)
    assert torch.equal(lora(x), linear(x))
    assert lora.A.shape == (2, 8) and lora.B.shape == (5, 2) and lora.scaling == 2.0
    assert not linear.weight.requires_grad and lora.A.requires_grad and lora.B.requires_grad
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        LoRALinear(nn.Linear(8, 5), rank=0, alpha=1)


def test_wrapped_model_gives_the_original_logits_and_trains_only_a_and_b():
    model = tiny_model()
    ids = torch.randint(0, 64, (2, 10))
    before = model(ids)
    wrapped = add_lora(model, rank=4, alpha=8)
    assert len(wrapped) == 2 * len(LORA_TARGETS) and wrapped[0] == "blocks.0.attn.W_query"
    assert torch.equal(model(ids), before)
    trainable = freeze_except_lora(model)
    # per block: 4 attention projections 32 -> 32, fc_in 32 -> 128, fc_out 128 -> 32; r (in + out) each
    assert trainable == 2 * 4 * (4 * (32 + 32) + 2 * (32 + 128))
    assert freeze_except_lora(model, also=("out_head.",)) == trainable  # tied head: the embedding, still frozen
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n in dict(model.named_parameters()) if n.endswith((".A", ".B"))}


def test_merged_weights_give_the_unmerged_outputs():
    model = tiny_model()
    add_lora(model, rank=4, alpha=16, seed=1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".B"):
                param.normal_(0, 0.05)  # as if trained
    ids = torch.randint(0, 64, (3, 12))
    unmerged = model(ids)
    assert merge_lora(model) == 2 * len(LORA_TARGETS)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    torch.testing.assert_close(model(ids), unmerged, rtol=0, atol=1e-6)


def test_add_lora_refuses_a_model_without_targets():
    with pytest.raises(ValueError, match="nothing to wrap"):
        add_lora(nn.Sequential(nn.Linear(4, 4)), rank=2, alpha=2)


@pytest.mark.parametrize("rank, alpha, message", [(2.5, 4, "rank must be a positive integer"),
                                                  (0, 4, "rank must be a positive integer"),
                                                  (True, 4, "rank must be a positive integer"),
                                                  (2, float("nan"), "alpha must be a positive finite number"),
                                                  (2, -1, "alpha must be a positive finite number")])
def test_lora_linear_refuses_a_bad_rank_or_alpha(rank, alpha, message):
    with pytest.raises(ValueError, match=message):
        LoRALinear(nn.Linear(4, 4), rank, alpha)


def test_lora_linear_wraps_only_a_linear_layer():
    with pytest.raises(ValueError, match="wraps an nn.Linear, got Conv1d"):
        LoRALinear(nn.Conv1d(4, 4, 1), 2, 4)
