"""The README's report card is the one scripts/report_card.py generates from bench/results/."""

import importlib.util

import pytest

from llmcourse.runtime import REPO_ROOT


def load_script():
    spec = importlib.util.spec_from_file_location("report_card", REPO_ROOT / "scripts" / "report_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_shows_the_generated_report_card():
    card = load_script()
    readme = (REPO_ROOT / "README.md").read_text()
    assert card.readme_with(card.markdown(card.rows()), readme) == readme, \
        "README.md's report card is out of date: run python scripts/report_card.py --write"


def test_every_row_has_a_score_and_a_budget():
    for row in load_script().rows():
        assert row["scores"] and all(0 < s < 9 for s in row["scores"]), row
        assert row["budget"], row


def test_the_readme_needs_both_markers():
    card = load_script()
    with pytest.raises(ValueError, match="markers"):
        card.readme_with("| table |", "no markers here")
