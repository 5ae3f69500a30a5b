"""llmcourse.scaling: compute counting, the isoFLOP optimum, power laws and the loss law, on made-up data
whose answers are known."""

import math

import numpy as np
import pytest

from llmcourse.scaling import LossLaw, fit_loss_law, isoflop_optimum, power_law, training_flops


def test_training_flops_is_six_per_parameter_and_token():
    assert training_flops(2, 3) == 36


def test_isoflop_optimum_finds_the_parabolas_minimum_and_refuses_an_edge():
    sizes = [1e4, 3e4, 1e5, 3e5, 1e6]
    losses = [(math.log(n) - math.log(7e4)) ** 2 + 2.0 for n in sizes]
    assert isoflop_optimum(sizes, losses) == pytest.approx(7e4, rel=1e-6)
    with pytest.raises(ValueError, match="outside the sizes tried"):
        isoflop_optimum(sizes, [(math.log(n) - math.log(5e6)) ** 2 for n in sizes])
    with pytest.raises(ValueError, match="curve upwards"):
        isoflop_optimum(sizes, [-(math.log(n) - math.log(7e4)) ** 2 for n in sizes])


def test_power_law_recovers_its_exponent_and_its_uncertainty_grows_with_noise():
    x = [1e12, 3e12, 1e13, 3e13]
    exact = power_law(x, [3 * v ** 0.5 for v in x])
    assert exact.exponent == pytest.approx(0.5) and exact.coefficient == pytest.approx(3)
    assert exact.exponent_se < 1e-9 and exact(4.0) == pytest.approx(6.0)
    noisy = power_law(x, [3 * v ** 0.5 * f for v, f in zip(x, (1.1, 0.9, 1.05, 0.95))])
    assert noisy.exponent_se > 0.01


def test_fit_loss_law_recovers_known_constants_and_its_optimum_minimises_along_the_budget():
    truth = LossLaw(E=1.5, A=400.0, B=900.0, alpha=0.35, beta=0.3)
    runs = [(n, d) for n in np.geomspace(1e4, 1e6, 6) for d in np.geomspace(1e5, 1e7, 5)]
    fitted = fit_loss_law([n for n, _ in runs], [d for _, d in runs], [truth(n, d) for n, d in runs], bootstrap=0)
    assert fitted.alpha == pytest.approx(0.35, rel=0.02) and fitted.beta == pytest.approx(0.3, rel=0.02)
    assert fitted.E == pytest.approx(1.5, abs=0.02)
    n, d = truth.optimum(1e13)
    assert training_flops(n, d) == pytest.approx(1e13)
    assert truth(n, d) < min(truth(n * 1.2, d / 1.2), truth(n / 1.2, d * 1.2))


def test_fit_loss_law_gives_standard_errors_from_a_bootstrap():
    truth = LossLaw(E=1.5, A=400.0, B=900.0, alpha=0.35, beta=0.3)
    rng = np.random.default_rng(0)
    runs = [(n, d) for n in np.geomspace(1e4, 1e6, 5) for d in np.geomspace(1e5, 1e7, 4)]
    losses = [truth(n, d) * (1 + 0.01 * rng.standard_normal()) for n, d in runs]
    fitted = fit_loss_law([n for n, _ in runs], [d for _, d in runs], losses, bootstrap=20)
    assert set(fitted.se) == {"E", "A", "B", "alpha", "beta"} and all(v > 0 for v in fitted.se.values())
    with pytest.raises(ValueError, match="at least 5 runs"):
        fit_loss_law([1e4] * 4, [1e5] * 4, [2.0] * 4)
