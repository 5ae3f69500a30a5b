"""Muon, an optimizer for weight matrices, and the Muon + AdamW pair of the modern recipe (chapter 5).

The same update as `torch.optim.Muon`, computed in float32: PyTorch's version orthogonalises in
bfloat16, which a CPU without native bfloat16 arithmetic runs slowly (on the course's 2-core AVX2
machine, 37 ms against 2.5 ms for one 384 x 96 matrix, and the whole optimizer step 454 ms against 35).
"""

import math

import torch
from torch import Tensor, nn

# Coefficients of the quintic Newton-Schulz iteration (the ones torch.optim.Muon uses).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """Push every singular value of `matrix` towards 1 while keeping its singular vectors (Newton-Schulz).

    After dividing by the norm, all singular values are at most 1; each step maps a singular value s to
    a s + b s^3 + c s^5, which pulls small ones up fast. The result is roughly U V^T of the SVD U S V^T.
    """
    if matrix.dim() != 2:
        raise ValueError(f"orthogonalize needs a matrix, got shape {tuple(matrix.shape)}")
    a, b, c = NS_COEFFICIENTS
    x = matrix / matrix.norm().clamp(min=eps)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Momentum, orthogonalised: each matrix moves by the same amount in every direction of its update.

    The step is scaled by 0.2 sqrt(max(rows, cols)), so that its size matches a typical AdamW step and
    AdamW's learning rates carry over (torch.optim.Muon's adjust_lr_fn="match_rms_adamw").
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, weight_decay: float = 0.0,
                 nesterov: bool = True, ns_steps: int = 5):
        if not (0 < lr < math.inf and 0 <= momentum < 1 and 0 <= weight_decay < math.inf):
            raise ValueError(f"need a finite lr > 0, 0 <= momentum < 1 and a finite weight_decay >= 0; got lr={lr}, "
                             f"momentum={momentum}, weight_decay={weight_decay}")
        if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or ns_steps < 1:
            raise ValueError(f"ns_steps must be an integer >= 1, got {ns_steps!r}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                                      ns_steps=ns_steps))
        for group in self.param_groups:
            for param in group["params"]:
                if param.dim() != 2:
                    raise ValueError(f"Muon updates matrices only; got a parameter of shape {tuple(param.shape)}")

    @torch.no_grad()
    def step(self, closure=None) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                momentum = self.state[param].setdefault("momentum", torch.zeros_like(param))
                momentum.lerp_(param.grad, 1 - group["momentum"])
                update = param.grad.lerp(momentum, group["momentum"]) if group["nesterov"] else momentum
                update = orthogonalize(update, group["ns_steps"])
                param.mul_(1 - group["lr"] * group["weight_decay"])
                param.add_(update, alpha=-group["lr"] * 0.2 * math.sqrt(max(param.shape)))


class MuonWithAdamW:
    """Muon for the blocks' weight matrices and AdamW for the rest, stepped as one optimizer.

    Embeddings, the output head and vectors (norm scales, biases) stay with AdamW. `train` multiplies
    the schedule's learning rate by each group's "lr_scale": Muon's groups get `muon_lr / lr`.
    """

    def __init__(self, model: nn.Module, lr: float, muon_lr: float, weight_decay: float = 0.1,
                 betas: tuple[float, float] = (0.9, 0.95), momentum: float = 0.95):
        if not 0 < lr < math.inf:
            raise ValueError(f"lr must be a finite number > 0, got {lr}")
        params = dict(model.named_parameters())
        matrices = [n for n, p in params.items() if p.requires_grad and p.dim() == 2 and n.startswith("blocks.")]
        rest = [n for n in params if params[n].requires_grad and n not in matrices]
        self.muon = Muon([params[n] for n in matrices], lr=muon_lr, momentum=momentum, weight_decay=weight_decay)
        self.adamw = torch.optim.AdamW(
            [{"params": [params[n] for n in rest if params[n].dim() >= 2], "weight_decay": weight_decay},
             {"params": [params[n] for n in rest if params[n].dim() < 2], "weight_decay": 0.0}],
            lr=lr, betas=betas)
        for group in self.muon.param_groups:
            group["lr_scale"] = muon_lr / lr

    @property
    def param_groups(self) -> list[dict]:
        return self.muon.param_groups + self.adamw.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none=set_to_none)
        self.adamw.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.muon.step()
        self.adamw.step()

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])
