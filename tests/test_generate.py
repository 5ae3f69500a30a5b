"""Decoding: KV-cached generation equals uncached, filters keep the right tokens, bad arguments fail clearly."""

import math

import pytest
import torch

from llmcourse.generate import filter_logits, generate, next_token
from llmcourse.model import GPTConfig, GPTModel

@pytest.fixture(scope="module")
def model() -> GPTModel:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=97, context_length=24, d_model=32, n_heads=4, n_layers=2, dropout=0.0,
                    tie_weights=False)  # untied, a random model does not just repeat its last token
    model = GPTModel(cfg).eval()
    with torch.no_grad():  # a larger output scale makes the next-token distributions less flat
        model.out_head.weight.mul_(5.0)
    return model


def prompt(batch: int = 2, tokens: int = 5) -> torch.Tensor:
    return torch.arange(batch * tokens).reshape(batch, tokens) % 97


@pytest.mark.parametrize("sampling", [dict(temperature=0.0), dict(temperature=1.0, seed=3),
                                      dict(temperature=0.8, top_k=10, seed=4), dict(temperature=1.2, top_p=0.9, seed=5)])
def test_cached_generation_matches_uncached(model, sampling):
    cached = generate(model, prompt(), max_new_tokens=15, use_cache=True, **sampling)
    uncached = generate(model, prompt(), max_new_tokens=15, use_cache=False, **sampling)
    assert cached.shape == (2, 20)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("sampling", [dict(temperature=0.0), dict(temperature=1.0, seed=7)])
def test_cached_generation_matches_uncached_past_the_context_length(model, sampling):
    # 5 prompt tokens + 40 new ones run 21 tokens past context_length=24.
    cached = generate(model, prompt(), max_new_tokens=40, use_cache=True, **sampling)
    uncached = generate(model, prompt(), max_new_tokens=40, use_cache=False, **sampling)
    assert cached.shape == (2, 45)
    assert torch.equal(cached, uncached)


def test_cached_logits_match_a_full_forward_pass(model):
    tokens = prompt(batch=1, tokens=12)
    full = model(tokens)
    cache = model.new_kv_cache()
    step_by_step = torch.cat([model(tokens[:, i:i + 1], kv_cache=cache) for i in range(12)], dim=1)
    torch.testing.assert_close(step_by_step, full, atol=1e-5, rtol=1e-5)


def test_greedy_picks_the_argmax_at_every_step(model):
    out = generate(model, prompt(batch=1), max_new_tokens=6)
    for position in range(5, 11):
        assert out[0, position] == model(out[:, :position])[0, -1].argmax()


def test_seeded_sampling_is_reproducible(model):
    first = generate(model, prompt(), max_new_tokens=20, temperature=1.0, seed=11)
    again = generate(model, prompt(), max_new_tokens=20, temperature=1.0, seed=11)
    other = generate(model, prompt(), max_new_tokens=20, temperature=1.0, seed=12)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_seeded_sampling_ignores_the_global_random_state(model):
    torch.manual_seed(1)
    first = generate(model, prompt(), max_new_tokens=10, temperature=1.0, seed=11)
    torch.manual_seed(2)
    assert torch.equal(first, generate(model, prompt(), max_new_tokens=10, temperature=1.0, seed=11))


def test_sampling_frequencies_follow_the_tempered_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    temperature = 0.7
    generator = torch.Generator().manual_seed(0)
    draws = torch.cat([next_token(logits, temperature, generator=generator) for _ in range(20_000)])
    frequencies = torch.bincount(draws.flatten(), minlength=4) / draws.numel()
    torch.testing.assert_close(frequencies, torch.softmax(logits[0] / temperature, dim=-1), atol=0.01, rtol=0)


def test_eos_stops_generation(model):
    single = prompt(batch=1)
    free = generate(model, single, max_new_tokens=10)
    eos_id = free[0, 8].item()  # the third generated token
    first_eos = (free[0, 5:] == eos_id).nonzero()[0].item() + 5
    stopped = generate(model, single, max_new_tokens=10, eos_id=eos_id)
    assert stopped.shape[1] == first_eos + 1
    assert torch.equal(stopped, free[:, :first_eos + 1])


def test_finished_rows_are_padded_with_eos_until_every_row_stops(model):
    free = generate(model, prompt(), max_new_tokens=10)
    eos_id = free[0, 6].item()  # row 0 produces it as its second new token
    expected = free.clone()
    stops = []
    for row in range(2):
        hits = (free[row, 5:] == eos_id).nonzero()
        stop = hits[0].item() + 5 if len(hits) else free.shape[1] - 1
        if len(hits):
            expected[row, stop:] = eos_id
        stops.append(stop)
    out = generate(model, prompt(), max_new_tokens=10, eos_id=eos_id)
    assert out.shape[1] == max(stops) + 1
    assert torch.equal(out, expected[:, :out.shape[1]])


def test_generate_restores_training_mode(model):
    model.train()
    generate(model, prompt(), max_new_tokens=2)
    assert model.training
    model.eval()


def test_top_k_keeps_exactly_k_tokens():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    for k in (1, 5, 50):
        kept = torch.isfinite(filter_logits(logits, top_k=k))
        assert kept.sum(dim=-1).tolist() == [k] * 4
        assert torch.equal(kept, torch.zeros_like(kept).scatter(-1, logits.topk(k).indices, True))


def test_top_k_larger_than_the_vocabulary_keeps_everything():
    logits = torch.randn(1, 10)
    assert torch.equal(filter_logits(logits, top_k=1000), logits)


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([0.15, 0.05, 0.5, 0.1, 0.2])  # sorted: 0.5, 0.2, 0.15, 0.1, 0.05
    logits = probs.log()[None]
    expected_kept = {0.45: [2], 0.6: [2, 4], 0.8: [0, 2, 4], 0.9: [0, 2, 3, 4], 0.99: [0, 1, 2, 3, 4]}
    for top_p, kept in expected_kept.items():
        filtered = filter_logits(logits, top_p=top_p)
        assert torch.isfinite(filtered[0]).nonzero().flatten().tolist() == kept, top_p
        assert torch.equal(filtered[0, kept], logits[0, kept])


def test_top_p_of_one_keeps_every_token():
    logits = torch.tensor([[30.0, 0.0, -30.0]])  # the last two round to a cumulative 1.0 before them
    assert torch.equal(filter_logits(logits, top_p=1.0), logits)


def test_filters_match_transformers_warpers():
    logits_process = pytest.importorskip("transformers.generation.logits_process")
    logits = torch.randn(8, 200, generator=torch.Generator().manual_seed(1)) * 3
    for k in (1, 7, 64):
        expected = logits_process.TopKLogitsWarper(top_k=k)(None, logits.clone())
        assert torch.equal(filter_logits(logits, top_k=k), expected)
    for p in (0.1, 0.5, 0.9, 0.97):
        expected = logits_process.TopPLogitsWarper(top_p=p)(None, logits.clone())
        assert torch.equal(torch.isfinite(filter_logits(logits, top_p=p)), torch.isfinite(expected))


@pytest.mark.parametrize("top_k", [0, -3, 2.5, True, "5"])
def test_top_k_rejects_invalid_values(top_k):
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        filter_logits(torch.randn(1, 10), top_k=top_k)


@pytest.mark.parametrize("top_p", [0.0, -0.1, 1.5, math.nan])
def test_top_p_rejects_invalid_values(top_p):
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        filter_logits(torch.randn(1, 10), top_p=top_p)


@pytest.mark.parametrize("temperature", [-0.5, math.nan, math.inf])
def test_temperature_rejects_invalid_values(temperature):
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        next_token(torch.randn(1, 10), temperature=temperature)


def test_greedy_still_rejects_invalid_filters(model):
    with pytest.raises(ValueError, match="top_k"):
        generate(model, prompt(), max_new_tokens=3, temperature=0.0, top_k=0)


def test_generate_rejects_bad_inputs(model):
    with pytest.raises(ValueError, match=r"token_ids must be \(batch, tokens\)"):
        generate(model, torch.tensor([1, 2, 3]), max_new_tokens=3)
    with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 0"):
        generate(model, prompt(), max_new_tokens=-1)


def test_nan_logits_stop_generation_with_the_step_named(model):
    broken = GPTModel(model.cfg).eval()
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        broken.out_head.weight[5, 0] = float("nan")
    for temperature in (0.0, 1.0):
        with pytest.raises(FloatingPointError, match="NaN or infinite logits at generation step 0 "):
            generate(broken, prompt(), max_new_tokens=3, temperature=temperature, seed=0)


def test_numpy_and_tensor_integers_work_as_top_k_and_max_new_tokens(model):
    import numpy as np
    expected = generate(model, prompt(), max_new_tokens=4, temperature=1.0, top_k=5, seed=1)
    assert torch.equal(generate(model, prompt(), max_new_tokens=np.int64(4), temperature=1.0,
                                top_k=np.int32(5), seed=1), expected)
    assert torch.equal(generate(model, prompt(), max_new_tokens=4, temperature=1.0, top_k=torch.tensor(5),
                                seed=1), expected)
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        generate(model, prompt(), max_new_tokens=4, temperature=1.0, top_k=5.0)


def test_float_prompt_is_refused(model):
    with pytest.raises(ValueError, match="token_ids must be an integer tensor"):
        generate(model, prompt().float(), max_new_tokens=2)
