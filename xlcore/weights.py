"""Model weights released once every planned run that reads them is complete, and recomputed
when a new run needs them.

A fine-tuned model (134 MB for trimmed e5-small) is read only by its evaluation, distance and
probe runs; an aligned encoder only by the runs fine-tuned or measured from it (a probe takes the
alignment run's trained loss, a small file that stays). With
``keep_weights`` off, :func:`settle` deletes such weights once all their readers are complete,
keeping the run complete: its metrics stay, its completion marker stops listing the file, and a
hidden record keeps a digest of every tensor. When a later plan adds a reader (another target
language, say), :func:`reclaim` marks the run incomplete so the grid recomputes it first, and
:func:`settle` then checks that the recomputed tensors equal the released ones: the finished
readers were computed from those.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from xlcore import runs
from xlcore.errors import XlcoreError

WEIGHTS: Mapping[str, tuple[str, ...]] = {
    "finetune": ("model.pt",),
    "align": ("encoder/model.safetensors",),
}
RELEASED = ".released.json"  # hidden: not an artifact of the run


class WeightsChangedError(XlcoreError, RuntimeError):
    """Recomputed weights differ from the released ones that finished runs were computed from."""


def tensor_digest(path: Path) -> str:
    """SHA-256 of the tensors in a ``.pt`` state dict or ``.safetensors`` file, by name (the
    container's bytes may differ between two saves of equal tensors)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(path)
    else:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(tensors[name].shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def released(run: runs.Run) -> bool:
    return (run.path / RELEASED).exists()


def release(run: runs.Run) -> int:
    """Delete ``run``'s weights (it stays complete); the bytes freed."""
    names = [n for n in WEIGHTS.get(run.kind, ()) if (run.path / n).exists()]
    if not names or released(run):
        return 0
    digests = {n: tensor_digest(run.path / n) for n in names}
    runs.atomic_write_json(run.path / RELEASED, digests)
    marker = json.loads((run.path / runs.COMPLETE).read_text())
    files = {k: v for k, v in marker.get("files", {}).items() if k not in digests}
    runs.atomic_write_json(run.path / runs.COMPLETE, {**marker, "files": files})
    freed = 0
    for name in names:
        freed += (run.path / name).stat().st_size
        (run.path / name).unlink()
    return freed


def _weight_deps(step) -> list[Path]:
    """The runs whose weights ``step`` reads."""
    deps = step.run.spec["deps"].items()
    return [Path(dep) for name, dep in deps if name not in step.unweighted]


def readers(steps: Mapping[Path, tuple]) -> dict[Path, list[Path]]:
    """For each planned run that another reads, the planned runs that read its weights (none
    where they read other files of it only, as a probe reads an alignment's trained loss)."""
    out: dict[Path, list[Path]] = {}
    for path, (step, _) in steps.items():
        for dep in step.run.spec["deps"].values():
            out.setdefault(Path(dep), [])
        for dep in _weight_deps(step):
            out[dep].append(path)
    return out


def reclaim(steps: Mapping[Path, tuple], todo: Iterable[Path]) -> list[Path]:
    """Mark incomplete every released run whose weights a run of ``todo`` reads (and, in
    turn, the released runs those read); returns them in plan order."""
    wanted: set[Path] = set()
    stack = list(todo)
    while stack:
        step = steps[stack.pop()][0]
        for dep in _weight_deps(step):
            if dep in steps and dep not in wanted and released(steps[dep][0].run):
                wanted.add(dep)
                stack.append(dep)
    for path in wanted:
        (path / runs.COMPLETE).unlink(missing_ok=True)
    return [p for p in steps if p in wanted]


def _check_recomputed(run: runs.Run, reading: list[Path]) -> None:
    expected = json.loads((run.path / RELEASED).read_text())
    changed = [n for n, d in expected.items() if tensor_digest(run.path / n) != d]
    if changed:
        names = ", ".join(f"{p.parent.name}/{p.name}" for p in reading)
        raise WeightsChangedError(
            f"run {run.path} was recomputed after its weights were released, and "
            f"{', '.join(changed)} differs from the released one (another device, precision or "
            f"thread count); the finished runs that read it were computed from the released "
            f"weights: {names}. Remove them to recompute them from the new weights, or run the "
            "grid where the released weights were made."
        )
    (run.path / RELEASED).unlink()


def release_read(
    steps: Mapping[Path, tuple], by_reader: Mapping[Path, list[Path]], done: Path
) -> int:
    """While a grid runs: release the weights ``done`` read whose planned readers are now all
    complete (a run released before and recomputed waits for :func:`settle`'s check); the
    bytes freed. Keeps the runs directory's peak near the weights still to be read."""
    freed = 0
    for dep in map(Path, steps[done][0].run.spec["deps"].values()):
        if dep not in steps or steps[dep][0].run.kind not in WEIGHTS:
            continue
        run = steps[dep][0].run
        if run.complete and all(steps[p][0].run.complete for p in by_reader.get(dep, [])):
            freed += release(run)
    return freed


def settle(steps: Mapping[Path, tuple], keep: bool) -> int:
    """After a grid: check every recomputed run against its released weights, then (unless
    ``keep``) release the weights whose planned readers are all complete; the bytes freed."""
    by_reader = readers(steps)
    freed = 0
    for path, (step, _) in steps.items():
        run = step.run
        if run.kind not in WEIGHTS or not run.complete:
            continue
        reading = by_reader.get(path, [])
        if released(run) and any((run.path / n).exists() for n in WEIGHTS[run.kind]):
            _check_recomputed(run, [p for p in reading if steps[p][0].run.complete])
        read = path in by_reader  # by a planned run, if only for other files
        if not keep and read and all(steps[p][0].run.complete for p in reading):
            freed += release(run)
    return freed


__all__ = [
    "WEIGHTS",
    "WeightsChangedError",
    "readers",
    "reclaim",
    "release",
    "release_read",
    "released",
    "settle",
]
