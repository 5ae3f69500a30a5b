"""Benchmark: teaching the instruction-tuned GPT a chat format (chapter 6, notebook 6E).

The base is the instruction-tuned model of 6B (data/instruct_gpt/). Its tokenizer gains three special tokens
(`llmcourse.chat`: <|user|>, <|assistant|>, <|end|>) and its embedding and output tables a row each, and it is
fine-tuned on two-turn conversations built from the plays (`llmcourse.tasks.conversations`): the first
question carries a line (or an exchange of two speeches), the second asks about the same one without
repeating it. The loss counts the assistant's turns only.

Under the course's experiment protocol: the learning rate is chosen on the validation plays (seed 0) by
`widened_sweep`, the epoch by early stopping on validation exact match (both assistant turns); then seeds 0-2,
scored once on the test plays: the first turn, the second turn in its conversation, and the second question
alone (without the turn that holds its line: the control). The seed-0 model is saved to data/chat_gpt/ for
notebook 6E. Finished runs are kept in runs/chat_format_runs.json, so an interrupted benchmark resumes.
Usage:

    python bench/chat_format.py --workers 2   # one CPU thread a run, about 6 minutes each; 5 runs: about 20 minutes
"""

import argparse
import json
import platform
import shutil
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from llmcourse.chat import chat_tokenizer, collate_chats, encode_chat, grow_vocabulary, reply
from llmcourse.checkpoint import load_checkpoint, save_checkpoint, weights_sha256
from llmcourse.data import load_plays
from llmcourse.experiment import comparison_over_plays_record, counts_by_play, widened_sweep
from llmcourse.finetune import fit
from llmcourse.instruct import exact_match, respond
from llmcourse.runtime import REPO_ROOT, get_device, set_seed
from llmcourse.tasks import TASKS, conversations

RESULTS = REPO_ROOT / "bench" / "results" / "chat_format.json"
RUNS = REPO_ROOT / "runs" / "chat_format_runs.json"
SAVED = REPO_ROOT / "runs" / "chat_format_models"
BASE_DIR = REPO_ROOT / "data" / "instruct_gpt"
MODEL_DIR = REPO_ROOT / "data" / "chat_gpt"
SIZES = {"train": 6400, "val": 120, "test": 300}  # conversations per split
SEEDS = (0, 1, 2)
EPOCHS = 8
BATCH_SIZE = 16
LRS = (5e-4, 1e-3, 2e-3)  # the sweep's first grid, widened by factors of 2
ASKED = {"turn 1": (slice(0, 1), 1), "turn 2": (slice(0, 3), 3),  # turn: (the messages shown, the answer's index)
         "turn 2 alone": (slice(2, 3), 3)}  # the second question without the turn that holds its line: the control
TURNS = tuple(ASKED)


def base_model(device: torch.device | str = "cpu"):
    """The instruction-tuned GPT with the chat tokens added (each new row the mean of the old ones)."""
    checkpoint = load_checkpoint(BASE_DIR, device)
    tokenizer = chat_tokenizer(checkpoint.tokenizer)
    return grow_vocabulary(checkpoint.model, tokenizer.vocab_size), tokenizer


def data() -> dict[str, list[dict]]:
    plays = load_plays()
    return {split: conversations(plays, split, n, seed=0) for split, n in SIZES.items()}


def answers(model, tokenizer, split: list[dict], turns: tuple[str, ...] = TURNS) -> dict[str, list[bool]]:
    """Per turn asked (ASKED), whether the reply to each conversation is exactly right."""
    found = {}
    for turn in turns:
        shown, answer = ASKED[turn]
        found[turn] = [exact_match(reply(model, tokenizer, c["messages"][shown]), c["messages"][answer]["content"])
                       for c in split]
    return found


def share(hits: list[bool]) -> float:
    return sum(hits) / len(hits)


def val_score(model, tokenizer, split: list[dict]) -> float:
    """Exact match over both assistant turns of the validation conversations."""
    return share(sum(answers(model, tokenizer, split, ("turn 1", "turn 2")).values(), []))


def test_scores(model, tokenizer, test: list[dict]) -> dict:
    """Exact match per turn, overall and by the second question's task, and right answers per test play."""
    right = answers(model, tokenizer, test)
    plays = [c["play"] for c in test]
    return {"test": {turn: share(hits) for turn, hits in right.items()},
            "test_turn_2_by_task": {task: share([h for c, h in zip(test, right["turn 2"]) if c["tasks"][1] == task])
                                    for task in TASKS},
            "test_by_play": {turn: counts_by_play(plays, hits) for turn, hits in right.items()}}


def run(lr: float, seed: int) -> dict:
    """Fine-tune the chat model from the instruction-tuned one; score it; save its weights."""
    torch.set_num_threads(1)
    device = get_device()
    model, tokenizer = base_model(device)
    split = data()
    rows = [encode_chat(c["messages"], tokenizer) for c in split["train"]]

    def batches(epoch: int):
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
        return [tuple(t.to(device) for t in collate_chats([rows[i] for i in order[start:start + BATCH_SIZE]],
                                                          tokenizer.eot_id))
                for start in range(0, len(order), BATCH_SIZE)]

    set_seed(seed)
    started, started_cpu = time.perf_counter(), time.process_time()
    history = fit(model, batches, EPOCHS, lr, after_epoch=lambda: val_score(model, tokenizer, split["val"]))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
    model = model.cpu().eval()
    folder = SAVED / f"lr{lr:g}_seed{seed}"
    save_checkpoint(folder, model, tokenizer=tokenizer)
    return {"lr": lr, "seed": seed, "device": str(device), "best_epoch": history.best_epoch,
            "epoch_val_exact_match": [round(s, 4) for s in history.epoch_scores],
            "train_loss": [round(x, 4) for x in history.train_loss], **test_scores(model, tokenizer, split["test"]),
            "seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1),
            "weights_sha256": weights_sha256(model), "saved": str(folder.relative_to(REPO_ROOT))}


class Runs:
    """Finished runs, kept in RUNS after each one, so that a restarted benchmark skips them."""

    def __init__(self, workers: int):
        self.done = json.loads(RUNS.read_text()) if RUNS.exists() else {}
        self.pool = ProcessPoolExecutor(workers)

    def get(self, jobs: list[tuple[float, int]]) -> list[dict]:
        futures = {f"lr {lr:g} | seed {seed}": self.pool.submit(run, lr, seed) for lr, seed in jobs
                   if f"lr {lr:g} | seed {seed}" not in self.done}
        for name, future in futures.items():
            self.done[name] = result = future.result()
            RUNS.parent.mkdir(exist_ok=True)
            RUNS.write_text(json.dumps(self.done, indent=1))
            print(f"{name}: val {max(result['epoch_val_exact_match']):.3f} test {result['test']} "
                  f"(epoch {result['best_epoch']}, {result['cpu_seconds']:.0f} CPU s)", flush=True)
        return [self.done[f"lr {lr:g} | seed {seed}"] for lr, seed in jobs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="runs at once, one thread each")
    args = parser.parse_args()
    runs = Runs(args.workers)
    runs.get([(lr, SEEDS[0]) for lr in LRS])
    sweep = widened_sweep(lambda lr: max(runs.get([(lr, SEEDS[0])])[0]["epoch_val_exact_match"]), LRS, factor=2.0)
    chosen = runs.get([(sweep.chosen, seed) for seed in SEEDS])
    by_play = {turn: [r["test_by_play"][turn] for r in chosen] for turn in TURNS}
    comparisons = [comparison_over_plays_record("turn 2, after the first turn", by_play["turn 2"],
                                                "turn 2 alone (its line never shown)", by_play["turn 2 alone"]),
                   comparison_over_plays_record("turn 2, after the first turn", by_play["turn 2"],
                                                "turn 1 (the line in the question)", by_play["turn 1"])]
    saved = REPO_ROOT / chosen[0]["saved"]
    if MODEL_DIR.exists():
        shutil.rmtree(MODEL_DIR)
    shutil.copytree(saved, MODEL_DIR)
    base = load_checkpoint(BASE_DIR, "cpu")
    test = data()["test"]
    first_as_record = [{"instruction": c["messages"][0]["content"].split("\n", 1)[0],
                        "input": c["messages"][0]["content"].split("\n", 1)[1], "output": c["messages"][1]["content"]}
                       for c in test]
    before = share([exact_match(respond(base.model, base.tokenizer, r), r["output"]) for r in first_as_record])
    RESULTS.write_text(json.dumps({
        "about": "bench/chat_format.py: the instruction-tuned GPT taught a two-turn chat format",
        "base_sha256": weights_sha256(base.model), "sizes": SIZES, "seeds": list(SEEDS), "epochs": EPOCHS,
        "batch_size": BATCH_SIZE, "chosen_lr": sweep.chosen, "choices": [sweep.record("learning rate")],
        "comparisons": comparisons, "threads": 1, "workers": args.workers,
        "machine": platform.processor() or platform.machine(), "device": chosen[0]["device"],
        "base_turn_1_in_its_own_format": before,
        "saved_model": {"directory": str(MODEL_DIR.relative_to(REPO_ROOT)), "run": f"lr {sweep.chosen:g} | seed 0",
                        "weights_sha256": chosen[0]["weights_sha256"]},
        "runs": chosen,
        "sweep_runs": [runs.done[f"lr {lr:g} | seed {SEEDS[0]}"] for lr in sorted(sweep.scores) if lr != sweep.chosen]},
        indent=1))
    print("wrote", RESULTS)


if __name__ == "__main__":
    main()
