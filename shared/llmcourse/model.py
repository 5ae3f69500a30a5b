"""The GPT model: configuration, LayerNorm, GELU, feed-forward, transformer block, GPTModel (chapter 4)."""

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmcourse.attention import KVCache, MultiHeadAttention


@dataclass
class GPTConfig:
    """Every size of a GPT model. The defaults are GPT-2 small (124M parameters)."""

    vocab_size: int = 50257
    context_length: int = 1024
    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 12
    dropout: float = 0.1
    qkv_bias: bool = True
    tie_weights: bool = True
    pre_norm: bool = True

    def __post_init__(self) -> None:
        """Refuse impossible sizes here, once, rather than deep inside a layer."""
        for name in ("vocab_size", "context_length", "d_model", "n_heads", "n_layers"):
            value = getattr(self, name)
            least = 0 if name == "n_layers" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"GPTConfig.{name} must be an integer >= {least}, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"GPTConfig.d_model={self.d_model} must be divisible by n_heads={self.n_heads} "
                             "(each head gets d_model // n_heads dimensions)")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or \
                not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be a probability in [0, 1), got {self.dropout!r}")
        for name in ("qkv_bias", "tie_weights", "pre_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"GPTConfig.{name} must be True or False, got {getattr(self, name)!r}")

    @classmethod
    def gpt2(cls, size: str = "small", **overrides) -> "GPTConfig":
        """The published GPT-2 sizes: "small", "medium", "large" or "xl"."""
        sizes = {
            "small": dict(d_model=768, n_heads=12, n_layers=12),
            "medium": dict(d_model=1024, n_heads=16, n_layers=24),
            "large": dict(d_model=1280, n_heads=20, n_layers=36),
            "xl": dict(d_model=1600, n_heads=25, n_layers=48),
        }
        if size not in sizes:
            raise ValueError(f"unknown GPT-2 size {size!r}; choose one of {sorted(sizes)}")
        return cls(**{**sizes[size], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


class LayerNorm(nn.Module):
    """Normalises each token's vector to mean 0 and variance 1, then scales and shifts it.

    Chapter 4 writes the arithmetic out by hand; here the same computation runs through
    PyTorch's fused `F.layer_norm`. Parameters are named like `nn.LayerNorm`'s.
    """

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class GELU(nn.Module):
    """GPT-2's GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the tanh approximation."""

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    """Expands each token's vector four-fold, applies GELU, and projects it back."""

    def __init__(self, d_model: int, dropout: float = 0.0):
        super().__init__()
        self.fc_in = nn.Linear(d_model, 4 * d_model)
        self.activation = GELU()
        self.fc_out = nn.Linear(4 * d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc_out(self.activation(self.fc_in(x))))


class TransformerBlock(nn.Module):
    """Causal self-attention then feed-forward, each wrapped in LayerNorm and a shortcut.

    Pre-norm (GPT-2): x + f(norm(x)). Post-norm (the original transformer): norm(x + f(x)).
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.pre_norm = cfg.pre_norm
        self.norm1 = LayerNorm(cfg.d_model)
        self.attn = MultiHeadAttention(cfg.d_model, cfg.d_model, cfg.n_heads, cfg.context_length,
                                       dropout=cfg.dropout, causal=True, qkv_bias=cfg.qkv_bias)
        self.norm2 = LayerNorm(cfg.d_model)
        self.ff = FeedForward(cfg.d_model, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, kv_cache: KVCache | None = None) -> Tensor:
        if self.pre_norm:
            x = x + self.dropout(self.attn(self.norm1(x), kv_cache=kv_cache))
            return x + self.ff(self.norm2(x))
        x = self.norm1(x + self.dropout(self.attn(x, kv_cache=kv_cache)))
        return self.norm2(x + self.ff(x))


class GPTModel(nn.Module):
    """Token and position embeddings, a stack of transformer blocks, a final norm and the output head."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.d_model)
        self.drop_emb = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.final_norm = LayerNorm(cfg.d_model)
        self.out_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)
        for name, param in self.named_parameters():
            if name.endswith(("attn.out_proj.weight", "ff.fc_out.weight")):
                # Each block adds to the residual stream twice; shrink those writes so its
                # variance stays about the same however deep the stack is (as GPT-2 does).
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))
        if cfg.tie_weights:
            self.out_head.weight = self.tok_emb.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def new_kv_cache(self) -> list[KVCache]:
        """One empty key-value cache per block, for `forward(..., kv_cache=...)`."""
        return [KVCache() for _ in self.blocks]

    def forward(self, token_ids: Tensor, kv_cache: list[KVCache] | None = None) -> Tensor:
        """Logits (batch, tokens, vocab_size) for token ids (batch, tokens).

        With `kv_cache`, `token_ids` are the tokens that follow the cached ones.
        """
        if token_ids.dim() != 2:
            raise ValueError(f"token_ids must be (batch, tokens), got shape {tuple(token_ids.shape)}")
        past = 0 if kv_cache is None else len(kv_cache[0])
        n_tokens = token_ids.shape[1]
        if past + n_tokens > self.cfg.context_length:
            raise ValueError(f"sequence of {past + n_tokens} tokens exceeds "
                             f"context_length={self.cfg.context_length}")
        if token_ids.numel() and (token_ids.min() < 0 or token_ids.max() >= self.cfg.vocab_size):
            bad = token_ids[(token_ids < 0) | (token_ids >= self.cfg.vocab_size)][0].item()
            raise ValueError(f"token id {bad} is outside the vocabulary (0 .. {self.cfg.vocab_size - 1})")
        positions = torch.arange(past, past + n_tokens, device=token_ids.device)
        x = self.drop_emb(self.tok_emb(token_ids) + self.pos_emb(positions))
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache=None if kv_cache is None else kv_cache[i])
        return self.out_head(self.final_norm(x))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters; a tied weight is counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
