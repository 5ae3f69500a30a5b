"""Multi-head attention against PyTorch's own attention, plus causality, the KV cache and errors."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmcourse.attention import KVCache, MultiHeadAttention

D_MODEL, N_HEADS, CONTEXT = 16, 4, 12


def make_layer(causal: bool = True, use_fused: bool = True, seed: int = 0, **kwargs) -> MultiHeadAttention:
    torch.manual_seed(seed)
    layer = MultiHeadAttention(D_MODEL, D_MODEL, N_HEADS, CONTEXT, causal=causal, qkv_bias=True, **kwargs)
    layer.use_fused = use_fused
    return layer.eval()


def random_input(batch: int = 3, tokens: int = 9, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, tokens, D_MODEL, generator=torch.Generator().manual_seed(seed))


def right_padding(lengths: list[int], tokens: int) -> torch.Tensor:
    """(batch, tokens) booleans, True for the first `length` tokens of each row."""
    return torch.arange(tokens)[None, :] < torch.tensor(lengths)[:, None]


def reference_sdpa(layer: MultiHeadAttention, x: torch.Tensor, causal: bool,
                   padding_mask: torch.Tensor | None) -> torch.Tensor:
    """The same layer computed with F.scaled_dot_product_attention (its bool mask: True = may attend)."""
    batch, tokens, _ = x.shape
    q, k, v = (layer.split_heads(proj(x)) for proj in (layer.W_query, layer.W_key, layer.W_value))
    allowed = torch.ones(tokens, tokens, dtype=torch.bool)
    if causal:
        allowed = allowed.tril()
    if padding_mask is not None:
        allowed = allowed & padding_mask[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    return layer.out_proj(out.transpose(1, 2).reshape(batch, tokens, D_MODEL))


def torch_mha_like(layer: MultiHeadAttention) -> nn.MultiheadAttention:
    """An nn.MultiheadAttention holding the same weights as `layer`."""
    mha = nn.MultiheadAttention(D_MODEL, N_HEADS, bias=True, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([layer.W_query.weight, layer.W_key.weight, layer.W_value.weight]))
        mha.in_proj_bias.copy_(torch.cat([layer.W_query.bias, layer.W_key.bias, layer.W_value.bias]))
        mha.out_proj.weight.copy_(layer.out_proj.weight)
        mha.out_proj.bias.copy_(layer.out_proj.bias)
    return mha.eval()


@pytest.mark.parametrize("use_fused", [True, False])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_matches_scaled_dot_product_attention(use_fused, causal, padded):
    layer = make_layer(causal, use_fused)
    x = random_input()
    padding_mask = right_padding([9, 6, 2], 9) if padded else None
    with torch.no_grad():
        ours = layer(x, padding_mask=padding_mask)
        reference = reference_sdpa(layer, x, causal, padding_mask)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("use_fused", [True, False])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_matches_torch_multihead_attention(use_fused, causal, padded):
    layer = make_layer(causal, use_fused)
    mha = torch_mha_like(layer)
    x = random_input()
    lengths = [9, 6, 2] if padded else [9, 9, 9]
    padding_mask = right_padding(lengths, 9)
    # nn.MultiheadAttention's bool masks say True where attention is NOT allowed, the opposite of ours.
    future = torch.triu(torch.ones(9, 9, dtype=torch.bool), diagonal=1) if causal else None
    with torch.no_grad():
        ours = layer(x, padding_mask=padding_mask if padded else None)
        theirs, _ = mha(x, x, x, attn_mask=future, key_padding_mask=~padding_mask if padded else None,
                        need_weights=False)
    # Compare real tokens only: PyTorch's fast path may return zeros at padded query positions.
    for row, length in enumerate(lengths):
        torch.testing.assert_close(ours[row, :length], theirs[row, :length], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_returned_weights_match_torch_multihead_attention(causal):
    layer = make_layer(causal)
    mha = torch_mha_like(layer)
    x = random_input()
    padding_mask = right_padding([9, 6, 2], 9)
    future = torch.triu(torch.ones(9, 9, dtype=torch.bool), diagonal=1) if causal else None
    with torch.no_grad():
        _, ours = layer(x, padding_mask=padding_mask, return_weights=True)
        _, theirs = mha(x, x, x, attn_mask=future, key_padding_mask=~padding_mask,
                        need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ours.sum(dim=-1), torch.ones(3, N_HEADS, 9))


def test_cross_attention_matches_torch_multihead_attention():
    layer = make_layer(causal=True)
    mha = torch_mha_like(layer)
    x, context = random_input(2, 5, seed=1), random_input(2, 7, seed=2)
    padding_mask = right_padding([7, 4], 7)
    with torch.no_grad():
        ours = layer(x, context=context, padding_mask=padding_mask)
        theirs, _ = mha(x, context, context, key_padding_mask=~padding_mask, need_weights=False)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("use_fused", [True, False])
def test_changing_future_tokens_leaves_past_outputs_unchanged(use_fused):
    layer = make_layer(causal=True, use_fused=use_fused)
    x = random_input(2, CONTEXT)
    noise = torch.Generator().manual_seed(7)
    with torch.no_grad():
        before = layer(x)
        for t in range(CONTEXT - 1):
            changed = x.clone()
            changed[:, t + 1:] = torch.randn(changed[:, t + 1:].shape, generator=noise)
            after = layer(changed)
            torch.testing.assert_close(after[:, :t + 1], before[:, :t + 1], atol=1e-6, rtol=1e-6)
            assert not torch.allclose(after[:, t + 1:], before[:, t + 1:])


def test_bidirectional_attention_lets_future_tokens_change_past_outputs():
    layer = make_layer(causal=False)
    x = random_input(1, 6)
    changed = x.clone()
    changed[:, -1] += 1.0
    with torch.no_grad():
        assert not torch.allclose(layer(changed)[:, 0], layer(x)[:, 0])


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padding", ["none", "right", "left"])
def test_fused_path_equals_explicit_path(causal, padding):
    layer = make_layer(causal)
    x = random_input()
    masks = {"none": None, "right": right_padding([9, 6, 2], 9),
             "left": right_padding([9, 6, 2], 9).flip(dims=[1])}
    with torch.no_grad():
        fused = layer(x, padding_mask=masks[padding])
        layer.use_fused = False
        explicit = layer(x, padding_mask=masks[padding])
    assert torch.isfinite(explicit).all()
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)


def test_query_that_sees_no_key_gets_zero_weights():
    layer = make_layer(causal=True)
    left_padded = torch.tensor([[False, False, True, True]])
    with torch.no_grad():
        out, weights = layer(random_input(1, 4), padding_mask=left_padded, return_weights=True)
    assert (weights[0, :, :2] == 0).all()
    torch.testing.assert_close(out[0, :2], layer.out_proj.bias.expand(2, D_MODEL))


def test_cross_attention_shapes_and_no_causal_mask():
    layer = MultiHeadAttention(D_MODEL, 24, n_heads=3, context_length=CONTEXT, causal=True)
    x, context = random_input(2, 5), random_input(2, 7)
    out, weights = layer(x, context=context, return_weights=True)
    assert out.shape == (2, 5, 24)
    assert weights.shape == (2, 3, 5, 7)
    # Causal masking is for self-attention; every query sees every context token.
    assert (weights > 0).all()


@pytest.mark.parametrize("use_fused", [True, False])
@pytest.mark.parametrize("chunks", [[1] * 10, [4, 1, 3, 2]])
def test_kv_cached_steps_equal_full_causal_pass(use_fused, chunks):
    layer = make_layer(causal=True, use_fused=use_fused)
    x = random_input(2, sum(chunks))
    cache = KVCache()
    with torch.no_grad():
        full = layer(x)
        steps, start = [], 0
        for size in chunks:
            steps.append(layer(x[:, start:start + size], kv_cache=cache))
            start += size
    assert len(cache) == sum(chunks)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_dropout_acts_in_training_only():
    layer = make_layer(causal=True, dropout=0.5)
    x = random_input()
    with torch.no_grad():
        assert torch.equal(layer(x), layer(x))
        layer.train()
        torch.manual_seed(0)
        first = layer(x)
        assert not torch.allclose(first, layer(x))


def test_state_dict_holds_only_the_projections():
    layer = make_layer()
    assert sorted(layer.state_dict()) == sorted(
        f"{name}.{part}" for name in ("W_query", "W_key", "W_value", "out_proj") for part in ("weight", "bias"))


def test_a_long_context_costs_no_memory_until_it_is_used():
    context = 20_000  # a context_length x context_length mask would take 400 MB per layer
    layer = MultiHeadAttention(D_MODEL, D_MODEL, N_HEADS, context, rotary=True)
    assert sum(buffer.numel() for buffer in layer.buffers()) <= 2 * context * D_MODEL // N_HEADS  # rotary angles
    x = random_input(1, 5)
    with torch.no_grad():
        assert layer(x).shape == (1, 5, D_MODEL)


@pytest.mark.parametrize("past, n_queries", [(0, 1), (0, 6), (7, 3), (9, 1), (0, CONTEXT)])
def test_causal_mask_is_the_slice_of_the_full_upper_triangle(past, n_queries):
    full = torch.triu(torch.ones(CONTEXT, CONTEXT, dtype=torch.bool), diagonal=1)
    mask = make_layer().attention_mask(1, n_queries, past + n_queries, past, None, is_self=True)
    assert torch.equal(mask, full[past:past + n_queries, :past + n_queries])


def test_d_out_not_divisible_by_heads_raises():
    with pytest.raises(ValueError, match=r"d_out=10 is not divisible by n_heads=4"):
        MultiHeadAttention(8, 10, n_heads=4, context_length=CONTEXT)


def test_sequence_longer_than_context_raises():
    layer = make_layer()
    with pytest.raises(ValueError, match=rf"sequence of 13 tokens exceeds context_length={CONTEXT}"):
        layer(random_input(1, 13))
    cache = KVCache()
    layer(random_input(1, 10), kv_cache=cache)
    with pytest.raises(ValueError, match=rf"sequence of 13 tokens exceeds context_length={CONTEXT}"):
        layer(random_input(1, 3), kv_cache=cache)


def test_padding_mask_of_wrong_shape_raises():
    layer = make_layer()
    with pytest.raises(ValueError, match=r"padding_mask has shape \(3, 8\), expected \(batch, key_tokens\) = \(3, 9\)"):
        layer(random_input(), padding_mask=torch.ones(3, 8, dtype=torch.bool))


def test_input_of_wrong_shape_raises():
    layer = make_layer()
    with pytest.raises(ValueError, match=r"x has shape \(9, 16\), expected \(batch, tokens, d_in=16\)"):
        layer(torch.randn(9, D_MODEL))
    with pytest.raises(ValueError, match=r"context has shape \(3, 9, 8\), expected \(batch, tokens, d_in=16\)"):
        layer(random_input(), context=torch.randn(3, 9, 8))
    with pytest.raises(ValueError, match=r"context has batch size 2 but x has 3"):
        layer(random_input(), context=random_input(2, 4))


def test_kv_cache_with_cross_attention_raises():
    layer = make_layer()
    with pytest.raises(ValueError, match="kv_cache is for self-attention"):
        layer(random_input(), context=random_input(3, 4), kv_cache=KVCache())
