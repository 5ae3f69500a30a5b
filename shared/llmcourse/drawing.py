"""The course's drawing style: colours for each kind of part, and the boxes, arrows, + nodes, shapes, bars
and grids from which `llmcourse.diagrams` draws its figures, in drawing units on a frameless axes."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle

COLOURS = {
    "token": "#cfe2f3",      # text, token ids, embeddings
    "attention": "#f9cb9c",  # attention and its projections
    "ff": "#b6d7a8",         # feed-forward
    "norm": "#ffe599",       # layer norms
    "output": "#d9d2e9",     # output head, logits, probabilities
    "residual": "#999999",   # the residual stream (lines and + nodes)
    "masked": "#eeeeee",     # positions a query may not see, or plain text
}
EDGE = "#444444"
MONO = "DejaVu Sans Mono"


def canvas(width: float, height: float, ax: Axes | None = None, scale: float = 0.9) -> tuple[Figure, Axes]:
    """An axes whose data units are drawing units (width x height), without frame or ticks."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(width * scale, height * scale))
    else:
        fig = ax.figure
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def box(ax: Axes, x: float, y: float, w: float, h: float, text: str, kind: str,
         fontsize: float = 10, mono: bool = True, **text_options) -> None:
    """A rounded box centred at (x, y), filled with the colour of its kind, with a centred label."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=COLOURS[kind], edgecolor=EDGE, linewidth=1.0, zorder=2))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, zorder=3,
            family=MONO if mono else None, **text_options)


def arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], colour: str = EDGE,
           width: float = 1.2, dashed: bool = False, curve: float = 0.0) -> None:
    """An arrow from start to end (straight, or bent by `curve`)."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color=colour,
                                 linewidth=width, linestyle="--" if dashed else "-", zorder=1,
                                 shrinkA=0, shrinkB=0, connectionstyle=f"arc3,rad={curve}"))


def line(ax: Axes, points: list[tuple[float, float]], colour: str = EDGE, width: float = 1.2) -> None:
    """A polyline through the points (the part of a path before its arrow head)."""
    xs, ys = zip(*points)
    ax.plot(xs, ys, color=colour, linewidth=width, zorder=1, solid_capstyle="butt")


def plus(ax: Axes, x: float, y: float, radius: float = 0.2) -> None:
    """The + node where a branch is added back into the residual stream."""
    ax.add_patch(Circle((x, y), radius, facecolor="white", edgecolor=COLOURS["residual"], linewidth=2, zorder=2))
    ax.text(x, y, "+", ha="center", va="center", fontsize=13, fontweight="bold", zorder=3)


def shape(ax: Axes, x: float, y: float, text: str) -> None:
    """A tensor shape written beside the path, in grey."""
    ax.text(x, y, text, ha="left", va="center", fontsize=9, family=MONO, color="#555555")


def allowed_grid(ax: Axes, allowed, mark_size: float = 11, gap: float = 2.0) -> None:
    """Cells of (query row, key column) pairs: coloured with ✓ where allowed[row][col] is true, grey with × not.

    `allowed` is anything indexed [row][col] (nested lists, a bool tensor); the axes get no frame or tick marks.
    """
    n_rows, n_cols = len(allowed), len(allowed[0])
    for row in range(n_rows):
        for col in range(n_cols):
            seen = bool(allowed[row][col])
            ax.add_patch(Rectangle((col, row), 1, 1, facecolor=COLOURS["attention" if seen else "masked"],
                                   edgecolor="white", linewidth=gap))
            ax.text(col + 0.5, row + 0.5, "✓" if seen else "×", ha="center", va="center",
                    fontsize=mark_size, color=EDGE if seen else "#aaaaaa")
    ax.set_xlim(0, n_cols)
    ax.set_ylim(n_rows, 0)
    ax.set_aspect("equal")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)


def split_bar(ax: Axes, x: float, y: float, width: float, height: float, n_parts: int, kind: str,
               labels: list[str]) -> list[float]:
    """A (T, d_model) tensor drawn as a bar cut into n_parts column slices; returns the slice centres."""
    part = width / n_parts
    centres = []
    for i in range(n_parts):
        left = x - width / 2 + i * part
        ax.add_patch(Rectangle((left, y - height / 2), part, height, facecolor=COLOURS[kind],
                               edgecolor=EDGE, linewidth=1.0, zorder=2))
        ax.text(left + part / 2, y, labels[i], ha="center", va="center", fontsize=8, family=MONO, zorder=3)
        centres.append(left + part / 2)
    return centres
