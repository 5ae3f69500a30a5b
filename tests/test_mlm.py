"""Tests of llmcourse.mlm: the BERT tokenizer, masked-LM masking, next-sentence pairs and their packing, pretraining,
saving and loading the encoder, and the [CLS] classifier."""

import pytest
import torch

from llmcourse.course import bert_tokenizer
from llmcourse.encoder import BertModel
from llmcourse.mlm import (IGNORE_INDEX, EncoderHistory, EncoderSettings, collate_pairs, load_encoder, mask_tokens,
                           pack_pair, pretrain_encoder, save_encoder)
from llmcourse.tasks import IS_NEXT, SentencePair, nsp_pairs
import llmcourse.course as course
import llmcourse.mlm as mlm
from llmcourse.course import course_tokenizer
from llmcourse.runtime import set_seed

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB, PAD, CLS, SEP, MASK = 100, 96, 97, 98, 99
SPECIAL = (PAD, CLS, SEP, MASK)


@pytest.fixture(scope="module")
def tokenizer():
    return bert_tokenizer()


def padded_batch(rows: int = 2000, length: int = 60, seed: int = 0) -> torch.Tensor:
    """Rows of [CLS] text [SEP] text [SEP] [PAD]..., with texts of random lengths, ids 0..95."""
    generator = torch.Generator().manual_seed(seed)
    batch = torch.full((rows, length), PAD)
    for row in range(rows):
        n = int(torch.randint(10, length - 3, (1,), generator=generator))
        batch[row, :n] = torch.randint(0, PAD, (n,), generator=generator)
        batch[row, 0], batch[row, n // 2], batch[row, n] = CLS, SEP, SEP
    return batch


def test_mask_tokens_chooses_fifteen_percent_of_each_rows_ordinary_tokens():
    batch = padded_batch()
    _, labels = mask_tokens(batch, MASK, VOCAB, SPECIAL, generator=0)
    ordinary = ~torch.isin(batch, torch.tensor(SPECIAL))
    expected = (0.15 * ordinary.sum(1)).round().clamp(min=1)
    assert torch.equal((labels != IGNORE_INDEX).sum(1), expected.long())


def test_mask_tokens_splits_the_chosen_positions_80_10_10():
    batch = padded_batch(rows=5000)
    inputs, labels = mask_tokens(batch, MASK, VOCAB, SPECIAL, generator=1)
    chosen = labels != IGNORE_INDEX
    n = chosen.sum().item()
    assert n > 20_000
    masked = (inputs[chosen] == MASK).sum().item() / n
    kept = (inputs[chosen] == batch[chosen]).sum().item() / n
    replaced = ((inputs[chosen] != MASK) & (inputs[chosen] != batch[chosen])).sum().item() / n
    # With n > 20,000 the standard error of each share is under 0.003; 0.01 is over three of them.
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1) < 0.01 and abs(replaced - 0.1) < 0.01
    assert not torch.isin(inputs[chosen & (inputs != MASK)], torch.tensor(SPECIAL)).any()  # random ids are ordinary


def test_mask_tokens_never_touches_special_tokens_or_padding_and_labels_only_chosen_positions():
    batch = padded_batch(rows=500)
    inputs, labels = mask_tokens(batch, MASK, VOCAB, SPECIAL, generator=2)
    special = torch.isin(batch, torch.tensor(SPECIAL))
    assert torch.equal(inputs[special], batch[special])
    assert (labels[special] == IGNORE_INDEX).all()
    chosen = labels != IGNORE_INDEX
    assert torch.equal(labels[chosen], batch[chosen])
    assert torch.equal(inputs[~chosen], batch[~chosen])  # nothing changes off the chosen positions


def test_mask_tokens_is_reproducible_from_its_generator_and_ignores_the_global_seed():
    batch = padded_batch(rows=50)
    torch.manual_seed(0)
    first = mask_tokens(batch, MASK, VOCAB, SPECIAL, generator=7)
    torch.manual_seed(1)
    second = mask_tokens(batch, MASK, VOCAB, SPECIAL, generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    other = mask_tokens(batch, MASK, VOCAB, SPECIAL, generator=8)
    assert not torch.equal(first[1], other[1])


def test_mask_tokens_keeps_the_shape_of_one_sequence():
    inputs, labels = mask_tokens(torch.arange(40), MASK, VOCAB, SPECIAL, generator=0)
    assert inputs.shape == labels.shape == (40,) and (labels != IGNORE_INDEX).sum() == 6


@pytest.mark.parametrize("kwargs, message", [
    ({"token_ids": torch.zeros(3, 4)}, "integer tensor"),
    ({"token_ids": torch.zeros(2, 3, 4, dtype=torch.long)}, "integer tensor"),
    ({"rate": 0.0}, "rate must be in"),
    ({"rate": 1.5}, "rate must be in"),
    ({"mask_id": 5}, "must be one of special_ids"),
    ({"token_ids": torch.tensor([[1, 2, 100]])}, "token ids must be in 0..99"),
])
def test_mask_tokens_refuses_bad_input(kwargs, message):
    arguments = {"token_ids": torch.tensor([[1, 2, 3]]), "mask_id": MASK, "vocab_size": VOCAB,
                 "special_ids": SPECIAL, **kwargs}
    with pytest.raises(ValueError, match=message):
        mask_tokens(**arguments)


def test_pack_pair_keeps_the_tokens_next_to_the_boundary():
    ids, segments = pack_pair(list(range(10, 30)), list(range(50, 54)), CLS, SEP, context_length=16)
    assert ids == [CLS, *range(21, 30), SEP, 50, 51, 52, 53, SEP]  # A lost its start, B was short enough
    assert segments == [0] * 11 + [1] * 5
    ids, _ = pack_pair(list(range(10, 30)), list(range(50, 80)), CLS, SEP, context_length=11)
    assert ids == [CLS, 26, 27, 28, 29, SEP, 50, 51, 52, 53, SEP]  # both trimmed, the longer first


def test_pack_pair_refuses_empty_segments_and_tiny_contexts():
    with pytest.raises(ValueError, match="at least one token"):
        pack_pair([], [1], CLS, SEP, 16)
    with pytest.raises(ValueError, match="at least 5"):
        pack_pair([1], [1], CLS, SEP, 4)


def test_collate_pairs_pads_with_pad_and_masks_the_padding(plays, tokenizer):
    pairs = nsp_pairs(plays, "test", tokenizer, context_length=32, seed=0)[:8]
    batch = collate_pairs(pairs, tokenizer, context_length=32)
    pad = tokenizer.special_tokens["[PAD]"]
    assert batch.token_ids.shape == batch.segment_ids.shape == batch.padding_mask.shape
    assert batch.token_ids.shape[1] <= 32
    assert torch.equal(batch.padding_mask, batch.token_ids != pad)
    assert (batch.token_ids[:, 0] == tokenizer.special_tokens["[CLS]"]).all()
    assert torch.equal(batch.nsp_labels, torch.tensor([p.label for p in pairs]))
    assert ((batch.token_ids == tokenizer.special_tokens["[SEP]"]).sum(1) == 2).all()
    short = SentencePair((1, 2, 3), (5,), IS_NEXT, "x", "x", (0, 1), (1, 2))
    batch = collate_pairs([short, pairs[1]], tokenizer, 32)
    assert batch.padding_mask[0].sum() == 7 and (batch.token_ids[0, 7:] == pad).all()


def test_collate_pairs_needs_the_bert_special_tokens(plays, tokenizer):
    pairs = nsp_pairs(plays, "test", tokenizer, context_length=32, seed=0)[:2]
    with pytest.raises(ValueError, match="lacks the special tokens"):
        collate_pairs(pairs, course_tokenizer(), 32)
    with pytest.raises(ValueError, match="empty batch"):
        collate_pairs([], tokenizer, 32)


def tiny_settings(**overrides) -> EncoderSettings:
    return EncoderSettings(d_model=16, n_heads=2, n_layers=1, context_length=32, max_steps=3, eval_every=2,
                           eval_pairs=8, **overrides)


def test_pretrain_encoder_records_both_losses_and_masked_lm_alone_ignores_nsp():
    torch.manual_seed(0)
    _, _, history = pretrain_encoder(tiny_settings(), bert_tokenizer(), device="cpu", progress=False)
    assert len(history.mlm_loss) == len(history.nsp_loss) == 3 and history.eval_steps == [0, 2, 3]
    model, _, _ = pretrain_encoder(tiny_settings(nsp=False), bert_tokenizer(), device="cpu", progress=False)
    set_seed(0)
    untrained = BertModel(tiny_settings().model_config())
    assert torch.equal(model.nsp_head.weight, untrained.nsp_head.weight)  # no NSP loss, no NSP gradient


def test_saved_encoder_loads_identically_and_a_corrupt_file_is_refused(tmp_path):
    settings = tiny_settings()
    set_seed(1)
    model = BertModel(settings.model_config()).eval()
    save_encoder(tmp_path, model, settings, EncoderHistory(mlm_loss=[1.0]))
    loaded, record = load_encoder(tmp_path)
    assert record["settings"]["d_model"] == 16 and record["history"]["mlm_loss"] == [1.0]
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(ids), loaded(ids)))
    weights = tmp_path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors does not match the sha256.*was changed"):
        load_encoder(tmp_path)
    with pytest.raises(FileNotFoundError, match="no encoder is saved"):
        load_encoder(tmp_path / "elsewhere")


def test_an_untrained_encoder_counts_as_stalled():
    tokenizer = course.bert_tokenizer()
    model = BertModel(course.COURSE_ENCODER_SETTINGS.model_config()).eval()
    assert mlm.has_stalled(model, tokenizer)


def test_a_stalled_pretraining_starts_again_with_the_next_seed(monkeypatch, capsys):
    trained = []
    monkeypatch.setattr(mlm, "pretrain_encoder", lambda settings, tokenizer, device, progress: trained.append(settings.seed)
                        or (f"model {settings.seed}", "tokenizer", mlm.EncoderHistory(seed=settings.seed)))
    monkeypatch.setattr(mlm, "has_stalled", lambda model, tokenizer: model == "model 5")
    model, _, history, seed = mlm.pretrain_until_healthy(mlm.EncoderSettings(seed=5), "tokenizer", progress=False)
    assert trained == [5, 6] and model == "model 6" and seed == history.seed == 6
    assert "seed 5 stalled" in capsys.readouterr().out


def test_pretraining_that_always_stalls_says_what_to_change(monkeypatch):
    monkeypatch.setattr(mlm, "pretrain_encoder", lambda settings, tokenizer, device, progress: ("model", "tokenizer", None))
    monkeypatch.setattr(mlm, "has_stalled", lambda model, tokenizer: True)
    with pytest.raises(RuntimeError, match=r"stalled with seeds 0 to 2; lower max_lr=0.002 or lengthen warmup"):
        mlm.pretrain_until_healthy(mlm.EncoderSettings(), "tokenizer", progress=False)
