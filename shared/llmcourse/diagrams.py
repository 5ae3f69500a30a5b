"""Drawn figures of the model's structure (used in chapters 3-5), in the style of `llmcourse.drawing`.

Each function returns a matplotlib Figure. The boxes carry the names used in the code
(`tok_emb`, `norm1`, `attn`, `ff`, `out_head`, `W_query`, ...) and one colour per kind of part.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

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
