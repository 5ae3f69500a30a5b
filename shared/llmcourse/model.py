"""The GPT model: configuration, LayerNorm, GELU, feed-forward, transformer block, GPTModel (chapter 4).

The defaults are GPT-2. A few options reach the encoder side (post-norm, cross-attention, sinusoidal
positions: chapter 4's encoder family) and today's recipe (rotary positions, RMSNorm, SwiGLU or ReLU²,
no biases, QK-norm, untied head: chapter 5's last notebook).
"""

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmcourse.attention import KVCache, MultiHeadAttention
from llmcourse.data import check_token_ids


POSITIONS = ("learned", "rotary", "sinusoidal")
NORMS = ("layer", "rms")
FEED_FORWARDS = ("gelu", "gelu_exact", "relu", "relu2", "swiglu")
# The fields GPT-2 needs; the options after them are shown and saved only when they differ from GPT-2.
GPT2_FIELDS = ("vocab_size", "context_length", "d_model", "n_heads", "n_layers", "dropout", "qkv_bias",
               "tie_weights", "pre_norm")


@dataclass(repr=False, frozen=True)
class GPTConfig:
    """Every size of a GPT model. The defaults are GPT-2 small (124M parameters).

    Frozen: a checked config cannot change afterwards. For a variant, use
    `dataclasses.replace(cfg, field=value)`, which checks again.
    """

    vocab_size: int = 50257
    context_length: int = 1024
    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 12
    dropout: float = 0.1
    qkv_bias: bool = True
    tie_weights: bool = True
    pre_norm: bool = True
    positions: str = "learned"  # "learned" | "rotary" | "sinusoidal"
    norm: str = "layer"  # "layer" | "rms"
    ff: str = "gelu"  # "gelu" (GPT-2's tanh form) | "gelu_exact" | "relu" | "relu2" | "swiglu"
    d_ff: int = 0  # feed-forward hidden width; 0 means 4 * d_model (8/3 * d_model for SwiGLU)
    bias: bool = True  # biases in the linear layers and the norms
    qk_norm: bool = False
    norm_eps: float = 1e-5

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
        for name in ("qkv_bias", "tie_weights", "pre_norm", "bias", "qk_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"GPTConfig.{name} must be True or False, got {getattr(self, name)!r}")
        for name, choices in (("positions", POSITIONS), ("norm", NORMS), ("ff", FEED_FORWARDS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"GPTConfig.{name} must be one of {choices}, got {getattr(self, name)!r}")
        if isinstance(self.d_ff, bool) or not isinstance(self.d_ff, int) or self.d_ff < 0:
            raise ValueError(f"GPTConfig.d_ff must be an integer >= 0 (0: the default width), got {self.d_ff!r}")
        if isinstance(self.norm_eps, bool) or not isinstance(self.norm_eps, (int, float)) or \
                not 0 < self.norm_eps < math.inf:
            raise ValueError(f"GPTConfig.norm_eps must be a positive number, and finite; got {self.norm_eps!r}")
        if self.positions == "rotary" and (self.d_model // self.n_heads) % 2:
            raise ValueError(f"rotary positions need an even head size, got d_model // n_heads = "
                             f"{self.d_model // self.n_heads}")

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
        """The fields, with the later options left out while they have GPT-2's values (as GPT-2 configs were)."""
        return {name: value for name, value in asdict(self).items()
                if name in GPT2_FIELDS or value != GPTConfig.__dataclass_fields__[name].default}

    def __repr__(self) -> str:
        return f"GPTConfig({', '.join(f'{name}={value!r}' for name, value in self.to_dict().items())})"

    @property
    def ff_width(self) -> int:
        """The feed-forward's hidden width: `d_ff`, or 4 * d_model (8/3 * d_model for SwiGLU's three matrices)."""
        if self.d_ff:
            return self.d_ff
        return 8 * self.d_model // 3 if self.ff == "swiglu" else 4 * self.d_model


class LayerNorm(nn.Module):
    """Normalises each token's vector to mean 0 and variance 1, then scales and shifts it.

    Chapter 4 writes the arithmetic out by hand; here the same computation runs through
    PyTorch's fused `F.layer_norm`. Parameters are named like `nn.LayerNorm`'s.
    """

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """Divides each token's vector by its root mean square, then scales it: LayerNorm without the mean or shift."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


def make_norm(cfg: GPTConfig) -> nn.Module:
    """The norm the config asks for."""
    if cfg.norm == "rms":
        return RMSNorm(cfg.d_model, cfg.norm_eps)
    return LayerNorm(cfg.d_model, cfg.norm_eps, bias=cfg.bias)


class GELU(nn.Module):
    """GPT-2's GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the tanh approximation."""

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    """Expands each token's vector (four-fold by default), applies a nonlinearity, and projects it back.

    kind: "gelu" (GPT-2), "gelu_exact" (BERT), "relu" (2017), "relu2" (ReLU squared) or "swiglu"
    (fc_in makes two halves, a gate and a value: silu(gate) * value).
    """

    def __init__(self, d_model: int, dropout: float = 0.0, kind: str = "gelu", d_ff: int = 0, bias: bool = True):
        super().__init__()
        if kind not in FEED_FORWARDS:
            raise ValueError(f"kind must be one of {FEED_FORWARDS}, got {kind!r}")
        hidden = d_ff or 4 * d_model
        self.kind = kind
        self.fc_in = nn.Linear(d_model, 2 * hidden if kind == "swiglu" else hidden, bias=bias)
        self.activation = GELU() if kind == "gelu" else None
        self.fc_out = nn.Linear(hidden, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc_in(x)
        if self.kind == "gelu":
            h = self.activation(h)
        elif self.kind == "gelu_exact":
            h = F.gelu(h)
        elif self.kind == "relu":
            h = F.relu(h)
        elif self.kind == "relu2":
            h = F.relu(h).square()
        else:
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        return self.dropout(self.fc_out(h))


class TransformerBlock(nn.Module):
    """Self-attention then feed-forward, each wrapped in a norm and a shortcut.

    Pre-norm (GPT-2): x + f(norm(x)). Post-norm (the original transformer, BERT): norm(x + f(x)).
    `causal=False` gives an encoder block (every position sees every other); `cross_attention=True`
    gives a decoder block of the encoder-decoder, which attends to the encoder's output between the two.
    """

    def __init__(self, cfg: GPTConfig, causal: bool = True, cross_attention: bool = False):
        super().__init__()
        self.pre_norm = cfg.pre_norm
        self.norm1 = make_norm(cfg)
        self.attn = self._attention(cfg, causal, rotary=cfg.positions == "rotary")
        self.norm2 = make_norm(cfg)
        self.ff = FeedForward(cfg.d_model, cfg.dropout, cfg.ff, cfg.ff_width, cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.cross_norm = make_norm(cfg) if cross_attention else None
        self.cross_attn = self._attention(cfg, causal=False, rotary=False) if cross_attention else None

    @staticmethod
    def _attention(cfg: GPTConfig, causal: bool, rotary: bool) -> MultiHeadAttention:
        return MultiHeadAttention(cfg.d_model, cfg.d_model, cfg.n_heads, cfg.context_length, dropout=cfg.dropout,
                                  causal=causal, qkv_bias=cfg.qkv_bias and cfg.bias, bias=cfg.bias,
                                  rotary=rotary, qk_norm=cfg.qk_norm)

    def forward(self, x: Tensor, kv_cache: KVCache | None = None, padding_mask: Tensor | None = None,
                context: Tensor | None = None, context_padding_mask: Tensor | None = None) -> Tensor:
        """`padding_mask` marks x's real tokens (True) and padding (False); `context` is the encoder's output."""
        if (context is None) != (self.cross_attn is None):
            raise ValueError("context is needed by, and only by, a block built with cross_attention=True")

        def self_attention(h: Tensor) -> Tensor:
            return self.dropout(self.attn(h, padding_mask=padding_mask, kv_cache=kv_cache))

        def cross_attention(h: Tensor) -> Tensor:
            return self.dropout(self.cross_attn(h, context=context, padding_mask=context_padding_mask))

        sublayers = [(self.norm1, self_attention)]
        if context is not None:
            sublayers.append((self.cross_norm, cross_attention))
        sublayers.append((self.norm2, self.ff))
        for norm, sublayer in sublayers:
            x = x + sublayer(norm(x)) if self.pre_norm else norm(x + sublayer(x))
        return x


def init_weights(module: nn.Module) -> None:
    """GPT-2's (and BERT's) start: linear and embedding weights from N(0, 0.02^2), biases at zero."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def sinusoidal_positions(n_positions: int, d_model: int) -> Tensor:
    """The 2017 transformer's fixed positions: sin and cos waves of geometrically spaced wavelengths.

    Row p, columns 2i and 2i+1: sin(p / 10000^(2i/d_model)) and cos(p / 10000^(2i/d_model)).
    """
    if d_model % 2:
        raise ValueError(f"sinusoidal positions need an even d_model, got {d_model}")
    frequencies = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    angles = torch.outer(torch.arange(n_positions, dtype=torch.float32), frequencies)
    table = torch.zeros(n_positions, d_model)
    table[:, 0::2], table[:, 1::2] = angles.sin(), angles.cos()
    return table


class GPTModel(nn.Module):
    """Token and position embeddings, a stack of transformer blocks, a final norm and the output head.

    Positions are learned (GPT-2), sinusoidal, or rotary (then there is no position table: the attention
    rotates queries and keys).
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        if cfg.positions == "learned":
            self.pos_emb = nn.Embedding(cfg.context_length, cfg.d_model)
        elif cfg.positions == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_positions(cfg.context_length, cfg.d_model),
                                 persistent=False)
        self.drop_emb = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.final_norm = make_norm(cfg)
        self.out_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(init_weights)
        for name, param in self.named_parameters():
            if name.endswith(("attn.out_proj.weight", "ff.fc_out.weight")):
                # Each block adds to the residual stream twice; shrink those writes so its
                # variance stays about the same however deep the stack is (as GPT-2 does).
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))
        if cfg.tie_weights:
            self.out_head.weight = self.tok_emb.weight

    def embed(self, token_ids: Tensor, past: int = 0) -> Tensor:
        """Token embeddings plus position embeddings (none for rotary), for tokens starting at position `past`."""
        x = self.tok_emb(token_ids)
        positions = torch.arange(past, past + token_ids.shape[1], device=token_ids.device)
        if self.cfg.positions == "learned":
            x = x + self.pos_emb(positions)
        elif self.cfg.positions == "sinusoidal":
            x = x + self.pos_table[positions]
        return self.drop_emb(x)

    def new_kv_cache(self) -> list[KVCache]:
        """One empty key-value cache per block, for `forward(..., kv_cache=...)`."""
        return [KVCache() for _ in self.blocks]

    def forward(self, token_ids: Tensor, kv_cache: list[KVCache] | None = None) -> Tensor:
        """Logits (batch, tokens, vocab_size) for token ids (batch, tokens).

        With `kv_cache`, `token_ids` are the tokens that follow the cached ones.
        """
        past = 0 if kv_cache is None else len(kv_cache[0])
        check_token_ids(token_ids, self.cfg.vocab_size, self.cfg.context_length, self.tok_emb.weight.device, past)
        x = self.embed(token_ids, past)
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache=None if kv_cache is None else kv_cache[i])
        return self.out_head(self.final_norm(x))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters; a tied weight is counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
