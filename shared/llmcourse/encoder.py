"""The encoder side of the transformer: a BERT-style encoder and the 2017 encoder-decoder (chapter 4).

Both are built from the GPT's own `TransformerBlock`: an encoder block is a block with `causal=False`,
a decoder block of the encoder-decoder is a causal block with `cross_attention=True`.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmcourse.data import check_token_ids
from llmcourse.model import (GPTConfig, LayerNorm, TransformerBlock, init_weights, make_norm,
                             sinusoidal_positions)

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")

BERT_SIZES = {
    "base": dict(d_model=768, n_heads=12, n_layers=12, d_ff=3072),
    "large": dict(d_model=1024, n_heads=16, n_layers=24, d_ff=4096),
}


def encoder_config(**fields) -> GPTConfig:
    """A GPTConfig with BERT's conventions: post-norm blocks, exact GELU, LayerNorm epsilon 1e-12."""
    return GPTConfig(**{"pre_norm": False, "ff": "gelu_exact", "norm_eps": 1e-12, **fields})


def bert_config(size: str = "base", **overrides) -> GPTConfig:
    """The published BERT sizes: "base" (110M parameters) or "large" (340M), WordPiece vocabulary of 30,522."""
    if size not in BERT_SIZES:
        raise ValueError(f"unknown BERT size {size!r}; choose one of {sorted(BERT_SIZES)}")
    return encoder_config(**{"vocab_size": 30522, "context_length": 512, "dropout": 0.1,
                             **BERT_SIZES[size], **overrides})


class BertModel(nn.Module):
    """A BERT-style encoder with its two pretraining heads.

    Token + segment + position embeddings, normalised; bidirectional post-norm blocks; a pooler
    (tanh of a linear map of the [CLS] state); a masked-LM head whose output matrix is the token embedding
    table; a next-sentence head on the pooled [CLS] (class 0: B follows A, class 1: B is random).
    Positions are learned (BERT), sinusoidal, or rotary (no position table: the attention rotates queries and keys).
    """

    def __init__(self, cfg: GPTConfig, n_segments: int = 2):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        if cfg.positions == "learned":
            self.pos_emb = nn.Embedding(cfg.context_length, cfg.d_model)
        elif cfg.positions == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_positions(cfg.context_length, cfg.d_model),
                                 persistent=False)
        self.seg_emb = nn.Embedding(n_segments, cfg.d_model)
        self.emb_norm = LayerNorm(cfg.d_model, cfg.norm_eps)
        self.drop_emb = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(TransformerBlock(cfg, causal=False) for _ in range(cfg.n_layers))
        self.pooler = nn.Linear(cfg.d_model, cfg.d_model)
        self.mlm_transform = nn.Linear(cfg.d_model, cfg.d_model)
        self.mlm_norm = LayerNorm(cfg.d_model, cfg.norm_eps)
        self.mlm_head = nn.Linear(cfg.d_model, cfg.vocab_size)
        self.nsp_head = nn.Linear(cfg.d_model, 2)
        self.apply(init_weights)
        if cfg.tie_weights:
            self.mlm_head.weight = self.tok_emb.weight

    def encode(self, token_ids: Tensor, segment_ids: Tensor | None = None,
               padding_mask: Tensor | None = None) -> Tensor:
        """The last block's states (batch, tokens, d_model). padding_mask: True for real tokens."""
        check_token_ids(token_ids, self.cfg.vocab_size, self.cfg.context_length, self.tok_emb.weight.device)
        if segment_ids is None:
            segment_ids = torch.zeros_like(token_ids)
        if segment_ids.shape != token_ids.shape or segment_ids.dtype.is_floating_point \
                or segment_ids.dtype == torch.bool:
            raise ValueError(f"segment_ids must be integers of token_ids' shape {tuple(token_ids.shape)}, "
                             f"got {segment_ids.dtype} {tuple(segment_ids.shape)}")
        if segment_ids.min() < 0 or segment_ids.max() >= self.seg_emb.num_embeddings:
            raise ValueError(f"segment ids must be in 0 .. {self.seg_emb.num_embeddings - 1}")
        positions = torch.arange(token_ids.shape[1], device=token_ids.device)
        x = self.tok_emb(token_ids) + self.seg_emb(segment_ids)
        if self.cfg.positions == "learned":
            x = x + self.pos_emb(positions)
        elif self.cfg.positions == "sinusoidal":
            x = x + self.pos_table[positions]
        x = self.drop_emb(self.emb_norm(x))
        for block in self.blocks:
            x = block(x, padding_mask=padding_mask)
        return x

    def pool(self, hidden: Tensor) -> Tensor:
        """One vector per sequence (batch, d_model): tanh of a linear map of the [CLS] position's state."""
        return torch.tanh(self.pooler(hidden[:, 0]))

    def mlm_logits(self, hidden: Tensor) -> Tensor:
        """Scores over the vocabulary (batch, tokens, vocab_size) for every position."""
        return self.mlm_head(self.mlm_norm(F.gelu(self.mlm_transform(hidden))))

    def forward(self, token_ids: Tensor, segment_ids: Tensor | None = None,
                padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Masked-LM logits (batch, tokens, vocab_size) and next-sentence logits (batch, 2)."""
        hidden = self.encode(token_ids, segment_ids, padding_mask)
        return self.mlm_logits(hidden), self.nsp_head(self.pool(hidden))


def bert_state_from_hf(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename the tensors of a Hugging Face `BertForPreTraining` state dict to `BertModel`'s names."""
    ours = {
        "tok_emb.weight": "bert.embeddings.word_embeddings.weight",
        "pos_emb.weight": "bert.embeddings.position_embeddings.weight",
        "seg_emb.weight": "bert.embeddings.token_type_embeddings.weight",
        "emb_norm.weight": "bert.embeddings.LayerNorm.weight", "emb_norm.bias": "bert.embeddings.LayerNorm.bias",
        "pooler.weight": "bert.pooler.dense.weight", "pooler.bias": "bert.pooler.dense.bias",
        "mlm_transform.weight": "cls.predictions.transform.dense.weight",
        "mlm_transform.bias": "cls.predictions.transform.dense.bias",
        "mlm_norm.weight": "cls.predictions.transform.LayerNorm.weight",
        "mlm_norm.bias": "cls.predictions.transform.LayerNorm.bias",
        "mlm_head.weight": "bert.embeddings.word_embeddings.weight", "mlm_head.bias": "cls.predictions.bias",
        "nsp_head.weight": "cls.seq_relationship.weight", "nsp_head.bias": "cls.seq_relationship.bias",
    }
    n_layers = 1 + max((int(k.split(".")[3]) for k in hf_state if k.startswith("bert.encoder.layer.")), default=-1)
    for i in range(n_layers):
        hf, b = f"bert.encoder.layer.{i}.", f"blocks.{i}."
        parts = {"attn.W_query": "attention.self.query", "attn.W_key": "attention.self.key",
                 "attn.W_value": "attention.self.value", "attn.out_proj": "attention.output.dense",
                 "norm1": "attention.output.LayerNorm", "ff.fc_in": "intermediate.dense",
                 "ff.fc_out": "output.dense", "norm2": "output.LayerNorm"}
        for mine, theirs in parts.items():
            for kind in ("weight", "bias"):
                ours[f"{b}{mine}.{kind}"] = f"{hf}{theirs}.{kind}"
    missing = [theirs for theirs in ours.values() if theirs not in hf_state]
    if missing:
        raise KeyError(f"not a BertForPreTraining state dict: {len(missing)} tensors missing, e.g. {missing[0]}")
    return {mine: hf_state[theirs] for mine, theirs in ours.items()}


class EncoderDecoder(nn.Module):
    """The 2017 transformer for translation-like tasks: an encoder stack and a decoder stack.

    Source and target share one vocabulary and one embedding table (scaled by sqrt(d_model)), which is
    also the output head; positions are sinusoidal; blocks are post-norm. Each decoder block attends to
    the earlier target tokens (causal), then to every source token (cross-attention), then feeds forward.
    Like PyTorch's `nn.Transformer`, each stack ends with a norm.
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.positions != "sinusoidal":
            raise ValueError(f"EncoderDecoder uses sinusoidal positions; got positions={cfg.positions!r}")
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.register_buffer("pos_table", sinusoidal_positions(cfg.context_length, cfg.d_model), persistent=False)
        self.drop_emb = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(TransformerBlock(cfg, causal=False) for _ in range(cfg.n_layers))
        self.encoder_norm = make_norm(cfg)
        self.decoder = nn.ModuleList(TransformerBlock(cfg, causal=True, cross_attention=True)
                                     for _ in range(cfg.n_layers))
        self.decoder_norm = make_norm(cfg)
        self.out_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        for name, param in self.named_parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)
            elif name.endswith("bias"):
                nn.init.zeros_(param)
        # Shared with the output head, the table is scaled by sqrt(d_model) on the way in: start it at
        # std d_model^-0.5 so that embedded tokens have about unit size.
        nn.init.normal_(self.tok_emb.weight, mean=0.0, std=cfg.d_model ** -0.5)
        if cfg.tie_weights:
            self.out_head.weight = self.tok_emb.weight

    def embed(self, token_ids: Tensor) -> Tensor:
        """Scaled token embeddings plus sinusoidal positions."""
        positions = torch.arange(token_ids.shape[1], device=token_ids.device)
        return self.drop_emb(self.tok_emb(token_ids) * math.sqrt(self.cfg.d_model) + self.pos_table[positions])

    def encode(self, src_ids: Tensor, src_padding_mask: Tensor | None = None) -> Tensor:
        """The encoder's output (batch, src_tokens, d_model), the `memory` the decoder attends to."""
        check_token_ids(src_ids, self.cfg.vocab_size, self.cfg.context_length, self.tok_emb.weight.device,
                        name="src_ids")
        x = self.embed(src_ids)
        for block in self.encoder:
            x = block(x, padding_mask=src_padding_mask)
        return self.encoder_norm(x)

    def decode(self, tgt_ids: Tensor, memory: Tensor, src_padding_mask: Tensor | None = None,
               tgt_padding_mask: Tensor | None = None) -> Tensor:
        """Next-token logits (batch, tgt_tokens, vocab_size) for the target so far, given the encoder's memory."""
        check_token_ids(tgt_ids, self.cfg.vocab_size, self.cfg.context_length, self.tok_emb.weight.device,
                        name="tgt_ids")
        x = self.embed(tgt_ids)
        for block in self.decoder:
            x = block(x, padding_mask=tgt_padding_mask, context=memory, context_padding_mask=src_padding_mask)
        return self.out_head(self.decoder_norm(x))

    def forward(self, src_ids: Tensor, tgt_ids: Tensor, src_padding_mask: Tensor | None = None,
                tgt_padding_mask: Tensor | None = None) -> Tensor:
        """Logits for every target position, trained with teacher forcing (the true target is the input)."""
        memory = self.encode(src_ids, src_padding_mask)
        return self.decode(tgt_ids, memory, src_padding_mask, tgt_padding_mask)

    @torch.no_grad()
    def greedy_decode(self, src_ids: Tensor, bos_id: int, eos_id: int, max_new_tokens: int,
                      src_padding_mask: Tensor | None = None) -> Tensor:
        """The most likely token at each step, from [BOS] until every row has made [EOS] (then padded with it).

        Returns (batch, <= max_new_tokens) ids, without the leading bos_id.
        """
        if max_new_tokens < 1 or max_new_tokens >= self.cfg.context_length:
            raise ValueError(f"max_new_tokens must be in 1 .. {self.cfg.context_length - 1}, got {max_new_tokens}")
        memory = self.encode(src_ids, src_padding_mask)
        out = torch.full((src_ids.shape[0], 1), bos_id, dtype=torch.long, device=src_ids.device)
        finished = torch.zeros(src_ids.shape[0], dtype=torch.bool, device=src_ids.device)
        for _ in range(max_new_tokens):
            next_ids = self.decode(out, memory, src_padding_mask)[:, -1].argmax(dim=-1)
            next_ids = torch.where(finished, torch.full_like(next_ids, eos_id), next_ids)
            out = torch.cat([out, next_ids[:, None]], dim=1)
            finished |= next_ids == eos_id
            if finished.all():
                break
        return out[:, 1:]

    @torch.no_grad()
    def cross_attention_weights(self, src_ids: Tensor, tgt_ids: Tensor,
                                src_padding_mask: Tensor | None = None) -> list[Tensor]:
        """Per decoder block, the cross-attention weights (batch, heads, tgt_tokens, src_tokens)."""
        calls = []

        def remember(module: nn.Module, args: tuple, kwargs: dict) -> None:
            calls.append((module, args, kwargs))

        handles = [block.cross_attn.register_forward_pre_hook(remember, with_kwargs=True) for block in self.decoder]
        try:
            self(src_ids, tgt_ids, src_padding_mask)
        finally:
            for handle in handles:
                handle.remove()
        return [module(*args, **{**kwargs, "return_weights": True})[1] for module, args, kwargs in calls]


def state_from_nn_transformer(reference: nn.Transformer) -> dict[str, Tensor]:
    """The weights of a batch-first, post-norm `nn.Transformer` under `EncoderDecoder`'s block names."""
    state = {}

    def attention(prefix: str, module: nn.MultiheadAttention) -> None:
        for name, w, b in zip(("W_query", "W_key", "W_value"), module.in_proj_weight.chunk(3),
                              module.in_proj_bias.chunk(3)):
            state[f"{prefix}.{name}.weight"], state[f"{prefix}.{name}.bias"] = w, b
        state[f"{prefix}.out_proj.weight"] = module.out_proj.weight
        state[f"{prefix}.out_proj.bias"] = module.out_proj.bias

    def copy(prefix: str, module: nn.Module) -> None:
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = module.weight, module.bias

    def block(prefix: str, layer: nn.Module, last_norm: nn.LayerNorm) -> None:
        attention(f"{prefix}.attn", layer.self_attn)
        copy(f"{prefix}.norm1", layer.norm1)
        copy(f"{prefix}.ff.fc_in", layer.linear1)
        copy(f"{prefix}.ff.fc_out", layer.linear2)
        copy(f"{prefix}.norm2", last_norm)

    for i, layer in enumerate(reference.encoder.layers):
        block(f"encoder.{i}", layer, layer.norm2)
    for i, layer in enumerate(reference.decoder.layers):  # PyTorch's norm2 follows cross-attention, norm3 the FF
        block(f"decoder.{i}", layer, layer.norm3)
        attention(f"decoder.{i}.cross_attn", layer.multihead_attn)
        copy(f"decoder.{i}.cross_norm", layer.norm2)
    copy("encoder_norm", reference.encoder.norm)
    copy("decoder_norm", reference.decoder.norm)
    return {name: tensor.detach().clone() for name, tensor in state.items()}
