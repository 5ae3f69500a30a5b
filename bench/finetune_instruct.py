"""Benchmark: instruction fine-tuning of the course's published GPT on records built from the plays (chapter 6).

Six tasks (`llmcourse.tasks.TASKS`), split by whole plays: five questions over the same line (its second
word, the word after or before a named word, its word count, the line repeated) and who speaks first or
second in an exchange. Each answer is spelled as it appears in the prompt (`encode_record`), the prompt is
masked, and every parameter trains.

Under the course's experiment protocol (`llmcourse.experiment`): the learning rate is chosen on the
validation plays (seed 0) by `widened_sweep`, every rate tried kept; the epoch by early stopping on
validation exact match; then seeds 0-2, scored once on the test plays per task. Each run is also scored
after its first HALF epochs (the best weights so far), so the file shows what the second half of the
training added. Each task is compared with its best trivial baseline (the majority answer, or copying the
first or last word of the input) over seeds and test plays. Two ablations get their own learning rate,
chosen the same way, and the same number of updates: the answers tokenized alone ("bare answers"), and the
3-minute course GPT as the base (with --ablations; the committed results file has the main configuration
only). The main configuration's seed-0 model is saved to data/instruct_gpt/ for notebook 6B. With
--train-per-task 1600 (half the records, half the updates) the results go to finetune_instruct_train1600.json,
which notebook 6B compares with the full run. Every finished run is kept in
runs/finetune_instruct_runs_train<N>.json (or --runs), so an interrupted benchmark resumes where it stopped.
Usage:

    python bench/finetune_instruct.py --workers 2   # one CPU thread a run, half an hour each; 6 runs: about 2 hours
    python bench/finetune_instruct.py --workers 2 --train-per-task 1600 --ablations   # a quarter of an hour a run

With LLMCOURSE_DEVICE=cuda each run trains on the GPU. Processes on one GPU take turns on it, and this model's
steps are too small to fill it: 17 workers on one H200 did not finish a single run (3,200 records per task) in
8 minutes. Time one run there before choosing the number of workers.
"""

import argparse
import copy
import json
import platform
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from llmcourse.checkpoint import save_checkpoint, weights_sha256
from llmcourse.course import course_model, published_model
from llmcourse.data import load_plays
from llmcourse.experiment import comparison_over_plays_record, counts_by_play, widened_sweep
from llmcourse.finetune import fit
from llmcourse.instruct import encode_record, exact_match, exact_match_by_task, instruction_batches, respond
from llmcourse.runtime import REPO_ROOT, get_device, set_seed
from llmcourse.tasks import TASKS, instruction_records

RESULTS = REPO_ROOT / "bench" / "results" / "finetune_instruct.json"
SAVED = REPO_ROOT / "runs" / "finetune_instruct_models"
MODEL_DIR = REPO_ROOT / "data" / "instruct_gpt"
PER_TASK = {"train": 3200, "val": 40, "test": 100}  # records per task in each split
SEEDS = (0, 1, 2)
EPOCHS = 12
HALF = 6  # each run is also scored after its first HALF epochs: what the second half of the training added
BATCH_SIZE = 16
LRS = (5e-4, 1e-3, 2e-3)  # the sweep's first grid, widened by factors of 2
MAIN = "published GPT"
CONFIGS = {MAIN: {"base": "published", "as_in_prompt": True},
           "published GPT, bare answers": {"base": "published", "as_in_prompt": False},
           "course GPT": {"base": "course", "as_in_prompt": True}}


def use_train_size(n: int) -> None:
    """Set the number of training records per task (in each worker process too, as its initializer)."""
    PER_TASK["train"] = n


def records() -> dict[str, list[dict]]:
    plays = load_plays()
    return {split: instruction_records(plays, split, n, seed=0) for split, n in PER_TASK.items()}


def base_model(name: str, device: torch.device | str = "cpu"):
    return published_model(device)[:2] if name == "published" else course_model(device=device)


def responses(model, tokenizer, split_records: list[dict]) -> list[str]:
    return [respond(model, tokenizer, r) for r in split_records]


def scored(model, tokenizer, data: dict[str, list[dict]]) -> dict:
    """Exact match on validation and test, and the test's right answers per task and play."""
    test_responses = responses(model, tokenizer, data["test"])
    by_task = {task: counts_by_play([r["play"] for r in data["test"] if r["task"] == task],
                                    [exact_match(resp, r["output"]) for r, resp in zip(data["test"], test_responses)
                                     if r["task"] == task]) for task in TASKS}
    return {"val": exact_match_by_task(data["val"], responses(model, tokenizer, data["val"])),
            "test": exact_match_by_task(data["test"], test_responses), "test_by_task_and_play": by_task}


def run(config: str, lr: float, seed: int) -> dict:
    """Fine-tune a copy of the configuration's base model; score it on validation and test; save its weights.

    After HALF epochs the best weights so far are scored too (`half`), from the same run.
    """
    torch.set_num_threads(1)
    device = get_device()  # $LLMCOURSE_DEVICE (cuda, say); each run records where it ran
    settings = CONFIGS[config]
    model, tokenizer = base_model(settings["base"], device)
    data = records()
    pairs = [encode_record(r, tokenizer, settings["as_in_prompt"]) for r in data["train"]]
    best, half = {"score": -1.0, "state": None}, {}

    def after_epoch() -> float:
        score = exact_match_by_task(data["val"], responses(model, tokenizer, data["val"]))["all"]
        if score > best["score"]:
            best.update(score=score, state=copy.deepcopy(model.state_dict()), epoch=len(history_scores) + 1)
        history_scores.append(score)
        if len(history_scores) == HALF:
            snapshot = copy.deepcopy(model)
            snapshot.load_state_dict(best["state"])
            half.update(epochs=HALF, best_epoch=best["epoch"], **scored(snapshot.eval(), tokenizer, data))
        return score

    history_scores = []
    set_seed(seed)
    started, started_cpu = time.perf_counter(), time.process_time()
    history = fit(model, lambda epoch: [(x.to(device), y.to(device)) for x, y in instruction_batches(
        pairs, BATCH_SIZE, tokenizer.eot_id, True, seed * 1000 + epoch)], EPOCHS, lr, after_epoch=after_epoch)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
    folder = SAVED / f"train{PER_TASK['train']}_{config.replace(' ', '_').replace(',', '')}_lr{lr:g}_seed{seed}"
    model = model.cpu()
    save_checkpoint(folder, model, tokenizer=tokenizer)
    return {"config": config, "lr": lr, "seed": seed, "device": str(device), "best_epoch": history.best_epoch,
            "epoch_val_exact_match": history.epoch_scores, "train_loss": [round(x, 4) for x in history.train_loss],
            **scored(model, tokenizer, data), "half": half, "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu_seconds, 1), "weights_sha256": weights_sha256(model),
            "saved": str(folder.relative_to(REPO_ROOT))}


def by_play(scores: dict, task: str) -> dict[str, list[int]]:
    """Right answers per test play for one task, or for every task ("all")."""
    if task != "all":
        return scores["test_by_task_and_play"][task]
    total: dict[str, list[int]] = {}
    for counts in scores["test_by_task_and_play"].values():
        for play, (right, seen) in counts.items():
            total[play] = [total.get(play, [0, 0])[0] + right, total.get(play, [0, 0])[1] + seen]
    return total


def key(config: str, lr: float, seed: int) -> str:
    return f"{config} | lr {lr:g} | seed {seed}"


class Runs:
    """Finished runs, kept in their file after each one, so that a restarted benchmark skips them.

    Without that file, the runs a results file kept (`kept`) count as finished: on a fresh clone, --ablations
    trains only the ablations' runs."""

    def __init__(self, workers: int, path: Path, kept: list[dict]):
        self.path = path
        self.done = (json.loads(path.read_text()) if path.exists()
                     else {key(r["config"], r["lr"], r["seed"]): r for r in kept})
        self.pool = ProcessPoolExecutor(workers, initializer=use_train_size, initargs=(PER_TASK["train"],))

    def get(self, jobs: list[tuple[str, float, int]]) -> list[dict]:
        futures = {key(*job): self.pool.submit(run, *job) for job in jobs if key(*job) not in self.done}
        for name, future in futures.items():
            self.done[name] = future.result()
            self.path.parent.mkdir(exist_ok=True)
            self.path.write_text(json.dumps(self.done, indent=1))
            result = self.done[name]
            print(f"{name}: val {result['val']['all']:.3f} test {result['test']['all']:.3f} "
                  f"(epoch {result['best_epoch']}, {result['cpu_seconds']:.0f} CPU s)", flush=True)
        return [self.done[key(*job)] for job in jobs]


def baselines(data: dict[str, list[dict]]) -> dict[str, dict]:
    """The trivial answers per task: the majority answer of the training records, the input's first or last word."""
    words = {"first word of the input": lambda r: r["input"].split()[0].strip(".,;:!?-"),
             "last word of the input": lambda r: r["input"].split()[-1].strip(".,;:!?-")}
    majority = {task: Counter(r["output"] for r in data["train"] if r["task"] == task).most_common(1)[0][0]
                for task in TASKS}
    rules = {"majority answer": lambda r: majority[r["task"]], **words}
    found = {}
    for name, rule in rules.items():
        test = data["test"]
        found[name] = {"test": exact_match_by_task(test, [rule(r) for r in test]),
                       "test_by_task_and_play": {task: counts_by_play(
                           [r["play"] for r in test if r["task"] == task],
                           [exact_match(rule(r), r["output"]) for r in test if r["task"] == task]) for task in TASKS}}
    found["majority answer"]["answers"] = majority
    return found


def compared(name: str, runs: list[dict], other: str, other_runs: list[dict]) -> list[dict]:
    """Per task and overall, test exact match of two sets of runs, over seeds and test plays."""
    return [{"metric": f"test exact match, {task}", **comparison_over_plays_record(
        name, [by_play(r, task) for r in runs], other, [by_play(r, task) for r in other_runs])}
        for task in (*TASKS, "all")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="runs at once, one thread each")
    parser.add_argument("--train-per-task", type=int, default=PER_TASK["train"],
                        help=f"training records per task; with another number than {PER_TASK['train']} the results go "
                             "to finetune_instruct_train<N>.json and data/instruct_gpt/ is left alone")
    parser.add_argument("--runs", type=Path, help="the file of finished runs (default runs/finetune_instruct_runs"
                                                  "_train<N>.json)")
    parser.add_argument("--ablations", action="store_true", help="also bare answers and the course GPT as base")
    args = parser.parse_args()
    configs = list(CONFIGS) if args.ablations else [MAIN]
    default_size = args.train_per_task == PER_TASK["train"]
    use_train_size(args.train_per_task)
    results = RESULTS if default_size else RESULTS.with_name(f"finetune_instruct_train{args.train_per_task}.json")
    previous = json.loads(results.read_text()) if results.exists() else {}
    kept = previous.get("runs", []) + previous.get("sweep_runs", []) if previous.get("per_task") == PER_TASK else []
    runs_file = args.runs or REPO_ROOT / "runs" / f"finetune_instruct_runs_train{args.train_per_task}.json"
    runs = Runs(args.workers, runs_file, kept)
    runs.get([(config, lr, SEEDS[0]) for config in configs for lr in LRS])  # the first grids, all at once
    sweeps = {}
    for config in configs:
        sweeps[config] = widened_sweep(lambda lr, c=config: runs.get([(c, lr, SEEDS[0])])[0]["val"]["all"],
                                       LRS, factor=2.0)
    chosen_runs = runs.get([(config, sweeps[config].chosen, seed) for config in configs for seed in SEEDS])
    chosen = {config: [r for r in chosen_runs if r["config"] == config] for config in configs}
    data = records()
    trivial = baselines(data)
    comparisons = []
    main_name = f"{MAIN}, {EPOCHS} epochs"
    for task in (*TASKS, "all"):
        best = max(trivial, key=lambda name: trivial[name]["test"][task])
        comparisons.append({"metric": f"test exact match, {task}", **comparison_over_plays_record(
            main_name, [by_play(r, task) for r in chosen[MAIN]],
            f"{best} (best trivial baseline)", [by_play(trivial[best], task)] * len(SEEDS))})
    comparisons += compared(main_name, chosen[MAIN], f"{MAIN}, its first {HALF} epochs",
                            [r["half"] for r in chosen[MAIN]])
    for config in configs:
        if config != MAIN:
            comparisons += compared(main_name, chosen[MAIN], f"{config}, {EPOCHS} epochs", chosen[config])
    lr = sweeps[MAIN].chosen
    saved = REPO_ROOT / chosen[MAIN][0]["saved"]
    if default_size and saved.exists():  # a run kept from the results file has its model in MODEL_DIR already
        if MODEL_DIR.exists():
            shutil.rmtree(MODEL_DIR)
        shutil.copytree(saved, MODEL_DIR)
    pretrained = {name: base_model(name)[0] for name in ("published", "course")}
    tokenizer = course_model(device="cpu")[1]
    before = {name: exact_match_by_task(data["test"], responses(model, tokenizer, data["test"]))
              for name, model in pretrained.items()}
    saved_model = {"directory": str(MODEL_DIR.relative_to(REPO_ROOT)), "run": key(MAIN, lr, SEEDS[0]),
                   "weights_sha256": chosen[MAIN][0]["weights_sha256"]}
    results.write_text(json.dumps({
        "about": "bench/finetune_instruct.py: instruction fine-tuning on records built from the plays",
        "published_model_sha256": weights_sha256(pretrained["published"]),
        "course_model_sha256": weights_sha256(pretrained["course"]),
        "per_task": PER_TASK, "seeds": list(SEEDS), "epochs": EPOCHS, "half_epochs": HALF, "batch_size": BATCH_SIZE,
        "chosen_lr": lr,
        "configs": {config: CONFIGS[config] for config in configs}, "main": MAIN,
        "choices": [sweeps[config].record(f"learning rate, {config}") for config in configs],
        "comparisons": comparisons, "threads": 1, "workers": args.workers,
        "machine": platform.processor() or platform.machine(), "device": chosen[MAIN][0]["device"], "before": before,
        "baselines": {name: {k: v for k, v in b.items() if k != "test_by_task_and_play"}
                      for name, b in trivial.items()},
        **({"saved_model": saved_model} if default_size else {}),
        "runs": chosen_runs,
        "sweep_runs": [runs.done[key(config, value, SEEDS[0])] for config in configs
                       for value in sorted(sweeps[config].scores) if value != sweeps[config].chosen]},
        indent=1))
    print("wrote", results)


if __name__ == "__main__":
    main()
