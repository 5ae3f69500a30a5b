"""The drawn structure figures: each returns a Figure that names the parts the code names."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

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
