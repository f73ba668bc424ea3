"""Device choice: ``auto`` takes CUDA, then Apple's MPS, then the CPU; an unavailable device
asked for by name is one clear error; bf16 autocast only where it is native."""

import pytest
import torch

from xlcore import device
from xlcore.engine import resolve_jobs
from xlcore.errors import TrainingError


@pytest.mark.parametrize(
    ("cuda", "mps", "expected", "jobs"),
    [(True, True, "cuda", 1), (False, True, "mps", 1), (False, False, "cpu", 2)],
)
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected, jobs):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert device.resolve_device("auto").type == expected
    assert resolve_jobs("auto") == jobs  # one run at a time keeps an accelerator busy


@pytest.mark.parametrize("name", ["cuda", "mps"])
def test_an_unavailable_device_is_one_clear_error(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(TrainingError, match=f"device={name} was requested but no .*device=auto"):
        device.resolve_device(name)


def test_bf16_is_used_only_where_native():
    assert device.uses_bf16(torch.device("cuda"), True)
    assert not device.uses_bf16(torch.device("mps"), True)
    assert not device.uses_bf16(torch.device("cuda"), False)
