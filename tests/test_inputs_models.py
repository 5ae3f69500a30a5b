"""Bad inputs to the models, their configs, GPT-2 weight loading, decoding and Muon fail at once, saying what
was wrong and what would be right, instead of running on with a silently different computation."""

import dataclasses
import math

import pytest
import torch

from llmcourse.encoder import BertModel, EncoderDecoder, encoder_config
from llmcourse.generate import generate, next_token
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.muon import Muon, MuonWithAdamW
from llmcourse.rnn import RNNConfig, RNNEncoderDecoder, RNNLanguageModel
from llmcourse.weights import gpt2_state_dict_to_ours, gpt2_tensor_shapes, load_gpt2_weights

TINY = dict(vocab_size=50, context_length=16, d_model=32, n_heads=4, n_layers=1, dropout=0.0)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_gpt(**overrides) -> GPTModel:
    torch.manual_seed(0)
    return GPTModel(GPTConfig(**{**TINY, **overrides})).eval()


# --- configs ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("positions", "rope"), ("norm", "RMS"), ("ff", "GELU")])
def test_a_config_cannot_be_changed_after_it_was_checked(field, value):
    cfg = GPTConfig(**TINY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg, field, value)
    with pytest.raises(ValueError, match=f"GPTConfig.{field} must be one of"):
        dataclasses.replace(cfg, **{field: value})


@pytest.mark.parametrize("overrides, message", [
    (dict(norm_eps=math.inf), "GPTConfig.norm_eps must be a positive number, and finite; got inf"),
    (dict(norm_eps=math.nan), "GPTConfig.norm_eps must be a positive number"),
    (dict(norm_eps=-1e-5), "GPTConfig.norm_eps must be a positive number"),
    (dict(dropout=math.nan), r"GPTConfig.dropout must be a probability in \[0, 1\), got nan"),
    (dict(dropout=-0.1), r"GPTConfig.dropout must be a probability in \[0, 1\)"),
    (dict(n_layers=True), "GPTConfig.n_layers must be an integer >= 0, got True"),
    (dict(vocab_size=50.0), "GPTConfig.vocab_size must be an integer >= 1, got 50.0"),
    (dict(d_ff=1.5), "GPTConfig.d_ff must be an integer >= 0"),
])
def test_numeric_config_fields_must_be_finite_and_in_range(overrides, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**{**TINY, **overrides})


# --- GPT-2 weights ----------------------------------------------------------------------------------------

def gpt2_state(cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """Random tensors in GPT-2's published layout, shaped for `cfg`'s sizes."""
    generator = torch.Generator().manual_seed(0)
    return {name: torch.randn(shape, generator=generator) for name, shape in gpt2_tensor_shapes(cfg).items()}


@pytest.mark.parametrize("overrides, message", [
    (dict(ff="gelu_exact"), "ff='gelu_exact' \\(GPT-2: 'gelu'\\)"),
    (dict(ff="relu"), "ff='relu' \\(GPT-2: 'gelu'\\)"),
    (dict(positions="rotary"), "positions='rotary' \\(GPT-2: 'learned'\\)"),
    (dict(positions="sinusoidal"), "positions='sinusoidal' \\(GPT-2: 'learned'\\)"),
    (dict(norm="rms"), "norm='rms' \\(GPT-2: 'layer'\\)"),
    (dict(bias=False), "bias=False \\(GPT-2: True\\)"),
    (dict(qk_norm=True), "qk_norm=True \\(GPT-2: False\\)"),
    (dict(pre_norm=False), "pre_norm=False \\(GPT-2: True\\)"),
    (dict(norm_eps=1e-6), "norm_eps=1e-06 \\(GPT-2: 1e-05\\)"),
    (dict(d_ff=100), "d_ff=100 \\(GPT-2: 0, which means 4 \\* d_model = 128\\)"),
])
def test_gpt2_weights_refuse_a_config_with_an_option_gpt2_does_not_have(overrides, message):
    state = gpt2_state(GPTConfig(**TINY))
    cfg = GPTConfig(**{**TINY, **overrides})
    with pytest.raises(ValueError, match="GPT-2 weights need GPT-2's options; this config has " + message):
        load_gpt2_weights(GPTModel(cfg), state)
    with pytest.raises(ValueError, match=message):
        gpt2_state_dict_to_ours(state, cfg)


def test_gpt2_weights_still_load_with_d_ff_spelled_out():
    state = gpt2_state(GPTConfig(**TINY))
    load_gpt2_weights(GPTModel(GPTConfig(**{**TINY, "d_ff": 128})), state)


# --- token ids into the models ----------------------------------------------------------------------------

BAD_IDS = [
    (torch.tensor([[1.0, 2.0]]), "must hold integers \\(token ids\\), got dtype torch.float32"),
    (torch.tensor([[True, False]]), "must hold integers \\(token ids\\), got dtype torch.bool"),
    ([[1, 2]], "must be a tensor of token ids \\(batch, tokens\\), got list"),
    (torch.tensor([1, 2]), "must be \\(batch, tokens\\), got shape \\(2,\\)"),
    (torch.zeros(1, 2, 3, dtype=torch.long), "must be \\(batch, tokens\\), got shape \\(1, 2, 3\\)"),
    (torch.zeros(1, 0, dtype=torch.long), "is empty \\(shape \\(1, 0\\)\\)"),
    (torch.zeros(0, 4, dtype=torch.long), "is empty \\(shape \\(0, 4\\)\\)"),
    (torch.zeros(1, 4, dtype=torch.long, device="meta"), "is on meta but the model is on cpu"),
    (torch.tensor([[3, -1]]), "token id -1 is outside the vocabulary \\(0 .. 49\\)"),
]


@pytest.mark.parametrize("ids, message", BAD_IDS)
def test_gpt_refuses_token_ids_it_cannot_read(ids, message):
    with pytest.raises(ValueError, match="token_ids " + message if "token id " not in message else message):
        tiny_gpt()(ids)


@pytest.mark.parametrize("ids, message", BAD_IDS)
def test_bert_and_the_2017_transformer_refuse_token_ids_they_cannot_read(ids, message):
    torch.manual_seed(0)
    bert = BertModel(encoder_config(**TINY)).eval()
    transformer = EncoderDecoder(encoder_config(**TINY, positions="sinusoidal")).eval()
    good = torch.tensor([[1, 2]])
    named = (lambda name: f"{name} {message}") if "token id " not in message else (lambda name: message)
    with pytest.raises(ValueError, match=named("token_ids")):
        bert(ids)
    with pytest.raises(ValueError, match=named("src_ids")):
        transformer(ids, good)
    with pytest.raises(ValueError, match=named("tgt_ids")):
        transformer(good, ids)


@pytest.mark.parametrize("ids, message", BAD_IDS)
def test_the_recurrent_models_refuse_token_ids_they_cannot_read(ids, message):
    torch.manual_seed(0)
    language_model = RNNLanguageModel(RNNConfig(vocab_size=50, d_model=8, hidden_size=8)).eval()
    seq2seq = RNNEncoderDecoder(vocab_size=50, d_embed=8, hidden_size=8, attention_size=8).eval()
    named = (lambda name: f"{name} {message}") if "token id " not in message else (lambda name: message)
    with pytest.raises(ValueError, match=named("token_ids")):
        language_model(ids)
    with pytest.raises(ValueError, match=named("src_ids")):
        seq2seq(ids, torch.tensor([[1, 2]]))


def test_bert_refuses_float_segment_ids():
    torch.manual_seed(0)
    bert = BertModel(encoder_config(**TINY)).eval()
    with pytest.raises(ValueError, match="segment_ids must be integers of token_ids' shape \\(1, 2\\), "
                                         "got torch.float32"):
        bert(torch.tensor([[1, 2]]), torch.tensor([[0.0, 1.0]]))


# --- the encoder's position options -----------------------------------------------------------------------

def test_bert_with_sinusoidal_positions_adds_the_fixed_table_and_learns_none():
    torch.manual_seed(0)
    bert = BertModel(encoder_config(**TINY, positions="sinusoidal")).eval()
    assert not any("pos_emb" in name for name, _ in bert.named_parameters())
    assert bert.pos_table.shape == (16, 32)
    ids = torch.tensor([[5, 7, 9]])
    reordered = torch.tensor([[9, 7, 5]])  # without positions, the state of 5 would not depend on where it is
    assert not torch.allclose(bert.encode(ids)[0, 0], bert.encode(reordered)[0, 2], atol=1e-4)


def test_bert_with_rotary_positions_has_no_position_table():
    torch.manual_seed(0)
    bert = BertModel(encoder_config(**TINY, positions="rotary")).eval()
    assert not any("pos_emb" in name for name, _ in bert.named_parameters())
    assert not hasattr(bert, "pos_table") and bert.blocks[0].attn.rotary is not None
    with torch.no_grad():  # sharper attention, so that where a token sits visibly changes its state
        bert.blocks[0].attn.W_query.weight.mul_(30)
        bert.blocks[0].attn.W_key.weight.mul_(30)
    ids = torch.tensor([[5, 7, 9]])
    assert not torch.allclose(bert.encode(ids)[0, 0], bert.encode(torch.tensor([[9, 7, 5]]))[0, 2], atol=1e-3)


# --- padding masks ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mask", [[[True, False, True]], [[True, True, False], [True, False, True]]])
def test_the_rnn_encoder_refuses_a_padding_mask_with_a_hole(mask):
    torch.manual_seed(0)
    model = RNNEncoderDecoder(31, d_embed=8, hidden_size=8, attention_size=8).eval()
    mask = torch.tensor(mask)
    ids = torch.full(mask.shape, 5)
    with pytest.raises(ValueError, match="src_padding_mask has a real token \\(True\\) after padding \\(False\\)"):
        model(ids, torch.tensor([[1]] * len(ids)), mask)
    with pytest.raises(ValueError, match="after padding"):
        model.greedy_decode(ids, 1, 2, 3, mask)


# --- decoding ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("logits", [[[math.nan, 1.0, 2.0]], [[math.nan] * 3], [[0.0, math.inf, 1.0]],
                                    [[1.0, 2.0, 3.0], [0.0, math.nan, 0.0]]])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_next_token_refuses_nan_and_plus_infinite_logits(logits, temperature):
    with pytest.raises(ValueError, match="logits hold NaN or \\+inf"):
        next_token(torch.tensor(logits), temperature)


def test_next_token_refuses_a_row_of_minus_infinity_but_picks_around_masked_tokens():
    with pytest.raises(ValueError, match="a row of logits is all -inf"):
        next_token(torch.tensor([[0.0, 1.0], [-math.inf, -math.inf]]))
    masked = torch.tensor([[-math.inf, 1.0, -math.inf, 0.5]])
    assert next_token(masked).item() == 1
    assert next_token(masked, temperature=1.0, generator=torch.Generator().manual_seed(0)).item() in (1, 3)


@pytest.mark.parametrize("ids, message", [(torch.tensor([[True, False]]), "dtype torch.bool"),
                                          (torch.tensor([[3, 50]]), "token id 50 is outside the vocabulary")])
def test_generate_refuses_bool_and_out_of_range_prompts(ids, message):
    with pytest.raises(ValueError, match=message):
        generate(tiny_gpt(), ids, max_new_tokens=2)


# --- Muon -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [dict(lr=math.nan), dict(lr=math.inf), dict(lr=-0.01), dict(lr=0.0),
                                      dict(weight_decay=math.nan), dict(weight_decay=math.inf),
                                      dict(weight_decay=-0.1), dict(momentum=math.nan)])
def test_muon_refuses_a_learning_rate_or_weight_decay_that_is_not_a_finite_number(settings):
    weight = torch.nn.Parameter(torch.randn(4, 3))
    name, value = next(iter(settings.items()))
    with pytest.raises(ValueError, match=f"need a finite lr > 0, .*{name}={value}"):
        Muon([weight], **settings)


def test_muon_refuses_zero_newton_schulz_steps_and_the_pair_a_bad_adamw_lr():
    with pytest.raises(ValueError, match="ns_steps must be an integer >= 1, got 0"):
        Muon([torch.nn.Parameter(torch.randn(4, 3))], ns_steps=0)
    for lr in (0.0, math.nan, math.inf):
        with pytest.raises(ValueError, match=f"lr must be a finite number > 0, got {lr}"):
            MuonWithAdamW(tiny_gpt(), lr=lr, muon_lr=0.02)
