"""Forward and training-step throughput of our GPTModel next to transformers' GPT2LMHeadModel.

Both models get the same configuration and the same weights (theirs are mapped into ours
by `llmcourse.weights`), dropout 0, the same batch, and the same loss computed from logits.
Runs are interleaved (ours, theirs, ours, ...) so that load from other processes hits both
alike, and the median of several timed runs is reported after a few warm-up runs.

    python bench/forward.py                  # a mid-size config (d_model 512, 8 layers)
    python bench/forward.py --size small     # GPT-2 small itself (slow on 2 cores)
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from llmcourse.model import GPTConfig
from llmcourse.weights import gpt_from_transformers


def make_models(cfg: GPTConfig, seed: int):
    """A transformers GPT-2 and our model holding exactly the same weights."""
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    transformers.logging.set_verbosity_error()
    torch.manual_seed(seed)
    hf_config = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.context_length, n_embd=cfg.d_model,
                           n_head=cfg.n_heads, n_layer=cfg.n_layers, resid_pdrop=0.0, embd_pdrop=0.0,
                           attn_pdrop=0.0)
    theirs = GPT2LMHeadModel(hf_config)
    return gpt_from_transformers(theirs), theirs


def logits_of(model, token_ids: torch.Tensor) -> torch.Tensor:
    out = model(token_ids)
    return out if isinstance(out, torch.Tensor) else out.logits


def forward_seconds(model, token_ids: torch.Tensor) -> float:
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        logits_of(model, token_ids)
    return time.perf_counter() - start


def train_step_seconds(model, optimizer, token_ids: torch.Tensor) -> float:
    model.train()
    start = time.perf_counter()
    logits = logits_of(model, token_ids[:, :-1])
    loss = F.cross_entropy(logits.flatten(0, 1), token_ids[:, 1:].flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["mid", "small"], default="mid")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.size == "small":
        cfg = GPTConfig.gpt2("small", dropout=0.0)
    else:
        cfg = GPTConfig(d_model=512, n_heads=8, n_layers=8, context_length=512, dropout=0.0)
    ours, theirs = make_models(cfg, seed=0)
    token_ids = torch.randint(0, cfg.vocab_size, (args.batch, args.tokens + 1),
                              generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours.eval(), theirs.eval()
        gap = (logits_of(ours, token_ids) - logits_of(theirs, token_ids)).abs().max().item()

    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4)
                  for name, m in (("ours", ours), ("theirs", theirs))}
    models = {"ours": ours, "theirs": theirs}
    times = {(kind, name): [] for kind in ("forward", "train step") for name in models}
    for i in range(args.warmup + args.runs):
        for name, model in models.items():
            f = forward_seconds(model, token_ids[:, :-1])
            t = train_step_seconds(model, optimizers[name], token_ids)
            if i >= args.warmup:
                times["forward", name].append(f)
                times["train step", name].append(t)

    n_tokens = args.batch * args.tokens
    print(f"config: d_model={cfg.d_model} n_heads={cfg.n_heads} n_layers={cfg.n_layers} "
          f"vocab={cfg.vocab_size}; batch {args.batch} x {args.tokens} tokens; "
          f"{torch.get_num_threads()} threads; torch {torch.__version__}")
    print(f"max |logits ours - theirs| before training: {gap:.2e}")
    print(f"median of {args.runs} interleaved runs after {args.warmup} warm-up runs")
    print(f"{'':12}{'ours tok/s':>12}{'theirs tok/s':>14}{'ours/theirs':>13}")
    for kind in ("forward", "train step"):
        ours_rate = n_tokens / statistics.median(times[kind, "ours"])
        theirs_rate = n_tokens / statistics.median(times[kind, "theirs"])
        print(f"{kind:12}{ours_rate:12,.0f}{theirs_rate:14,.0f}{ours_rate / theirs_rate:13.2f}")


if __name__ == "__main__":
    main()
