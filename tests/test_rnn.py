"""llmcourse.rnn: causality, shapes, the Elman step, clear errors, and training with the chapter-5 loop."""

import pytest
import torch

from llmcourse.data import create_dataloader
from llmcourse.model import count_parameters
from llmcourse.rnn import RNNConfig, RNNLanguageModel
from llmcourse.train import configure_optimizer, evaluate_bits_per_byte, train

TINY = dict(vocab_size=30, context_length=12, d_model=8, hidden_size=16)


def tiny_model(seed: int = 0, **overrides) -> RNNLanguageModel:
    torch.manual_seed(seed)
    return RNNLanguageModel(RNNConfig(**{**TINY, **overrides})).eval()


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@pytest.mark.parametrize("n_layers", [1, 2])
def test_output_at_position_t_does_not_depend_on_later_tokens(cell, n_layers):
    model = tiny_model(cell=cell, n_layers=n_layers)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 30, (3, 12), generator=generator)
    changed = tokens.clone()
    changed[:, 7:] = torch.randint(0, 30, (3, 5), generator=generator)
    with torch.no_grad():
        before, after = model(tokens), model(changed)
    assert torch.equal(before[:, :7], after[:, :7])
    assert not torch.allclose(before[:, 7:], after[:, 7:])  # the later positions do see the change


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_logits_have_shape_batch_tokens_vocab(cell):
    model = tiny_model(cell=cell)
    assert model(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 5, 30)
    assert model(torch.zeros(1, 40, dtype=torch.long)).shape == (1, 40, 30)  # longer than context_length is fine


def test_tied_head_shares_the_embedding_table():
    tied, untied = tiny_model(), tiny_model(tie_weights=False)
    assert tied.out_head.weight is tied.tok_emb.weight
    assert count_parameters(untied) - count_parameters(tied) == 30 * 8


def test_first_step_is_the_elman_update_from_a_zero_state():
    model = tiny_model(cell="rnn")
    token = torch.tensor([[4]])
    x = model.tok_emb.weight[4]
    rnn = model.rnn
    h1 = torch.tanh(rnn.weight_ih_l0 @ x + rnn.bias_ih_l0 + rnn.bias_hh_l0)  # W_hh h_0 = 0
    expected = model.out_head(model.proj(h1))
    assert torch.allclose(model(token)[0, 0], expected, atol=1e-6)


def test_bad_inputs_raise_clear_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"\(batch, tokens\)"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="integers"):
        model(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="token id 30 is outside the vocabulary"):
        model(torch.tensor([[1, 30]]))
    with pytest.raises(ValueError, match="cell"):
        RNNConfig(**{**TINY, "cell": "gru"})
    with pytest.raises(ValueError, match="hidden_size"):
        RNNConfig(**{**TINY, "hidden_size": 0})
    with pytest.raises(ValueError, match="dropout"):
        RNNConfig(**{**TINY, "dropout": 1.0})


def test_the_chapter5_training_loop_lowers_the_loss(one_thread):
    token_ids = [i % 7 for i in range(400)]  # a period-7 pattern an LSTM can learn exactly
    model = tiny_model(cell="lstm")
    before = evaluate_bits_per_byte(model, token_ids, n_bytes=400)
    loader = create_dataloader(token_ids, batch_size=8, context_length=12, seed=0)
    train(model, configure_optimizer(model, 2e-2), loader, None, max_steps=100, max_lr=2e-2, progress=False)
    assert evaluate_bits_per_byte(model, token_ids, n_bytes=400) < 0.2 * before
