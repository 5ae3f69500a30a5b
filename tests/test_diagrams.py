"""The drawn structure figures: each returns a Figure that names the parts the code names."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch
from matplotlib.path import Path

from llmcourse import diagrams


def texts(fig: Figure) -> dict[str, tuple[float, float]]:
    """Every piece of text in the figure, with its position in data units."""
    found = {}
    for ax in fig.axes:
        for text in ax.texts:
            found[text.get_text()] = text.get_position()
        found.update({label.get_text(): (0, 0) for label in ax.get_xticklabels() + ax.get_yticklabels()})
        found[ax.get_title()] = (0, 0)
    return found


def all_text(fig: Figure) -> str:
    return "\n".join(texts(fig))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_text_to_logits_names_each_stage_and_its_shape():
    text = all_text(diagrams.draw_text_to_logits())
    for label in ["tok_emb", "pos_emb", "final_norm", "out_head", "(T,)", "(T, d_model)", "(T, vocab_size)",
                  "(vocab_size,)"]:
        assert label in text, label


@pytest.mark.parametrize("pre_norm", [True, False])
def test_block_has_attention_feed_forward_two_norms_and_two_shortcuts(pre_norm):
    fig = diagrams.draw_transformer_block(pre_norm=pre_norm)
    found = texts(fig)
    for label in ["attn", "ff", "norm1", "norm2"]:
        assert label in found, label
    assert sum(t.get_text() == "+" for t in fig.axes[0].texts) == 2


def test_pre_norm_normalises_inside_the_branch_and_post_norm_after_the_addition():
    pre, post = texts(diagrams.draw_transformer_block(True)), texts(diagrams.draw_transformer_block(False))
    # Pre-norm: norm1 comes before attn, on the branch beside the stream (same column as attn).
    assert pre["norm1"][1] < pre["attn"][1] and pre["norm1"][0] == pre["attn"][0]
    # Post-norm: norm1 comes after attn, on the residual stream itself (a different column).
    assert post["norm1"][1] > post["attn"][1] and post["norm1"][0] < post["attn"][0]


def test_blocks_side_by_side_shows_both_variants():
    text = all_text(diagrams.draw_transformer_blocks())
    assert "pre-norm (GPT-2)" in text and "post-norm (2017)" in text


@pytest.mark.parametrize("n_layers", [1, 4, 12])
def test_gpt_stack_shows_embeddings_blocks_and_tied_head(n_layers):
    text = all_text(diagrams.draw_gpt_stack(n_layers))
    for label in ["tok_emb", "pos_emb", "final_norm", "out_head", "tied", f"blocks[{n_layers - 1}]"]:
        assert label in text, label
    assert f"n_layers = {n_layers}" in text


def test_causal_mask_allows_exactly_the_lower_triangle():
    tokens = ["a", "b", "c", "d"]
    fig = diagrams.draw_causal_mask(tokens)
    marks = {(round(t.get_position()[1] - 0.5), round(t.get_position()[0] - 0.5)): t.get_text()
             for t in fig.axes[0].texts}
    assert len(marks) == 16
    assert all((marks[row, col] == "✓") == (col <= row) for row, col in marks)
    assert [label.get_text() for label in fig.axes[0].get_xticklabels()] == tokens


def test_encoder_decoder_masks_show_each_attention_with_its_own_tokens():
    source, target = ["a", "b", "[PAD]"], ["x", "y"]
    real = [True, True, False]
    causal = [[True, False], [True, True]]
    fig = diagrams.draw_encoder_decoder_masks(source, target, [real] * 3, causal, [real] * 2)
    encoder, decoder, cross = fig.axes
    for ax, queries, keys, allowed in [(encoder, source, source, [real] * 3), (decoder, target, target, causal),
                                       (cross, target, source, [real] * 2)]:
        assert [label.get_text() for label in ax.get_yticklabels()] == queries
        assert [label.get_text() for label in ax.get_xticklabels()] == keys
        marks = {(round(t.get_position()[1] - 0.5), round(t.get_position()[0] - 0.5)): t.get_text() for t in ax.texts}
        assert marks == {(row, col): "✓" if allowed[row][col] else "×"
                         for row in range(len(queries)) for col in range(len(keys))}
    assert "causal" in decoder.get_title() and "cross-attention" in cross.get_title()


def test_encoder_decoder_shows_both_stacks_the_memory_into_every_cross_attention_and_the_tied_head():
    fig = diagrams.draw_encoder_decoder()
    text = all_text(fig)
    for label in ["encoder[0]", "encoder[1]", "decoder[0]", "decoder[1]", "attn (causal)", "encoder_norm",
                  "decoder_norm", "out_head", "memory", "tied", "(S,)", "(T, vocab_size)"]:
        assert label in text, label
    assert sum(t.get_text() == "cross_attn" for t in fig.axes[0].texts) == 2
    assert sum(t.get_text() == "cross_norm" for t in fig.axes[0].texts) == 2


def test_heads_split_attend_concatenate_and_mix():
    text = all_text(diagrams.draw_heads(3))
    for label in ["W_query", "W_key", "W_value", "h0", "h2", "out_proj", "head_dim"]:
        assert label in text, label
    assert "h3" not in text


def test_kv_cache_keeps_earlier_keys_and_computes_only_the_new_query():
    text = all_text(diagrams.draw_kv_cache(step=2))
    for label in ["k0", "k1", "k2", "v2", "q2", "W_query"]:
        assert label in text, label
    assert "q1" not in text and "k3" not in text


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="n_layers"):
        diagrams.draw_gpt_stack(0)
    with pytest.raises(ValueError, match="step"):
        diagrams.draw_kv_cache(0)
    with pytest.raises(ValueError, match="n_heads"):
        diagrams.draw_heads(0)
    with pytest.raises(ValueError, match="tokens"):
        diagrams.draw_causal_mask([])
    with pytest.raises(ValueError, match="cross-attention grid is 2 x 2"):
        diagrams.draw_encoder_decoder_masks(["a", "b", "c"], ["x", "y"], [[True] * 3] * 3, [[True] * 2] * 2,
                                            [[True] * 2] * 2)


def arrow_ends(ax) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """(start, tip) of every arrow in the axes, in data units, in the order they were drawn.

    The tip is the point of the arrow head, a little short of the arrow's end: good for directions.
    """
    ends = []
    for patch in ax.patches:
        if isinstance(patch, FancyArrowPatch):
            path = patch.get_path()
            vertices = [v for v, code in zip(path.vertices, path.codes) if code != Path.CLOSEPOLY]
            start = vertices[0]
            tip = max(vertices, key=lambda v: (v[0] - start[0]) ** 2 + (v[1] - start[1]) ** 2)
            ends.append((tuple(start), tuple(tip)))
    return ends


def test_lstm_cell_has_three_sigmoid_gates_a_candidate_and_the_two_updates():
    fig = diagrams.draw_lstm_cell()
    text = all_text(fig)
    for label in ["forget\n$f_t$  σ", "input\n$i_t$  σ", "output\n$o_t$  σ", "candidate\n$g_t$  tanh", "$x_t$",
                  "$h_{t-1}$", "$c_{t-1}$", "$c_t$", "$h_t$", r"$c_t = f_t \odot c_{t-1} + i_t \odot g_t$",
                  r"$h_t = o_t \odot \tanh(c_t)$"]:
        assert label in text, label
    marks = [t.get_text() for t in fig.axes[0].texts]
    assert marks.count("×") == 3 and marks.count("+") == 1  # f × c, i × g, o × tanh(c); one addition to c


def test_skipgram_windows_pair_the_center_with_each_word_within_the_window():
    words = ["now", "is", "the", "winter", "of", "our", "discontent"]
    fig = diagrams.draw_skipgram_windows(words, centre=3, window=2)
    text = all_text(fig)
    pairs = {t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("(winter, ")}
    assert pairs == {"(winter, is)", "(winter, the)", "(winter, of)", "(winter, our)"}
    assert len(arrow_ends(fig.axes[0])) == 4 and "window = 2" in text
    # At the edge of the row the window is cut short: only the words that exist are paired.
    edge = diagrams.draw_skipgram_windows(words, centre=0, window=2)
    assert {t.get_text() for t in edge.axes[0].texts if t.get_text().startswith("(now, ")} == {"(now, is)",
                                                                                              "(now, the)"}


def test_rotary_pairs_turn_dimension_i_with_i_plus_half_as_rotary_embedding_does():
    torch = pytest.importorskip("torch")
    from llmcourse.attention import RotaryEmbedding

    query = [0.9, -0.4, 0.2, 1.0, 0.5, 0.7, -0.8, 0.3]
    positions = (0, 1, 4)
    fig = diagrams.draw_rotary_pairs(query, positions)
    ax = fig.axes[0]
    rotated = RotaryEmbedding(8, 8)(torch.tensor(query).repeat(5, 1).view(1, 1, 5, 8))[0, 0]
    drawn = arrow_ends(ax)[:4 * len(positions)]  # one arrow per pair and position; the legend's come after
    expected = [(rotated[m, i].item(), rotated[m, i + 4].item()) for i in range(4) for m in positions]
    for (start, tip), (x, y) in zip(drawn, expected):  # each arrow points where the rotated pair points
        angle = math.atan2(tip[1] - start[1], tip[0] - start[0])
        assert math.cos(angle - math.atan2(y, x)) == pytest.approx(1.0, abs=1e-4)
    text = all_text(fig)
    for i in range(4):
        assert f"pair {i}: dims {i} and {i + 4}" in text
    assert "(fastest)" in text and "(slowest)" in text
    assert "m = 4: turned 229°" in text  # pair 0 turns 1 radian per position: 4 rad = 229.2°


def test_lora_shows_the_frozen_weight_the_low_rank_path_and_its_scale():
    text = all_text(diagrams.draw_lora(d_in=96, d_out=384, rank=8, alpha=16))
    for label in ["W, frozen", "384 × 96", "A   8 × 96", "B", "384 × 8", "starts at zero", "× α/r = 16/8",
                  "h = W x + (α/r) B A x", "36,864", "3,840"]:
        assert label in text, label


def test_shift_by_one_puts_under_each_input_the_token_that_follows_it():
    tokens = ["To", " be", ",", " or", " not"]
    fig = diagrams.draw_shift_by_one(tokens)
    ax = fig.axes[0]
    labels = [repr(t) for t in tokens]
    rows = {}
    for t in ax.texts:
        if t.get_text() in labels:
            x, y = t.get_position()
            rows.setdefault(round(y, 3), {})[round(x, 3)] = t.get_text()
    inputs, targets = (rows[y] for y in sorted(rows))
    columns = sorted(inputs)
    assert [inputs[x] for x in columns] == labels  # the last one drawn greyed: it is only a target
    for x, label in zip(columns[:-1], labels[1:]):
        assert targets[x] == label
    assert len(arrow_ends(ax)) == len(tokens) - 1
    assert "2514" in all_text(diagrams.draw_shift_by_one([2514, 307, 11]))


def test_dpo_shows_both_models_four_log_probabilities_two_log_ratios_and_the_loss():
    text = all_text(diagrams.draw_dpo(beta=0.5))
    for label in ["policy π\n(trained)", "reference π_ref\n(frozen copy)", "log π(y_w | x)", "log π_ref(y_w | x)",
                  "log π(y_l | x)", "log π_ref(y_l | x)", "log-ratio r_w\n= log π - log π_ref",
                  "log-ratio r_l\n= log π - log π_ref", "β = 0.5", "-log σ(margin)"]:
        assert label in text, label


def test_group_policy_gradient_shows_each_answer_its_reward_and_advantages_summing_to_zero():
    fig = diagrams.draw_group_policy_gradient((0, 1, 0, 0))
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert [t for t in labels if t.startswith("r = ")] == ["r = 0", "r = 1", "r = 0", "r = 0"]
    advantages = [float(t.removeprefix("A = ")) for t in labels if t.startswith("A = ")]
    assert advantages == [-0.5, 1.5, -0.5, -0.5] and abs(sum(advantages)) < 1e-9
    assert sum(t.startswith("answer ") for t in labels) == 4


@pytest.mark.parametrize("make_figure, message", [
    (lambda: diagrams.draw_dpo(beta=0), "beta"),
    (lambda: diagrams.draw_group_policy_gradient((1,)), "rewards"),
    (lambda: diagrams.draw_group_policy_gradient((0, 2)), "rewards"),
    (lambda: diagrams.draw_skipgram_windows(["to", "be"], centre=2, window=1), "centre"),
    (lambda: diagrams.draw_skipgram_windows(["to", "be"], centre=0, window=0), "window"),
    (lambda: diagrams.draw_skipgram_windows([], centre=0, window=1), "words"),
    (lambda: diagrams.draw_rotary_pairs([1.0, 2.0, 3.0]), "even number"),
    (lambda: diagrams.draw_rotary_pairs(positions=(1, 1)), "positions"),
    (lambda: diagrams.draw_lora(d_in=4, d_out=8, rank=5), "rank"),
    (lambda: diagrams.draw_lora(alpha=0), "alpha"),
    (lambda: diagrams.draw_shift_by_one(["To"]), "at least 2"),
    (lambda: diagrams.draw_shift_by_one("To be"), "not one string"),
])
def test_new_figures_refuse_bad_arguments(make_figure, message):
    with pytest.raises(ValueError, match=message):
        make_figure()
