"""Muon: the same update as torch.optim.Muon, orthogonal-ish updates, the pair with AdamW, clear errors."""

import pytest
import torch

from llmcourse.data import create_dataloader
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.muon import Muon, MuonWithAdamW, orthogonalize
from llmcourse.train import lr_at, train


def test_orthogonalize_pulls_every_singular_value_near_one():
    torch.manual_seed(0)
    u, v = torch.linalg.qr(torch.randn(48, 16))[0], torch.linalg.qr(torch.randn(16, 16))[0]
    matrix = u @ torch.diag(torch.logspace(-1, 1, 16)) @ v  # singular values from 0.1 to 10
    singular = torch.linalg.svdvals(orthogonalize(matrix))
    assert singular.min() > 0.6 and singular.max() < 1.2  # a 100-fold spread squeezed to under 2-fold
    u, _, vt = torch.linalg.svd(matrix, full_matrices=False)
    assert torch.nn.functional.cosine_similarity(orthogonalize(matrix).flatten(), (u @ vt).flatten(), dim=0) > 0.95


def test_muon_step_matches_torch_muon_up_to_bfloat16():
    torch.manual_seed(0)
    weights = [torch.randn(32, 8), torch.randn(8, 24)]
    ours = [w.clone().requires_grad_() for w in weights]
    theirs = [w.clone().requires_grad_() for w in weights]
    mine = Muon(ours, lr=0.05, weight_decay=0.1)
    reference = torch.optim.Muon(theirs, lr=0.05, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    for _ in range(3):
        grads = [torch.randn_like(w) for w in weights]
        for params, optimizer in ((ours, mine), (theirs, reference)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
    for a, b, w in zip(ours, theirs, weights):
        moved = (b - w).abs().max()
        assert moved > 0.05 and ((a - b).abs().max() < 0.03 * moved)


def test_muon_refuses_vectors():
    with pytest.raises(ValueError, match="matrices only"):
        Muon([torch.nn.Parameter(torch.zeros(5))])


def test_pair_gives_block_matrices_to_muon_and_the_rest_to_adamw_and_learns():
    torch.manual_seed(0)
    model = GPTModel(GPTConfig(vocab_size=40, context_length=16, d_model=32, n_heads=4, n_layers=2, dropout=0.0,
                               tie_weights=False))
    optimizer = MuonWithAdamW(model, lr=3e-3, muon_lr=0.02)
    muon_params = {id(p) for g in optimizer.muon.param_groups for p in g["params"]}
    for name, param in model.named_parameters():
        assert (id(param) in muon_params) == (name.startswith("blocks.") and param.dim() == 2), name
    assert optimizer.muon.param_groups[0]["lr_scale"] == pytest.approx(0.02 / 3e-3)
    ids = torch.arange(2000) % 7 * 5 % 40  # a repeating pattern, easy to learn
    loader = create_dataloader(ids.tolist(), 8, 16)
    history = train(model, optimizer, loader, None, max_steps=60, max_lr=3e-3, warmup_steps=5, eval_every=1000,
                    progress=False)
    assert history.train_loss[-1] < 0.3 * history.train_loss[0]
    assert optimizer.muon.param_groups[0]["lr"] == pytest.approx(lr_at(59, 3e-3, 0.0, 5, 60) * 0.02 / 3e-3)
