"""Tests of llmcourse.experiment: a sweep widens until its choice is inside the grid; a comparison calls a
difference real only beyond two standard errors."""

import math

import pytest

from llmcourse.experiment import (compare, compare_over_plays, comparison_over_plays_record, comparison_record,
                                  counts_by_play, widened_sweep)


def test_a_sweep_whose_best_is_at_the_top_widens_until_the_best_is_inside():
    tried = []

    def score(lr):
        tried.append(lr)
        return -(math.log2(lr) - 3) ** 2  # best at 8

    sweep = widened_sweep(score, [0.5, 1.0, 2.0])
    assert sweep.chosen == 8.0 and sweep.inside() and sweep.hit_bound is None
    assert tried == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0] and set(sweep.scores) == set(tried)


def test_a_sweep_widens_downwards_too_and_keeps_an_interior_choice_as_it_is():
    assert widened_sweep(lambda lr: -abs(math.log2(lr) + 2), [1.0, 2.0, 4.0]).chosen == 0.25
    sweep = widened_sweep(lambda lr: -abs(lr - 2.0), [1.0, 2.0, 4.0])
    assert sweep.chosen == 2.0 and sorted(sweep.scores) == [1.0, 2.0, 4.0]


def test_a_sweep_that_reaches_a_hard_bound_records_it():
    sweep = widened_sweep(lambda p: p, [0.25, 0.5], high=1.0)
    assert sweep.chosen == 1.0 and sweep.hit_bound == 1.0 and sweep.inside()


def test_a_sweep_that_never_turns_says_so():
    with pytest.raises(RuntimeError, match="still at an edge"):
        widened_sweep(lambda lr: lr, [1.0, 2.0], max_widenings=3)
    with pytest.raises(ValueError, match="at least two distinct values"):
        widened_sweep(lambda lr: lr, [1.0, 1.0])


def test_compare_gives_the_difference_with_welchs_standard_error():
    result = compare([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert result.difference == 2.0 and math.isclose(result.standard_error, math.sqrt(1.0 / 3))
    assert result.verdict == "a is higher" and str(result).startswith("+2.000 ± 0.577")


def test_a_difference_inside_two_standard_errors_is_no_measurable_difference():
    assert compare([0.50, 0.60, 0.40], [0.45, 0.55, 0.47]).verdict == "no measurable difference"
    assert compare([0.1, 0.11, 0.09], [0.5, 0.52, 0.49]).verdict == "b is higher"


def test_compare_needs_three_seeds_and_finite_scores():
    with pytest.raises(ValueError, match="at least 3 seeds"):
        compare([0.5, 0.6], [0.4, 0.5, 0.6])
    with pytest.raises(ValueError, match="not a finite number"):
        compare([0.5, math.nan, 0.6], [0.4, 0.5, 0.6])


def test_a_sweep_and_a_comparison_are_recorded_with_every_score():
    sweep = widened_sweep(lambda lr: -abs(lr - 2.0), [1.0, 2.0, 4.0])
    assert sweep.record("lr") == {"setting": "lr", "grid": [1.0, 2.0, 4.0], "scores": [-1.0, 0.0, -2.0],
                                  "higher_score_is": "better", "chosen": 2.0, "hit_bound": None}
    record = comparison_record("x", [1.0, 2.0, 3.0], "y", [0.0, 0.0, 0.0], claim="a is higher")
    assert record["verdict"] == "a is higher" and record["b_scores"] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="does not hold"):
        comparison_record("x", [0.50, 0.60, 0.40], "y", [0.45, 0.55, 0.47], claim="a is higher")


def test_a_comparison_over_plays_adds_the_spread_between_plays_to_the_seeds():
    assert counts_by_play(["x", "y", "x"], [True, False, True]) == {"x": [2, 2], "y": [0, 1]}
    steady = [{"p1": [6, 10], "p2": [6, 10], "p3": [6, 10]}] * 3  # 0.6 on every play
    level = [{"p1": [5, 10], "p2": [5, 10], "p3": [5, 10]}] * 3
    assert compare_over_plays(steady, level).verdict == "a is higher"  # no seed or play spread: 0.1 is real
    uneven = [{"p1": [10, 10], "p2": [3, 10], "p3": [5, 10]}] * 3  # 0.6 overall, from one lucky play
    result = compare_over_plays(uneven, level)
    assert math.isclose(result.difference, 0.1) and result.verdict == "no measurable difference"
    with pytest.raises(ValueError, match="same plays"):
        compare_over_plays(steady, [{"p1": [5, 10]}] * 3)
    record = comparison_over_plays_record("x", steady, "y", level, claim="a is higher")
    assert record["a_by_play"] == steady and record["verdict"] == "a is higher"
