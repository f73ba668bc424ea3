"""The grid's runs as tasks of a Dask cluster (:func:`xlcore.engine.execute` with ``jobs`` > 1
or a scheduler address).

Each worker process plans the same grids once (:class:`PlannedRuns`) and computes the runs it is
handed by path. A run is submitted once every run it reads is complete, with no inputs of its
own, so the scheduler gives it to whichever worker is free: a task handed its inputs as futures
would be placed on the worker that computed them, and wait there while the other worker idles.
A worker that dies leaves every finished run untouched; Dask hands its run to another worker,
which resumes it from its checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import dask
import torch
from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin, as_completed, get_worker

from xlcore import progress, runs
from xlcore.errors import GridWorkerError

PLUGIN = "xlcore-planned-runs"
STARTED = "xlcore-run-started"  # event topic: a worker starts computing a run
# A run whose worker dies is computed once more (resumed from its checkpoint), not again and again.
_ALLOWED_FAILURES = 1

Steps = Mapping[Path, tuple]  # as in xlcore.engine: {run path: (step, data source description)}
Planner = Callable[[], Steps]


class PlannedRuns(WorkerPlugin):
    """Dask worker plugin: the grid's steps, planned once per worker process."""

    def __init__(self, planner: Planner, threads: int | None):
        self.planner = planner
        self.threads = threads
        self._steps: Steps | None = None

    def steps(self) -> Steps:
        if self._steps is None:
            self._steps = self.planner()
        return self._steps


def _compute(path: str) -> str:
    """Dask task: compute the run at ``path`` (the runs it reads are complete)."""
    plugin = get_worker().plugins[PLUGIN]
    if plugin.threads:  # per thread: Dask runs tasks outside the worker's main thread
        torch.set_num_threads(plugin.threads)
    step, source = plugin.steps()[Path(path)]
    get_worker().log_event(STARTED, path)
    runs.execute(step.run, step.fn, seed=step.seed, data_source=source)
    return path


def worker_settings() -> dict:
    """Dask settings of xlcore's local clusters. Dask's nannies start workers with
    ``MALLOC_TRIM_THRESHOLD_=65536``, which also turns off glibc's adaptive mmap threshold: every
    large tensor is then mapped and unmapped afresh and training spends much of its time in the
    kernel (``benchmarks/bench_worker_env.py``); the workers keep glibc's default. Dask's
    statistical profiler takes the GIL every 10 ms to walk the running task's stack, which a
    training loop of many small operations pays for at every hand-over; it is off."""
    return {
        "distributed.scheduler.allowed-failures": _ALLOWED_FAILURES,
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        "distributed.worker.profile.enabled": False,
    }


@contextlib.contextmanager
def environ_kept():
    """Put this process's environment back afterwards: a Dask nanny writes its workers'
    environment (one thread for OpenMP, MKL and OpenBLAS, a fixed ``PYTHONHASHSEED``) into the
    process that starts them, where every later subprocess, such as a chapter's kernel, would
    inherit it."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _client(jobs: int, scheduler: str | None):
    """A Dask client of the cluster at ``scheduler``, or of a local one with ``jobs`` workers;
    also the torch threads each worker's runs use (None: the cluster's own setting)."""
    if scheduler is not None:
        with Client(scheduler) as client:
            yield client, None
        return
    with (
        environ_kept(),
        dask.config.set(worker_settings()),
        LocalCluster(
            n_workers=jobs,
            threads_per_worker=1,
            processes=True,
            memory_limit=0,  # runs size their own memory; the nanny's limit would kill them
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client, max(1, torch.get_num_threads() // jobs)


def execute_on_dask(todo, deps, planner, jobs, scheduler, listener) -> dict[Path, BaseException]:
    """Compute ``todo`` on a Dask cluster, telling ``listener`` (:class:`xlcore.engine.Listener`)
    what happens to each run; starts and steps arrive as the workers' events."""
    by_key = {_key(path): path for path in todo}
    with _client(jobs, scheduler) as (client, threads):
        client.register_plugin(PlannedRuns(planner, threads), name=PLUGIN)
        client.subscribe_topic(STARTED, lambda event: listener.started(Path(event[1])))

        def progressed(event) -> None:
            key, done, total = event[1]
            if key in by_key:
                listener.progressed(by_key[key], done, total)

        client.subscribe_topic(progress.TOPIC, progressed)
        return _run_when_ready(client, todo, deps, listener, jobs)


def _key(path: Path) -> str:
    """A run's Dask task key."""
    return f"{path.parent.name}/{path.name}"


def _run_when_ready(client, todo, deps, listener, jobs) -> dict[Path, BaseException]:
    """Submit each run of ``todo`` (in plan order) once the runs it reads have finished; a run
    whose input failed is never submitted (:func:`xlcore.engine.raise_failures` counts it)."""
    waiting, done, failures = list(todo), set(), {}
    running, paths = as_completed(), {}
    # Deeper runs first: an evaluation starts as soon as its model is trained, rather than after
    # every other ready fine-tuning, so weights are read and released early (peak disk).
    priority = depths(deps)

    def submit_ready() -> None:
        for path in [p for p in waiting if deps[p] <= done]:
            waiting.remove(path)
            future = client.submit(
                _compute, str(path), key=_key(path), pure=False, priority=priority[path]
            )
            paths[future.key] = path
            running.add(future)

    submit_ready()
    for future in running:
        path = paths[future.key]
        if future.status == "finished":
            done.add(path)
            listener.done(path)
            submit_ready()
        else:
            failures[path] = _worker_error(path, future.exception(), jobs)
            listener.failed(path)
    return failures


def depths(deps: Mapping[Path, set[Path]]) -> dict[Path, int]:
    """Each run's depth in the plan: 0 for a run that reads no pending run, else one more than
    the deepest run it reads."""
    out: dict[Path, int] = {}

    def depth(path: Path) -> int:
        if path not in out:
            out[path] = 1 + max((depth(d) for d in deps[path]), default=-1)
        return out[path]

    for path in deps:
        depth(path)
    return out


def _worker_error(path: Path, error: BaseException, jobs: int) -> BaseException:
    if not isinstance(error, KilledWorker):
        return error
    worker = GridWorkerError(
        f"grid workers died twice while computing {path} (killed, or out of memory?); finished "
        f"runs are kept and the next grid resumes the rest; if {jobs} runs at a time need too "
        f"much memory, use --jobs 1 (XLCORE_JOBS=1)"
    )
    worker.__cause__ = error
    return worker
