"""Multi-head attention, causal or bidirectional, self or cross, with a key-value cache (chapter 3).

Two options from later models (chapter 5's modern recipe): rotary positions and QK-norm.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class KVCache:
    """The keys and values one attention layer has already computed, reused when generating."""

    def __init__(self) -> None:
        self.keys: Tensor | None = None
        self.values: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2]

    def append(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Add the new tokens' keys and values (batch, heads, tokens, head_dim); return all so far."""
        if self.keys is None:
            self.keys, self.values = keys, values
        else:
            self.keys = torch.cat([self.keys, keys], dim=2)
            self.values = torch.cat([self.values, values], dim=2)
        return self.keys, self.values


class RotaryEmbedding(nn.Module):
    """Rotary positions (RoPE): rotate each pair of query/key dimensions by an angle proportional to the position.

    The dot product of a rotated query and a rotated key then depends only on how far apart they are.
    Pairs are (dimension i, dimension i + head_dim/2); pair i turns at the frequency base^(-2i/head_dim).
    """

    def __init__(self, head_dim: int, context_length: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary positions need an even head_dim, got {head_dim}")
        frequencies = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(context_length, dtype=torch.float32), frequencies)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """Rotate `x` (batch, heads, tokens, head_dim) whose first token sits at position `offset`."""
        cos = self.cos[offset:offset + x.shape[2]].to(x.dtype)
        sin = self.sin[offset:offset + x.shape[2]].to(x.dtype)
        first, second = x.chunk(2, dim=-1)
        return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


class MultiHeadAttention(nn.Module):
    """Splits one projection into heads, attends, and merges them back.

    Self-attention when `context` is None, cross-attention (queries from `x`, keys and values
    from `context`) otherwise. The fused path calls `F.scaled_dot_product_attention`; the
    explicit path computes the same thing step by step and can return the attention weights.
    `rotary` rotates queries and keys by their positions (self-attention only); `qk_norm` RMS-normalises
    each head's queries and keys before the dot product; `bias=False` drops the output projection's bias.
    """

    def __init__(self, d_in: int, d_out: int, n_heads: int, context_length: int,
                 dropout: float = 0.0, causal: bool = True, qkv_bias: bool = False,
                 bias: bool = True, rotary: bool = False, qk_norm: bool = False):
        super().__init__()
        if d_out % n_heads != 0:
            raise ValueError(f"d_out={d_out} is not divisible by n_heads={n_heads}")
        self.d_in = d_in
        self.d_out = d_out
        self.n_heads = n_heads
        self.head_dim = d_out // n_heads
        self.context_length = context_length
        self.dropout = dropout
        self.causal = causal
        self.use_fused = True
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out, bias=bias)
        self.attn_dropout = nn.Dropout(dropout)
        self.rotary = RotaryEmbedding(self.head_dim, context_length) if rotary else None
        self.q_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else None

    def split_heads(self, x: Tensor) -> Tensor:
        """(batch, tokens, d_out) -> (batch, heads, tokens, head_dim)."""
        batch, tokens, _ = x.shape
        return x.view(batch, tokens, self.n_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, context: Tensor | None = None, padding_mask: Tensor | None = None,
                kv_cache: KVCache | None = None,
                return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Attend from `x` (batch, tokens, d_in) to itself or to `context`.

        padding_mask: (batch, key_tokens) booleans, True for real tokens and False for padding;
        a query that may see no key at all gets zero weights (its output is out_proj's bias).
        kv_cache: self-attention only; the new keys and values are appended to it and the
        queries attend to every cached token (used by generation, one token at a time).
        """
        source = x if context is None else context
        self.check_inputs(x, source)
        batch, n_queries, _ = x.shape
        past = 0 if kv_cache is None else len(kv_cache)
        if past + n_queries > self.context_length or source.shape[1] > self.context_length:
            longest = max(past + n_queries, source.shape[1])
            raise ValueError(f"sequence of {longest} tokens exceeds context_length={self.context_length}")
        if context is not None and kv_cache is not None:
            raise ValueError("kv_cache is for self-attention; cross-attention keys do not grow")

        queries = self.split_heads(self.W_query(x))
        keys = self.split_heads(self.W_key(source))
        values = self.split_heads(self.W_value(source))
        if self.q_norm is not None:
            queries, keys = self.q_norm(queries), self.k_norm(keys)
        if self.rotary is not None and context is None:
            queries, keys = self.rotary(queries, offset=past), self.rotary(keys, offset=past)
        if kv_cache is not None:
            keys, values = kv_cache.append(keys, values)

        fused = self.use_fused and not return_weights
        # A plain causal square (no cache, no padding) needs no mask: PyTorch's fused kernel picks its fastest path.
        plain_causal = fused and self.causal and context is None and past == 0 and padding_mask is None
        mask = None if plain_causal else \
            self.attention_mask(batch, n_queries, keys.shape[2], past, padding_mask, context is None)
        if fused:
            out = F.scaled_dot_product_attention(
                queries, keys, values, attn_mask=None if mask is None else ~mask,
                dropout_p=self.dropout if self.training else 0.0, is_causal=plain_causal)
            weights = None
        else:
            scores = queries @ keys.transpose(2, 3) / math.sqrt(self.head_dim)
            if mask is not None:
                scores = scores.masked_fill(mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            if padding_mask is not None:
                # A query that may see no key at all gets zero weights (softmax would give NaN),
                # which is also what F.scaled_dot_product_attention returns for such a row.
                weights = weights.masked_fill(mask.all(dim=-1, keepdim=True), 0.0)
            weights = self.attn_dropout(weights)
            out = weights @ values

        out = self.out_proj(out.transpose(1, 2).reshape(batch, n_queries, self.d_out))
        return (out, weights) if return_weights else out

    def check_inputs(self, x: Tensor, source: Tensor) -> None:
        """Raise a ValueError that names the problem when `x` or `context` cannot be attended over."""
        for name, tensor in (("x", x), ("context", source)):
            if tensor.dim() != 3 or tensor.shape[2] != self.d_in:
                raise ValueError(f"{name} has shape {tuple(tensor.shape)}, "
                                 f"expected (batch, tokens, d_in={self.d_in})")
        if source.shape[0] != x.shape[0]:
            raise ValueError(f"context has batch size {source.shape[0]} but x has {x.shape[0]}; they must match")

    def attention_mask(self, batch: int, n_queries: int, n_keys: int, past: int,
                       padding_mask: Tensor | None, is_self: bool) -> Tensor | None:
        """Booleans broadcastable to (batch, heads, queries, keys), True where attention is forbidden."""
        mask = None
        if self.causal and is_self:
            # Query i sits at position past + i and may see keys 0 .. past + i: True above that diagonal.
            # Built for the sizes of this call, so a long context_length costs nothing until it is used.
            query_positions = torch.arange(past, past + n_queries, device=self.W_query.weight.device)
            key_positions = torch.arange(n_keys, device=self.W_query.weight.device)
            mask = key_positions[None, :] > query_positions[:, None]
        if padding_mask is not None:
            if padding_mask.shape != (batch, n_keys):
                raise ValueError(f"padding_mask has shape {tuple(padding_mask.shape)}, "
                                 f"expected (batch, key_tokens) = ({batch}, {n_keys})")
            padding = ~padding_mask.bool()[:, None, None, :]
            mask = padding if mask is None else mask | padding
        return mask
