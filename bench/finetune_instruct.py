"""Benchmark: instruction fine-tuning of the course GPT, prompt masked or not, 3 seeds each (chapter 6).

Alpaca-style records built from the plays (first word, last word, speaker, genre, word count), split
by whole plays. Under the course's experiment protocol (`llmcourse.experiment`): the learning rate is
chosen on the validation plays (seed 0, prompt masked) by `widened_sweep`, which widens the grid until
the best rate is inside it, and every rate tried is kept in the file; the epoch is chosen by early
stopping on validation exact match; the same rate serves the unmasked runs. Every run is scored once on
the test plays, per task type, by exact match of the greedy response, and masked and unmasked are
compared over the seeds. Writes bench/results/finetune_instruct.json, which notebook 6B plots. Usage:

    LLMCOURSE_THREADS=1 python bench/finetune_instruct.py      # about 40 minutes on one core
"""

import copy
import json
import platform
import time
from pathlib import Path

import torch

from llmcourse.checkpoint import weights_sha256
from llmcourse.course import course_model
from llmcourse.data import load_plays
from llmcourse.experiment import comparison_record, widened_sweep
from llmcourse.finetune import fit
from llmcourse.instruct import encode_record, exact_match_by_task, instruction_batches, respond
from llmcourse.tasks import instruction_records

RESULTS = Path(__file__).resolve().parent / "results" / "finetune_instruct.json"
PER_TASK = {"train": 600, "val": 20, "test": 50}  # records per task type in each split
SEEDS = (0, 1, 2)
EPOCHS = 8
BATCH_SIZE = 16
LRS = (3e-4, 1e-3, 3e-3)  # the sweep's first grid, widened by factors of 3


def scores(model, tokenizer, records: list[dict]) -> dict[str, float]:
    """Exact match per task type of the model's greedy responses."""
    return exact_match_by_task(records, [respond(model, tokenizer, r) for r in records])


def run(pretrained, tokenizer, records: dict, mask_prompt: bool, lr: float, seed: int) -> dict:
    """Fine-tune a copy of the pretrained model on the training records; score it on validation and test."""
    model = copy.deepcopy(pretrained)
    pairs = [encode_record(r, tokenizer) for r in records["train"]]
    started, started_cpu = time.perf_counter(), time.process_time()
    history = fit(model, lambda epoch: instruction_batches(pairs, BATCH_SIZE, tokenizer.eot_id, mask_prompt,
                                                           seed * 1000 + epoch),
                  EPOCHS, lr, weight_decay=0.0,
                  after_epoch=lambda: scores(model, tokenizer, records["val"])["all"])
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
    return {"mask_prompt": mask_prompt, "lr": lr, "seed": seed, "best_epoch": history.best_epoch,
            "epoch_val_exact_match": history.epoch_scores, "train_loss": history.train_loss,
            "val": scores(model, tokenizer, records["val"]), "test": scores(model, tokenizer, records["test"]),
            "seconds": seconds, "cpu_seconds": cpu_seconds}


def main() -> None:
    pretrained, tokenizer = course_model(device="cpu")
    plays = load_plays()
    records = {split: instruction_records(plays, split, n, seed=0) for split, n in PER_TASK.items()}
    before = {split: scores(pretrained, tokenizer, records[split]) for split in ("val", "test")}
    print("before fine-tuning, test:", {k: round(v, 3) for k, v in before["test"].items()}, flush=True)
    trials = {}

    def score(lr: float) -> float:
        trials[lr] = run(pretrained, tokenizer, records, True, lr, SEEDS[0])
        print(f"  lr {lr:.1e}: val exact match {trials[lr]['val']['all']:.3f} (epoch {trials[lr]['best_epoch']})",
              flush=True)
        return trials[lr]["val"]["all"]

    sweep = widened_sweep(score, LRS, factor=3.0)
    first = trials[sweep.chosen]
    runs = []
    for mask_prompt in (True, False):
        for seed in SEEDS:
            result = first if mask_prompt and seed == SEEDS[0] else run(pretrained, tokenizer, records, mask_prompt,
                                                                       first["lr"], seed)
            runs.append(result)
            print(f"mask_prompt={mask_prompt} seed {seed}: test", {k: round(v, 3) for k, v in result["test"].items()},
                  f"(epoch {result['best_epoch']}, {result['cpu_seconds']:.0f} CPU s)", flush=True)
    tasks = list(first["test"])
    comparisons = [{"metric": f"test exact match, {task}", **comparison_record(
        "prompt masked", [r["test"][task] for r in runs if r["mask_prompt"]],
        "prompt not masked", [r["test"][task] for r in runs if not r["mask_prompt"]])} for task in tasks]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "course_model_sha256": weights_sha256(pretrained),  # which pretrained model these runs started from
        "about": "bench/finetune_instruct.py: instruction fine-tuning on records built from the plays",
        "per_task": PER_TASK, "seeds": list(SEEDS), "epochs": EPOCHS, "batch_size": BATCH_SIZE,
        "lr_grid": sorted(trials), "chosen_lr": first["lr"], "choices": [sweep.record("learning rate")],
        "comparisons": comparisons, "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(), "before": before, "runs": runs,
        "sweep_runs": [trial for lr, trial in trials.items() if lr != first["lr"]]}, indent=1))
    print("wrote", RESULTS)


if __name__ == "__main__":
    main()
