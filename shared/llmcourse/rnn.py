"""Recurrent networks (chapters 1 and 5): language models, an Elman RNN and an LSTM, the baselines attention
replaced; and the GRU encoder-decoder, with and without additive attention, of sequence to sequence.

`RNNLanguageModel` has GPTModel's interface: token ids (batch, tokens) in, logits
(batch, tokens, vocab_size) out, and a `cfg` with a `context_length`, so the chapter-5 training
loop and `evaluate_bits_per_byte` work on it unchanged.
"""

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from llmcourse.data import check_token_ids

CELLS = ("rnn", "lstm")


@dataclass
class RNNConfig:
    """Sizes of a recurrent language model.

    `context_length` is the length of the windows it is trained and evaluated on: the hidden state
    starts at zero at the start of each window, as a GPT's context does. The recurrence itself has
    no length limit.
    """

    vocab_size: int
    context_length: int = 128
    d_model: int = 64  # size of the token embeddings (and of the vector the output head reads)
    hidden_size: int = 256  # size of the recurrent state
    n_layers: int = 1
    cell: str = "rnn"  # "rnn" (Elman, tanh) or "lstm"
    dropout: float = 0.0
    tie_weights: bool = True

    def __post_init__(self) -> None:
        """Refuse impossible sizes here rather than deep inside a layer."""
        for name in ("vocab_size", "context_length", "d_model", "hidden_size", "n_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RNNConfig.{name} must be an integer >= 1, got {value!r}")
        if self.cell not in CELLS:
            raise ValueError(f"RNNConfig.cell must be one of {CELLS}, got {self.cell!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or \
                not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"RNNConfig.dropout must be a probability in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class RNNLanguageModel(nn.Module):
    """Token embeddings, a stack of recurrent layers, a projection back to d_model and the output head.

    The projection lets the recurrent state be wider than the embeddings while the output head
    shares its weights with the embedding table, as the course GPT's does.
    """

    def __init__(self, cfg: RNNConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        # Embedding vectors of about unit length: the recurrent layer has no normalisation, and GPT-sized
        # embeddings (std 0.02) reach it so faint that a small RNN fails to learn even a periodic sequence.
        nn.init.normal_(self.tok_emb.weight, mean=0.0, std=cfg.d_model ** -0.5)
        self.drop = nn.Dropout(cfg.dropout)
        recurrent = nn.RNN if cfg.cell == "rnn" else nn.LSTM
        self.rnn = recurrent(cfg.d_model, cfg.hidden_size, cfg.n_layers, batch_first=True,
                             dropout=cfg.dropout if cfg.n_layers > 1 else 0.0)
        self.proj = nn.Linear(cfg.hidden_size, cfg.d_model)
        self.out_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.out_head.weight = self.tok_emb.weight
        else:
            nn.init.normal_(self.out_head.weight, mean=0.0, std=cfg.d_model ** -0.5)

    def forward(self, token_ids: Tensor) -> Tensor:
        """Logits (batch, tokens, vocab_size) for token ids (batch, tokens); the state starts at zero."""
        check_token_ids(token_ids, self.cfg.vocab_size, device=self.tok_emb.weight.device)
        x = self.drop(self.tok_emb(token_ids))
        states, _ = self.rnn(x)
        return self.out_head(self.drop(self.proj(states)))


# --- the RNN encoder-decoder (chapter 5) ----------------------------------------------------------

def _check_mask(name: str, mask: Tensor | None, ids: Tensor) -> Tensor:
    if mask is None:
        return torch.ones_like(ids, dtype=torch.bool)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != ids.shape:
        raise ValueError(f"{name} must be a bool tensor of shape {tuple(ids.shape)} (True for real tokens), "
                         f"got {getattr(mask, 'dtype', type(mask))} {tuple(getattr(mask, 'shape', ()))}")
    if not mask[:, 0].all():
        raise ValueError(f"{name}: every row needs at least one real token, at the start (padding goes at the end)")
    if (mask[:, 1:] & ~mask[:, :-1]).any():
        raise ValueError(f"{name} has a real token (True) after padding (False): each row must be True for its "
                         "tokens, then False for its padding, as the recurrence reads the real tokens in one run")
    return mask


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau) attention: score(s, h) = v · tanh(W_s s + W_h h), softmax over the real source tokens."""

    def __init__(self, query_size: int, key_size: int, attention_size: int):
        super().__init__()
        self.query = nn.Linear(query_size, attention_size, bias=False)
        self.key = nn.Linear(key_size, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def forward(self, queries: Tensor, memory: Tensor, src_padding_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Context vectors (batch, tgt, key_size) and weights (batch, tgt, src) for queries (batch, tgt, query_size)."""
        scores = self.score(torch.tanh(self.query(queries)[:, :, None] + self.key(memory)[:, None])).squeeze(-1)
        scores = scores.masked_fill(~src_padding_mask[:, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return weights @ memory, weights


class RNNEncoderDecoder(nn.Module):
    """A bidirectional GRU encoder and a GRU decoder, with or without additive attention.

    At every step the decoder's state is joined by a context vector before the output layer. Without
    attention the context is the same at every step: the encoder's two final states, one fixed-size
    summary of the whole source (Cho and colleagues' 2014 design, which also starts the decoder from
    it). With attention the context is a fresh mix of all encoder states, weighted by additive scores
    against the decoder's state (Bahdanau's score, in Luong's placement after the GRU step), so all target
    positions still train in parallel under teacher forcing.
    """

    def __init__(self, vocab_size: int, d_embed: int = 32, hidden_size: int = 128,
                 attention: bool = True, attention_size: int = 64, pad_id: int = 0):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("d_embed", d_embed), ("hidden_size", hidden_size),
                            ("attention_size", attention_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(pad_id, bool) or not isinstance(pad_id, int) or not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id must be an id in 0 .. {vocab_size - 1}, got {pad_id!r}")
        if not isinstance(attention, bool):
            raise ValueError(f"attention must be True or False, got {attention!r}")
        self.vocab_size, self.hidden_size, self.attention = vocab_size, hidden_size, attention
        self.embedding = nn.Embedding(vocab_size, d_embed, padding_idx=pad_id)
        self.encoder = nn.GRU(d_embed, hidden_size, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * hidden_size, hidden_size)  # the encoder's final states -> decoder's first state
        self.decoder = nn.GRU(d_embed, hidden_size, batch_first=True)
        self.attend = AdditiveAttention(hidden_size, 2 * hidden_size, attention_size) if attention else None
        self.combine = nn.Linear(3 * hidden_size, hidden_size)  # decoder state + a 2 * hidden context
        self.out_head = nn.Linear(hidden_size, vocab_size)

    def encode(self, src_ids: Tensor, src_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Encoder states (batch, src, 2 * hidden), the summary (batch, 2 * hidden): the two final states, and
        the decoder's first state (1, batch, hidden) made from it."""
        check_token_ids(src_ids, self.vocab_size, device=self.embedding.weight.device, name="src_ids")
        src_padding_mask = _check_mask("src_padding_mask", src_padding_mask, src_ids)
        lengths = src_padding_mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(src_ids), lengths, batch_first=True,
                                                   enforce_sorted=False)
        states, final = self.encoder(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=src_ids.shape[1])
        summary = torch.cat([final[0], final[1]], dim=-1)
        return memory, summary, torch.tanh(self.bridge(summary))[None]

    def _step_logits(self, states: Tensor, encoded: tuple[Tensor, Tensor, Tensor],
                     src_padding_mask: Tensor) -> tuple[Tensor, Tensor | None]:
        memory, summary, _ = encoded
        if self.attend is None:
            context, weights = summary[:, None].expand(-1, states.shape[1], -1), None
        else:
            context, weights = self.attend(states, memory, src_padding_mask)
        return self.out_head(torch.tanh(self.combine(torch.cat([states, context], dim=-1)))), weights

    def decode(self, tgt_ids: Tensor, encoded: tuple[Tensor, Tensor, Tensor], src_padding_mask: Tensor | None = None,
               tgt_padding_mask: Tensor | None = None) -> Tensor:
        """Logits (batch, tgt, vocab) for decoder inputs `tgt_ids` ([BOS] + target), teacher forced.

        `tgt_padding_mask` is accepted for the shared interface; the recurrence only reads leftwards, and
        padding sits at the end, so no real position sees a padded one.
        """
        return self._decode(tgt_ids, encoded, src_padding_mask)[0]

    def _decode(self, tgt_ids: Tensor, encoded: tuple[Tensor, Tensor, Tensor],
                src_padding_mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        check_token_ids(tgt_ids, self.vocab_size, device=self.embedding.weight.device, name="tgt_ids")
        src_padding_mask = _check_mask("src_padding_mask", src_padding_mask, encoded[0][..., 0])
        states, _ = self.decoder(self.embedding(tgt_ids), encoded[2])
        return self._step_logits(states, encoded, src_padding_mask)

    def forward(self, src_ids: Tensor, tgt_ids: Tensor, src_padding_mask: Tensor | None = None,
                tgt_padding_mask: Tensor | None = None) -> Tensor:
        """Logits (batch, tgt, vocab): position t predicts the target token after tgt_ids[:, :t + 1]."""
        return self.decode(tgt_ids, self.encode(src_ids, src_padding_mask), src_padding_mask, tgt_padding_mask)

    def cross_attention_weights(self, src_ids: Tensor, tgt_ids: Tensor,
                                src_padding_mask: Tensor | None = None) -> list[Tensor]:
        """The attention weights as [tensor (batch, 1, tgt, src)]: the transformer's layout, one layer, one head."""
        if self.attend is None:
            raise ValueError("this model has no attention (attention=False): there are no weights to show")
        _, weights = self._decode(tgt_ids, self.encode(src_ids, src_padding_mask), src_padding_mask)
        return [weights[:, None]]

    @torch.no_grad()
    def greedy_decode(self, src_ids: Tensor, bos_id: int, eos_id: int, max_new_tokens: int,
                      src_padding_mask: Tensor | None = None) -> Tensor:
        """Ids (batch, <= max_new_tokens) after [BOS], the likeliest token at each step, one step at a time.

        Stops when every row has produced [EOS]; a finished row keeps its [EOS] and is padded with more.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        encoded = self.encode(src_ids, src_padding_mask)
        state = encoded[2]
        src_padding_mask = _check_mask("src_padding_mask", src_padding_mask, src_ids)
        token = torch.full((src_ids.shape[0], 1), bos_id, dtype=torch.long, device=src_ids.device)
        done = torch.zeros(src_ids.shape[0], dtype=torch.bool, device=src_ids.device)
        out = []
        for _ in range(max_new_tokens):
            step, state = self.decoder(self.embedding(token), state)
            logits, _ = self._step_logits(step, encoded, src_padding_mask)
            token = logits[:, -1].argmax(-1, keepdim=True)
            token = token.masked_fill(done[:, None], eos_id)
            out.append(token)
            done |= token[:, 0] == eos_id
            if done.all():
                break
        return torch.cat(out, dim=1)
