"""Executing a grid's runs: one after another in this process, or as tasks of a Dask cluster.

``jobs`` > 1 starts a local Dask cluster (:class:`distributed.LocalCluster`) of that many worker
processes. A scheduler address (``--scheduler``, ``$XLCORE_SCHEDULER``) hands the runs to a
running Dask cluster instead, for example one that ``dask-jobqueue`` starts on SLURM or PBS nodes.
The runs directory is the only state the processes share: each run is computed under its own
lock and marked complete last (:mod:`xlcore.runs`). :mod:`xlcore.dask_engine` says what a worker
does.

A run that raises is reported with its error; every run that does not depend on it still runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from xlcore import runs
from xlcore.device import accelerated
from xlcore.errors import ConfigError, GridRunError, RunStorageError

# steps: {run path: (step, data source description)}; a step has .run, .fn and .seed.
Steps = Mapping[Path, tuple]
Planner = Callable[[], Steps]


def _ignore(*_: object) -> None:
    return None


@dataclass(frozen=True)
class Listener:
    """What the engine tells its caller about the runs: each is called with a run's path when
    the run starts, is complete, failed, or (alignment and fine-tuning) did some steps."""

    started: Callable[[Path], None] = _ignore
    done: Callable[[Path], None] = _ignore
    failed: Callable[[Path], None] = _ignore
    progressed: Callable[[Path, int, int], None] = _ignore


def resolve_jobs(jobs: int | str | None = None, default: str = "1") -> int:
    """How many runs a grid computes at once: ``jobs``, else ``$XLCORE_JOBS``, else ``default``.

    ``"auto"`` is 2 on a machine without CUDA whose torch uses at least two threads, else 1: the
    small batches of the ``mini`` profile keep two threads poorly busy, and two one-thread runs
    side by side finish about 1.3× sooner than the same runs one after the other on two threads
    (``benchmarks/bench_jobs.py``). On a GPU (CUDA or Apple's MPS) one run at a time keeps the
    device busy.
    """
    value = os.environ.get("XLCORE_JOBS", default) if jobs is None else jobs
    if isinstance(value, str) and value.strip().lower() == "auto":
        return 2 if not accelerated() and torch.get_num_threads() >= 2 else 1
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, bool) or n < 1 or str(n) != str(value).strip():
        raise ConfigError(
            f"jobs must be a positive whole number or auto (--jobs, XLCORE_JOBS), got {value!r}"
        )
    return n


def resolve_scheduler(scheduler: str | None = None) -> str | None:
    """The address of a running Dask scheduler: ``scheduler``, else ``$XLCORE_SCHEDULER``."""
    value = scheduler if scheduler is not None else os.environ.get("XLCORE_SCHEDULER", "")
    return value.strip() or None


def dependencies(steps: Steps, todo: Sequence[Path]) -> dict[Path, set[Path]]:
    """For each run of ``todo``, the runs of ``todo`` it reads."""
    pending = set(todo)
    return {
        path: {Path(d) for d in steps[path][0].run.spec["deps"].values()} & pending for path in todo
    }


def execute(
    steps: Steps,
    todo: Sequence[Path],
    *,
    planner: Planner,
    jobs: int = 1,
    scheduler: str | None = None,
    listener: Listener = Listener(),  # noqa: B008 (frozen, stateless)
) -> None:
    """Compute the runs ``todo`` (in plan order, each after the runs it reads), telling
    ``listener`` what happens to each.

    ``planner`` returns ``steps`` again in a worker process (it must pickle). Failed runs are
    reported by :func:`raise_failures` once every other run has finished.
    """
    deps = dependencies(steps, todo)
    if scheduler is None and jobs == 1:
        failures = _execute_here(steps, todo, deps, listener)
    else:
        from xlcore.dask_engine import execute_on_dask

        failures = execute_on_dask(todo, deps, planner, jobs, scheduler, listener)
    raise_failures(failures, deps)


def _execute_here(steps: Steps, todo, deps, listener: Listener) -> dict[Path, BaseException]:
    failures: dict[Path, BaseException] = {}
    blocked: set[Path] = set()
    for path in todo:
        if deps[path] & (failures.keys() | blocked):
            blocked.add(path)
            continue
        step, source = steps[path]
        listener.started(path)
        try:
            runs.execute(step.run, step.fn, seed=step.seed, data_source=source)
        except RunStorageError:
            raise  # the runs directory itself: every other run would fail the same way
        except Exception as exc:
            failures[path] = exc
            listener.failed(path)
        else:
            listener.done(path)
    return failures


def raise_failures(failures: Mapping[Path, BaseException], deps: Mapping[Path, set]) -> None:
    """Report the runs that failed themselves (not those that only waited on a failed run):
    one failure is raised as itself, several as one :class:`GridRunError` naming each, in the
    order of their run directories (not the order in which parallel workers failed)."""
    own = {
        path: failures[path]
        for path in sorted(failures)
        if not _waits_on_failure(path, failures, deps)
    }
    if not own:
        return
    waiting = sum(1 for path in deps if _waits_on_failure(path, failures, deps))
    names = [f"{p.parent.name}/{p.name}" for p in own]
    print(
        f"xlcore grid: {', '.join(names)} failed"
        + (
            f"; {waiting} runs that need {'it' if len(own) == 1 else 'them'} were not started"
            if waiting
            else ""
        )
        + "; every other run finished",
        file=sys.stdout,
        flush=True,
    )
    if len(own) == 1:
        raise next(iter(own.values()))
    by_error: dict[str, list[str]] = {}  # runs that failed the same way are named together
    for name, error in zip(names, own.values(), strict=True):
        by_error.setdefault(f"{type(error).__name__}: {error}", []).append(name)
    listed = "; ".join(f"{', '.join(group)}: {error}" for error, group in by_error.items())
    error = GridRunError(
        f"{len(own)} runs failed (finished runs are kept; the next grid resumes the rest): {listed}"
    )
    raise error from next(iter(own.values()))


def _waits_on_failure(path: Path, failures, deps) -> bool:
    seen, stack = set(), list(deps.get(path, ()))
    while stack:
        dep = stack.pop()
        if dep in failures:
            return True
        if dep not in seen:
            seen.add(dep)
            stack.extend(deps.get(dep, ()))
    return False
