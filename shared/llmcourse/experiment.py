"""The course's experiment protocol (used by `bench/` and by the notebooks that re-run a part of it).

Three rules, each a function:

- a sweep's choice must lie inside its grid: `widened_sweep` scores a grid and extends it past whichever
  edge wins until the best value has a neighbour on both sides (or a hard bound, such as a rate of 1, is
  reached, which it records);
- a comparison states a difference with its uncertainty: `compare` takes one score per seed for each of
  two settings and calls the difference real only beyond two standard errors;
- budgets mean the same on every machine: count updates, or CPU seconds of one pinned thread
  (`llmcourse.runtime.threads(1)` with `time.process_time`).
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Sweep:
    """Every value tried with its score (higher is better), the chosen value, and a bound that stopped the
    widening, if one did (the choice then sits at that bound, which is as far as the grid can go)."""

    scores: dict[float, float] = field(default_factory=dict)
    chosen: float = math.nan
    hit_bound: float | None = None

    def inside(self) -> bool:
        """True when the chosen value has a tried value on each side, or sits at a hard bound."""
        values = sorted(self.scores)
        return self.hit_bound is not None or values[0] < self.chosen < values[-1]


def widened_sweep(score: Callable[[float], float], grid: Sequence[float], factor: float = 2.0,
                  low: float = 0.0, high: float = math.inf, max_widenings: int = 6) -> Sweep:
    """Score every value of `grid`, then keep extending the grid by `factor` past the edge that wins.

    The grid is a geometric one (learning rates, scales): a winning top edge adds top * factor, a winning
    bottom edge adds bottom / factor. Values outside [`low`, `high`] are never tried; reaching one of them
    is recorded in `hit_bound`. Raises if `max_widenings` extensions still leave the best at an edge.
    """
    if len(grid) < 2 or sorted(set(grid)) != sorted(grid):
        raise ValueError(f"a sweep needs at least two distinct values, got {list(grid)}")
    if factor <= 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    sweep = Sweep()
    for value in sorted(grid):
        sweep.scores[value] = float(score(value))
    for _ in range(max_widenings + 1):
        values = sorted(sweep.scores)
        sweep.chosen = max(values, key=lambda v: sweep.scores[v])
        if values[0] < sweep.chosen < values[-1]:
            return sweep
        step = sweep.chosen * factor if sweep.chosen == values[-1] else sweep.chosen / factor
        if not low <= step <= high:
            sweep.hit_bound = sweep.chosen
            return sweep
        sweep.scores[step] = float(score(step))
    raise RuntimeError(f"after {max_widenings} widenings the best value {sweep.chosen} is still at an edge of "
                       f"{sorted(sweep.scores)}; look at the scores before widening further")


@dataclass(frozen=True)
class Comparison:
    """The mean difference `a - b` between two settings, its standard error, and what can be said."""

    difference: float
    standard_error: float
    n_a: int
    n_b: int

    @property
    def verdict(self) -> str:
        """"a is higher" or "b is higher" beyond two standard errors, else "no measurable difference"."""
        if abs(self.difference) <= 2 * self.standard_error:
            return "no measurable difference"
        return "a is higher" if self.difference > 0 else "b is higher"

    def __str__(self) -> str:
        return f"{self.difference:+.3f} ± {self.standard_error:.3f} ({self.verdict})"


def _mean_and_variance(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def compare(a: Sequence[float], b: Sequence[float], min_seeds: int = 3) -> Comparison:
    """The difference of the means of two sets of per-seed scores, with the standard error of that difference
    (each side's sample variance over its count, summed: Welch's). Each side needs `min_seeds` scores."""
    for name, scores in (("a", a), ("b", b)):
        if len(scores) < min_seeds:
            raise ValueError(f"{name} has {len(scores)} scores; a comparison needs at least {min_seeds} seeds each")
        if not all(math.isfinite(s) for s in scores):
            raise ValueError(f"{name} holds a score that is not a finite number: {list(scores)}")
    mean_a, var_a = _mean_and_variance(a)
    mean_b, var_b = _mean_and_variance(b)
    return Comparison(mean_a - mean_b, math.sqrt(var_a / len(a) + var_b / len(b)), len(a), len(b))
