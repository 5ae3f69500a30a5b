"""The runtime helpers: device choice honours the environment, seeding repeats random draws."""

import subprocess
import sys
import time

import pytest
import torch

from llmcourse.runtime import DATA_DIR, REPO_ROOT, cache_lock, get_device, recommended_threads, set_seed, threads


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


def test_threads_sets_the_count_for_the_body_and_restores_it():
    before = torch.get_num_threads()
    with threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("count", [0, -1, 1.5, True, "2"])
def test_threads_refuses_anything_but_a_positive_whole_number(count):
    with pytest.raises(ValueError, match="positive whole number"):
        with threads(count):
            pass


def test_cache_lock_makes_a_second_process_wait_for_the_first(tmp_path):
    artifact = tmp_path / "course_gpt"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from llmcourse.runtime import cache_lock\n"
        f"with cache_lock({str(artifact)!r}):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(3)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError, match=r"course_gpt\.lock: another process is still building course_gpt"):
            with cache_lock(artifact, timeout=0.2):
                pass
        started = time.perf_counter()
        with cache_lock(artifact, timeout=30):  # waits until the holder lets go
            assert holder.poll() is not None or time.perf_counter() - started > 0.5
    finally:
        holder.wait(timeout=30)
