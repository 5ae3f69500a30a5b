"""The encoder side: BERT against Hugging Face, the encoder-decoder against nn.Transformer, masks and errors."""

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForPreTraining

from llmcourse.encoder import (BertModel, EncoderDecoder, bert_config, bert_state_from_hf, encoder_config,
                               state_from_nn_transformer)
from llmcourse.model import GPTConfig, count_parameters

SMALL = dict(vocab_size=101, context_length=24, d_model=32, n_heads=4, n_layers=2, dropout=0.0, d_ff=48)


def small_hf_bert() -> BertForPreTraining:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=48, max_position_embeddings=24, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    model = BertForPreTraining(config).eval()
    with torch.no_grad():  # HF starts LayerNorms and biases at 1 and 0: randomise them so they are tested too
        for name, param in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                param.add_(0.1 * torch.randn_like(param))
    return model


def test_bert_matches_hugging_face_with_padding_and_segments():
    reference = small_hf_bert()
    ours = BertModel(encoder_config(**SMALL)).eval()
    ours.load_state_dict(bert_state_from_hf(reference.state_dict()))
    ids = torch.randint(0, 101, (3, 20))
    segments = (torch.arange(20) >= 9).long().expand(3, 20)
    mask = torch.ones(3, 20, dtype=torch.bool)
    mask[1, 15:] = False
    mask[2, 6:] = False
    with torch.no_grad():
        expected = reference(input_ids=ids, token_type_ids=segments, attention_mask=mask.long())
        mlm, nsp = ours(ids, segments, mask)
    real = mask[..., None]  # padded positions' outputs are never used; compare the real ones
    assert torch.allclose(mlm * real, expected.prediction_logits * real, atol=1e-5)
    assert torch.allclose(nsp, expected.seq_relationship_logits, atol=1e-5)


@pytest.mark.parametrize("size", ["base", "large"])
def test_bert_parameter_counts_equal_hugging_face(size):
    hf_sizes = {"base": (768, 12, 12, 3072), "large": (1024, 24, 16, 4096)}
    hidden, layers, heads, intermediate = hf_sizes[size]
    with torch.device("meta"):
        theirs = BertForPreTraining(BertConfig(hidden_size=hidden, num_hidden_layers=layers,
                                               num_attention_heads=heads, intermediate_size=intermediate))
        ours = BertModel(bert_config(size))
    assert count_parameters(ours) == count_parameters(theirs)


def test_bert_positions_see_the_future():
    model = BertModel(encoder_config(**SMALL)).eval()
    ids = torch.randint(4, 101, (1, 12))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 101
    with torch.no_grad():
        before, after = model.encode(ids), model.encode(changed)
    assert not torch.allclose(before[0, 0], after[0, 0])  # the first position read the last token


def test_bert_ignores_padding_tokens():
    model = BertModel(encoder_config(**SMALL)).eval()
    ids = torch.randint(4, 101, (1, 12))
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, 8:] = False
    other = ids.clone()
    other[0, 8:] = 0
    with torch.no_grad():
        assert torch.allclose(model.encode(ids, padding_mask=mask)[:, :8],
                              model.encode(other, padding_mask=mask)[:, :8], atol=1e-6)


def test_bert_refuses_bad_inputs():
    model = BertModel(encoder_config(**SMALL))
    with pytest.raises(ValueError, match="context_length=24"):
        model(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.full((1, 5), 101))
    with pytest.raises(ValueError, match="segment ids"):
        model(torch.zeros(1, 5, dtype=torch.long), torch.full((1, 5), 2))


def small_encoder_decoder() -> EncoderDecoder:
    torch.manual_seed(0)
    return EncoderDecoder(GPTConfig(**SMALL, pre_norm=False, ff="relu", positions="sinusoidal")).eval()


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_encoder_decoder_matches_nn_transformer():
    torch.manual_seed(1)
    reference = nn.Transformer(d_model=32, nhead=4, num_encoder_layers=2, num_decoder_layers=2,
                               dim_feedforward=48, dropout=0.0, batch_first=True).eval()
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if param.dim() == 1:
                param.add_(0.1 * torch.randn_like(param))
    ours = small_encoder_decoder()
    missing, unexpected = ours.load_state_dict(state_from_nn_transformer(reference), strict=False)
    assert set(missing) == {"tok_emb.weight", "out_head.weight"} and not unexpected
    src, tgt = torch.randint(0, 101, (2, 11)), torch.randint(0, 101, (2, 7))
    src_mask = torch.ones(2, 11, dtype=torch.bool)
    src_mask[1, 8:] = False
    with torch.no_grad():
        src_x, tgt_x = ours.embed(src), ours.embed(tgt)
        expected = reference(src_x, tgt_x, tgt_mask=nn.Transformer.generate_square_subsequent_mask(7),
                             src_key_padding_mask=~src_mask, memory_key_padding_mask=~src_mask, tgt_is_causal=True)
        memory = src_x
        for block in ours.encoder:
            memory = block(memory, padding_mask=src_mask)
        memory = ours.encoder_norm(memory)
        out = tgt_x
        for block in ours.decoder:
            out = block(out, context=memory, context_padding_mask=src_mask)
        out = ours.decoder_norm(out)
    assert torch.allclose(out, expected, atol=1e-5)


def test_decoder_output_at_t_ignores_later_target_tokens():
    model = small_encoder_decoder()
    src, tgt = torch.randint(0, 101, (2, 9)), torch.randint(0, 101, (2, 8))
    changed = tgt.clone()
    changed[:, 5:] = (tgt[:, 5:] + 7) % 101
    with torch.no_grad():
        before, after = model(src, tgt), model(src, changed)
    assert torch.allclose(before[:, :5], after[:, :5], atol=1e-6)
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_cross_attention_rejects_mismatched_batch_sizes():
    model = small_encoder_decoder()
    memory = model.encode(torch.randint(0, 101, (3, 9)))
    with pytest.raises(ValueError, match="context has batch size 3 but x has 2"):
        model.decode(torch.randint(0, 101, (2, 5)), memory)


def test_cross_attention_weights_sum_to_one_over_real_source_tokens():
    model = small_encoder_decoder()
    src, tgt = torch.randint(0, 101, (2, 9)), torch.randint(0, 101, (2, 6))
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 5:] = False
    weights = model.cross_attention_weights(src, tgt, mask)
    assert len(weights) == 2 and weights[0].shape == (2, 4, 6, 9)
    assert torch.allclose(weights[-1].sum(-1), torch.ones(2, 4, 6), atol=1e-6)
    assert weights[-1][0, :, :, 5:].abs().max() == 0


def test_greedy_decode_stops_at_eos_and_matches_step_by_step_argmax():
    model = small_encoder_decoder()
    src = torch.randint(0, 101, (2, 9))
    out = model.greedy_decode(src, bos_id=1, eos_id=2, max_new_tokens=6)
    assert out.shape[0] == 2 and 1 <= out.shape[1] <= 6
    with torch.no_grad():
        logits = model(src, torch.cat([torch.ones(2, 1, dtype=torch.long), out[:, :-1]], dim=1))
    first_eos = [(row == 2).nonzero()[0, 0].item() if (row == 2).any() else len(row) for row in out]
    for row, stop in enumerate(first_eos):
        end = min(stop + 1, out.shape[1])
        assert torch.equal(logits[row, :end].argmax(-1), out[row, :end])


def test_encoder_decoder_needs_sinusoidal_positions():
    with pytest.raises(ValueError, match="sinusoidal"):
        EncoderDecoder(GPTConfig(**SMALL, pre_norm=False))
