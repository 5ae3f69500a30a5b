"""Benchmark: the course encoder's peak learning rate, chosen on the validation plays (chapter 5).

Pretrains the course encoder (masked LM + next-sentence prediction, `llmcourse.mlm.EncoderSettings`)
once per learning rate of a small grid and scores each on every validation pair (masking drawn from
seed 0). The lowest validation masked-LM loss wins; it became `COURSE_ENCODER_SETTINGS.max_lr`.
Writes bench/results/encoder_lr_sweep.json. Usage:

    LLMCOURSE_THREADS=1 python bench/encoder_lr_sweep.py      # about 6 minutes on a 2-core CPU
"""

import json
import platform
from dataclasses import asdict, replace
from pathlib import Path

import torch

from llmcourse.course import COURSE_ENCODER_SETTINGS, bert_tokenizer
from llmcourse.data import load_plays
from llmcourse.mlm import evaluate_encoder, pretrain_encoder
from llmcourse.runtime import use_recommended_threads
from llmcourse.tasks import nsp_pairs

RESULTS = Path(__file__).resolve().parent / "results" / "encoder_lr_sweep.json"
LEARNING_RATES = (1e-3, 2e-3, 4e-3, 8e-3)


def main() -> None:
    use_recommended_threads()
    runs = []
    for lr in LEARNING_RATES:
        settings = replace(COURSE_ENCODER_SETTINGS, max_lr=lr)
        model, tokenizer, history = pretrain_encoder(settings, bert_tokenizer(), device="cpu", progress=False)
        val_pairs = nsp_pairs(load_plays(), "val", tokenizer, settings.context_length, seed=0)
        scores = evaluate_encoder(model, val_pairs, tokenizer, settings.mask_rate, seed=0)
        runs.append({"max_lr": lr, **{f"val_{k}": v for k, v in scores.items()}, "seconds": history.seconds})
        print(f"lr {lr:.0e}: val masked-LM loss {scores['mlm_loss']:.3f}, accuracy {scores['mlm_accuracy']:.3f}; "
              f"NSP accuracy {scores['nsp_accuracy']:.3f} ({history.seconds:.0f} s)", flush=True)
    best = min(runs, key=lambda r: r["val_mlm_loss"])
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "about": "bench/encoder_lr_sweep.py: the course encoder's peak learning rate, chosen on the validation plays",
        "settings": {k: v for k, v in asdict(COURSE_ENCODER_SETTINGS).items() if k != "max_lr"},
        "chosen_max_lr": best["max_lr"], "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(), "runs": runs}, indent=1))
    print("chosen max_lr", best["max_lr"])


if __name__ == "__main__":
    main()
