"""The runtime helpers: device choice honours the environment, seeding repeats random draws."""

import torch

import pytest

from llmcourse.runtime import DATA_DIR, REPO_ROOT, get_device, recommended_threads, set_seed


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


def test_threads_leave_a_core_free_unless_set(monkeypatch):
    monkeypatch.delenv("LLMCOURSE_THREADS", raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    for cores, expected in [(1, 1), (2, 1), (4, 3), (16, 8)]:
        monkeypatch.setattr("os.sched_getaffinity", lambda pid, n=cores: set(range(n)))
        assert recommended_threads() == expected
    monkeypatch.setenv("LLMCOURSE_THREADS", "3")
    assert recommended_threads() == 3


def test_bad_thread_setting_raises(monkeypatch):
    monkeypatch.setenv("LLMCOURSE_THREADS", "two")
    with pytest.raises(ValueError, match="LLMCOURSE_THREADS must be a positive integer"):
        recommended_threads()
