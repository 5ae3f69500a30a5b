"""Classification with a pretrained model (chapter 6): a head on a GPT and its pooling, training only
part of the model, a head on the encoder's [CLS] vector, and the metrics (accuracy, confusion, macro F1)."""

import torch
from torch import Tensor, nn

from llmcourse.encoder import BertModel
from llmcourse.finetune import FitHistory, fit, shuffled_batches
from llmcourse.model import GPTModel
from llmcourse.tokenizer import BPETokenizer

# --- a classification head on a GPT ----------------------------------------------------------------

POOLINGS = ("last", "first", "mean")


def add_classification_head(model: GPTModel, n_classes: int, seed: int = 0) -> GPTModel:
    """Replace the model's output head (d_model -> vocab) by a fresh linear layer d_model -> n_classes.

    The model then gives class logits at every position; `pool` picks the one to use. A tied output
    head is untied: the token embedding keeps its matrix, the new head has its own.
    """
    if n_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
    generator = torch.Generator().manual_seed(seed)
    head = nn.Linear(model.cfg.d_model, n_classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.02)
        head.bias.zero_()
    model.out_head = head.to(model.tok_emb.weight.device)
    return model


def pool(logits: Tensor, pooling: str = "last") -> Tensor:
    """One vector per sequence from per-position outputs (batch, tokens, n): the last, the first, or their mean.

    With causal attention only the last position has seen the whole sequence.
    """
    if pooling == "last":
        return logits[:, -1]
    if pooling == "first":
        return logits[:, 0]
    if pooling == "mean":
        return logits.mean(dim=1)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def hidden_states(model: GPTModel, token_ids: Tensor, n_blocks: int) -> Tensor:
    """The residual stream (batch, tokens, d_model) after the embeddings and the first `n_blocks` blocks."""
    if not 0 <= n_blocks <= len(model.blocks):
        raise ValueError(f"n_blocks must be in 0..{len(model.blocks)}, got {n_blocks}")
    x = model.embed(token_ids)
    for block in model.blocks[:n_blocks]:
        x = block(x)
    return x


class GPTClassifier(nn.Module):
    """A GPT with a classification head, pooled to one logit vector per sequence.

    With `start_block = 0` it reads token ids. With `start_block = k > 0` it reads the residual stream
    after block k - 1 (from `hidden_states`, computed once) and runs only blocks k.. and the head:
    frozen lower blocks compute the same thing in every epoch, so they need to run only once.
    """

    def __init__(self, model: GPTModel, pooling: str = "last", start_block: int = 0):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if not 0 <= start_block <= len(model.blocks):
            raise ValueError(f"start_block must be in 0..{len(model.blocks)}, got {start_block}")
        self.model = model
        self.pooling = pooling
        self.start_block = start_block

    def forward(self, inputs: Tensor) -> Tensor:
        if self.start_block == 0:
            return pool(self.model(inputs), self.pooling)
        x = inputs
        for block in self.model.blocks[self.start_block:]:
            x = block(x)
        return pool(self.model.out_head(self.model.final_norm(x)), self.pooling)


TRAINABLE_PARTS = ("head", "last block", "all")


def set_trainable(model: GPTModel, part: str) -> int:
    """Freeze the model except `part`: "head", "last block" (+ final norm + head) or "all". Returns the count.

    The position and token embeddings count as part of "all" only.
    """
    if part not in TRAINABLE_PARTS:
        raise ValueError(f"part must be one of {TRAINABLE_PARTS}, got {part!r}")
    trainable = {"head": ("out_head.",),
                 "last block": ("out_head.", "final_norm.", f"blocks.{len(model.blocks) - 1}."),
                 "all": ("",)}[part]
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(trainable)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- a head on the encoder's [CLS] vector --------------------------------------------------------


def with_cls_and_sep(token_ids: Tensor, tokenizer: BPETokenizer) -> Tensor:
    """Rows of token ids (batch, tokens) framed as BERT reads one segment: [CLS] ids [SEP]."""
    specials = tokenizer.special_tokens
    cls = torch.full((len(token_ids), 1), specials["[CLS]"], dtype=torch.long)
    sep = torch.full((len(token_ids), 1), specials["[SEP]"], dtype=torch.long)
    return torch.cat([cls, token_ids.long(), sep], dim=1)


class EncoderClassifier(nn.Module):
    """A pretrained encoder with a new linear head on its pooled [CLS] vector: logits (batch, n_classes).

    Rows of different lengths in one batch are padded; give `pad_id` (the tokenizer's [PAD]) so that no
    position attends to the padding, or pass a `padding_mask` (True for real tokens) to `forward`.
    """

    def __init__(self, encoder: BertModel, n_classes: int, seed: int = 0, pad_id: int | None = None):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
        self.encoder = encoder
        self.pad_id = pad_id
        self.head = nn.Linear(encoder.cfg.d_model, n_classes)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=generator) * 0.02)
            self.head.bias.zero_()
        self.head.to(next(encoder.parameters()).device)

    def forward(self, token_ids: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        if padding_mask is None and self.pad_id is not None:
            padding_mask = token_ids != self.pad_id
        return self.head(self.encoder.pool(self.encoder.encode(token_ids, padding_mask=padding_mask)))


# --- training and measuring ------------------------------------------------------------------------


def train_classifier(classifier: nn.Module, train_inputs: Tensor, train_labels: Tensor, val_inputs: Tensor,
                     val_labels: Tensor, epochs: int, lr: float, batch_size: int = 32, seed: int = 0,
                     weight_decay: float = 0.0) -> FitHistory:
    """`fit` on shuffled batches (an order per epoch, drawn from `seed`), keeping the epoch of best validation accuracy.

    Labels must be class indices 0 .. n_classes - 1, n_classes being the width of the classifier's output.
    """
    if len(train_inputs) == 0 or len(val_inputs) == 0:
        raise ValueError(f"need training and validation examples, got {len(train_inputs)} and {len(val_inputs)}")
    n_classes = predict_proba(classifier, val_inputs[:1]).shape[-1]
    check_labels(train_labels, n_classes, len(train_inputs), "train_labels")
    check_labels(val_labels, n_classes, len(val_inputs), "val_labels")
    return fit(classifier, lambda epoch: shuffled_batches(train_inputs, train_labels, batch_size, seed * 1000 + epoch),
               epochs, lr, weight_decay,
               after_epoch=lambda: accuracy(val_labels, predict_proba(classifier, val_inputs).argmax(-1)))


@torch.no_grad()
def predict_proba(module: nn.Module, inputs: Tensor, batch_size: int = 64) -> Tensor:
    """Class probabilities (n, classes) for every input, in eval mode."""
    if len(inputs) == 0:
        raise ValueError("inputs is empty: there is nothing to predict")
    was_training = module.training
    module.eval()
    probs = torch.cat([torch.softmax(module(batch).float(), dim=-1) for batch in inputs.split(batch_size)])
    module.train(was_training)
    return probs


def check_labels(labels: Tensor, n_classes: int, n_examples: int, name: str = "labels") -> None:
    """Refuse anything but `n_examples` class indices 0 .. n_classes - 1 in a 1-D integer tensor."""
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.dtype.is_floating_point \
            or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-D tensor of integer class indices, "
                         f"got {getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}")
    if len(labels) != n_examples:
        raise ValueError(f"{name} has {len(labels)} entries for {n_examples} examples")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{name} must be class indices 0 .. {n_classes - 1}, got values "
                         f"{labels.min().item()} .. {labels.max().item()}")


def confusion_matrix(labels: Tensor, predictions: Tensor, n_classes: int) -> Tensor:
    """Counts (n_classes, n_classes): row = true class, column = predicted class."""
    check_labels(labels, n_classes, len(predictions), "labels")
    check_labels(predictions, n_classes, len(labels), "predictions")
    return torch.bincount(labels * n_classes + predictions, minlength=n_classes * n_classes).view(n_classes, n_classes)


def accuracy(labels: Tensor, predictions: Tensor) -> float:
    """Share of predictions equal to the label."""
    if not isinstance(labels, Tensor) or not isinstance(predictions, Tensor) or labels.dim() != 1 \
            or labels.shape != predictions.shape or len(labels) == 0:
        raise ValueError(f"labels and predictions must be two 1-D tensors of the same, non-zero length, got shapes "
                         f"{tuple(getattr(labels, 'shape', ()))} and {tuple(getattr(predictions, 'shape', ()))}")
    return (labels == predictions).float().mean().item()


def macro_f1(labels: Tensor, predictions: Tensor, n_classes: int) -> float:
    """Mean over classes of F1 = 2 precision recall / (precision + recall); a class never predicted scores 0.

    Unlike accuracy it weighs every class alike, so always answering the biggest class scores low.
    """
    counts = confusion_matrix(labels, predictions, n_classes).double()
    true_positive = counts.diag()
    f1 = 2 * true_positive / (counts.sum(0) + counts.sum(1)).clamp(min=1)
    return f1.mean().item()
