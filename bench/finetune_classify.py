"""Benchmark: classification with the course's GPTs, every configuration over 3 seeds (chapter 6).

Two tasks, split by whole plays. --task genre (the default): passages of 64 tokens labelled comedy,
history or tragedy, written to bench/results/finetune_classify.json. --task order: 32 tokens of a speech's
words in their order or shuffled (`llmcourse.tasks.order_passages`: lower-cased, no punctuation, so a bag
of words is at chance by construction), written to bench/results/finetune_order.json. The GPTs start from
the 3-minute course GPT of notebook 5B, or, in the configurations named "published GPT", from the course's
published model (notebook 5H).

Under the course's experiment protocol (`llmcourse.experiment`): for each configuration the learning rate is
chosen on the validation plays (seed 0) by `widened_sweep`, which widens the grid until the best rate is inside it,
and the epoch by early stopping on validation accuracy; then seeds 0, 1 and 2 are scored once on the
test plays, with each play's share kept so the notebooks can bootstrap over plays. Configurations:
majority class; bag-of-words logistic regression; the course GPT with a new head trained alone (last,
first or mean pooling), with its last block and final norm, in full (last or mean pooling), or with LoRA
(ranks 2, 8 and 32, alphas 4, 16 and 64, each with its own learning rate); and the same architecture
trained from scratch (the genre task; notebooks 6A and 6C plot its file). Usage:

    LLMCOURSE_THREADS=1 python bench/finetune_classify.py          # about an hour on one core
    LLMCOURSE_THREADS=1 python bench/finetune_classify.py --only lora   # configurations whose name has "lora"
    LLMCOURSE_THREADS=1 python bench/finetune_classify.py --task order  # the word-order task
"""

import argparse
import copy
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from llmcourse.bow import bag_of_words, word_vocabulary
from llmcourse.checkpoint import weights_sha256
from llmcourse.classify import (GPTClassifier, accuracy, add_classification_head, hidden_states, macro_f1,
                                predict_proba, set_trainable, train_classifier)
from llmcourse.course import course_model, published_model
from llmcourse.data import load_plays
from llmcourse.experiment import comparison_over_plays_record, counts_by_play, widened_sweep
from llmcourse.lora import add_lora, freeze_except_lora
from llmcourse.model import GPTModel
from llmcourse.runtime import set_seed
from llmcourse.tasks import GENRE_CLASSES, ORDER_CLASSES, genre_passages, order_passages

RESULTS = Path(__file__).resolve().parent / "results"
# Each task: its classes, how its passages are built, passages per class in each split, tokens per passage.
TASKS = {
    "genre": {"classes": GENRE_CLASSES, "build": genre_passages, "per_class": {"train": 300, "val": 100, "test": 200},
              "n_tokens": 64, "results": RESULTS / "finetune_classify.json",
              "about": "genre classification (comedy, history, tragedy) of 64-token passages"},
    "order": {"classes": ORDER_CLASSES, "build": order_passages, "per_class": {"train": 1000, "val": 200, "test": 400},
              "n_tokens": 32, "results": RESULTS / "finetune_order.json",
              "about": "word order: 32 tokens of a speech's words in order or shuffled (lower-cased, no punctuation)"},
}
SEEDS = (0, 1, 2)
BATCH_SIZE = 32


def passages_and_states(bases: dict[str, GPTModel], tokenizer, task: dict) -> dict:
    """Passages of each split, their token ids and labels, and each pretrained model's cached residual streams
    (under "before_last:<base>" and "after_all:<base>")."""
    plays = load_plays()
    data = {}
    for split, per_class in task["per_class"].items():
        passages = task["build"](plays, tokenizer, split, per_class, task["n_tokens"], seed=0)
        ids = torch.tensor([p.token_ids for p in passages])
        data[split] = {"passages": passages, "ids": ids, "labels": torch.tensor([p.label for p in passages])}
        for base, model in bases.items():
            with torch.no_grad():
                n_lower = len(model.blocks) - 1
                before_last = torch.cat([hidden_states(model, batch, n_lower) for batch in ids.split(128)])
                after_all = torch.cat([model.blocks[-1](batch) for batch in before_last.split(128)])
            data[split][f"before_last:{base}"], data[split][f"after_all:{base}"] = before_last, after_all
    return data


def gpt_classifier(bases: dict[str, GPTModel], config: dict, seed: int, n_classes: int) -> tuple[nn.Module, str]:
    """The classifier of a configuration, freshly built for `seed`, and which input it reads."""
    base = config.get("base", "course")
    if config["kind"] == "scratch":
        set_seed(seed)
        model = GPTModel(bases[base].cfg)
    else:
        model = copy.deepcopy(bases[base])
    add_classification_head(model, n_classes, seed=seed)
    n_layers = len(model.blocks)
    if config["kind"] == "lora":
        add_lora(model, config["rank"], config["alpha"], seed=seed)
        freeze_except_lora(model, also=("out_head.",))
        return GPTClassifier(model, config["pooling"]), "ids"
    part = {"head": "head", "last block": "last block", "full": "all", "scratch": "all"}[config["kind"]]
    set_trainable(model, part)
    start, source = {"head": (n_layers, f"after_all:{base}"), "last block": (n_layers - 1, f"before_last:{base}")}.get(
        config["kind"], (0, "ids"))
    return GPTClassifier(model, config["pooling"], start_block=start), source


def bag_of_words_classifier(data: dict, seed: int, n_classes: int) -> tuple[nn.Module, str]:
    torch.manual_seed(seed)
    return nn.Linear(data["train"]["bow"].shape[1], n_classes), "bow"


def run(data: dict, build: Callable[[int], tuple[nn.Module, str]], config: dict, lr: float, seed: int,
        n_classes: int) -> dict:
    """Train one configuration for one seed; score it on validation and test."""
    classifier, source = build(seed)
    started, started_cpu = time.perf_counter(), time.process_time()
    history = train_classifier(classifier, data["train"][source], data["train"]["labels"], data["val"][source],
                               data["val"]["labels"], config["epochs"], lr, BATCH_SIZE, seed,
                               config.get("weight_decay", 0.0))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
    scores = {}
    for split in ("val", "test"):
        predictions = predict_proba(classifier, data[split][source]).argmax(-1)
        scores[f"{split}_accuracy"] = accuracy(data[split]["labels"], predictions)
        scores[f"{split}_macro_f1"] = macro_f1(data[split]["labels"], predictions, n_classes)
    scores["test_by_play"] = counts_by_play([p.play for p in data["test"]["passages"]],  # for a bootstrap over plays
                                            (predictions == data["test"]["labels"]).tolist())
    trainable = sum(p.numel() for p in classifier.parameters() if p.requires_grad)
    return {**config, "lr": lr, "seed": seed, **scores, "best_epoch": history.best_epoch,
            "epoch_val_accuracy": history.epoch_scores, "train_loss": history.train_loss,
            "trainable_parameters": trainable, "seconds": seconds, "cpu_seconds": cpu_seconds}


def order_configurations() -> list[dict]:
    """The word-order task's configurations: a bag of words, and the GPT from each base and from scratch."""
    configs = [{"name": "bag of words", "kind": "bow", "pooling": "-", "epochs": 30, "lrs": [3e-3, 1e-2, 3e-2],
                "weight_decay": 0.0}]
    for base, label in (("course", "course GPT"), ("published", "published GPT")):
        configs.append({"name": f"head only, {label}", "kind": "head", "base": base, "pooling": "last",
                        "epochs": 30, "lrs": [3e-3, 1e-2, 3e-2]})
        configs.append({"name": f"full, {label}", "kind": "full", "base": base, "pooling": "last", "epochs": 6,
                        "lrs": [1e-4, 3e-4, 1e-3]})
    configs.append({"name": "from scratch", "kind": "scratch", "base": "published", "pooling": "last", "epochs": 6,
                    "lrs": [3e-4, 1e-3, 3e-3]})
    return configs


ORDER_COMPARED = [("full, published GPT", "bag of words"), ("full, published GPT", "from scratch"),
                  ("full, course GPT", "bag of words"), ("full, course GPT", "from scratch"),
                  ("full, published GPT", "full, course GPT"), ("head only, published GPT", "head only, course GPT")]


def configurations() -> list[dict]:
    """Every configuration: its name, kind, pooling, epochs and the learning-rate grid its sweep starts from."""
    configs = [{"name": "bag of words", "kind": "bow", "pooling": "-", "epochs": 30, "lrs": [3e-3, 1e-2, 3e-2],
                "weight_decay": 0.0}]
    for pooling in ("last", "first", "mean"):
        configs.append({"name": f"head only ({pooling})", "kind": "head", "pooling": pooling, "epochs": 30,
                        "lrs": [3e-3, 1e-2, 3e-2]})
    for pooling in ("last", "first", "mean"):
        configs.append({"name": f"last block ({pooling})", "kind": "last block", "pooling": pooling, "epochs": 8,
                        "lrs": [1e-4, 3e-4, 1e-3]})
    for name, pooling in (("full", "last"), ("full (mean)", "mean")):
        configs.append({"name": name, "kind": "full", "pooling": pooling, "epochs": 8, "lrs": [1e-4, 3e-4, 1e-3]})
    configs.append({"name": "from scratch", "kind": "scratch", "pooling": "last", "epochs": 8,
                    "lrs": [1e-4, 3e-4, 1e-3]})
    for name, pooling in (("full, published GPT", "last"), ("full (mean), published GPT", "mean")):
        configs.append({"name": name, "kind": "full", "base": "published", "pooling": pooling, "epochs": 8,
                        "lrs": [1e-4, 3e-4, 1e-3]})
    for rank, alpha in [(8, 16), (2, 16), (32, 16), (8, 4), (8, 64)]:  # a sweep around r=8, alpha=16
        configs.append({"name": f"lora r{rank} a{alpha}", "kind": "lora", "pooling": "last", "epochs": 8,
                        "rank": rank, "alpha": alpha, "lrs": [1e-3, 3e-3, 1e-2]})
    return configs


# The pairs chapter 6 draws conclusions from: test accuracy over seeds and test plays.
COMPARED = [("bag of words", "full"), ("full", "head only (last)"),
            ("head only (mean)", "head only (last)"), ("head only (mean)", "bag of words"),
            ("full", "from scratch"), ("full (mean)", "full"), ("full (mean)", "bag of words"),
            ("lora r8 a16", "full"), ("last block (mean)", "last block (last)"),
            ("full, published GPT", "full"), ("full (mean), published GPT", "full (mean)"),
            ("full (mean), published GPT", "bag of words")]


def comparisons(runs: list[dict], compared: list[tuple[str, str]]) -> list[dict]:
    """The `compared` pairs as the protocol records them (those whose runs are all in `runs`)."""
    by_name = {}
    for r in runs:
        by_name.setdefault(r["name"], []).append(r["test_by_play"])
    return [{"metric": "test accuracy, over seeds and test plays", **comparison_over_plays_record(a, by_name[a], b,
                                                                                                   by_name[b])}
            for a, b in compared if a in by_name and b in by_name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="run only configurations whose name contains this text; "
                                                   "their rows replace the same rows in the results file")
    parser.add_argument("--task", choices=sorted(TASKS), default="genre")
    args = parser.parse_args()
    task, results_file = TASKS[args.task], TASKS[args.task]["results"]
    n_classes = len(task["classes"])
    pretrained, tokenizer = course_model(device="cpu")
    bases = {"course": pretrained}
    bases["published"], published_tokenizer, _ = published_model("cpu")
    assert published_tokenizer.merges == tokenizer.merges  # both read the course BPE's ids
    data = passages_and_states(bases, tokenizer, task)
    vocabulary = word_vocabulary(p.text for p in data["train"]["passages"])
    for split in data:
        data[split]["bow"] = bag_of_words([p.text for p in data[split]["passages"]], vocabulary)

    previous = json.loads(results_file.read_text()) if results_file.exists() and args.only else {}
    keep = (lambda name: args.only not in name) if args.only else (lambda name: False)
    runs = [r for r in previous.get("runs", []) if keep(r["name"])]
    sweep_runs = [r for r in previous.get("sweep_runs", []) if keep(r["name"])]
    choices = [c for c in previous.get("choices", []) if keep(c["setting"])]
    chosen_lr = {name: lr for name, lr in previous.get("chosen_lr", {}).items() if keep(name)}
    for config in order_configurations() if args.task == "order" else configurations():
        if args.only not in config["name"]:
            continue
        build = (lambda seed: bag_of_words_classifier(data, seed, n_classes)) if config["kind"] == "bow" else \
                (lambda seed, c=config: gpt_classifier(bases, c, seed, n_classes))
        settings = {k: v for k, v in config.items() if k != "lrs"}
        trials = {}

        def score(lr: float, build=build, settings=settings, trials=trials) -> float:
            trials[lr] = run(data, build, settings, lr, SEEDS[0], n_classes)
            print(f"  {settings['name']:24s} lr {lr:.1e}: val accuracy {trials[lr]['val_accuracy']:.3f} "
                  f"(epoch {trials[lr]['best_epoch']})", flush=True)
            return trials[lr]["val_accuracy"]

        sweep = widened_sweep(score, config["lrs"], factor=3.0)
        choices.append(sweep.record(config["name"]))
        lr = chosen_lr[config["name"]] = sweep.chosen
        sweep_runs += [trial for value, trial in trials.items() if value != lr]
        for seed in SEEDS:
            result = trials[lr] if seed == SEEDS[0] else run(data, build, settings, lr, seed, n_classes)
            runs.append(result)
            print(f"{config['name']:24s} lr {lr:.1e} seed {seed}: val {result['val_accuracy']:.3f} "
                  f"test {result['test_accuracy']:.3f} (epoch {result['best_epoch']}, {result['cpu_seconds']:.0f} "
                  f"CPU s)", flush=True)
    majority = torch.bincount(data["train"]["labels"]).argmax().item()
    baseline = {split: accuracy(data[split]["labels"], torch.full_like(data[split]["labels"], majority))
                for split in ("val", "test")}
    compared = ORDER_COMPARED if args.task == "order" else COMPARED
    results_file.write_text(json.dumps({
        "course_model_sha256": weights_sha256(pretrained),  # which pretrained model these runs started from
        "published_model_sha256": weights_sha256(bases["published"]),
        "about": f"bench/finetune_classify.py: {task['about']}",
        "per_class": task["per_class"], "n_tokens": task["n_tokens"], "seeds": list(SEEDS), "batch_size": BATCH_SIZE,
        "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "majority_class": {"class": task["classes"][majority], **baseline},
        "choices": choices, "comparisons": comparisons(runs, compared), "chosen_lr": chosen_lr, "runs": runs,
        "sweep_runs": sweep_runs}, indent=1))
    print("wrote", results_file)


if __name__ == "__main__":
    main()
