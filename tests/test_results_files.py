"""Every results file in bench/results/ keeps the experiment protocol's records (`llmcourse.experiment`): its
sweeps in "choices" and its comparisons in "comparisons". Each choice must lie inside the grid it was chosen
from (a best value at the edge of its grid may not be the best at all), and each comparison's verdict, and the
claim the course draws from it, must follow from its per-seed scores.
"""

import json

import pytest

from llmcourse.experiment import compare, compare_over_plays
from llmcourse.runtime import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results"
FILES = sorted(path.name for path in RESULTS.glob("*.json"))


def records(key: str) -> list[tuple[str, dict]]:
    """(file, record) for every record under `key` in the files that keep the protocol's records."""
    found = []
    for name in FILES:
        found += [(name, record) for record in json.loads((RESULTS / name).read_text())[key]]
    return found


@pytest.mark.parametrize("name", FILES)
def test_every_results_file_keeps_its_choices_and_comparisons(name):
    results = json.loads((RESULTS / name).read_text())
    assert isinstance(results.get("choices"), list) and isinstance(results.get("comparisons"), list), \
        f"{name} has no 'choices' and 'comparisons' lists (llmcourse.experiment's records)"


@pytest.mark.parametrize("name, choice", [pytest.param(n, c, id=f"{n}:{c['setting']}") for n, c in records("choices")])
def test_every_choice_lies_inside_its_grid(name, choice):
    grid, chosen = choice["grid"], choice["chosen"]
    assert len(grid) == len(choice["scores"]) >= 2, f"{name}: {choice['setting']} needs a score per value tried"
    assert chosen in grid, f"{name}: {choice['setting']}'s choice {chosen} is not among the values tried, {grid}"
    assert grid[choice["scores"].index(max(choice["scores"]))] == chosen, \
        f"{name}: {choice['setting']}'s choice {chosen} is not the best-scoring value of {grid}"
    assert choice["hit_bound"] == chosen or min(grid) < chosen < max(grid), \
        f"{name}: {choice['setting']}'s choice {chosen} sits at an edge of {grid}"


@pytest.mark.parametrize("name, record", [pytest.param(n, r, id=f"{n}:{r['a']} vs {r['b']}:{i}")
                                          for i, (n, r) in enumerate(records("comparisons"))])
def test_every_comparison_follows_from_its_scores(name, record):
    result = compare_over_plays(record["a_by_play"], record["b_by_play"]) if "a_by_play" in record else \
        compare(record["a_scores"], record["b_scores"])
    assert result.verdict == record["verdict"], f"{name}: {record['a']} vs {record['b']} is {result}, " \
                                                f"not {record['verdict']!r}"
    assert record["claim"] in (None, result.verdict), \
        f"{name}: the course claims {record['claim']!r} for {record['a']} vs {record['b']}, but it is {result}"


@pytest.mark.parametrize("name", ["finetune_instruct.json", "chat_format.json", "preference_tuning.json",
                                  "learning_from_reward.json"])
def test_a_saved_model_is_the_benchmarks(name):
    from llmcourse.checkpoint import load_checkpoint, weights_sha256

    saved = json.loads((RESULTS / name).read_text())["saved_model"]
    model = load_checkpoint(REPO_ROOT / saved["directory"], "cpu").model
    assert weights_sha256(model) == saved["weights_sha256"], f"{saved['directory']} is not the run {saved['run']}"


def test_the_saved_denoisers_are_the_benchmarks():
    from safetensors.torch import load_model

    from llmcourse.checkpoint import weights_sha256
    from llmcourse.denoising import build_denoiser

    results = json.loads((RESULTS / "pretrain_seq2seq.json").read_text())
    recorded = {f"{r['objective']}_pretrained": r["weights_sha256"] for r in results["pretraining"] if r["seed"] == 0}
    recorded.update({f"{r['arm']}_{r['task']}_{r['size']}": r["weights_sha256"] for r in results["finetuning"]
                     if r["seed"] == 0 and r["size"] == "scarce" and r["arm"] in ("scratch", "t5", "bart")})
    files = sorted((REPO_ROOT / "data" / "denoisers").glob("*.safetensors"))
    assert sorted(f.stem for f in files) == sorted(recorded)
    for path in files:
        model = build_denoiser(seed=0)
        load_model(model, path)
        assert weights_sha256(model) == recorded[path.stem], f"{path.name} is not the benchmark's model"
