"""Low-rank adaptation (LoRA): train a small update B A beside each frozen weight matrix, merge it after (chapter 6)."""

import math

import torch
from torch import Tensor, nn

# The linear layers of a GPT block that LoRA wraps: the attention projections and the feed-forward pair.
LORA_TARGETS = ("W_query", "W_key", "W_value", "out_proj", "fc_in", "fc_out")


def check_rank_and_alpha(rank: int, alpha: float) -> None:
    """Refuse a rank that is not a positive whole number and an alpha that is not a positive finite number."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive integer, got {rank!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < math.inf:
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update: y = W x + b + (alpha / rank) B A x.

    A (rank, in) starts random and B (out, rank) starts at zero, so a freshly wrapped layer computes
    exactly what the original did; training moves only A and B, rank (in + out) numbers instead of in out.
    """

    def __init__(self, linear: nn.Linear, rank: int, alpha: float, seed: int = 0):
        super().__init__()
        check_rank_and_alpha(rank, alpha)
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"LoRALinear wraps an nn.Linear, got {type(linear).__name__}")
        self.linear = linear
        for param in linear.parameters():
            param.requires_grad = False
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        generator = torch.Generator().manual_seed(seed)
        bound = 1 / math.sqrt(linear.in_features)  # the same uniform range as nn.Linear's own weights
        A = (torch.rand(rank, linear.in_features, generator=generator) * 2 - 1) * bound
        self.A = nn.Parameter(A.to(linear.weight.device))
        self.B = nn.Parameter(torch.zeros(linear.out_features, rank, device=linear.weight.device))

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) + (x @ self.A.T @ self.B.T) * self.scaling

    def merged(self) -> nn.Linear:
        """A plain nn.Linear with W + (alpha / rank) B A: the same outputs, no extra cost per token."""
        merged = nn.Linear(self.linear.in_features, self.linear.out_features, bias=self.linear.bias is not None,
                           device=self.linear.weight.device)
        with torch.no_grad():
            merged.weight.copy_(self.linear.weight + self.scaling * self.B @ self.A)
            if self.linear.bias is not None:
                merged.bias.copy_(self.linear.bias)
        return merged


def add_lora(model: nn.Module, rank: int, alpha: float, targets: tuple[str, ...] = LORA_TARGETS,
             seed: int = 0) -> list[str]:
    """Wrap every nn.Linear whose attribute name is in `targets` in a LoRALinear; returns the wrapped names.

    Only the wrapping is done here; freezing the rest of the model is the caller's choice (see
    `freeze_except_lora`). Each wrapped layer gets its own seed for A, derived from `seed`.
    """
    check_rank_and_alpha(rank, alpha)
    wrapped = []
    for module_name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and isinstance(child, nn.Linear):
                full_name = f"{module_name}.{child_name}" if module_name else child_name
                setattr(module, child_name, LoRALinear(child, rank, alpha, seed=seed * 1000 + len(wrapped)))
                wrapped.append(full_name)
    if not wrapped and any(isinstance(module, LoRALinear) for module in model.modules()):
        raise ValueError(f"the model already has LoRA layers, and no plain nn.Linear named any of {targets} is "
                         "left to wrap (merge_lora folds LoRA layers back into plain ones)")
    if not wrapped:
        raise ValueError(f"no nn.Linear named any of {targets} in the model: nothing to wrap")
    return wrapped


def freeze_except_lora(model: nn.Module, also: tuple[str, ...] = ()) -> int:
    """Make only the LoRA matrices A and B trainable, plus parameters whose names start with `also`.

    Returns the number of trainable parameters.
    """
    for name, param in model.named_parameters():
        param.requires_grad = name.endswith((".A", ".B")) or name.startswith(also)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merge_lora(model: nn.Module) -> int:
    """Replace every LoRALinear in the model by its merged nn.Linear, in place; returns how many were merged."""
    merged = 0
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.merged())
                merged += 1
    return merged
