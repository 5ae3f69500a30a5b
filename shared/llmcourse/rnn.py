"""Recurrent language models, an Elman RNN and an LSTM, the baselines attention replaced (chapter 1).

`RNNLanguageModel` has GPTModel's interface: token ids (batch, tokens) in, logits
(batch, tokens, vocab_size) out, and a `cfg` with a `context_length`, so the chapter-5 training
loop and `evaluate_bits_per_byte` work on it unchanged.
"""

from dataclasses import asdict, dataclass

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
