"""get_device: a requested device this machine or PyTorch build lacks fails with what would work."""

import pytest
import torch

from llmcourse.runtime import get_device


def test_requested_device_is_returned():
    assert get_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused_with_what_would_work(monkeypatch):
    with pytest.raises(ValueError, match="device='cuda', but .*; use cpu"):
        get_device("cuda")
    monkeypatch.setenv("LLMCOURSE_DEVICE", "cuda")
    with pytest.raises(ValueError, match="LLMCOURSE_DEVICE='cuda', but"):
        get_device()


def test_a_name_that_is_no_device_is_refused():
    with pytest.raises(ValueError, match="device='gpu' is not a device name; use cpu, cuda, cuda:N or mps"):
        get_device("gpu")
