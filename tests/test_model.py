"""GPTModel: GPT-2's parameter count, deterministic greedy generation, clear errors, both norm placements,
and the modern options (rotary positions, RMSNorm, SwiGLU, ReLU², no biases, QK-norm)."""

import pytest
import torch

from llmcourse.generate import generate
from llmcourse.model import GPTConfig, GPTModel, LayerNorm, count_parameters

TINY = dict(vocab_size=50, context_length=16, d_model=32, n_heads=4, n_layers=2, dropout=0.0)


def tiny_model(seed: int = 0, **overrides) -> GPTModel:
    torch.manual_seed(seed)
    return GPTModel(GPTConfig(**{**TINY, **overrides})).eval()


def test_gpt2_small_has_124_439_808_parameters_tied_and_163_037_184_untied():
    with torch.device("meta"):
        tied = GPTModel(GPTConfig.gpt2("small"))
        untied = GPTModel(GPTConfig.gpt2("small", tie_weights=False))
    assert count_parameters(tied) == 124_439_808
    assert count_parameters(untied) == 163_037_184


def test_gpt2_medium_large_xl_parameter_counts():
    counts = {}
    for size in ("medium", "large", "xl"):
        with torch.device("meta"):
            counts[size] = count_parameters(GPTModel(GPTConfig.gpt2(size)))
    assert counts == {"medium": 354_823_168, "large": 774_030_080, "xl": 1_557_611_200}


def test_logits_have_shape_batch_tokens_vocab():
    logits = tiny_model()(torch.zeros(3, 7, dtype=torch.long))
    assert logits.shape == (3, 7, 50)


def test_tied_weights_share_storage_and_untied_do_not():
    tied, untied = tiny_model(), tiny_model(tie_weights=False)
    assert tied.out_head.weight is tied.tok_emb.weight
    assert tied.out_head.weight.data_ptr() == tied.tok_emb.weight.data_ptr()
    assert untied.out_head.weight.data_ptr() != untied.tok_emb.weight.data_ptr()


def test_greedy_generation_is_deterministic_and_matches_argmax_loop():
    model = tiny_model()
    prompt = torch.tensor([[1, 2, 3]])
    first = generate(model, prompt, max_new_tokens=10, temperature=0.0)
    assert torch.equal(first, generate(model, prompt, max_new_tokens=10, temperature=0.0))
    ids = prompt
    with torch.no_grad():
        for _ in range(10):
            ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(first, ids)


def test_generation_past_the_context_length_crops_the_context():
    model = tiny_model()
    prompt = torch.arange(14).unsqueeze(0)
    out = generate(model, prompt, max_new_tokens=8, temperature=0.0, use_cache=False)
    assert out.shape == (1, 22)
    with torch.no_grad():  # the last token was predicted from the last 16 tokens only
        expected = model(out[:, -17:-1])[:, -1].argmax(-1)
    assert out[0, -1] == expected


def test_input_longer_than_context_raises_clear_error():
    with pytest.raises(ValueError, match="sequence of 17 tokens exceeds context_length=16"):
        tiny_model()(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize("bad_id", [50, -1])
def test_out_of_vocabulary_id_raises_clear_error(bad_id):
    token_ids = torch.tensor([[1, 2, bad_id]])
    with pytest.raises(ValueError, match=rf"token id {bad_id} is outside the vocabulary \(0 .. 49\)"):
        tiny_model()(token_ids)


def test_token_ids_must_be_two_dimensional():
    with pytest.raises(ValueError, match=r"\(batch, tokens\)"):
        tiny_model()(torch.zeros(5, dtype=torch.long))


@pytest.mark.parametrize("pre_norm", [True, False])
def test_pre_norm_and_post_norm_both_run_and_learn(pre_norm):
    model = tiny_model(pre_norm=pre_norm).train()
    token_ids = torch.randint(0, 50, (4, 16), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        logits = model(token_ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), token_ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_pre_norm_and_post_norm_differ():
    token_ids = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():
        assert not torch.allclose(tiny_model(pre_norm=True)(token_ids), tiny_model(pre_norm=False)(token_ids))


def test_layer_norm_matches_torch():
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
    ours, reference = LayerNorm(8), torch.nn.LayerNorm(8)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5), ours.bias.uniform_(-0.5, 0.5)
        reference.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x), reference(x))


def test_kv_cached_forward_matches_full_forward():
    model = tiny_model()
    token_ids = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(0))
    cache = model.new_kv_cache()
    with torch.no_grad():
        full = model(token_ids)
        first = model(token_ids[:, :5], kv_cache=cache)
        rest = model(token_ids[:, 5:], kv_cache=cache)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("overrides, message", [
    (dict(n_layers=-1), "GPTConfig.n_layers must be an integer >= 0, got -1"),
    (dict(vocab_size=0), "GPTConfig.vocab_size must be an integer >= 1, got 0"),
    (dict(n_heads=0), "GPTConfig.n_heads must be an integer >= 1, got 0"),
    (dict(d_model=30), "GPTConfig.d_model=30 must be divisible by n_heads=4"),
    (dict(context_length=16.0), "GPTConfig.context_length must be an integer >= 1, got 16.0"),
    (dict(dropout=1.0), r"GPTConfig.dropout must be a probability in \[0, 1\), got 1.0"),
    (dict(pre_norm="yes"), "GPTConfig.pre_norm must be True or False, got 'yes'"),
    (dict(positions="alibi"), "GPTConfig.positions must be one of"),
    (dict(ff="geglu"), "GPTConfig.ff must be one of"),
    (dict(norm="batch"), "GPTConfig.norm must be one of"),
    (dict(d_ff=-1), "GPTConfig.d_ff must be an integer >= 0"),
    (dict(norm_eps=0.0), "GPTConfig.norm_eps must be a positive number"),
    (dict(positions="rotary", d_model=12, n_heads=4), "rotary positions need an even head size"),
])
def test_impossible_configs_are_refused_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**{**TINY, **overrides})


MODERN = dict(positions="rotary", norm="rms", ff="swiglu", bias=False, qk_norm=True, tie_weights=False)


@pytest.mark.parametrize("overrides", [dict(positions="rotary"), dict(positions="sinusoidal"), dict(norm="rms"),
                                       dict(ff="swiglu"), dict(ff="relu2"), dict(bias=False), dict(qk_norm=True),
                                       MODERN])
def test_every_option_is_causal_and_kv_cache_exact(overrides):
    model = tiny_model(**overrides)
    token_ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))
    changed = token_ids.clone()
    changed[:, 8:] = (token_ids[:, 8:] + 1) % 50
    cache = model.new_kv_cache()
    with torch.no_grad():
        full = model(token_ids)
        cached = torch.cat([model(token_ids[:, :5], kv_cache=cache), model(token_ids[:, 5:], kv_cache=cache)], 1)
        torch.testing.assert_close(model(changed)[:, :8], full[:, :8], atol=1e-5, rtol=0)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)


def test_rotary_scores_depend_only_on_distance():
    from llmcourse.attention import RotaryEmbedding
    rotary = RotaryEmbedding(head_dim=8, context_length=32)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    scores = [(rotary(q, offset=p + 3) * rotary(k, offset=p)).sum().item() for p in (0, 5, 20)]
    assert max(scores) - min(scores) < 1e-5
    assert abs((rotary(q, offset=7) * rotary(k, offset=0)).sum().item() - scores[0]) > 1e-3


def test_modern_model_has_no_biases_no_position_table_and_an_untied_head():
    model = tiny_model(**MODERN)
    names = [name for name, _ in model.named_parameters()]
    assert not any(name.endswith("bias") for name in names)
    assert not any("pos_emb" in name for name in names)
    assert model.out_head.weight is not model.tok_emb.weight
    assert model.blocks[0].ff.fc_in.out_features == 2 * (8 * 32 // 3)


def test_rms_norm_matches_torch():
    from llmcourse.model import RMSNorm
    ours, reference = RMSNorm(16), torch.nn.RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        reference.weight.copy_(ours.weight)
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(ours(x), reference(x))


def test_default_options_build_the_same_weights_as_gpt2s_layout():
    names = [name for name, _ in tiny_model().named_parameters()]
    assert "pos_emb.weight" in names and "blocks.0.attn.W_query.bias" in names and "blocks.0.norm1.bias" in names
    assert tiny_model().blocks[0].ff.fc_in.out_features == 4 * 32
