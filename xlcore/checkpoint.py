"""Resumable training loops: one checkpoint per run holding every stateful part (model, optimiser,
scheduler, loss modules), the RNG states and the loop's own progress, so that a resumed run equals
an uninterrupted one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch

from xlcore.runs import Run, atomic_torch_save


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> object: ...


def rng_state() -> dict:
    """torch's CPU (and, with CUDA, every GPU's; with MPS, its) random state."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


def due(done: int, total: int, every: int | None) -> bool:
    """Whether a checkpoint is written after ``done`` of ``total`` steps: every ``every`` steps,
    never after the last (the run's outputs follow) and never with ``every`` None (an
    interrupted run then starts again)."""
    return every is not None and done % every == 0 and done < total


def resume(run: Run, device: torch.device, parts: Mapping[str, Stateful]) -> dict:
    """Load ``run``'s checkpoint, if it has one, into ``parts`` (by name) and restore the RNG;
    returns the loop's progress saved with it (empty without a checkpoint)."""
    if not run.checkpoint.exists():
        return {}
    ckpt = torch.load(run.checkpoint, map_location=device, weights_only=False)
    for name, part in parts.items():
        part.load_state_dict(ckpt.pop(name))
    set_rng_state(ckpt.pop("rng"))
    return ckpt


def save(run: Run, parts: Mapping[str, Stateful], **progress) -> None:
    """Write ``run``'s checkpoint: every part's state, the RNG states and ``progress``."""
    state = {name: part.state_dict() for name, part in parts.items()}
    atomic_torch_save({**state, "rng": rng_state(), **progress}, run.checkpoint)
