"""Benchmark: preference tuning with DPO against supervised tuning on the preferred answers (chapter 6, 6F).

Both start from the instruction-tuned model of 6B (data/instruct_gpt/), which also stays frozen as DPO's
reference. The preference pairs are the reference's own mistakes: for each record of the six line tasks on
which its greedy answer is wrong, the right answer is preferred to the answer it gave. A program checks
which answer is right, so every pair is verifiably ordered. Pairs come from the training plays; the
validation and test pairs are the reference's mistakes on records from those plays.

Same budget for both methods: EPOCHS passes over the pairs in batches of BATCH_SIZE. Every choice is made
on validation exact match (seed 0) by `widened_sweep`. DPO's beta first, at a learning rate where DPO moves the
model (BETA_LR; the sweep's runs, with one more at beta 0.02, also show what happens as beta goes to 0), then
DPO's learning rate at that beta; supervised tuning (cross-entropy on the preferred answers only) gets its own
learning-rate sweep. (Choosing DPO's learning rate first, at beta 0.5, picked the lowest rate tried, where the
model barely moves; those runs are kept under "sweep_runs".) The chosen settings run with seeds 0-2 and are
scored once on the test plays: exact match per task, preference accuracy and reward margin on the test pairs,
the per-token KL from the reference on the test records' right answers. Each run also keeps validation scores
after every epoch. The seed-0 DPO model is saved to data/dpo_gpt/ for notebook 6F.
Finished runs are kept in runs/preference_tuning_runs.json, so an interrupted benchmark resumes. Usage:

    python bench/preference_tuning.py --workers 2   # one CPU thread a run
"""

import argparse
import copy
import json
import platform
import shutil
import time

import torch
import torch.nn.functional as F

from llmcourse.checkpoint import load_checkpoint, save_checkpoint, weights_sha256
from llmcourse.data import load_plays
from llmcourse.experiment import comparison_over_plays_record, counts_by_play, widened_sweep
from llmcourse.instruct import collate_instructions, encode_record, exact_match, respond
from llmcourse.preference import dpo_loss, mean_response_kl, sequence_logprobs
from llmcourse.runtime import REPO_ROOT, set_seed
from llmcourse.tasks import TASKS, instruction_records
from llmcourse.train import configure_optimizer
from run_cache import RunCache  # bench/run_cache.py

RESULTS = REPO_ROOT / "bench" / "results" / "preference_tuning.json"
RUNS = REPO_ROOT / "runs" / "preference_tuning_runs.json"
PAIRS = REPO_ROOT / "data" / "preference_pairs.json"
SAVED = REPO_ROOT / "runs" / "preference_tuning_models"
BASE_DIR = REPO_ROOT / "data" / "instruct_gpt"
MODEL_DIR = REPO_ROOT / "data" / "dpo_gpt"
PER_TASK = {"train": (800, 1), "val": (100, 0), "test": (100, 0)}  # records per task, seed of the draw
SEEDS = (0, 1, 2)
EPOCHS = 4
BATCH_SIZE = 16
LRS = (3e-5, 1e-4, 3e-4)  # the first grid of each learning-rate sweep, widened by factors of 3 down to LOWEST_LR
LOWEST_LR = 1e-5  # below it the model barely moves (KL from the reference < 0.01 per token after the budget)
BETA_LR = 1e-4  # DPO's learning rate during its beta sweep: one where DPO moves the model
BETAS = (0.1, 0.5, 2.5, 12.5)  # the first grid of the beta sweep, widened by factors of 5 (0.02 is also run, to
# show what happens as beta goes to 0)
BETA = 0.5  # only for the reward margin reported by the supervised runs


def records() -> dict[str, list[dict]]:
    plays = load_plays()
    return {split: instruction_records(plays, split, n, seed=seed) for split, (n, seed) in PER_TASK.items()}


def mistakes(model, tokenizer, split: list[dict]) -> list[dict]:
    """The records the model answers wrongly (and not with nothing), each with its wrong answer as "rejected"."""
    pairs = []
    for record in split:
        answer = respond(model, tokenizer, record)
        if answer and not exact_match(answer, record["output"]):
            pairs.append({**record, "rejected": answer})
    return pairs


def preference_pairs() -> dict[str, list[dict]]:
    """The reference's mistakes on each split, computed once and kept in PAIRS (committed, for notebook 6F)."""
    if PAIRS.exists():
        return json.loads(PAIRS.read_text())
    torch.set_num_threads(1)
    base = load_checkpoint(BASE_DIR, "cpu")
    pairs = {split: mistakes(base.model.eval(), base.tokenizer, rows) for split, rows in records().items()}
    PAIRS.parent.mkdir(exist_ok=True)
    PAIRS.write_text(json.dumps(pairs))
    return pairs


def encoded(pairs: list[dict], tokenizer, which: str) -> list[tuple[list[int], list[int]]]:
    """Prompt and response ids of the preferred ("output") or the rejected answers."""
    return [encode_record({**p, "output": p[which]}, tokenizer) for p in pairs]


def logprobs(model, rows: list[tuple[list[int], list[int]]], pad_id: int, batch: int = 64) -> torch.Tensor:
    """Sequence log-probability of each row's response (no gradient)."""
    with torch.no_grad():
        return torch.cat([sequence_logprobs(model, *collate_instructions(rows[i:i + batch], pad_id))
                          for i in range(0, len(rows), batch)])


def pair_scores(model, reference, tokenizer, pairs: list[dict], beta: float) -> dict:
    """Preference accuracy (the preferred answer more likely than the rejected), the mean reward margin
    beta * (log-ratio of chosen - log-ratio of rejected), and the mean log-ratios of each answer."""
    chosen, rejected = encoded(pairs, tokenizer, "output"), encoded(pairs, tokenizer, "rejected")
    c, r = logprobs(model, chosen, tokenizer.eot_id), logprobs(model, rejected, tokenizer.eot_id)
    rc, rr = logprobs(reference, chosen, tokenizer.eot_id), logprobs(reference, rejected, tokenizer.eot_id)
    return {"preference_accuracy": (c > r).float().mean().item(),
            "reward_margin": (beta * ((c - rc) - (r - rr))).mean().item(),
            "chosen_log_ratio": (c - rc).mean().item(), "rejected_log_ratio": (r - rr).mean().item()}


def scores(model, reference, tokenizer, split: list[dict], pairs: list[dict], beta: float) -> dict:
    right = [exact_match(respond(model, tokenizer, r), r["output"]) for r in split]
    return {"exact_match": sum(right) / len(right),
            "exact_match_by_task": {t: sum(h for r, h in zip(split, right) if r["task"] == t) /
                                    sum(r["task"] == t for r in split) for t in TASKS},
            "by_play": counts_by_play([r["play"] for r in split], right),
            **pair_scores(model, reference, tokenizer, pairs, beta),
            "kl_per_token": mean_response_kl(model, reference, tokenizer, split)}


def run(method: str, lr: float, beta: float, seed: int) -> dict:
    """Tune a copy of the reference on the training pairs by DPO or by cross-entropy on the preferred answers."""
    torch.set_num_threads(1)
    base = load_checkpoint(BASE_DIR, "cpu")
    reference, tokenizer = base.model.eval(), base.tokenizer
    policy = copy.deepcopy(reference)
    split, pairs = records(), preference_pairs()
    chosen, rejected = encoded(pairs["train"], tokenizer, "output"), encoded(pairs["train"], tokenizer, "rejected")
    ref_chosen, ref_rejected = logprobs(reference, chosen, tokenizer.eot_id), logprobs(reference, rejected,
                                                                                        tokenizer.eot_id)
    set_seed(seed)
    optimizer = configure_optimizer(policy, lr, 0.0)
    epochs, losses = [], []
    started, started_cpu = time.perf_counter(), time.process_time()
    for epoch in range(EPOCHS):
        order = torch.randperm(len(chosen), generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
        for start in range(0, len(order), BATCH_SIZE):
            picked = order[start:start + BATCH_SIZE]
            if method == "sft":
                inputs, targets = collate_instructions([chosen[i] for i in picked], tokenizer.eot_id)
                loss = F.cross_entropy(policy(inputs).flatten(0, 1), targets.flatten(), ignore_index=-100)
            else:  # chosen and rejected in one batch, the reference's log-probabilities computed once above
                both = sequence_logprobs(policy, *collate_instructions([chosen[i] for i in picked] +
                                                                       [rejected[i] for i in picked], tokenizer.eot_id))
                loss, _ = dpo_loss(both[:len(picked)], both[len(picked):], ref_chosen[picked], ref_rejected[picked],
                                   beta)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(round(loss.item(), 4))
        policy.eval()
        val = scores(policy, reference, tokenizer, split["val"], pairs["val"], beta)
        policy.train()
        epochs.append({k: v for k, v in val.items() if k != "by_play"})
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
    policy.eval()
    folder = SAVED / f"{method}_lr{lr:g}_beta{beta:g}_seed{seed}"
    save_checkpoint(folder, policy, tokenizer=tokenizer)
    return {"method": method, "lr": lr, "beta": beta, "seed": seed, "updates": len(losses), "train_loss": losses,
            "val_by_epoch": epochs, "val_exact_match": epochs[-1]["exact_match"],
            "test": scores(policy, reference, tokenizer, split["test"], pairs["test"], beta),
            "seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1),
            "weights_sha256": weights_sha256(policy), "saved": str(folder.relative_to(REPO_ROOT))}


def name(method: str, lr: float, beta: float, seed: int) -> str:
    return f"{method} | lr {lr:g} | beta {beta:g} | seed {seed}"


def report(key: str, result: dict) -> str:
    test = result["test"]
    return (f"val {result['val_exact_match']:.3f} test {test['exact_match']:.3f} pref "
            f"{test['preference_accuracy']:.3f} KL {test['kl_per_token']:.3f} ({result['cpu_seconds']:.0f} CPU s)")


def reference_scores() -> dict:
    base = load_checkpoint(BASE_DIR, "cpu")
    split, pairs = records(), preference_pairs()
    return {part: scores(base.model.eval(), base.model, base.tokenizer, split[part], pairs[part], BETA)
            for part in ("val", "test")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="runs at once, one thread each")
    args = parser.parse_args()
    pairs = preference_pairs()
    runs = RunCache(RUNS, run, name, report, args.workers)

    def val(method: str, lr: float, beta: float) -> float:
        return runs.get([(method, lr, beta, SEEDS[0])])[0]["val_exact_match"]

    runs.get([("sft", lr, BETA, SEEDS[0]) for lr in (*LRS, LOWEST_LR)] +  # all at once, to keep the
             [("dpo", BETA_LR, b, SEEDS[0]) for b in (0.02, *BETAS)])  # workers busy; the sweeps pick from them
    sft_lr = widened_sweep(lambda lr: val("sft", lr, BETA), LRS, factor=3.0, low=LOWEST_LR)
    beta = widened_sweep(lambda b: val("dpo", BETA_LR, b), BETAS, factor=5.0)
    dpo_lr = widened_sweep(lambda lr: val("dpo", lr, beta.chosen), LRS, factor=3.0, low=LOWEST_LR)
    beta_study = [runs.done[name("dpo", BETA_LR, b, SEEDS[0])] for b in sorted({0.02, *beta.scores})]
    dpo, sft = runs.get([("dpo", dpo_lr.chosen, beta.chosen, seed) for seed in SEEDS]), runs.get(
        [("sft", sft_lr.chosen, BETA, seed) for seed in SEEDS])
    reference = reference_scores()
    ref_by_play = [reference["test"]["by_play"]] * len(SEEDS)  # the reference has no seed: the same counts thrice
    by_play = {"dpo": [r["test"]["by_play"] for r in dpo], "sft": [r["test"]["by_play"] for r in sft]}
    comparisons = [comparison_over_plays_record("DPO", by_play["dpo"], "supervised on the preferred answers",
                                                by_play["sft"]),
                   comparison_over_plays_record("DPO", by_play["dpo"], "the reference (no tuning)", ref_by_play),
                   comparison_over_plays_record("supervised on the preferred answers", by_play["sft"],
                                                "the reference (no tuning)", ref_by_play)]
    if MODEL_DIR.exists():
        shutil.rmtree(MODEL_DIR)
    shutil.copytree(REPO_ROOT / dpo[0]["saved"], MODEL_DIR)
    RESULTS.write_text(json.dumps({
        "about": "bench/preference_tuning.py: DPO against supervised tuning on the preferred answers, from 6B's model",
        "base_sha256": weights_sha256(load_checkpoint(BASE_DIR, "cpu").model), "per_task": PER_TASK,
        "pairs": {split: len(p) for split, p in pairs.items()},
        "pairs_by_task": {split: {t: sum(x["task"] == t for x in p) for t in TASKS} for split, p in pairs.items()},
        "seeds": list(SEEDS), "epochs": EPOCHS, "batch_size": BATCH_SIZE,
        "chosen": {"dpo_lr": dpo_lr.chosen, "dpo_beta": beta.chosen, "sft_lr": sft_lr.chosen},
        "choices": [beta.record(f"DPO beta (learning rate {BETA_LR:g})"),
                    dpo_lr.record(f"DPO learning rate (beta {beta.chosen:g})"), sft_lr.record("supervised learning rate")],
        "comparisons": comparisons, "reference": reference, "threads": 1, "workers": args.workers,
        "machine": platform.processor() or platform.machine(),
        "saved_model": {"directory": str(MODEL_DIR.relative_to(REPO_ROOT)),
                        "run": name("dpo", dpo_lr.chosen, beta.chosen, SEEDS[0]),
                        "weights_sha256": dpo[0]["weights_sha256"]},
        "dpo_runs": dpo, "sft_runs": sft, "beta_study": beta_study,
        "sweep_runs": [runs.done[k] for k in sorted(runs.done) if runs.done[k] not in dpo + sft + beta_study]},
        indent=1))
    print("wrote", RESULTS)


if __name__ == "__main__":
    main()
