"""Drawn figures of the course's models and data (used in chapters 1-6), in the style of `llmcourse.drawing`.

Each function returns a matplotlib Figure. The boxes carry the names used in the code
(`tok_emb`, `norm1`, `attn`, `ff`, `out_head`, `W_query`, ...) and one colour per kind of part.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyBboxPatch, Rectangle

from llmcourse.drawing import COLOURS, EDGE, MONO, allowed_grid, arrow, box, canvas, line, plus, shape, split_bar

def draw_text_to_logits() -> Figure:
    """The forward pass for one text: token ids, embeddings, blocks, final norm, logits, probabilities."""
    fig, ax = canvas(9.0, 11.2)
    x, w = 3.2, 4.4
    steps = [  # (y, label, kind, shape written on the right)
        (10.5, '"To be or not"', "masked", "text"),
        (9.1, "token ids  [2514, 307, 393, 407]", "token", "(T,)            T = 4"),
        (5.9, "blocks[0] ... blocks[n_layers-1]\nattn + ff, each with a shortcut", "residual", "(T, d_model)"),
        (4.4, "final_norm", "norm", "(T, d_model)"),
        (3.1, "out_head", "output", "(T, vocab_size)   logits"),
        (1.4, "softmax of the last row", "output", "(vocab_size,)\nnext-token probabilities"),
    ]
    for y, label, kind, size in steps:
        height = 1.0 if "\n" in label else 0.7
        box(ax, x, y, w, height, label, "attention" if kind == "residual" else kind, fontsize=10)
        shape(ax, x + w / 2 + 0.25, y, size)
    box(ax, x - 1.2, 7.6, 1.9, 0.7, "tok_emb", "token")
    box(ax, x + 1.2, 7.6, 1.9, 0.7, "pos_emb", "token")
    shape(ax, x + w / 2 + 0.25, 7.6, "(T, d_model) each")
    plus(ax, x, 6.85)
    ax.text(x + 0.1, 9.8, "tokenizer", fontsize=8, style="italic", ha="left", va="center")
    arrow(ax, (x, 10.15), (x, 9.45))
    arrow(ax, (x - 1.2, 8.75), (x - 1.2, 7.95))
    ax.text(x - 1.1, 8.35, "look up rows", fontsize=8, style="italic", ha="left", va="center")
    arrow(ax, (x + 1.2, 8.75), (x + 1.2, 7.95))
    ax.text(x + 1.3, 8.35, "positions 0..T-1", fontsize=8, style="italic", ha="left", va="center")
    arrow(ax, (x - 1.2, 7.25), (x - 0.2, 6.9))
    arrow(ax, (x + 1.2, 7.25), (x + 0.2, 6.9))
    arrow(ax, (x, 6.65), (x, 6.4))
    arrow(ax, (x, 5.4), (x, 4.75))
    arrow(ax, (x, 4.05), (x, 3.45))
    arrow(ax, (x, 2.75), (x, 1.75))
    ax.text(x + 0.1, 2.25, "keep the last position's row", fontsize=8, style="italic", ha="left", va="center")
    ax.set_title("From text to next-token probabilities", fontsize=12)
    return fig


def draw_transformer_block(pre_norm: bool = True, ax: Axes | None = None) -> Figure:
    """One transformer block: pre-norm x + f(norm(x)) as in GPT-2, or post-norm norm(x + f(x)) as in 2017."""
    fig, ax = canvas(5.6, 9.6, ax)
    stream, branch = 1.4, 3.8
    grey, bw, bh = COLOURS["residual"], 2.4, 0.7

    def sublayer(split: float, top: float, boxes: list[tuple[float, str, str]]) -> None:
        # The branch leaves the stream at `split`, passes its boxes and is added back at `top`.
        line(ax, [(stream, split), (branch, split)], EDGE)
        arrow(ax, (branch, split), (branch, boxes[0][0] - bh / 2))
        for (y, label, kind), following in zip(boxes, boxes[1:] + [(None, None, None)]):
            box(ax, branch, y, bw, bh, label, kind, fontsize=11)
            if following[0] is not None:
                arrow(ax, (branch, y + bh / 2), (branch, following[0] - bh / 2))
        line(ax, [(branch, boxes[-1][0] + bh / 2), (branch, top)], EDGE)
        arrow(ax, (branch, top), (stream + 0.2, top))
        plus(ax, stream, top)

    ax.text(stream, 0.25, "x  (T, d_model)", ha="center", va="center", fontsize=10, family=MONO)
    if pre_norm:
        line(ax, [(stream, 0.5), (stream, 3.7)], grey, 3)
        sublayer(1.0, 3.9, [(1.8, "norm1", "norm"), (2.9, "attn", "attention")])
        line(ax, [(stream, 4.1), (stream, 7.2)], grey, 3)
        sublayer(4.5, 7.4, [(5.3, "norm2", "norm"), (6.4, "ff", "ff")])
        arrow(ax, (stream, 7.6), (stream, 9.0), grey, 3)
        title, formula = "pre-norm (GPT-2)", "x + attn(norm1(x))\nthen x + ff(norm2(x))"
    else:
        line(ax, [(stream, 0.5), (stream, 3.0)], grey, 3)
        sublayer(1.0, 3.2, [(2.1, "attn", "attention")])
        arrow(ax, (stream, 3.4), (stream, 3.65), grey, 3)
        box(ax, stream, 4.0, 1.6, bh, "norm1", "norm", fontsize=11)
        line(ax, [(stream, 4.35), (stream, 6.6)], grey, 3)
        sublayer(4.9, 6.8, [(5.8, "ff", "ff")])
        arrow(ax, (stream, 7.0), (stream, 7.25), grey, 3)
        box(ax, stream, 7.6, 1.6, bh, "norm2", "norm", fontsize=11)
        arrow(ax, (stream, 7.95), (stream, 9.0), grey, 3)
        title, formula = "post-norm (2017)", "norm1(x + attn(x))\nthen norm2(x + ff(x))"
    ax.text(stream, 9.25, "to the next block", ha="center", va="center", fontsize=9)
    ax.text(0.35, 5.3, "residual stream", rotation=90, ha="center", va="center", fontsize=9, color="#666666")
    ax.text(branch, 8.6, formula, ha="center", va="center", fontsize=8.5, family=MONO, color="#555555")
    ax.set_title(title, fontsize=12)
    return fig


def draw_transformer_blocks() -> Figure:
    """Pre-norm and post-norm blocks side by side, to compare where the norms sit."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 8.0))
    draw_transformer_block(pre_norm=True, ax=left)
    draw_transformer_block(pre_norm=False, ax=right)
    fig.suptitle("The same block, two places for the norm", fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def draw_gpt_stack(n_layers: int = 4) -> Figure:
    """The whole GPT: embeddings, n_layers blocks on the residual stream, final norm, tied output head."""
    if n_layers < 1:
        raise ValueError(f"n_layers must be at least 1, got {n_layers}")
    shown = list(range(n_layers)) if n_layers <= 5 else [0, 1, None, n_layers - 1]
    height = 6.2 + 1.0 * len(shown)
    fig, ax = canvas(9.0, height, scale=0.8)
    x, w, grey = 4.6, 4.0, COLOURS["residual"]
    y = 0.4
    ax.text(x, y, "token ids  (T,)", ha="center", va="center", fontsize=10, family=MONO)
    arrow(ax, (x, y + 0.25), (x, y + 0.85))
    y += 1.2
    box(ax, x - 1.05, y, 1.8, 0.7, "tok_emb", "token")
    box(ax, x + 1.05, y, 1.8, 0.7, "pos_emb", "token")
    emb_y = y
    y += 1.0
    plus(ax, x, y)
    line(ax, [(x - 1.05, emb_y + 0.35), (x - 0.2, y)])
    line(ax, [(x + 1.05, emb_y + 0.35), (x + 0.2, y)])
    first_block = y + 0.5
    for layer in shown:
        y += 1.0
        if layer is None:
            ax.text(x, y, "...", ha="center", va="center", fontsize=16)
            continue
        box(ax, x, y, w, 0.7, f"blocks[{layer}]: norm1 attn norm2 ff", "attention", fontsize=9)
    last_block = y + 0.35
    line(ax, [(x, first_block - 0.3), (x, last_block + 0.5)], grey, 3)
    ax.text(x + w / 2 + 0.2, (first_block + last_block) / 2,
            f"n_layers = {n_layers} blocks\non the residual stream\n(T, d_model)",
            ha="left", va="center", fontsize=9, family=MONO, color="#555555")
    y += 1.2
    arrow(ax, (x, last_block + 0.5), (x, y - 0.35), grey, 3)
    box(ax, x, y, w, 0.7, "final_norm", "norm")
    y += 1.2
    arrow(ax, (x, y - 0.85), (x, y - 0.35))
    box(ax, x, y, w, 0.7, "out_head", "output")
    head_y = y
    y += 1.0
    arrow(ax, (x, y - 0.65), (x, y - 0.15))
    ax.text(x, y + 0.05, "logits  (T, vocab_size)", ha="center", va="center", fontsize=10, family=MONO)
    arrow(ax, (x - w / 2, head_y), (x - 1.05 - 0.9, emb_y), COLOURS["output"], 2, dashed=True, curve=0.3)
    ax.text(x - w / 2 - 1.4, (head_y + emb_y) / 2, "tied:\nout_head.weight\nis tok_emb.weight\n(vocab_size,\n d_model)",
            ha="right", va="center", fontsize=8.5, family=MONO, color="#555555")
    ax.set_title(f"The GPT: embeddings, {n_layers} blocks, final norm, output head", fontsize=11, pad=14)
    return fig


def draw_causal_mask(tokens: list[str] | None = None) -> Figure:
    """The T x T grid of (query row, key column) pairs: each query sees itself and earlier keys only."""
    tokens = tokens if tokens is not None else ["To", "be", "or", "not", "to", "be"]
    if not tokens:
        raise ValueError("tokens must be a non-empty list of strings")
    n = len(tokens)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * n, 1.2 + 0.6 * n))
    allowed_grid(ax, [[col <= row for col in range(n)] for row in range(n)])
    ax.set_xticks([i + 0.5 for i in range(n)], tokens)
    ax.set_yticks([i + 0.5 for i in range(n)], tokens)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("key (the token looked at)")
    ax.set_ylabel("query (the token looking)")
    ax.set_title("causal mask: row i sees keys 0..i (✓), never later ones (×)", fontsize=10, pad=10, y=-0.12)
    fig.tight_layout()
    return fig


def draw_encoder_decoder_masks(source_tokens: list[str], target_tokens: list[str], encoder_self, decoder_self,
                               cross) -> Figure:
    """The three attentions of an encoder-decoder as grids of allowed (query, key) pairs, side by side.

    Each grid is indexed [query][key] and true where the query may attend to the key (a bool tensor works):
    encoder_self is source x source, decoder_self target x target, cross target x source.
    """
    panels = [  # (allowed, query tokens, key tokens, title, what the queries are, what the keys are)
        (encoder_self, source_tokens, source_tokens, "encoder self-attention:\nall real source tokens, no padding",
         "source token", "source token"),
        (decoder_self, target_tokens, target_tokens, "decoder self-attention:\nthe target so far (causal)",
         "target token", "target token"),
        (cross, target_tokens, source_tokens, "cross-attention:\nevery target token sees the whole source",
         "target token", "source token (the memory)"),
    ]
    for allowed, queries, keys, title, *_ in panels:
        if (len(allowed), len(allowed[0])) != (len(queries), len(keys)):
            raise ValueError(f"the {title.split(':')[0]} grid is {len(allowed)} x {len(allowed[0])}, "
                             f"but there are {len(queries)} query and {len(keys)} key tokens")
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2),
                             gridspec_kw={"width_ratios": [len(keys) for _, _, keys, *_ in panels]})
    for ax, (allowed, queries, keys, title, query_kind, key_kind) in zip(axes, panels):
        allowed_grid(ax, allowed, mark_size=7, gap=1.5)
        ax.set_xticks([i + 0.5 for i in range(len(keys))], keys, rotation=90, family=MONO, fontsize=8)
        ax.set_yticks([i + 0.5 for i in range(len(queries))], queries, family=MONO, fontsize=8)
        ax.set_xlabel(f"key: {key_kind}")
        ax.set_ylabel(f"query: {query_kind}")
        ax.set_title(title, fontsize=10)
    fig.suptitle("Which keys each query may attend to, read from the model's attention weights", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def draw_heads(n_heads: int = 4) -> Figure:
    """Multi-head attention: one projection split into n_heads slices, attended separately, merged."""
    if not 1 <= n_heads <= 12:
        raise ValueError(f"n_heads must be between 1 and 12 to draw, got {n_heads}")
    width = max(8.0, 1.6 * n_heads + 3.0)
    fig, ax = canvas(width, 9.0, scale=0.8)
    x, bar = width / 2 - 0.6, 1.45 * n_heads
    slices = [f"h{i}" for i in range(n_heads)]
    right = x + max(bar, 4.0) / 2 + 0.3
    ax.text(x, 8.6, "x  (T, d_model)", ha="center", va="center", fontsize=10, family=MONO)
    arrow(ax, (x, 8.35), (x, 7.95))
    box(ax, x, 7.6, 4.0, 0.7, "W_query  W_key  W_value", "attention")
    arrow(ax, (x, 7.25), (x, 6.75))
    centres = split_bar(ax, x, 6.4, bar, 0.6, n_heads, "attention", slices)
    shape(ax, right, 6.4, "q, k, v: (T, d_model) each,\ncut into n_heads slices\nof head_dim columns")
    for c in centres:
        arrow(ax, (c, 6.1), (c, 5.15))
        box(ax, c, 4.7, 1.3, 0.9, "softmax(\nq kᵀ/√hd\n) · v", "attention", fontsize=7.5)
        arrow(ax, (c, 4.25), (c, 3.3))
    shape(ax, right, 4.7, f"{n_heads} heads, each on its own\nslice: (T, head_dim)")
    split_bar(ax, x, 3.0, bar, 0.6, n_heads, "attention", slices)
    shape(ax, right, 3.0, "concatenated back:\n(T, d_model)")
    arrow(ax, (x, 2.7), (x, 2.25))
    box(ax, x, 1.9, 2.4, 0.7, "out_proj", "attention")
    shape(ax, right, 1.9, "mixes the heads")
    arrow(ax, (x, 1.55), (x, 1.05))
    ax.text(x, 0.8, "output  (T, d_model)", ha="center", va="center", fontsize=10, family=MONO)
    ax.text(x, 0.3, "hd = head_dim = d_model / n_heads", ha="center", va="center", fontsize=8.5,
            family=MONO, color="#555555")
    ax.set_title(f"Splitting attention into {n_heads} heads and merging them back", fontsize=11)
    return fig


def draw_kv_cache(step: int = 3) -> Figure:
    """Generation step `step` with a key-value cache: only the new token's q, k, v are computed."""
    if step < 1:
        raise ValueError(f"step must be at least 1 (step 0 has nothing cached), got {step}")
    n = step + 1
    cell, left = 1.0, 3.2
    width = left + n * cell + 4.4
    fig, ax = canvas(width, 5.4, scale=0.85)
    ax.text(left - 0.3, 4.8, "tokens", ha="right", va="center", fontsize=10)
    for i in range(n):
        new = i == step
        box(ax, left + i * cell + cell / 2, 4.8, cell * 0.85, 0.6, f"t{i}", "token" if new else "masked",
             fontsize=10, fontweight="bold" if new else "normal")
    for y, letter, name in [(3.3, "k", "keys cache"), (2.3, "v", "values cache")]:
        ax.text(left - 0.3, y, name, ha="right", va="center", fontsize=10)
        for i in range(n):
            new = i == step
            ax.add_patch(Rectangle((left + i * cell, y - 0.4), cell, 0.8, facecolor=COLOURS["attention"],
                                   alpha=1.0 if new else 0.45, edgecolor=EDGE,
                                   linewidth=2.2 if new else 1.0, zorder=2))
            ax.text(left + i * cell + cell / 2, y, f"{letter}{i}", ha="center", va="center",
                    fontsize=10, family=MONO, zorder=3)
    new_x = left + step * cell + cell / 2
    arrow(ax, (new_x, 4.5), (new_x, 3.7))
    ax.text(new_x + 0.1, 4.1, "W_key, W_value", ha="left", va="center", fontsize=8, family=MONO)
    ax.text(left + step * cell / 2, 3.95, f"kept from steps 0..{step - 1}", ha="center", va="center",
            fontsize=8.5, style="italic", color="#555555")
    end = left + n * cell
    qx = end + 2.6
    box(ax, qx, 4.8, 1.2, 0.6, f"q{step}", "attention", fontsize=10)
    arrow(ax, (new_x + cell * 0.45, 4.8), (qx - 0.6, 4.8))
    ax.text((new_x + cell * 0.45 + qx - 0.6) / 2, 4.95, "W_query", ha="center", va="bottom", fontsize=8, family=MONO)
    arrow(ax, (qx, 4.5), (end + 0.05, 3.3), EDGE, curve=-0.2)
    ax.text(qx - 0.1, 3.55, f"scores q{step}·k0..k{step},\nsoftmax: {n} weights", ha="left", va="center",
            fontsize=8.5, family=MONO)
    arrow(ax, (end + 0.05, 2.3), (qx, 1.2), EDGE, curve=0.2)
    ax.text(qx - 0.1, 2.2, f"weighted sum\nof v0..v{step}", ha="left", va="center", fontsize=8.5, family=MONO)
    box(ax, qx, 0.9, 2.2, 0.6, f"output for t{step}", "attention", fontsize=10)
    ax.text(left + n * cell / 2, 0.9, f"step {step}: one new row of q, k, v;\n"
            "earlier keys and values are reused,\nnot recomputed", ha="center", va="center", fontsize=9)
    ax.set_title(f"Generating with a key-value cache: step {step}", fontsize=11)
    return fig


def _post_norm_block(ax: Axes, x: float, bottom: float, name: str, rows: list[tuple[str, str, str]]) -> float:
    """A dashed frame named `name` holding post-norm sub-layers, norm(x + sublayer(x)), from the bottom up.

    Each row is (sub-layer, its norm, the sub-layer's kind); the path enters from below and runs through the
    sub-layer boxes at x - 0.55. Returns the frame's top.
    """
    path, height = x - 0.55, 0.8 * len(rows) + 0.3
    ax.add_patch(Rectangle((x - 2.0, bottom - 0.1), 4.0, height, fill=False, edgecolor=COLOURS["residual"],
                           linestyle="--"))
    ax.text(x - 1.9, bottom + height - 0.3, name, fontsize=8, family=MONO, color="#555555")
    arrow(ax, (path, bottom - 0.45), (path, bottom + 0.1))
    for k, (sublayer, norm, kind) in enumerate(rows):
        y = bottom + 0.4 + 0.8 * k
        if k:
            arrow(ax, (path, y - 0.5), (path, y - 0.3))
        box(ax, path, y, 2.1, 0.6, sublayer, kind, fontsize=9)
        box(ax, x + 1.2, y, 1.3, 0.6, norm, "norm", fontsize=9)
    return bottom + height - 0.1


def draw_encoder_decoder() -> Figure:
    """The 2017 encoder-decoder, two blocks of each stack: the memory feeds every decoder block's cross-attention."""
    fig, ax = canvas(13.0, 11.4)
    enc_x, dec_x, memory_x = 2.6, 8.9, 5.6
    enc_path, dec_path = enc_x - 0.55, dec_x - 0.55  # the path through the sub-layer boxes
    memory_colour, tied_colour = COLOURS["attention"], COLOURS["output"]
    for x, ids in [(enc_x, "source ids  (S,)"), (dec_x, "target ids  (T,)")]:
        ax.text(x, 0.35, ids, ha="center", fontsize=10, family=MONO)
        arrow(ax, (x, 0.7), (x, 1.05))
        box(ax, x, 1.5, 3.6, 0.8, "tok_emb(ids) × √d_model\n+ pos_table (sinusoids)", "token", fontsize=9)
    ax.text((enc_x + dec_x) / 2, 1.5, "one shared\ntable", ha="center", va="center", fontsize=8, style="italic")

    enc_bottom = dec_bottom = 2.4
    cross_ys = []
    for layer in range(2):
        enc_top = _post_norm_block(ax, enc_x, enc_bottom, f"encoder[{layer}]",
                                   [("attn (all)", "norm1", "attention"), ("ff", "norm2", "ff")])
        dec_top = _post_norm_block(ax, dec_x, dec_bottom, f"decoder[{layer}]",
                                   [("attn (causal)", "norm1", "attention"),
                                    ("cross_attn", "cross_norm", "attention"), ("ff", "norm2", "ff")])
        cross_ys.append(dec_bottom + 1.2)  # the middle row of the decoder block
        enc_bottom, dec_bottom = enc_top + 0.55, dec_top + 0.55
    ax.text(0.3, (2.4 + enc_top) / 2, "× n_layers", rotation=90, ha="center", va="center", fontsize=9,
            family=MONO, color="#555555")
    ax.text(dec_x + 2.15, (2.4 + dec_top) / 2, "× n_layers", rotation=90, ha="left", va="center", fontsize=9,
            family=MONO, color="#555555")

    norm_y = dec_top + 0.75
    arrow(ax, (enc_path, enc_top), (enc_path, norm_y - 0.3))
    box(ax, enc_path, norm_y, 2.1, 0.6, "encoder_norm", "norm", fontsize=9)
    arrow(ax, (dec_path, dec_top), (dec_path, norm_y - 0.3))
    box(ax, dec_path, norm_y, 2.1, 0.6, "decoder_norm", "norm", fontsize=9)
    arrow(ax, (dec_path, norm_y + 0.3), (dec_path, norm_y + 0.8))
    box(ax, dec_path, norm_y + 1.1, 2.1, 0.6, "out_head", "output", fontsize=9)
    arrow(ax, (dec_path, norm_y + 1.4), (dec_path, norm_y + 1.8))
    ax.text(dec_path, norm_y + 2.0, "logits  (T, vocab_size)", ha="center", fontsize=10, family=MONO)

    line(ax, [(enc_path, norm_y + 0.3), (enc_path, norm_y + 0.75), (memory_x, norm_y + 0.75),
               (memory_x, cross_ys[0])], memory_colour, 3)
    for cross_y in cross_ys:
        arrow(ax, (memory_x, cross_y), (dec_x - 1.6, cross_y), memory_colour, 3)
    ax.text(memory_x + 0.15, (cross_ys[0] + cross_ys[1]) / 2, "memory  (S, d_model)", rotation=90, ha="left",
            va="center", fontsize=9, family=MONO, color="#555555")
    arrow(ax, (dec_path + 1.05, norm_y + 1.1), (dec_x + 1.8, 1.5), tied_colour, 2, dashed=True, curve=-0.45)
    ax.text(dec_path + 1.25, norm_y + 1.55, "tied: out_head.weight\nis tok_emb.weight", ha="left", va="center",
            fontsize=8, family=MONO, color="#555555")
    ax.set_title("The encoder-decoder: the memory feeds the cross-attention of every decoder block", fontsize=12)
    return fig


def _product(ax: Axes, x: float, y: float, radius: float = 0.2) -> None:
    """A × node: two paths multiplied element by element (the LSTM's gates)."""
    ax.add_patch(Circle((x, y), radius, facecolor="white", edgecolor=EDGE, linewidth=1.5, zorder=2))
    ax.text(x, y, "×", ha="center", va="center", fontsize=12, fontweight="bold", zorder=3)


def draw_lstm_cell() -> Figure:
    """One LSTM step: three sigmoid gates and a tanh candidate, read from x_t and h_{t-1}, update the cell c."""
    fig, ax = canvas(11.6, 7.8, scale=0.85)
    grey = COLOURS["residual"]
    top, gates_y, bus = 6.0, 2.9, 1.5  # heights of the cell state, the gate boxes and the input bus
    f_x, i_x, g_x, o_x, out_x = 3.2, 4.6, 6.0, 7.4, 8.9
    ax.add_patch(FancyBboxPatch((1.9, 0.95), 8.0, 6.15, boxstyle="round,pad=0,rounding_size=0.3", fill=False,
                                edgecolor=grey, linestyle="--", linewidth=1.0, zorder=0))
    # The cell state: multiplied by the forget gate, then the gated candidate is added.
    ax.text(0.2, top, "$c_{t-1}$", ha="left", va="center", fontsize=12)
    line(ax, [(0.9, top), (f_x - 0.2, top)], grey, 3)
    _product(ax, f_x, top)
    line(ax, [(f_x + 0.2, top), (g_x - 0.2, top)], grey, 3)
    plus(ax, g_x, top)
    arrow(ax, (g_x + 0.2, top), (10.6, top), grey, 3)
    ax.text(10.7, top, "$c_t$", ha="left", va="center", fontsize=12)
    # The inputs: h_{t-1} from the left, x_t from below, both read by every gate.
    ax.text(0.2, bus, "$h_{t-1}$", ha="left", va="center", fontsize=12)
    line(ax, [(0.9, bus), (o_x, bus)])
    ax.text(2.4, 0.25, "$x_t$", ha="center", va="center", fontsize=12)
    line(ax, [(2.4, 0.5), (2.4, bus)])
    ax.text(o_x + 0.25, bus + 0.1, "both inputs feed\nevery gate", ha="left", va="bottom", fontsize=8,
            style="italic", color="#555555")
    gates = [(f_x, "forget\n$f_t$  σ", "attention"), (i_x, "input\n$i_t$  σ", "attention"),
             (g_x, "candidate\n$g_t$  tanh", "ff"), (o_x, "output\n$o_t$  σ", "attention")]
    for x, label, kind in gates:
        arrow(ax, (x, bus), (x, gates_y - 0.45))
        box(ax, x, gates_y, 1.25, 0.9, label, kind, fontsize=9.5, mono=False)
    # Forget gate up to its ×; input gate × candidate, up to the +.
    arrow(ax, (f_x, gates_y + 0.45), (f_x, top - 0.2))
    _product(ax, g_x, 4.5)
    arrow(ax, (g_x, gates_y + 0.45), (g_x, 4.3))
    line(ax, [(i_x, gates_y + 0.45), (i_x, 4.5)])
    arrow(ax, (i_x, 4.5), (g_x - 0.2, 4.5))
    arrow(ax, (g_x, 4.7), (g_x, top - 0.2))
    # The new state, squashed and shown through the output gate, is h_t.
    line(ax, [(out_x, top), (out_x, 5.3)], grey, 3)
    arrow(ax, (out_x, 5.3), (out_x, 4.95), grey, 3)
    box(ax, out_x, 4.6, 1.1, 0.6, "tanh", "ff", fontsize=10, mono=False)
    arrow(ax, (out_x, 4.3), (out_x, gates_y + 0.2))
    _product(ax, out_x, gates_y)
    arrow(ax, (o_x + 0.625, gates_y), (out_x - 0.2, gates_y))
    arrow(ax, (out_x + 0.2, gates_y), (10.6, gates_y))
    ax.text(10.7, gates_y, "$h_t$", ha="left", va="center", fontsize=12)
    ax.text(f_x + 1.2, top + 0.55, "$c_t = f_t \\odot c_{t-1} + i_t \\odot g_t$", ha="center", va="center",
            fontsize=10)
    ax.text(out_x + 0.3, 3.75, "$h_t = o_t \\odot \\tanh(c_t)$", ha="left", va="center", fontsize=10)
    ax.set_title("One step of an LSTM: gates between 0 and 1 decide what the cell keeps, writes and shows",
                 fontsize=11)
    return fig


def draw_skipgram_windows(words: list[str], centre: int, window: int) -> Figure:
    """Skip-gram's training pairs for one center word: every word up to `window` places either side of it."""
    if not words or not all(isinstance(word, str) and word for word in words):
        raise ValueError("words must be a non-empty list of non-empty strings")
    if len(words) > 12:
        raise ValueError(f"at most 12 words fit in the figure, got {len(words)}")
    if isinstance(centre, bool) or not isinstance(centre, int) or not 0 <= centre < len(words):
        raise ValueError(f"centre must be a position in the row of {len(words)} words (0 to {len(words) - 1}), "
                         f"got {centre!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    context = [i for i in range(centre - window, centre + window + 1) if i != centre and 0 <= i < len(words)]
    widths = [max(1.0, 0.17 * len(word) + 0.45) for word in words]
    gap = 0.25
    width = sum(widths) + gap * (len(words) - 1) + 1.0
    n_rows = (len(context) + 1) // 2
    reach = sum(widths[min(context + [centre]):max(context + [centre]) + 1]) / 2  # the longest arc's span, about
    arc_room = 0.3 + 0.25 * reach
    height = 3.3 + 0.45 * n_rows + arc_room
    fig, ax = canvas(max(width, 8.0), height, scale=0.9)
    left = (max(width, 8.0) - width) / 2 + 0.5
    centres, row_y = [], height - 1.0 - arc_room
    for i, (word, w) in enumerate(zip(words, widths)):
        x = left + w / 2
        left += w + gap
        centres.append(x)
        kind = "attention" if i == centre else "token" if i in context else "masked"
        box(ax, x, row_y, w, 0.6, word, kind, fontsize=10, fontweight="bold" if i == centre else "normal")
        ax.text(x, row_y - 0.5, f"{i - centre:+d}" if i in context else "center" if i == centre else "",
                ha="center", va="center", fontsize=8, family=MONO, color="#555555")
    for i in context:  # arcs above the row, from the center word to each of its context words
        arrow(ax, (centres[centre], row_y + 0.32), (centres[i], row_y + 0.32), curve=-0.5 if i > centre else 0.5)
    low, high = centres[min(context + [centre])], centres[max(context + [centre])]
    line(ax, [(low - 0.3, row_y - 0.8), (low - 0.3, row_y - 0.9), (high + 0.3, row_y - 0.9),
              (high + 0.3, row_y - 0.8)], COLOURS["residual"], 1.5)
    ax.text((low + high) / 2, row_y - 1.15, f"window = {window}: up to {window} word{'s' if window > 1 else ''} "
            "on each side", ha="center", va="center", fontsize=9, style="italic")
    ax.text(0.5, row_y - 1.75, f"(center, context) training pairs for \"{words[centre]}\":", ha="left",
            va="center", fontsize=10)
    pairs = [f"({words[centre]}, {words[i]})" for i in context]
    column = 0.6 + 0.15 * max(len(pair) for pair in pairs)
    for k, pair in enumerate(pairs):
        ax.text(0.9 + (k % 2) * column, row_y - 2.25 - 0.45 * (k // 2), pair,
                ha="left", va="center", fontsize=10, family=MONO)
    ax.set_title(f"Skip-gram: the center word and its neighbours within {window}", fontsize=11)
    return fig


def draw_rotary_pairs(query: list[float] | None = None, positions: tuple[int, ...] = (0, 1, 4),
                      base: float = 10000.0) -> Figure:
    """Rotary positions: each pair of a query's dimensions, (i, i + d/2), turned by position x ω_i.

    `query` is one head's query vector (d numbers, d even); pair i turns at ω_i = base^(-2i/d) radians per
    position, as in `llmcourse.attention.RotaryEmbedding`. One panel per pair, one arrow per position.
    """
    query = [1.0, 0.8, 0.9, 1.0, 0.3, -0.5, 0.4, 0.0] if query is None else [float(v) for v in query]
    d = len(query)
    if d < 2 or d % 2 or d > 16:
        raise ValueError(f"query must have an even number of dimensions between 2 and 16, got {d}")
    if not all(math.isfinite(v) for v in query):
        raise ValueError("query must hold finite numbers")
    half = d // 2
    if any(query[i] == 0 and query[i + half] == 0 for i in range(half)):
        raise ValueError("every pair (i, i + d/2) of the query needs a non-zero number to draw as an arrow")
    positions = tuple(positions)
    if not 1 <= len(positions) <= 4 or len(set(positions)) < len(positions) or any(
            isinstance(m, bool) or not isinstance(m, int) or m < 0 for m in positions):
        raise ValueError(f"positions must be 1 to 4 different non-negative integers, got {positions!r}")
    if not base > 1:
        raise ValueError(f"base must be greater than 1, got {base!r}")
    colours = [EDGE, "#e69138", "#8e7cc3", "#6aa84f"]  # dark grey, then deeper shades of attention, output, ff
    panel, radius = 3.3, 1.0
    longest = max(math.hypot(query[i], query[i + half]) for i in range(half))
    height = 4.3 + 0.35 * len(positions)
    fig, ax = canvas(panel * half + 0.4, height, scale=0.85)
    cy = height - 2.0
    for i in range(half):
        cx = 0.2 + panel * (i + 0.5)
        omega = base ** (-2 * i / d)
        ax.add_patch(Circle((cx, cy), radius, fill=False, edgecolor=COLOURS["masked"], linewidth=1.5))
        line(ax, [(cx - radius - 0.1, cy), (cx + radius + 0.1, cy)], COLOURS["masked"], 1.0)
        line(ax, [(cx, cy - radius - 0.1), (cx, cy + radius + 0.1)], COLOURS["masked"], 1.0)
        ax.text(cx, cy + radius + 0.75, f"pair {i}: dims {i} and {i + half}", ha="center", va="center",
                fontsize=10, family=MONO)
        speed = " (fastest)" if i == 0 and half > 1 else " (slowest)" if i == half - 1 and half > 1 else ""
        ax.text(cx, cy + radius + 0.35, f"ω{_subscript(i)} = {omega:.3g} rad/position{speed}", ha="center",
                va="center", fontsize=8.5, color="#555555")
        first, second = query[i], query[i + half]
        for k, (m, colour) in enumerate(zip(positions, colours)):
            angle = m * omega
            x = (first * math.cos(angle) - second * math.sin(angle)) / longest * radius
            y = (first * math.sin(angle) + second * math.cos(angle)) / longest * radius
            arrow(ax, (cx, cy), (cx + x, cy + y), colour, 2.5)
            turned = math.degrees(angle) % 360
            ax.text(cx, cy - radius - 0.35 - 0.35 * k, f"m = {m}: turned {_degrees(turned)}", ha="center",
                    va="center", fontsize=8.5, family=MONO)
    legend_y = cy - radius - 0.75 - 0.35 * len(positions)
    for k, (m, colour) in enumerate(zip(positions, colours)):
        x = panel * half / 2 + 0.2 + (k - (len(positions) - 1) / 2) * 2.2
        arrow(ax, (x - 0.9, legend_y), (x - 0.3, legend_y), colour, 2.5)
        ax.text(x - 0.2, legend_y, f"position {m}", ha="left", va="center", fontsize=9)
    ax.set_title(f"Rotary positions: a query of {d} dimensions at positions "
                 f"{', '.join(str(m) for m in positions)}; pair i turns by m × ω{_subscript('i')}", fontsize=11)
    return fig


def _subscript(value) -> str:
    """A number or letter written as a subscript (ω₀, ωᵢ)."""
    return str(value).translate(str.maketrans("0123456789i", "₀₁₂₃₄₅₆₇₈₉ᵢ"))


def _degrees(value: float) -> str:
    """An angle in degrees with as many decimals as a small one needs."""
    return f"{value:.0f}°" if value >= 10 else f"{value:.1f}°" if value >= 1 or value == 0 else f"{value:.2g}°"


def draw_lora(d_in: int = 96, d_out: int = 384, rank: int = 8, alpha: float = 16) -> Figure:
    """LoRA: a frozen weight W beside a trainable low-rank path B A scaled by alpha / rank, the two added."""
    for name, value in [("d_in", d_in), ("d_out", d_out), ("rank", rank)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if rank > min(d_in, d_out):
        raise ValueError(f"rank must be at most min(d_in, d_out) = {min(d_in, d_out)}, got {rank}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < math.inf:
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
    fig, ax = canvas(11.4, 10.1, scale=0.8)
    w_x, lora_x, split, size = 2.9, 7.6, 1.3, 3.0  # size: the drawn side of W, for d_in across and d_out up
    thin = 0.5  # the drawn side of A and B along the rank
    ax.text((w_x + lora_x) / 2, 0.35, f"x  (d_in,)   d_in = {d_in}", ha="center", va="center", fontsize=10,
            family=MONO)
    line(ax, [((w_x + lora_x) / 2, 0.6), ((w_x + lora_x) / 2, split)])
    line(ax, [(w_x, split), (lora_x, split)])
    # The frozen weight: d_out x d_in, drawn as a large square.
    w_bottom = 3.0
    arrow(ax, (w_x, split), (w_x, w_bottom))
    ax.add_patch(Rectangle((w_x - size / 2, w_bottom), size, size, facecolor=COLOURS["masked"], edgecolor=EDGE,
                           hatch="//", linewidth=1.2, zorder=2))
    box(ax, w_x, w_bottom + size / 2, 2.4, 1.3, f"W, frozen\n(d_out × d_in)\n{d_out} × {d_in}", "masked",
        fontsize=10)
    # The trainable path: A (rank x d_in), as wide as W; B (d_out x rank), as tall as W.
    a_y = 2.3
    arrow(ax, (lora_x, split), (lora_x, a_y - thin / 2))
    ax.add_patch(Rectangle((lora_x - size / 2, a_y - thin / 2), size, thin, facecolor=COLOURS["ff"],
                           edgecolor=EDGE, linewidth=1.2, zorder=2))
    ax.text(lora_x, a_y, f"A   {rank} × {d_in}", ha="center", va="center", fontsize=10, family=MONO, zorder=3)
    shape(ax, lora_x + size / 2 + 0.15, a_y, "(r × d_in)\nstarts random")
    arrow(ax, (lora_x, a_y + thin / 2), (lora_x, w_bottom))
    ax.text(lora_x + 0.1, (a_y + w_bottom) / 2 + 0.1, f"(r,)  r = {rank}", ha="left", va="center", fontsize=8.5,
            family=MONO, color="#555555")
    ax.add_patch(Rectangle((lora_x - thin / 2, w_bottom), thin, size, facecolor=COLOURS["ff"], edgecolor=EDGE,
                           linewidth=1.2, zorder=2))
    ax.text(lora_x, w_bottom + size / 2, "B", ha="center", va="center", fontsize=11, family=MONO, zorder=3)
    shape(ax, lora_x + thin / 2 + 0.15, w_bottom + size / 2, f"(d_out × r)\n{d_out} × {rank}\nstarts at zero")
    scale_y = w_bottom + size + 0.9
    arrow(ax, (lora_x, w_bottom + size), (lora_x, scale_y - 0.3))
    box(ax, lora_x, scale_y, 2.6, 0.6, f"× α/r = {alpha:g}/{rank}", "ff", fontsize=10)
    ax.text((w_x + lora_x) / 2, 9.75, f"W: d_out × d_in = {d_out * d_in:,} numbers, no gradient;  "
            f"A and B: r (d_in + d_out) = {rank * (d_in + d_out):,}, trained", ha="center", va="center",
            fontsize=8.5, style="italic", color="#555555")
    # The two outputs, each (d_out,), are added.
    plus_y = scale_y + 1.1
    plus_x = (w_x + lora_x) / 2
    line(ax, [(w_x, w_bottom + size), (w_x, plus_y), (plus_x - 0.2, plus_y)])
    line(ax, [(lora_x, scale_y + 0.3), (lora_x, plus_y)])
    arrow(ax, (lora_x, plus_y), (plus_x + 0.2, plus_y))
    plus(ax, plus_x, plus_y)
    ax.text(w_x + 0.1, w_bottom + size + 0.75, "W x", ha="left", va="center", fontsize=10, family=MONO)
    ax.text(lora_x + 0.1, scale_y + 0.55, "(α/r) B A x", ha="left", va="center", fontsize=10, family=MONO)
    arrow(ax, (plus_x, plus_y + 0.2), (plus_x, plus_y + 0.8))
    ax.text(plus_x, plus_y + 1.05, "h = W x + (α/r) B A x   (d_out,)", ha="center", va="center", fontsize=10,
            family=MONO)
    ax.set_title("LoRA: the pretrained W stays frozen; only the thin A and B learn", fontsize=11)
    return fig


def draw_shift_by_one(tokens: list) -> Figure:
    """Next-token prediction: T + 1 tokens give T inputs and, shifted one place left, their T targets.

    `tokens` are token ids (ints) or token strings; strings are drawn quoted, so that leading spaces show.
    """
    if isinstance(tokens, str):
        raise ValueError("tokens must be a list of token ids or token strings, not one string")
    tokens = list(tokens)
    if len(tokens) < 2:
        raise ValueError(f"tokens needs at least 2 tokens (one input and its target), got {len(tokens)}")
    if len(tokens) > 13:
        raise ValueError(f"at most 13 tokens fit in the figure, got {len(tokens)}")
    if not all(isinstance(t, str) or (isinstance(t, int) and not isinstance(t, bool)) for t in tokens):
        raise ValueError("tokens must be token ids (ints) or token strings")
    labels = [repr(t) if isinstance(t, str) else str(t) for t in tokens]
    n = len(tokens) - 1  # inputs and targets each hold n tokens
    cell = max(1.2, 0.15 * max(len(label) for label in labels) + 0.5)
    left = 3.4 + cell  # column 0; the targets' row starts one column further left, with the dropped first token
    fig, ax = canvas(left + (n + 1) * cell + 0.3, 4.8, scale=0.85)
    input_y, target_y = 1.3, 3.4

    def column(t: int) -> float:
        return left + t * cell + cell / 2

    ax.text(0.2, input_y, "inputs\nids[0 : T]", ha="left", va="center", fontsize=10, family=MONO)
    ax.text(0.2, target_y, "targets\nids[1 : T+1]", ha="left", va="center", fontsize=10, family=MONO)
    for t in range(n + 1):
        box(ax, column(t), input_y, cell * 0.88, 0.6, labels[t], "token" if t < n else "masked", fontsize=10)
        box(ax, column(t - 1), target_y, cell * 0.88, 0.6, labels[t], "output" if t > 0 else "masked", fontsize=10)
    for t in range(n):
        arrow(ax, (column(t), input_y + 0.3), (column(t), target_y - 0.3))
        ax.text(column(t), input_y - 0.5, f"t = {t}", ha="center", va="center", fontsize=8, family=MONO,
                color="#555555")
    ax.text(column(0) + 0.1, (input_y + target_y) / 2, "predicts", ha="left", va="center", fontsize=8,
            style="italic")
    ax.text(column(n), input_y - 0.4, "not an\ninput", ha="center", va="top", fontsize=8, style="italic",
            color="#555555")
    ax.text(column(-1), target_y + 0.4, "not a\ntarget", ha="center", va="bottom", fontsize=8, style="italic",
            color="#555555")
    ax.set_title(f"T = {n}: the targets are the inputs shifted one place left; "
                 "each position predicts the token that follows it", fontsize=11)
    return fig


def draw_dpo(beta: float = 0.5) -> Figure:
    """DPO: the preferred and the rejected answer each scored by the policy (trained) and the frozen reference;
    two log-ratios, their difference times beta, and the logistic loss on it."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta < math.inf:
        raise ValueError(f"beta must be a positive finite number, got {beta!r}")
    fig, ax = canvas(15.6, 6.6, scale=0.75)
    inputs = {"w": 4.6, "l": 1.8}  # the height of each answer's row
    for key, y in inputs.items():
        name = "preferred  y_w" if key == "w" else "rejected  y_l"
        box(ax, 1.5, y, 2.6, 0.9, f"prompt x\n+ {name}", "token", fontsize=9)
    models = {"policy": (4.9, 4.6, "policy π\n(trained)", "attention"),
              "reference": (4.9, 1.8, "reference π_ref\n(frozen copy)", "masked")}
    scores = {}
    for model, (x, y, label, kind) in models.items():
        box(ax, x, y, 2.2, 1.0, label, kind, fontsize=9)
    rows = [("policy", "w", 5.5), ("reference", "w", 4.3), ("policy", "l", 2.9), ("reference", "l", 1.1)]
    for model, key, y in rows:
        mx, my = models[model][:2]
        arrow(ax, (2.8, inputs[key]), (mx - 1.1, my + (0.2 if key == "w" else -0.2)), colour="#888888")
        pi = "π" if model == "policy" else "π_ref"
        box(ax, 8.4, y, 2.4, 0.7, f"log {pi}(y_{key} | x)", "output", fontsize=9)
        arrow(ax, (mx + 1.1, my), (7.2, y))
        scores[(model, key)] = y
    for key, y in (("w", 4.9), ("l", 2.0)):
        box(ax, 11.3, y, 2.7, 0.9, f"log-ratio r_{key}\n= log π - log π_ref", "ff", fontsize=9)
        for model in ("policy", "reference"):
            arrow(ax, (9.6, scores[(model, key)]), (9.95, y + (0.2 if model == "policy" else -0.2)))
    box(ax, 14.2, 3.45, 2.4, 2.0, f"margin =\nβ (r_w - r_l)\nβ = {beta:g}\n\nloss =\n-log σ(margin)", "norm",
        fontsize=9)
    arrow(ax, (12.65, 4.9), (13.0, 4.0))
    arrow(ax, (12.65, 2.0), (13.0, 2.9))
    ax.text(7.8, 6.35, "the loss lowers only through the policy; the reference's four numbers are fixed",
            ha="center", va="center", fontsize=9)
    return fig


def draw_group_policy_gradient(rewards: tuple[int, ...] = (0, 1, 0, 0)) -> Figure:
    """One group of the group-relative policy gradient: a prompt, G sampled answers, a reward per answer from a
    program, advantages relative to the group, and the loss that raises the better answers."""
    if len(rewards) < 2 or any(r not in (0, 1) for r in rewards):
        raise ValueError(f"rewards must be 2 or more values of 0 or 1, got {rewards!r}")
    mean = sum(rewards) / len(rewards)
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (len(rewards) - 1))
    advantages = [(r - mean) / (std + 1e-6) for r in rewards]
    height = 1.0 * len(rewards) + 1.3
    fig, ax = canvas(15.0, height, scale=0.75)
    middle = height / 2 - 0.2
    box(ax, 1.3, middle, 2.2, 0.9, "prompt x", "token", fontsize=10)
    box(ax, 3.9, middle, 2.0, 1.0, "policy π\nsamples G", "attention", fontsize=9)
    arrow(ax, (2.4, middle), (2.9, middle))
    for i, (reward, advantage) in enumerate(zip(rewards, advantages)):
        y = height - 1.2 - i * 1.0
        arrow(ax, (4.9, middle), (5.9, y), colour="#888888")
        box(ax, 6.9, y, 2.0, 0.7, f"answer {i + 1}", "token", fontsize=9)
        arrow(ax, (7.9, y), (8.6, y))
        box(ax, 9.3, y, 1.2, 0.7, f"r = {reward}", "output", fontsize=9)
        arrow(ax, (9.9, y), (10.5, y))
        box(ax, 11.3, y, 1.5, 0.7, f"A = {advantage:+.2f}", "ff", fontsize=9)
        arrow(ax, (12.05, y), (12.6, middle), colour="#888888")
    box(ax, 13.7, middle, 2.2, 1.6, "loss =\n-mean A_i ·\nlog π(answer_i)\n(+ KL to π_ref)", "norm", fontsize=9)
    ax.text(9.3, height - 0.45, "a program\nchecks", ha="center", va="center", fontsize=9)
    ax.text(11.3, height - 0.45, "(r - mean)\n/ std", ha="center", va="center", fontsize=9, family=MONO)
    ax.text(3.9, middle - 1.0, "temperature 1", ha="center", va="center", fontsize=8, color="#555555")
    return fig
