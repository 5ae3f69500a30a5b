"""Benchmark: a BERT-style encoder against the GPT of the same size and budget, on genre classification.

Pretraining: the course encoder (masked LM + next-sentence prediction), the same encoder with masked LM
alone, and the GPT (next-token prediction), each of d_model 96, 4 layers, 4 heads, context 128, on the
training plays with the course tokenizer, for the same 700 updates of 8 x 128 tokens. The encoder's
learning rate was chosen on the validation plays (bench/encoder_lr_sweep.py); the GPT uses the course
GPT's, chosen on them by bench/sweep_course_settings.py. Each is pretrained with seeds 0, 1 and 2
(the encoder of seed 0 is `course_encoder()`).
Fine-tuning: chapter 6's genre classification (comedy, history, tragedy; 64-token passages, split by
whole plays), every weight trained: the encoder reads [CLS] passage [SEP] and classifies its pooled
[CLS] vector with a new head; the GPT gets `llmcourse.classify`'s head on its last position. Under the
course's experiment protocol: each family's learning rate is chosen on validation accuracy (seed 0) by
`widened_sweep`, which widens the grid until the best rate is inside it, and the epoch by early stopping
on it; test accuracy is reported once per seed, with each play's share kept, and every pair of families
compared over seeds and test plays (`compare_over_plays`). Writes bench/results/encoder_vs_decoder.json.
Usage:

    LLMCOURSE_THREADS=1 python bench/encoder_vs_decoder.py              # about 40 minutes on one core
    LLMCOURSE_THREADS=1 python bench/encoder_vs_decoder.py --seeds 1 2  # later seeds, added to the file
"""

import argparse
import json
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from llmcourse.checkpoint import weights_sha256
from llmcourse.classify import (EncoderClassifier, GPTClassifier, accuracy, add_classification_head, macro_f1,
                                predict_proba, set_trainable, train_classifier, with_cls_and_sep)
from llmcourse.course import COURSE_ENCODER_SETTINGS, COURSE_SETTINGS, bert_tokenizer, course_encoder, course_tokenizer
from llmcourse.data import create_dataloader, load_plays, load_shakespeare
from llmcourse.experiment import comparison_over_plays_record, counts_by_play, widened_sweep
from llmcourse.mlm import evaluate_encoder, pretrain_encoder
from llmcourse.model import GPTConfig, GPTModel
from llmcourse.runtime import set_seed, use_recommended_threads
from llmcourse.tasks import GENRE_CLASSES, genre_passages, nsp_pairs
from llmcourse.train import configure_optimizer, evaluate, spread_windows_loader, train

RESULTS = Path(__file__).resolve().parent / "results" / "encoder_vs_decoder.json"
SEEDS = (0, 1, 2)
PER_CLASS = {"train": 300, "val": 100, "test": 200}  # as bench/finetune_classify.py
N_TOKENS = 64
BATCH_SIZE = 32
EPOCHS = 8
LEARNING_RATES = (1e-4, 3e-4, 1e-3)  # the sweep's first grid, widened by factors of 3
TEST_PAIRS = 512  # next-sentence test pairs, spread over the test plays, to score each pretrained encoder
FAMILIES = ("encoder (MLM + NSP)", "encoder (MLM only)", "GPT (next token)")


def pretrain_gpt(seed: int, train_ids: list[int], val_ids: list[int]) -> tuple[GPTModel, float, float]:
    """The GPT of the course's size and settings, pretrained for the encoder's number of updates; its
    validation loss and seconds."""
    tokenizer = course_tokenizer()
    settings = COURSE_ENCODER_SETTINGS
    set_seed(seed)
    model = GPTModel(GPTConfig(vocab_size=tokenizer.vocab_size, context_length=settings.context_length,
                               d_model=settings.d_model, n_heads=settings.n_heads, n_layers=settings.n_layers,
                               dropout=0.0))
    optimizer = configure_optimizer(model, COURSE_SETTINGS.max_lr, COURSE_SETTINGS.weight_decay)
    loader = create_dataloader(train_ids, settings.batch_size, settings.context_length, seed=seed)
    val_loader = spread_windows_loader(val_ids, 256, settings.context_length, 32)
    history = train(model, optimizer, loader, None, settings.max_steps, COURSE_SETTINGS.max_lr,
                    COURSE_SETTINGS.max_lr * settings.min_lr_ratio, settings.warmup_steps, settings.grad_clip,
                    seed=seed, progress=False)
    return model.eval(), evaluate(model, val_loader), history.seconds


def classifier(family: str, pretrained: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A fresh copy of the pretrained model with a new 3-class head, every weight trainable."""
    model = type(pretrained)(pretrained.cfg)
    model.load_state_dict(pretrained.state_dict())
    if family.startswith("encoder"):
        return EncoderClassifier(model, len(GENRE_CLASSES), seed=seed)
    add_classification_head(model, len(GENRE_CLASSES), seed=seed)
    set_trainable(model, "all")
    return GPTClassifier(model, "last")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                        help="seeds to run; without seed 0 the learning rates chosen by an earlier run of seed 0 "
                             "are read from the results file and these seeds' rows replace their old ones")
    args = parser.parse_args()
    use_recommended_threads()
    plays, gpt_tokenizer = load_plays(), course_tokenizer()
    encoder_tokenizer = course_encoder(device="cpu", progress=False)[1]
    data = {}
    for split, per_class in PER_CLASS.items():
        passages = genre_passages(plays, gpt_tokenizer, split, per_class, N_TOKENS, seed=0)
        ids = torch.tensor([p.token_ids for p in passages])
        data[split] = {"GPT": ids, "encoder": with_cls_and_sep(ids, encoder_tokenizer),
                       "labels": torch.tensor([p.label for p in passages]), "plays": [p.play for p in passages]}
    gpt_ids = [gpt_tokenizer.encode(load_shakespeare(split)) for split in ("train", "val")]
    test_pairs = nsp_pairs(plays, "test", encoder_tokenizer, COURSE_ENCODER_SETTINGS.context_length, seed=0)
    test_pairs = test_pairs[::len(test_pairs) // TEST_PAIRS][:TEST_PAIRS]

    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() and SEEDS[0] not in args.seeds else {}
    runs = [r for r in previous.get("runs", []) if r["seed"] not in args.seeds]
    chosen_lr, lr_trials = previous.get("chosen_lr", {}), previous.get("lr_trials", [])
    choices = previous.get("choices", [])
    for seed in args.seeds:
        for family in FAMILIES:
            started = time.perf_counter()
            if family == "GPT (next token)":
                model, val_loss, seconds = pretrain_gpt(seed, *gpt_ids)
                pretraining = {"val_loss": val_loss, "seconds": seconds}
            else:
                settings = replace(COURSE_ENCODER_SETTINGS, seed=seed, nsp=family == FAMILIES[0])
                if settings == COURSE_ENCODER_SETTINGS:
                    model, _, history = course_encoder(device="cpu", progress=False)
                else:
                    model, _, history = pretrain_encoder(settings, bert_tokenizer(), device="cpu", progress=False)
                pretraining = {f"test_{k}": v for k, v in evaluate_encoder(model, test_pairs, encoder_tokenizer).items()}
                pretraining["seconds"] = history.seconds
            print(f"pretrained {family} seed {seed} in {time.perf_counter() - started:.0f} s: {pretraining}", flush=True)
            source = "encoder" if family.startswith("encoder") else "GPT"
            trials = {}

            def fine_tune(lr: float, family=family, model=model, seed=seed, source=source,
                          pretraining=pretraining, trials=trials) -> float:
                module = classifier(family, model, seed)
                started = time.process_time()
                history = train_classifier(module, data["train"][source], data["train"]["labels"],
                                           data["val"][source], data["val"]["labels"], EPOCHS, lr, BATCH_SIZE, seed)
                scores = {}
                for split in ("val", "test"):
                    predictions = predict_proba(module, data[split][source]).argmax(-1)
                    scores[f"{split}_accuracy"] = accuracy(data[split]["labels"], predictions)
                    scores[f"{split}_macro_f1"] = macro_f1(data[split]["labels"], predictions, len(GENRE_CLASSES))
                scores["test_by_play"] = counts_by_play(data["test"]["plays"],
                                                        (predictions == data["test"]["labels"]).tolist())
                trials[lr] = {"family": family, "seed": seed, "lr": lr, **scores, "best_epoch": history.best_epoch,
                              "epoch_val_accuracy": history.epoch_scores,
                              "cpu_seconds": time.process_time() - started, "pretraining": pretraining,
                              "pretrained_sha256": weights_sha256(model)}
                print(f"  {family} seed {seed} lr {lr:.1e}: val {scores['val_accuracy']:.3f} "
                      f"test {scores['test_accuracy']:.3f} (epoch {history.best_epoch})", flush=True)
                return scores["val_accuracy"]

            if seed == SEEDS[0]:  # seed 0 chooses the rate
                sweep = widened_sweep(fine_tune, LEARNING_RATES, factor=3.0)
                chosen_lr[family] = sweep.chosen
                choices = [c for c in choices if c["setting"] != family] + [sweep.record(family)]
                lr_trials = [t for t in lr_trials if t["family"] != family]
                lr_trials += [{"family": family, "lr": r["lr"], "val_accuracy": r["val_accuracy"]}
                              for r in trials.values()]
            else:
                fine_tune(chosen_lr[family])
            runs.append(trials[chosen_lr[family]])
        write_results(runs, chosen_lr, lr_trials, choices)


def write_results(runs: list[dict], chosen_lr: dict, lr_trials: list[dict], choices: list[dict]) -> None:
    """The results file with every run so far and each family's test accuracy over its seeds.

    Without seed 0 in `runs`, runs of other seeds already in the file (written meanwhile by another
    process) are kept; a run with seed 0 chooses the learning rates and starts the file afresh.
    """
    ours = {(r["family"], r["seed"]) for r in runs}
    if RESULTS.exists() and SEEDS[0] not in {seed for _, seed in ours}:
        runs = [r for r in json.loads(RESULTS.read_text())["runs"] if (r["family"], r["seed"]) not in ours] + runs
    runs = sorted(runs, key=lambda r: (r["seed"], FAMILIES.index(r["family"])))
    summary = {}
    for family in FAMILIES:
        test = torch.tensor([r["test_accuracy"] for r in runs if r["family"] == family])
        summary[family] = {"test_accuracy_mean": test.mean().item(),
                           "test_accuracy_std": test.std().item() if len(test) > 1 else None,
                           "test_accuracy": test.tolist()}
        print(f"{family:22s} test accuracy {test.mean():.3f} over {len(test)} seed(s)")
    comparisons = []
    by_family = {f: [r["test_by_play"] for r in runs if r["family"] == f] for f in FAMILIES}
    if all(len(v) >= 3 for v in by_family.values()):
        for i, a in enumerate(FAMILIES):
            for b in FAMILIES[i + 1:]:
                record = comparison_over_plays_record(a, by_family[a], b, by_family[b])
                comparisons.append({"metric": "test accuracy, over seeds and test plays", **record})
                print(f"{a} - {b}: {record['difference']:+.3f} ± {record['standard_error']:.3f} ({record['verdict']})")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "about": "bench/encoder_vs_decoder.py: encoder (MLM+NSP, MLM only) vs GPT of the same size and pretraining "
                 "budget, fully fine-tuned on genre classification of 64-token passages",
        "encoder_settings": asdict(COURSE_ENCODER_SETTINGS), "gpt_max_lr": COURSE_SETTINGS.max_lr,
        "per_class": PER_CLASS, "n_tokens": N_TOKENS, "seeds": sorted({r["seed"] for r in runs}),
        "batch_size": BATCH_SIZE, "epochs": EPOCHS, "learning_rates": list(LEARNING_RATES), "chosen_lr": chosen_lr,
        "lr_trials": lr_trials, "choices": choices, "comparisons": comparisons, "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(), "summary": summary, "runs": runs}, indent=1))
    print("wrote", RESULTS, flush=True)


if __name__ == "__main__":
    main()
