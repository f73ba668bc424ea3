"""The compute device and numeric precision: one place decides CUDA, Apple's MPS or CPU, and
bf16 autocast."""

from __future__ import annotations

import torch

from xlcore.errors import TrainingError


def _available() -> dict[str, bool]:
    return {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else Apple's MPS, else CPU."""
    available = _available()
    if name == "auto":
        return torch.device(next((d for d in ("cuda", "mps") if available[d]), "cpu"))
    if name in available and not available[name]:
        raise TrainingError(
            f"device={name} was requested but no {name.upper()} device is available; "
            "use device=cpu or device=auto"
        )
    return torch.device(name)


def accelerated() -> bool:
    """Whether ``auto`` picks an accelerator (CUDA or MPS) rather than the CPU."""
    return any(_available().values())


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively: CUDA, or a CPU with AVX512-BF16/AMX (oneDNN). On
    MPS it needs a recent macOS and chip and is not verified here: fp32."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    return bool(
        torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def uses_bf16(device: torch.device, bf16: bool) -> bool:
    """Whether :func:`autocast` computes in bf16 for a ``bf16`` request on ``device``."""
    return bf16 and bf16_supported(device)


def precision_label(used_bf16: bool) -> str:
    """The name a precision goes by in metrics and tables: ``bf16-autocast`` or ``fp32``."""
    return "bf16-autocast" if used_bf16 else "fp32"


def precision_name(device: torch.device, bf16: bool) -> str:
    """What :func:`autocast` will actually use, for provenance (:func:`precision_label`)."""
    return precision_label(uses_bf16(device, bf16))


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """bf16 autocast when asked for and native; else fp32 (emulated bf16 would be slower)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(device, bf16))
