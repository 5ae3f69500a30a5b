"""Benchmark: what pretraining an encoder-decoder on plain text buys two sequence-to-sequence tasks (chapter 5, 5I).

The model is 5F's transformer with pre-norm blocks (`llmcourse.denoising.build_denoiser`). Three arms at equal
total CPU time (one thread): from scratch for PRETRAIN + FINETUNE seconds; T5's span corruption for PRETRAIN
seconds, then fine-tuning for FINETUNE; BART's text infilling likewise. A fourth arm, from scratch for FINETUNE
seconds only, gives the comparison at equal fine-tuning time (pretraining paid once, for many tasks).
Pretraining reads texts of the training plays (runs of 10-50 characters of a speech, no labels). The tasks:
5F's word reversal ("to be or not" -> "not or be to") and restoring spaces ("tobeornot" -> "to be or not"),
each with 5F's 30,000 training pairs ("full") and with the first 1,000 of them ("scarce"); scored on 5F's 800
test pairs, by source length.

Every run uses the 2017 schedule (100 warmup steps, batches of 32, label smoothing 0.1) with a cooldown: over
the last 20 % of its budget the rate falls linearly to 0, so that a run is scored where it has settled (without
it, two seeds of one arm scored 0.24 and 0.85 exact match). The learning-rate scale is chosen for each arm
on reversal (full) at FINETUNE seconds, on validation exact match, inside its grid (`widened_sweep`): from
scratch (pretraining uses this one too), and fine-tuning each pretrained model (a pretrained model may want a
gentler rate). Each arm uses its scale on both tasks and sizes. Seeds 0-2 for everything. The seed-0
pretrained models and the seed-0 fine-tuned models of the scarce setting are saved to data/denoisers/
(safetensors). Finished runs are kept in runs/pretrain_seq2seq_runs.json, so an interrupted benchmark
resumes. Usage:

    python bench/pretrain_seq2seq.py --workers 2   # one CPU thread a run; about 30 minutes on two cores
"""

import argparse
import json
import platform

import torch
from safetensors.torch import load_model, save_model

from llmcourse.checkpoint import weights_sha256
from llmcourse.data import load_plays
from llmcourse.denoising import OBJECTIVES, build_denoiser, denoising_scores, pretrain, render
from llmcourse.experiment import Sweep, comparison_record, widened_sweep
from llmcourse.runtime import REPO_ROOT
from llmcourse.seq2seq import predict, scores, scores_by_length, train_seq2seq
from llmcourse.tasks import reversal_pairs, spacing_pairs
from run_cache import RunCache  # bench/run_cache.py

RESULTS = REPO_ROOT / "bench" / "results" / "pretrain_seq2seq.json"
RUNS = REPO_ROOT / "runs" / "pretrain_seq2seq_runs.json"
WORK = REPO_ROOT / "runs" / "pretrain_seq2seq_models"
SAVED = REPO_ROOT / "data" / "denoisers"
PRETRAIN, FINETUNE = 45.0, 45.0  # CPU seconds of one thread
N_TEXTS, N_TRAIN, N_SCARCE, N_VAL, N_TEST = 30_000, 30_000, 1_000, 400, 800
BATCH_SIZE, WARMUP_STEPS, LABEL_SMOOTHING = 32, 100, 0.1
COOLDOWN = 0.2  # the last 20 % of every run's budget lowers the rate linearly to 0
SCALES = (0.5, 1.0, 2.0)
SEEDS = (0, 1, 2)
ARMS = ("scratch", *OBJECTIVES, "scratch-short")  # scratch-short: fine-tuning time alone, no pretraining
TASKS = ("reversal", "spacing")
SIZES = {"full": N_TRAIN, "scarce": N_SCARCE}
# The verdicts notebook 5I draws conclusions from, (task, size, a, b): comparison_record refuses one that fails.
CLAIMS = {("spacing", "scarce", "bart", "scratch"): "a is higher",
          ("spacing", "scarce", "bart", "scratch-short"): "a is higher",
          ("spacing", "full", "bart", "scratch-short"): "a is higher",
          ("spacing", "full", "bart", "scratch"): "b is higher",
          ("reversal", "full", "bart", "scratch"): "b is higher",
          ("reversal", "full", "bart", "scratch-short"): "no measurable difference",
          ("reversal", "scarce", "bart", "scratch"): "no measurable difference",
          ("reversal", "scarce", "bart", "scratch-short"): "no measurable difference",
          ("spacing", "scarce", "scratch", "scratch-short"): "no measurable difference",
          ("spacing", "full", "t5", "scratch-short"): "b is higher",
          **{(task, size, "bart", "t5"): "a is higher" for task, size in
             (("reversal", "full"), ("reversal", "scarce"), ("spacing", "full"))},
          **{(task, size, "t5", "scratch"): "b is higher" for task, size in
             (("reversal", "full"), ("reversal", "scarce"), ("spacing", "full"))}}


def data() -> dict:
    """Pretraining texts, validation texts, and each task's training, validation and test pairs (5F's draws)."""
    plays = load_plays()
    train = reversal_pairs(plays, "train", N_TRAIN, seed=0)
    val = reversal_pairs(plays, "val", N_VAL, seed=1)
    test = reversal_pairs(plays, "test", N_TEST, seed=2)
    tasks = {"reversal": (train, val, test), "spacing": tuple(spacing_pairs(p) for p in (train, val, test))}
    return {"texts": [p.source for p in reversal_pairs(plays, "train", N_TEXTS, seed=1)],
            "val_texts": [p.source for p in val], "tasks": tasks}


def _init() -> None:
    torch.set_num_threads(1)


def _curve(history, points: int = 100) -> list:
    every = max(1, history.steps // points)
    return [(round(history.seconds[i], 2), round(history.losses[i], 4)) for i in range(0, history.steps, every)]


def pretrain_job(objective: str, seed: int, scale: float) -> dict:
    d = data()
    model = build_denoiser(seed)
    history = pretrain(model, d["texts"], objective, PRETRAIN, BATCH_SIZE, WARMUP_STEPS, scale, LABEL_SMOOTHING,
                       seed, progress=False, cooldown=COOLDOWN)
    WORK.mkdir(parents=True, exist_ok=True)
    save_model(model, WORK / f"{objective}_seed{seed}.safetensors")
    return {"kind": "pretrain", "objective": objective, "seed": seed, "steps": history.steps,
            "seconds": history.seconds[-1], "curve": _curve(history),
            "val": {o: denoising_scores(model, d["val_texts"], o, seed=0) for o in (objective,)},
            "weights_sha256": weights_sha256(model)}


def finetune_job(arm: str, task: str, size: str, seed: int, scale: float, split: str = "test",
                 budget: float | None = None) -> dict:
    d = data()
    train, val, test = d["tasks"][task]
    train = train[:SIZES[size]]
    model = build_denoiser(seed)
    if arm in OBJECTIVES:
        load_model(model, WORK / f"{arm}_seed{seed}.safetensors")
    budget = budget or (FINETUNE if arm != "scratch" else PRETRAIN + FINETUNE)
    history = train_seq2seq(model, train, budget, model.cfg.d_model, BATCH_SIZE, WARMUP_STEPS, scale,
                            LABEL_SMOOTHING, seed, progress=False, cooldown=COOLDOWN)
    pairs = val if split == "val" else test
    sources, targets = [p.source for p in pairs], [p.target for p in pairs]
    predictions = predict(model, sources, to_text=render)
    if split == "test" and seed == 0 and size == "scarce" and arm != "scratch-short":
        SAVED.mkdir(parents=True, exist_ok=True)
        save_model(model, SAVED / f"{arm}_{task}_{size}.safetensors")
    return {"kind": "finetune", "arm": arm, "task": task, "size": size, "seed": seed, "scale": scale, "split": split,
            "budget": budget, "steps": history.steps, "seconds": history.seconds[-1], "curve": _curve(history),
            **scores(predictions, targets), "by_length": scores_by_length(sources, predictions, targets),
            "examples": [(s, p) for s, p in zip(sources[:8], predictions[:8])], "weights_sha256": weights_sha256(model)}


def run(kind: str, *args) -> dict:
    return (pretrain_job if kind == "pretrain" else finetune_job)(*args)


def name(*job) -> str:
    return json.dumps(job)


def report(key: str, result: dict) -> str:
    return f"{result['steps']} steps, {result.get('exact_match', result.get('val'))}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    runs = RunCache(RUNS, run, name, report, args.workers, initializer=_init)

    def sweep_for(arm: str) -> Sweep:
        """The fine-tuning scale for `arm`, on validation exact match (reversal, full, seed 0, FINETUNE seconds)."""
        def job(s: float) -> tuple:
            return ("finetune", arm, "reversal", "full", 0, s, "val", FINETUNE)

        def score(s: float) -> float:
            row, = runs.get([job(s)])
            return row["exact_match"] + 1e-3 * row["char_accuracy"]

        runs.get([job(s) for s in SCALES])
        return widened_sweep(score, SCALES)

    sweeps = {"scratch": sweep_for("scratch")}
    scale = sweeps["scratch"].chosen  # pretraining uses the scale chosen for training from scratch
    pre = runs.get([("pretrain", o, s, scale) for s in SEEDS for o in OBJECTIVES])
    sweeps.update({o: sweep_for(o) for o in OBJECTIVES})
    chosen = {arm: sweep.chosen for arm, sweep in sweeps.items()}
    chosen["scratch-short"] = chosen["scratch"]  # chosen at FINETUNE seconds, this arm's budget
    fine = runs.get([("finetune", a, t, z, s, chosen[a]) for s in SEEDS for z in SIZES for t in TASKS for a in ARMS])
    for row in pre:
        if row["seed"] == 0:
            SAVED.mkdir(parents=True, exist_ok=True)
            (SAVED / f"{row['objective']}_pretrained.safetensors").write_bytes(
                (WORK / f"{row['objective']}_seed0.safetensors").read_bytes())
    comparisons = []
    for task in TASKS:
        for size in SIZES:
            em = {a: [r["exact_match"] for r in fine if (r["arm"], r["task"], r["size"]) == (a, task, size)]
                  for a in ARMS}
            for a, b in (("t5", "scratch"), ("bart", "scratch"), ("bart", "t5"), ("t5", "scratch-short"),
                         ("bart", "scratch-short"), ("scratch", "scratch-short")):
                comparisons.append({"task": task, "size": size, "metric": "exact_match",
                                    **comparison_record(a, em[a], b, em[b], CLAIMS.get((task, size, a, b)))})
    results = {"about": __doc__.split("\n\n")[0], "pretrain_seconds": PRETRAIN, "finetune_seconds": FINETUNE,
               "n_texts": N_TEXTS, "sizes": SIZES, "n_val": N_VAL, "n_test": N_TEST, "batch_size": BATCH_SIZE,
               "warmup_steps": WARMUP_STEPS, "label_smoothing": LABEL_SMOOTHING, "cooldown": COOLDOWN,
               "seeds": list(SEEDS),
               "threads": 1, "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
               "chosen_scale": chosen, "pretrain_scale": scale,
               "choices": [sweep.record(f"lr_scale {arm}", "better (exact match + 0.001 x character accuracy)")
                           for arm, sweep in sweeps.items()],
               "sweep_runs": [r for k, r in runs.done.items() if json.loads(k)[6:7] == ["val"]],
               "pretraining": pre, "finetuning": fine, "comparisons": comparisons}
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(comparisons, indent=1))


if __name__ == "__main__":
    main()
