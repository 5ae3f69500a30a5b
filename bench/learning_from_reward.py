"""Benchmark: learning from a reward a program checks, with group-relative advantages (chapter 6, 6G).

The policy starts as the instruction-tuned model of 6B (data/instruct_gpt/), which also stays frozen as the
reference. The task is "word before" ("Which word comes before X?"), the one 6B's model gets wrong most
often. Each update draws PROMPTS training prompts, samples GROUP answers to each at temperature 1, rewards
an answer 1 if it is exactly right and 0 if not, and raises the log-probability of each answer's tokens by
its group-relative advantage (`llmcourse.preference`); optionally with a KL penalty to the reference.

The learning rate is chosen on validation exact match (greedy, seed 0, no KL penalty) by `widened_sweep`;
then seeds 0-2 with and without the KL penalty, scored once on the test plays: exact match on the task and
on all six tasks (what the training did to the others), and the KL from the reference. Every run keeps a
curve: validation exact match, the reward of the sampled answers and the KL, every EVAL_EVERY updates. A last
set of runs rewards a looser check (the answer is any word before X in the line): what a reward that can be
satisfied without solving the task does. The seed-0 run without the penalty is saved to data/reward_gpt/.
Finished runs are kept in runs/learning_from_reward_runs.json, so an interrupted benchmark resumes. Usage:

    python bench/learning_from_reward.py --workers 2   # one CPU thread a run
"""

import argparse
import copy
import json
import platform
import random
import shutil
import time

import torch

from llmcourse.checkpoint import load_checkpoint, save_checkpoint, weights_sha256
from llmcourse.data import load_plays
from llmcourse.experiment import comparison_over_plays_record, counts_by_play, widened_sweep
from llmcourse.instruct import collate_instructions, exact_match, format_prompt, respond
from llmcourse.preference import (group_advantages, mean_response_kl, policy_gradient_loss, sample_group,
                                  token_logprobs)
from llmcourse.runtime import REPO_ROOT, set_seed
from llmcourse.tasks import TASKS, instruction_records, line_words
from llmcourse.train import configure_optimizer
from run_cache import RunCache  # bench/run_cache.py

RESULTS = REPO_ROOT / "bench" / "results" / "learning_from_reward.json"
RUNS = REPO_ROOT / "runs" / "learning_from_reward_runs.json"
SAVED = REPO_ROOT / "runs" / "learning_from_reward_models"
BASE_DIR = REPO_ROOT / "data" / "instruct_gpt"
MODEL_DIR = REPO_ROOT / "data" / "reward_gpt"
TASK = "word before"
PER_TASK = {"train": (1000, 2), "val": (200, 0), "test": (300, 0)}  # records per task, seed of the draw
SEEDS = (0, 1, 2)
UPDATES = 300
PROMPTS, GROUP = 8, 8  # prompts per update, answers sampled per prompt
MAX_NEW_TOKENS = 8
EVAL_EVERY = 25
LRS = (3e-5, 1e-4, 3e-4)  # the sweep's first grid, widened by factors of 3
KL_COEF = 0.2  # the penalty's weight in the runs with it


def records() -> dict[str, list[dict]]:
    """Each split's records of all six tasks (the test's other tasks measure side effects)."""
    plays = load_plays()
    return {split: instruction_records(plays, split, n, seed=seed) for split, (n, seed) in PER_TASK.items()}


def exact(answer: str, record: dict) -> float:
    return float(exact_match(answer, record["output"]))


def any_word_before(answer: str, record: dict) -> float:
    """The looser check: the answer is one of the words before the named word, not necessarily the one."""
    words = line_words(record["input"])
    named = record["instruction"].removeprefix("Which word comes before ").removesuffix("?")
    return float(answer.strip() in words[:words.index(named)])


REWARDS = {"exact": exact, "any word before": any_word_before}


def task_exact_match(model, tokenizer, split: list[dict]) -> tuple[float, list[str]]:
    answers = [respond(model, tokenizer, r) for r in split]
    return sum(exact_match(a, r["output"]) for a, r in zip(answers, split)) / len(split), answers


def run(lr: float, kl_coef: float, seed: int, reward: str = "exact") -> dict:
    """Learn from the reward with group-relative advantages; a curve every EVAL_EVERY updates; test scores."""
    torch.set_num_threads(1)
    base = load_checkpoint(BASE_DIR, "cpu")
    reference, tokenizer = base.model.eval(), base.tokenizer
    policy = copy.deepcopy(reference)
    split = records()
    train = [r for r in split["train"] if r["task"] == TASK]
    val = [r for r in split["val"] if r["task"] == TASK]
    score = REWARDS[reward]
    set_seed(seed)
    optimizer = configure_optimizer(policy, lr, 0.0)
    rng = random.Random(seed)
    curve, rewards_seen, losses = [], [], []
    started, started_cpu = time.perf_counter(), time.process_time()
    for update in range(1, UPDATES + 1):
        rows, rewards = [], []
        for i, record in enumerate(rng.sample(train, PROMPTS)):
            prompt = tokenizer.encode(format_prompt(record), allowed_special="none")
            for response in sample_group(policy, prompt, GROUP, tokenizer.eot_id, MAX_NEW_TOKENS,
                                         seed=seed * 1_000_000 + update * 100 + i):
                answer = tokenizer.decode([t for t in response if t != tokenizer.eot_id])
                rewards.append(score(answer, record))
                rows.append((prompt, response))
        rewards = torch.tensor(rewards).view(PROMPTS, GROUP)
        rewards_seen.append(rewards.mean().item())
        inputs, targets = collate_instructions(rows, tokenizer.eot_id)
        mask = (targets != -100).float()
        policy.train()
        logprobs = token_logprobs(policy, inputs, targets)
        ref_logprobs = None
        if kl_coef > 0:
            with torch.no_grad():
                ref_logprobs = token_logprobs(reference, inputs, targets)
        loss = policy_gradient_loss(logprobs, group_advantages(rewards).flatten(), mask, ref_logprobs, kl_coef)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(round(loss.item(), 5))
        policy.eval()
        if update % EVAL_EVERY == 0:
            val_em, answers = task_exact_match(policy, tokenizer, val)
            curve.append({"update": update, "val_exact_match": val_em,
                          "train_reward": sum(rewards_seen[-EVAL_EVERY:]) / EVAL_EVERY,
                          "val_reward": sum(score(a, r) for a, r in zip(answers, val)) / len(val),
                          "distinct_answers": len(set(answers)),
                          "kl_per_token": mean_response_kl(policy, reference, tokenizer, val)})
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
    folder = SAVED / f"{reward.replace(' ', '_')}_lr{lr:g}_kl{kl_coef:g}_seed{seed}"
    save_checkpoint(folder, policy, tokenizer=tokenizer)
    return {"lr": lr, "kl_coef": kl_coef, "seed": seed, "reward": reward, "curve": curve,
            "train_rewards": [round(r, 4) for r in rewards_seen], "train_loss": losses,
            "val_exact_match": curve[-1]["val_exact_match"], "test": test_scores(policy, reference, tokenizer),
            "seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1),
            "weights_sha256": weights_sha256(policy), "saved": str(folder.relative_to(REPO_ROOT))}


def test_scores(model, reference, tokenizer) -> dict:
    test = records()["test"]
    answers = [respond(model, tokenizer, r) for r in test]
    right = [exact_match(a, r["output"]) for a, r in zip(answers, test)]
    on_task = [(r, a, h) for r, a, h in zip(test, answers, right) if r["task"] == TASK]
    return {"exact_match_by_task": {t: sum(h for r, h in zip(test, right) if r["task"] == t) /
                                    sum(r["task"] == t for r in test) for t in TASKS},
            "exact_match_all": sum(right) / len(right),
            "task_by_play": counts_by_play([r["play"] for r, _, _ in on_task], [h for _, _, h in on_task]),
            "looser_reward": sum(any_word_before(a, r) for r, a, _ in on_task) / len(on_task),
            "distinct_answers": len({a for _, a, _ in on_task}),
            "kl_per_token": mean_response_kl(model, reference, tokenizer, [r for r, _, _ in on_task])}


def name(lr: float, kl_coef: float, seed: int, reward: str = "exact") -> str:
    return f"{reward} | lr {lr:g} | kl {kl_coef:g} | seed {seed}"


def report(key: str, result: dict) -> str:
    return (f"val {result['val_exact_match']:.3f} test {result['test']['exact_match_by_task'][TASK]:.3f} "
            f"all {result['test']['exact_match_all']:.3f} KL {result['test']['kl_per_token']:.3f} "
            f"({result['cpu_seconds']:.0f} CPU s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="runs at once, one thread each")
    args = parser.parse_args()
    runs = RunCache(RUNS, run, name, report, args.workers)
    runs.get([(lr, 0.0, SEEDS[0]) for lr in LRS])
    sweep = widened_sweep(lambda lr: runs.get([(lr, 0.0, SEEDS[0])])[0]["val_exact_match"], LRS, factor=3.0)
    lr = sweep.chosen
    jobs = {"without": [(lr, 0.0, s) for s in SEEDS], "with": [(lr, KL_COEF, s) for s in SEEDS],
            "looser": [(lr, 0.0, s, "any word before") for s in SEEDS]}
    runs.get(sum(jobs.values(), []))  # all at once, to keep the workers busy
    done = {key: runs.get(j) for key, j in jobs.items()}
    base = load_checkpoint(BASE_DIR, "cpu")
    before = test_scores(base.model.eval(), base.model, base.tokenizer)
    before_runs = [before["task_by_play"]] * len(SEEDS)  # the reference has no seed: the same counts thrice
    by_play = {key: [r["test"]["task_by_play"] for r in found] for key, found in done.items()}
    comparisons = [comparison_over_plays_record("after learning from the reward", by_play["without"],
                                                "before (6B's model)", before_runs),
                   comparison_over_plays_record("after, with the KL penalty", by_play["with"],
                                                "before (6B's model)", before_runs),
                   comparison_over_plays_record("without the KL penalty", by_play["without"],
                                                "with the KL penalty", by_play["with"]),
                   comparison_over_plays_record("rewarded for exact answers", by_play["without"],
                                                "rewarded for any word before", by_play["looser"]),
                   comparison_over_plays_record("rewarded for any word before", by_play["looser"],
                                                "before (6B's model)", before_runs)]
    if MODEL_DIR.exists():
        shutil.rmtree(MODEL_DIR)
    shutil.copytree(REPO_ROOT / done["without"][0]["saved"], MODEL_DIR)
    RESULTS.write_text(json.dumps({
        "about": "bench/learning_from_reward.py: group-relative policy gradient on 'word before', from 6B's model",
        "base_sha256": weights_sha256(base.model), "task": TASK, "per_task": PER_TASK, "seeds": list(SEEDS),
        "updates": UPDATES, "prompts": PROMPTS, "group": GROUP, "kl_coef": KL_COEF, "chosen_lr": lr,
        "choices": [sweep.record("learning rate (no KL penalty)")], "comparisons": comparisons, "before": before,
        "threads": 1, "workers": args.workers, "machine": platform.processor() or platform.machine(),
        "saved_model": {"directory": str(MODEL_DIR.relative_to(REPO_ROOT)), "run": name(lr, 0.0, SEEDS[0]),
                        "weights_sha256": done["without"][0]["weights_sha256"]},
        "runs": done,
        "sweep_runs": [runs.done[name(v, 0.0, SEEDS[0])] for v in sorted(sweep.scores) if v != lr]}, indent=1))
    print("wrote", RESULTS)


if __name__ == "__main__":
    main()
