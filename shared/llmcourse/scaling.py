"""Scaling laws (chapter 5): counting training compute, and fitting how the loss falls with size and data.

- `training_flops(parameters, tokens)`: C = 6 N D, the multiply-adds of a forward and a backward pass;
- `isoflop_optimum(parameters, losses)`: the best size at one compute budget, from a parabola in log N,
  refused when the parabola's minimum lies outside the sizes tried;
- `power_law(x, y)`: y = k x^a fitted on logarithms, with the standard error of the exponent;
- `fit_loss_law(parameters, tokens, losses)`: L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022),
  fitted on the logarithm of the loss with a Huber penalty, from a grid of starting points, with bootstrap
  standard errors; `LossLaw.optimum(flops)` is the size and token count that minimise it at a budget.
"""

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product

import numpy as np
import torch

# Starting points of the loss law's fit, (log A, log B, log E, alpha, beta): every corner of a box around the
# values language models give (a smaller version of Hoffmann et al.'s grid; the best fit is kept).
START_GRID = list(product((0.0, 10.0), (0.0, 10.0), (-1.0, 1.0), (0.25, 1.0), (0.25, 1.0)))

def training_flops(parameters: float, tokens: float) -> float:
    """Training compute C = 6 N D: per parameter and token, 2 operations forward and 4 backward."""
    return 6.0 * parameters * tokens


def isoflop_optimum(parameters: Sequence[float], losses: Sequence[float]) -> float:
    """The size with the lowest loss at one budget: the minimum of a parabola fitted to loss against log N.

    Raises if the parabola opens downwards or its minimum lies outside the sizes tried (the optimum would be
    an extrapolation: try larger or smaller models).
    """
    if len(parameters) != len(losses) or len(parameters) < 3:
        raise ValueError(f"need at least 3 sizes with one loss each, got {len(parameters)} and {len(losses)}")
    log_n = np.log(np.asarray(parameters, dtype=float))
    curvature, slope, _ = np.polyfit(log_n, np.asarray(losses, dtype=float), 2)
    if curvature <= 0:
        raise ValueError("the losses do not curve upwards around a minimum: no optimum among these sizes")
    best = -slope / (2 * curvature)
    if not log_n.min() < best < log_n.max():
        raise ValueError(f"the fitted optimum, {math.exp(best):,.0f} parameters, lies outside the sizes tried "
                         f"({min(parameters):,.0f} to {max(parameters):,.0f})")
    return math.exp(best)


@dataclass(frozen=True)
class PowerLaw:
    """y = coefficient * x ** exponent, with the standard error of the exponent."""

    coefficient: float
    exponent: float
    exponent_se: float

    def __call__(self, x: float) -> float:
        return self.coefficient * x ** self.exponent


def power_law(x: Sequence[float], y: Sequence[float]) -> PowerLaw:
    """Least squares on log y = log k + a log x; the exponent's standard error from the residuals (n - 2
    degrees of freedom, so at least 3 points)."""
    if len(x) != len(y) or len(x) < 3:
        raise ValueError(f"need at least 3 points, got {len(x)} and {len(y)}")
    log_x, log_y = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    exponent, intercept = np.polyfit(log_x, log_y, 1)
    residuals = log_y - (intercept + exponent * log_x)
    spread = ((log_x - log_x.mean()) ** 2).sum()
    se = math.sqrt((residuals ** 2).sum() / (len(x) - 2) / spread)
    return PowerLaw(math.exp(intercept), float(exponent), se)


@dataclass(frozen=True)
class LossLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta, with bootstrap standard errors of each constant (if fitted)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    se: dict[str, float] = field(default_factory=dict)

    def __call__(self, parameters: float, tokens: float) -> float:
        return self.E + self.A / parameters ** self.alpha + self.B / tokens ** self.beta

    def optimum(self, flops: float) -> tuple[float, float]:
        """The size N and tokens D = C / (6 N) with the lowest predicted loss at compute C.

        Setting the derivative along the budget to zero gives N = G (C/6)^(beta/(alpha+beta)), with
        G = (alpha A / (beta B))^(1/(alpha+beta)).
        """
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))
        n = g * (flops / 6) ** (self.beta / (self.alpha + self.beta))
        return n, flops / (6 * n)


def _fit_once(log_n: torch.Tensor, log_d: torch.Tensor, log_l: torch.Tensor, start: Sequence[float],
              delta: float) -> tuple[float, list[float]]:
    """L-BFGS from one start on (log A, log B, log E, alpha, beta); the final Huber objective and the values."""
    theta = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([theta], lr=1.0, max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        a, b, e, alpha, beta = theta
        predicted = torch.logsumexp(torch.stack([a - alpha * log_n, b - beta * log_d, e.expand_as(log_n)]), dim=0)
        return torch.nn.functional.huber_loss(predicted, log_l, delta=delta, reduction="sum")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        value = objective().item()
    return value, theta.detach().tolist()


def _law(theta: Sequence[float]) -> LossLaw:
    a, b, e, alpha, beta = theta
    return LossLaw(math.exp(e), math.exp(a), math.exp(b), alpha, beta)


def fit_loss_law(parameters: Sequence[float], tokens: Sequence[float], losses: Sequence[float],
                 bootstrap: int = 100, delta: float = 1e-3, seed: int = 0) -> LossLaw:
    """Fit L(N, D) = E + A / N^alpha + B / D^beta to runs of N parameters on D tokens reaching `losses`.

    As Hoffmann et al. (2022): the residuals are those of log L, penalised by a Huber loss (robust to a
    stray run), minimised by L-BFGS from every point of a grid of starts, keeping the best. The standard
    errors come from refitting `bootstrap` resamples of the runs (from the best start); 0 skips them.
    """
    if not len(parameters) == len(tokens) == len(losses) >= 5:
        raise ValueError("need one loss per run and at least 5 runs for 5 constants")
    log_n, log_d, log_l = (torch.tensor(np.log(np.asarray(v, dtype=float))) for v in (parameters, tokens, losses))
    fits = [_fit_once(log_n, log_d, log_l, start, delta) for start in START_GRID]
    finite = [(value, theta) for value, theta in fits if math.isfinite(value)]
    best_theta = min(finite)[1]
    law = _law(best_theta)
    if bootstrap == 0:
        return law
    rng = random.Random(seed)
    samples = []
    for _ in range(bootstrap):
        pick = torch.tensor([rng.randrange(len(losses)) for _ in losses])
        value, theta = _fit_once(log_n[pick], log_d[pick], log_l[pick], best_theta, delta)
        if math.isfinite(value):
            samples.append(_law(theta))
    se = {name: float(np.std([getattr(s, name) for s in samples], ddof=1)) for name in ("E", "A", "B", "alpha", "beta")}
    return LossLaw(law.E, law.A, law.B, law.alpha, law.beta, se)
