"""The runtime helpers: device choice honours the environment, seeding repeats random draws."""

import torch

from llmcourse.runtime import DATA_DIR, REPO_ROOT, get_device, set_seed


def test_device_is_pinned_by_environment(monkeypatch):
    monkeypatch.setenv("LLMCOURSE_DEVICE", "meta")
    assert get_device() == torch.device("meta")


def test_test_run_pins_cpu():
    assert get_device() == torch.device("cpu")


def test_set_seed_repeats_draws():
    set_seed(123)
    first = torch.rand(3)
    set_seed(123)
    assert torch.equal(first, torch.rand(3))


def test_data_folder_is_inside_the_repository():
    assert (REPO_ROOT / "pyproject.toml").exists()
    assert (DATA_DIR / "shakespeare" / "plays.csv").exists()
