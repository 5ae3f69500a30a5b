"""Benchmark: the course encoder's peak learning rate, chosen on the validation plays (chapter 5).

Pretrains the course encoder (masked LM + next-sentence prediction, `llmcourse.mlm.EncoderSettings`)
once per learning rate and scores each on every validation pair (masking drawn from seed 0). The
lowest validation masked-LM loss wins (`llmcourse.experiment.widened_sweep`, so the winner has a tried
rate on each side); it became `COURSE_ENCODER_SETTINGS.max_lr`.

Above the chosen rate the encoder stalls: it learns how often each token occurs and little more.
`--warmup-probe` asks why: it retrains the two stalled rates with a warmup four times as long (120
updates instead of 30) and adds them to the file, without changing the choice. Writes
bench/results/encoder_lr_sweep.json. Usage:

    LLMCOURSE_THREADS=1 python bench/encoder_lr_sweep.py      # about 6 minutes on a 2-core CPU
    LLMCOURSE_THREADS=1 python bench/encoder_lr_sweep.py --warmup-probe   # 2 more runs, about 3 minutes
"""

import json
import platform
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

from llmcourse.course import COURSE_ENCODER_SETTINGS, bert_tokenizer
from llmcourse.data import load_plays
from llmcourse.experiment import widened_sweep
from llmcourse.mlm import evaluate_encoder, pretrain_encoder
from llmcourse.runtime import use_recommended_threads
from llmcourse.tasks import nsp_pairs

RESULTS = Path(__file__).resolve().parent / "results" / "encoder_lr_sweep.json"
LEARNING_RATES = (1e-3, 2e-3, 4e-3, 8e-3)
PROBE_WARMUP = 120  # four times COURSE_ENCODER_SETTINGS.warmup_steps


def pretrain_and_score(lr: float, warmup_steps: int = COURSE_ENCODER_SETTINGS.warmup_steps) -> dict:
    """Pretrain the course encoder at peak rate `lr`; its validation scores."""
    settings = replace(COURSE_ENCODER_SETTINGS, max_lr=lr, warmup_steps=warmup_steps)
    model, tokenizer, history = pretrain_encoder(settings, bert_tokenizer(), device="cpu", progress=False)
    val_pairs = nsp_pairs(load_plays(), "val", tokenizer, settings.context_length, seed=0)
    scores = evaluate_encoder(model, val_pairs, tokenizer, settings.mask_rate, seed=0)
    print(f"lr {lr:.0e}, warmup {warmup_steps}: val masked-LM loss {scores['mlm_loss']:.3f}, accuracy "
          f"{scores['mlm_accuracy']:.3f}; NSP accuracy {scores['nsp_accuracy']:.3f} ({history.seconds:.0f} s)",
          flush=True)
    return {"max_lr": lr, **{f"val_{k}": v for k, v in scores.items()}, "seconds": history.seconds}


def warmup_probe() -> None:
    results = json.loads(RESULTS.read_text())
    results["warmup_probe"] = [{"warmup_steps": PROBE_WARMUP, **pretrain_and_score(lr, PROBE_WARMUP)}
                               for lr in (4e-3, 8e-3)]
    RESULTS.write_text(json.dumps(results, indent=1))


def main() -> None:
    use_recommended_threads()
    if sys.argv[1:] == ["--warmup-probe"]:
        return warmup_probe()
    runs = []

    def score(lr: float) -> float:
        """Minus the validation masked-LM loss of the encoder pretrained at peak rate `lr`."""
        runs.append(pretrain_and_score(lr))
        return -runs[-1]["val_mlm_loss"]

    sweep = widened_sweep(score, LEARNING_RATES)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "about": "bench/encoder_lr_sweep.py: the course encoder's peak learning rate, chosen on the validation plays",
        "settings": {k: v for k, v in asdict(COURSE_ENCODER_SETTINGS).items() if k != "max_lr"},
        "chosen_max_lr": sweep.chosen, "choices": [sweep.record("max_lr", "better (minus validation masked-LM loss)")],
        "comparisons": [], "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(), "runs": runs}, indent=1))
    print("chosen max_lr", sweep.chosen)


if __name__ == "__main__":
    main()
