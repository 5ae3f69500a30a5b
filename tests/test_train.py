"""Tests of llmcourse.train: losses, schedule, optimizer groups, the training loop, resuming, the course model."""

import math
import time

import pytest
import torch
import torch.nn.functional as F

from llmcourse.checkpoint import load_checkpoint, restore_optimizer, save_checkpoint
from llmcourse.data import create_dataloader, load_shakespeare
from llmcourse.model import GPTConfig, GPTModel, count_parameters
from llmcourse.runtime import set_seed, threads
from llmcourse.train import (bits_per_byte, configure_optimizer, cross_entropy, evaluate, evaluate_bits_per_byte, lr_at,
                             perplexity, train, weight_decay_groups)

CONTEXT = 16


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def byte_ids() -> tuple[list[int], list[int]]:
    """A little Shakespeare as byte ids (vocabulary 256): training text and held-out text."""
    return list(load_shakespeare("train")[:30_000].encode()), list(load_shakespeare("val")[:4_000].encode())


def tiny_model(seed: int = 0, dropout: float = 0.0, tie_weights: bool = True) -> GPTModel:
    set_seed(seed)
    return GPTModel(GPTConfig(vocab_size=256, context_length=CONTEXT, d_model=32, n_heads=4, n_layers=2,
                              dropout=dropout, tie_weights=tie_weights))


def run(model, ids, steps, start_step=0, optimizer=None, **kwargs):
    optimizer = optimizer or configure_optimizer(model, 3e-3)
    loader = create_dataloader(ids[0], batch_size=8, context_length=CONTEXT, seed=1)
    val_loader = create_dataloader(ids[1], batch_size=8, context_length=CONTEXT, shuffle=False)
    kwargs = {"warmup_steps": 5, "eval_every": 10, "progress": False, **kwargs}
    history = train(model, optimizer, loader, val_loader, steps, max_lr=3e-3, min_lr=3e-4,
                    start_step=start_step, **kwargs)
    return history, optimizer


# --- measuring -------------------------------------------------------------------------------------


def test_cross_entropy_matches_torch_loss_module():
    logits, targets = torch.randn(3, 5, 11), torch.randint(0, 11, (3, 5))
    reference = torch.nn.CrossEntropyLoss()(logits.transpose(1, 2), targets)  # the (batch, classes, tokens) form
    torch.testing.assert_close(cross_entropy(logits, targets), reference)


def test_cross_entropy_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"targets of shape \(3, 5\)"):
        cross_entropy(torch.randn(3, 5, 11), torch.zeros(3, 4, dtype=torch.long))


def test_perplexity_of_a_uniform_guess_is_the_number_of_choices():
    loss = F.cross_entropy(torch.zeros(4, 37), torch.tensor([0, 5, 17, 36])).item()
    assert perplexity(loss) == pytest.approx(37.0)


def test_bits_per_byte_converts_nats_to_bits_per_byte():
    assert bits_per_byte(total_nats=1000 * 8 * math.log(2), n_bytes=1000) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="n_bytes must be positive"):
        bits_per_byte(1.0, 0)


def test_evaluate_is_the_token_weighted_mean_and_restores_train_mode(byte_ids):
    model = tiny_model(dropout=0.5)
    model.train()
    loader = create_dataloader(byte_ids[1][:400], batch_size=7, context_length=CONTEXT, shuffle=False,
                               drop_last=False)  # 24 windows: batches of 7, 7, 7 and 3
    inputs = torch.stack([x for x, _ in loader.dataset])
    targets = torch.stack([y for _, y in loader.dataset])
    model.eval()
    expected = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten()).item()
    model.train()
    assert evaluate(model, loader) == pytest.approx(expected, rel=1e-5)
    assert model.training


def test_bits_per_byte_of_an_untrained_byte_model_is_near_eight(byte_ids):
    # A fresh model guesses about uniformly over 256 byte values: log2(256) = 8 bits per byte.
    value = evaluate_bits_per_byte(tiny_model(), byte_ids[1], n_bytes=len(byte_ids[1]))
    assert 7.9 < value < 8.1


# --- optimizing ------------------------------------------------------------------------------------


def test_lr_schedule_warms_up_to_max_then_decays_to_min():
    lrs = [lr_at(step, 1e-3, 1e-4, warmup_steps=10, max_steps=110) for step in range(110)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3) and max(lrs) == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(1e-4)
    assert lr_at(59, 1e-3, 1e-4, 10, 110) == pytest.approx(0.55e-3, rel=0.05)  # halfway down the cosine
    assert lr_at(500, 1e-3, 1e-4, 10, 110) == pytest.approx(1e-4)


def test_weight_decay_goes_to_matrices_only_and_tied_weights_appear_once():
    model = tiny_model()
    decay, no_decay = weight_decay_groups(model)
    assert "tok_emb.weight" in decay and "pos_emb.weight" in decay and "blocks.0.attn.W_query.weight" in decay
    assert "out_head.weight" not in decay + no_decay  # tied to tok_emb.weight
    assert "blocks.0.norm1.weight" in no_decay and "blocks.0.ff.fc_in.bias" in no_decay
    assert "final_norm.bias" in no_decay and not any(name.endswith("weight") and "norm" not in name
                                                     for name in no_decay)
    optimizer = configure_optimizer(model, 1e-3, weight_decay=0.1)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.1, 0.0]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert len({id(p) for p in params}) == len(params)
    assert sum(p.numel() for p in params) == count_parameters(model)


# --- training --------------------------------------------------------------------------------------


def test_short_run_lowers_the_validation_loss(byte_ids):
    history, _ = run(tiny_model(), byte_ids, steps=60)
    assert history.eval_steps == [0, 10, 20, 30, 40, 50, 60]
    assert history.val_loss[-1] < 0.75 * history.val_loss[0]
    assert history.steps == list(range(1, 61)) and history.tokens_seen[-1] == 60 * 8 * CONTEXT


def test_gradient_norm_is_clipped_to_grad_clip(byte_ids):
    model = tiny_model()
    optimizer = configure_optimizer(model, 0.0)  # lr 0: the update leaves the gradients in place
    history, _ = run(model, byte_ids, steps=1, optimizer=optimizer, grad_clip=1e-3)
    clipped = torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()
    assert history.grad_norm[0] > 1e-3 and clipped == pytest.approx(1e-3, rel=1e-3)


def test_time_budget_stops_training_before_an_update(byte_ids):
    history, _ = run(tiny_model(), byte_ids, steps=50, time_budget=0.0)
    assert history.stopped_by == "time_budget" and history.steps == []


def test_samples_are_recorded_at_the_requested_steps(byte_ids):
    class Bytes:  # the smallest tokenizer: one id per byte
        def encode(self, text):
            return list(text.encode())

        def decode(self, ids):
            return bytes(ids).decode("utf-8", errors="replace")

    history, _ = run(tiny_model(), byte_ids, steps=20, tokenizer=Bytes(), sample_every=10, sample_tokens=5)
    assert [step for step, _ in history.samples] == [0, 10, 20]
    assert all(text.startswith("\n") for _, text in history.samples)


def test_nan_loss_stops_training_with_the_update_named(byte_ids):
    model = tiny_model()
    with torch.no_grad():
        model.tok_emb.weight[byte_ids[0][0]] = float("nan")
    with pytest.raises(FloatingPointError, match="update 1: the loss is nan"):
        run(model, byte_ids, steps=5)


def test_too_high_a_learning_rate_stops_when_the_loss_becomes_infinite(byte_ids):
    model = tiny_model()
    optimizer = configure_optimizer(model, 1e30)
    loader = create_dataloader(byte_ids[0], batch_size=8, context_length=CONTEXT, seed=1)
    with pytest.raises(FloatingPointError, match=r"update \d+: the loss is (nan|inf).*training diverged"):
        train(model, optimizer, loader, None, 20, max_lr=1e30, grad_clip=None, progress=False)


@pytest.mark.parametrize("setting, message", [
    (dict(grad_clip=-1.0), "grad_clip must be None or 0 .no clipping., or a finite number > 0, got -1.0"),
    (dict(eval_every=0), "eval_every must be an integer >= 1, got 0"),
    (dict(steps=0), "max_steps must be an integer >= 1, got 0"),
    (dict(sample_every=0), "sample_every must be None or an integer >= 1, got 0"),
    (dict(time_budget=-1.0), "time_budget must be None or a number of seconds >= 0, got -1.0"),
])
def test_settings_that_would_train_wrongly_are_refused(byte_ids, setting, message):
    steps = setting.pop("steps", 5)
    with pytest.raises(ValueError, match=message):
        run(tiny_model(), byte_ids, steps=steps, **setting)


def test_on_update_sees_every_update_and_can_stop_the_run(byte_ids):
    seen = []
    history, _ = run(tiny_model(), byte_ids, steps=20, on_update=lambda step: seen.append(step) or step == 7)
    assert seen == list(range(1, 8)) and history.steps[-1] == 7 and history.stopped_by == "on_update"
    assert history.eval_steps[-1] == 7  # the final evaluation still runs


def test_time_budget_progress_counts_seconds_not_steps(byte_ids, capsys):
    ticks = iter(range(10**6))
    run(tiny_model(), byte_ids, steps=10**9, time_budget=30, progress=True, clock=lambda: next(ticks) * 0.5)
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "/30 s of the budget" in bar and "1000000000" not in bar


# --- resuming --------------------------------------------------------------------------------------


def test_resumed_training_continues_exactly_like_an_unbroken_run(tmp_path, byte_ids):
    unbroken, _ = run(tiny_model(dropout=0.1), byte_ids, steps=30)

    model = tiny_model(dropout=0.1)
    _, optimizer = run(model, byte_ids, steps=30, until_step=15)
    save_checkpoint(tmp_path, model, optimizer, step=15)
    checkpoint = load_checkpoint(tmp_path, device="cpu")
    optimizer = configure_optimizer(checkpoint.model, 3e-3)
    restore_optimizer(optimizer, checkpoint.optimizer_state)
    resumed, _ = run(checkpoint.model, byte_ids, steps=30, start_step=checkpoint.step, optimizer=optimizer)

    assert resumed.steps == list(range(16, 31))
    assert resumed.train_loss == unbroken.train_loss[15:]
    assert resumed.val_loss[-1] == unbroken.val_loss[-1]


# --- the course model ------------------------------------------------------------------------------


def test_a_budget_of_cpu_seconds_trains_on_one_thread_and_restores_the_count(byte_ids):
    seen = []
    with threads(2):
        run(tiny_model(), byte_ids, steps=10**9, time_budget=0.5, clock=time.process_time,
            on_update=lambda step: seen.append(torch.get_num_threads()) or step == 3)
        assert torch.get_num_threads() == 2
    assert seen == [1, 1, 1]
