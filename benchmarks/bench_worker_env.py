"""Grid workers' environment: the same runs on a local Dask cluster started with Dask's default
nanny environment and with xlcore's (:func:`xlcore.dask_engine.worker_settings`), side by side
on fresh run directories.

Both clusters have ``--jobs`` one-thread workers and are handed the grid by address, so the only
difference is the workers' environment (Dask's default sets ``MALLOC_TRIM_THRESHOLD_=65536``).
The runs both sides read but that are not compared (trimmed encoder, word pairs) are computed
first, once, and copied. Workers are the benchmark's child processes: their user and system CPU
time is read from ``RUSAGE_CHILDREN`` once each cluster has closed. Prints

    worker environment speed-up: X.XXx (Dask's default A s wall, B s user, C s system; ...)

    python benchmarks/bench_worker_env.py [--profile mini] [--jobs 2] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import contextlib
import logging
import resource
import shutil
import tempfile
import time
from pathlib import Path

import dask
from distributed import LocalCluster
from gridsubset import SHARED, compute_shared, parse

from xlcore.dask_engine import environ_kept, worker_settings
from xlcore.grid import plan, run_grid

SUBSET = {
    "tasks": ["pos"],
    "regimes": ["baseline", "joint"],
    "pairs": ["en-de"],
    "tgt_langs": ["de"],
    "analyses": [],
}


def timed_grid(config, root: Path, jobs: int, settings: dict) -> tuple[float, float, float]:
    """Wall, workers' user and workers' system seconds of the grid on a fresh local cluster."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with (
        environ_kept(),  # a nanny leaves its workers' environment in this process
        dask.config.set(settings),
        LocalCluster(
            n_workers=jobs,
            threads_per_worker=1,
            memory_limit=0,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
    ):
        run_grid(config, root=root, progress=False, scheduler=cluster.scheduler_address)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def main() -> None:
    args, config = parse(__doc__.splitlines()[0], SUBSET)
    ours = worker_settings()
    with tempfile.TemporaryDirectory() as tmp:
        default, xlcore = Path(tmp) / "default", Path(tmp) / "xlcore"
        compute_shared(config, default)
        shutil.copytree(default, xlcore)
        with contextlib.redirect_stdout(None):
            t_default = timed_grid(config, default, args.jobs, {})
            t_ours = timed_grid(config, xlcore, args.jobs, ours)
        grids = [plan(config, root=r, progress=False).steps for r in (default, xlcore)]
        if not all(s.run.complete for steps in grids for s in steps):
            raise SystemExit("a grid left runs unfinished; no ratio printed")
        timed = [s for s in grids[0] if s.run.kind not in SHARED]
        same = all(
            a.run.metrics().get("best_dev_accuracy") == b.run.metrics().get("best_dev_accuracy")
            for a, b in zip(*grids, strict=True)
        )
    (wall_d, user_d, sys_d), (wall_o, user_o, sys_o) = t_default, t_ours
    print(
        f"worker environment speed-up: {wall_d / wall_o:.2f}x (Dask's default {wall_d:.1f} s "
        f"wall, {user_d:.1f} s user, {sys_d:.1f} s system; xlcore's {wall_o:.1f} s wall, "
        f"{user_o:.1f} s user, {sys_o:.1f} s system; {len(timed)} runs on {args.jobs} one-thread "
        f"workers; {args.profile} {' '.join(args.set) or 'default subset'}; best dev accuracies "
        f"{'identical' if same else 'DIFFER'})"
    )


if __name__ == "__main__":
    main()
