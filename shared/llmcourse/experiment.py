"""The course's experiment protocol (used by `bench/` and by the notebooks that re-run a part of it).

Three rules, each a function:

- a sweep's choice must lie inside its grid: `widened_sweep` scores a grid and extends it past whichever
  edge wins until the best value has a neighbour on both sides (or a hard bound, such as a rate of 1, is
  reached, which it records);
- a comparison states a difference with its uncertainty: `compare` takes one score per seed for each of
  two settings and calls the difference real only beyond two standard errors; `compare_over_plays` adds
  the spread over test plays (a bootstrap) for accuracies measured on a few plays;
- budgets mean the same on every machine: count updates, or CPU seconds of one pinned thread
  (`llmcourse.runtime.threads(1)` with `time.process_time`).

Every results file in `bench/results/` keeps its sweeps (`Sweep.record`) in a list "choices" and its
comparisons (`comparison_record`) in a list "comparisons"; `tests/test_results_files.py` reads them back.
"""

import math
import random
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

    def record(self, setting: str, higher_is: str = "better") -> dict:
        """This sweep as a results file keeps it: every value tried with its score, and the choice."""
        values = sorted(self.scores)
        return {"setting": setting, "grid": values, "scores": [round(self.scores[v], 4) for v in values],
                "higher_score_is": higher_is, "chosen": self.chosen, "hit_bound": self.hit_bound}


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


def comparison_record(a: str, a_scores: Sequence[float], b: str, b_scores: Sequence[float],
                      claim: str | None = None) -> dict:
    """A comparison as a results file keeps it: both settings' per-seed scores, the difference `a - b` with its
    standard error, the verdict, and `claim`, the verdict the course draws a conclusion from (if it draws one),
    which the results-file test checks against the scores."""
    result = compare(a_scores, b_scores)
    return _record(a, b, result, claim, a_scores=[round(x, 4) for x in a_scores],
                   b_scores=[round(x, 4) for x in b_scores])


def _record(a: str, b: str, result: Comparison, claim: str | None, **scores) -> dict:
    if claim is not None and claim != result.verdict:
        raise ValueError(f"the claim {claim!r} about {a} vs {b} does not hold: {result}")
    return {"a": a, "b": b, **scores, "difference": round(result.difference, 4),
            "standard_error": round(result.standard_error, 4), "verdict": result.verdict, "claim": claim}


def counts_by_play(plays: Sequence[str], correct: Sequence[bool]) -> dict[str, list[int]]:
    """{play: [examples right, examples]} for one run, the record `compare_over_plays` reads."""
    if len(plays) != len(correct):
        raise ValueError(f"{len(plays)} plays for {len(correct)} examples")
    counts: dict[str, list[int]] = {}
    for play, right in zip(plays, correct):
        entry = counts.setdefault(play, [0, 0])
        entry[0] += int(bool(right))
        entry[1] += 1
    return counts


def compare_over_plays(a: Sequence[dict[str, list[int]]], b: Sequence[dict[str, list[int]]], samples: int = 2000,
                       seed: int = 0, min_seeds: int = 3) -> Comparison:
    """Accuracy of setting `a` minus setting `b`, each a list of per-seed `counts_by_play` on the same plays.

    Two sources of noise: the seeds (Welch's standard error, as `compare`) and the plays, few and unlike
    each other (a paired bootstrap: draw the plays with replacement, the same draw for both settings, and
    recompute the difference `samples` times). The standard error combines the two."""
    plays = sorted(a[0])
    if any(sorted(run) != plays for run in (*a, *b)):
        raise ValueError("every run must be scored on the same plays")

    def accuracy(run: dict[str, list[int]], drawn: Sequence[str]) -> float:
        return sum(run[p][0] for p in drawn) / sum(run[p][1] for p in drawn)

    over_seeds = compare([accuracy(run, plays) for run in a], [accuracy(run, plays) for run in b], min_seeds)
    rng = random.Random(seed)
    differences = []
    for _ in range(samples):
        drawn = rng.choices(plays, k=len(plays))
        mean_a = sum(accuracy(run, drawn) for run in a) / len(a)
        differences.append(mean_a - sum(accuracy(run, drawn) for run in b) / len(b))
    _, play_variance = _mean_and_variance(differences)
    return Comparison(over_seeds.difference, math.sqrt(over_seeds.standard_error ** 2 + play_variance),
                      over_seeds.n_a, over_seeds.n_b)


def comparison_over_plays_record(a: str, a_runs: Sequence[dict[str, list[int]]], b: str,
                                 b_runs: Sequence[dict[str, list[int]]], claim: str | None = None) -> dict:
    """`comparison_record` for accuracies on a few plays: keeps every run's `counts_by_play` and uses
    `compare_over_plays`."""
    return _record(a, b, compare_over_plays(a_runs, b_runs), claim, a_by_play=list(a_runs), b_by_play=list(b_runs))
