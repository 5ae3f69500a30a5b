"""llmcourse.seq2seq: exact pairs split by play, causal decoders, attention that sums to 1, learning, clear errors."""

import pytest
import torch

from llmcourse.encoder import EncoderDecoder
from llmcourse.model import GPTConfig
from llmcourse.rnn import RNNEncoderDecoder
from llmcourse.runtime import threads
from llmcourse.seq2seq import (BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE, build_model, char_accuracy, decode, encode,
                               make_batch, predict, scores, scores_by_length, train_seq2seq, warmup_lr)
from llmcourse.tasks import Pair, reversal_pairs


def tiny_rnn(attention: bool, seed: int = 0) -> RNNEncoderDecoder:
    torch.manual_seed(seed)
    return RNNEncoderDecoder(VOCAB_SIZE, d_embed=16, hidden_size=32, attention=attention, attention_size=16).eval()


def tiny_transformer(seed: int = 0) -> EncoderDecoder:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=VOCAB_SIZE, context_length=40, d_model=32, n_heads=2, n_layers=1, dropout=0.0,
                    pre_norm=False, ff="relu", positions="sinusoidal")
    return EncoderDecoder(cfg).eval()


MODELS = {"rnn": lambda: tiny_rnn(False), "rnn+attention": lambda: tiny_rnn(True), "transformer": tiny_transformer}


def test_encode_decode_round_trip_and_batch_layout():
    assert decode(encode("the king's men")) == "the king's men"
    assert decode(encode("ab") + [EOS_ID] + encode("cd")) == "ab"
    batch = make_batch([Pair("ab cd", "cd ab", "x"), Pair("e f", "f e", "x")])
    assert batch.src_ids.shape == (2, 5) and batch.src_ids[1, 3:].tolist() == [PAD_ID, PAD_ID]
    assert batch.src_padding_mask.sum(1).tolist() == [5, 3]
    assert batch.tgt_in[0].tolist() == [BOS_ID] + encode("cd ab")
    assert batch.tgt_out[0].tolist() == encode("cd ab") + [EOS_ID]
    assert batch.tgt_out[1].tolist() == encode("f e") + [EOS_ID, PAD_ID, PAD_ID]
    assert torch.equal(batch.tgt_padding_mask, batch.tgt_in != PAD_ID)


@pytest.mark.parametrize("name", list(MODELS))
def test_decoder_output_at_t_does_not_depend_on_later_target_tokens(name):
    model = MODELS[name]()
    batch = make_batch([Pair("to be or not", "not or be to", "x"), Pair("go on", "on go", "x")])
    changed = batch.tgt_in.clone()
    changed[:, 4:] = torch.randint(3, VOCAB_SIZE, changed[:, 4:].shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(batch.src_ids, batch.tgt_in, batch.src_padding_mask, batch.tgt_padding_mask)
        after = model(batch.src_ids, changed, batch.src_padding_mask, changed != PAD_ID)
    assert torch.allclose(before[:, :4], after[:, :4], atol=1e-6)
    assert not torch.allclose(before[:, 4:], after[:, 4:])  # the later positions do see the change


@pytest.mark.parametrize("name", list(MODELS))
def test_padding_the_source_changes_nothing(name):
    model = MODELS[name]()
    alone = make_batch([Pair("go on", "on go", "x")])
    padded = make_batch([Pair("go on", "on go", "x"), Pair("a much longer line", "line longer much a", "x")])
    with torch.no_grad():
        one = model(alone.src_ids, alone.tgt_in, alone.src_padding_mask)
        two = model(padded.src_ids, padded.tgt_in[:, :alone.tgt_in.shape[1]], padded.src_padding_mask)
    assert torch.allclose(one[0], two[0], atol=1e-5)


@pytest.mark.parametrize("name", ["rnn+attention", "transformer"])
def test_attention_weights_sum_to_one_over_real_source_tokens(name):
    model = MODELS[name]()
    batch = make_batch([Pair("to be or not", "not or be to", "x"), Pair("go on", "on go", "x")])
    for weights in model.cross_attention_weights(batch.src_ids, batch.tgt_in, batch.src_padding_mask):
        assert weights.shape[0] == 2 and weights.shape[2:] == (batch.tgt_in.shape[1], batch.src_ids.shape[1])
        assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-5)
        assert (weights[1, :, :, 5:] == 0).all()  # the second source has 5 real tokens


def test_model_without_attention_has_no_weights_to_show():
    batch = make_batch([Pair("go on", "on go", "x")])
    with pytest.raises(ValueError, match="no attention"):
        tiny_rnn(False).cross_attention_weights(batch.src_ids, batch.tgt_in)


@pytest.mark.parametrize("name", list(MODELS))
def test_greedy_decode_pads_finished_rows_with_eos(name):
    model = MODELS[name]()
    batch = make_batch([Pair("to be or not", "not or be to", "x"), Pair("go on", "on go", "x")])
    ids = model.greedy_decode(batch.src_ids, BOS_ID, EOS_ID, 12, batch.src_padding_mask)
    assert ids.shape[0] == 2 and 1 <= ids.shape[1] <= 12
    for row in ids.tolist():
        if EOS_ID in row:
            assert set(row[row.index(EOS_ID):]) == {EOS_ID}


@pytest.mark.parametrize("name, lr_scale", [("rnn+attention", 0.5), ("transformer", 0.25)])
def test_a_tiny_model_learns_to_copy_short_words(name, lr_scale):
    words = ["ab", "ba", "abc", "cab", "bca", "cc", "aa", "bab", "acb", "cba"]
    pairs = [Pair(f"{x} {y}", f"{x} {y}", "x") for x in words for y in words]
    model = MODELS[name]()
    history = train_seq2seq(model, pairs, budget_seconds=60, d_model=32, batch_size=20, warmup_steps=20,
                            lr_scale=lr_scale, label_smoothing=0.0, max_steps=200, progress=False)
    assert history.steps == 200 and history.losses[-1] < 0.15 * history.losses[0]
    predictions = predict(model, [p.source for p in pairs])
    assert scores(predictions, [p.target for p in pairs])["exact_match"] > 0.85


def test_warmup_schedule_rises_peaks_at_warmup_and_decays():
    rates = [warmup_lr(step, d_model=64, warmup_steps=10) for step in range(1, 101)]
    assert max(rates) == rates[9] == pytest.approx((64 * 10) ** -0.5)
    assert rates[0] == pytest.approx(rates[9] / 10)
    assert rates[39] == pytest.approx(rates[9] / 2)  # step^-0.5: four times the steps, half the rate
    assert warmup_lr(5, 64, 10, scale=2.0) == pytest.approx(2 * warmup_lr(5, 64, 10))


def test_scores_count_exact_matches_characters_and_buckets():
    assert char_accuracy("abcd", "abxd") == 0.75
    assert char_accuracy("ab", "abcd") == 0.5
    result = scores(["ab", "cd"], ["ab", "ce"])
    assert result == {"exact_match": 0.5, "char_accuracy": 0.75}
    rows = scores_by_length(["a" * 12, "a" * 25, "a" * 27], ["x", "y", "z"], ["x", "y", "q"], edges=(10, 20, 30))
    assert [(r["n"], r["exact_match"]) for r in rows] == [(1, 1.0), (2, 0.5)]


def test_bad_input_raises_clear_errors(plays):
    with pytest.raises(ValueError, match="not in the vocabulary"):
        encode("Hello!")
    with pytest.raises(ValueError, match="split must be"):
        reversal_pairs(plays, "dev", 10)
    with pytest.raises(ValueError, match="min_chars"):
        reversal_pairs(plays, "val", 10, min_chars=30, max_chars=20)
    with pytest.raises(ValueError, match="no play of split"):
        reversal_pairs([p for p in plays if p.split == "train"], "test", 10)
    with pytest.raises(ValueError, match="step counts from 1"):
        warmup_lr(0, 64, 10)
    model = tiny_rnn(True)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.tensor([[3, 99]]), torch.tensor([[BOS_ID]]))
    with pytest.raises(ValueError, match=r"\(batch, tokens\)"):
        model(torch.tensor([3, 4]), torch.tensor([[BOS_ID]]))
    with pytest.raises(ValueError, match="bool tensor"):
        model(torch.tensor([[3, 4]]), torch.tensor([[BOS_ID]]), torch.tensor([[1, 1]]))
    with pytest.raises(ValueError, match="at least one real token"):
        model(torch.tensor([[3, 4]]), torch.tensor([[BOS_ID]]), torch.tensor([[False, True]]))
    with pytest.raises(ValueError, match="budget_seconds"):
        train_seq2seq(model, [Pair("a b", "b a", "x")], budget_seconds=0, d_model=16)


def test_a_budget_of_cpu_seconds_trains_on_one_thread_and_restores_the_count():
    model, seen = MODELS["rnn+attention"](), []
    forward = model.forward
    model.forward = lambda *args: seen.append(torch.get_num_threads()) or forward(*args)
    with threads(2):
        train_seq2seq(model, [Pair("a b", "b a", "x")] * 4, budget_seconds=60, d_model=32, max_steps=3,
                      progress=False)
        assert torch.get_num_threads() == 2
    assert seen == [1, 1, 1]


def test_training_by_updates_alone_makes_exactly_those_updates_and_refuses_no_budget():
    plays_pairs = [Pair("to be or not", "not or be to", "hamlet"),
                   Pair("that is the question", "question the is that", "hamlet")]
    model = build_model("transformer", seed=0)
    history = train_seq2seq(model, plays_pairs, None, d_model=64, batch_size=2, max_steps=7, progress=False,
                            cooldown=0.5)
    assert history.steps == 7 and history.lrs[-1] < history.lrs[3]
    with pytest.raises(ValueError, match="a number of updates"):
        train_seq2seq(model, plays_pairs, None, d_model=64, progress=False)
    with pytest.raises(ValueError, match="max_steps"):
        train_seq2seq(model, plays_pairs, None, d_model=64, max_steps=0, progress=False)
