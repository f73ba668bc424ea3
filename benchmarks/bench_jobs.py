"""Parallel grid: the same runs computed one at a time on all of torch's threads (``jobs=1``) and
by ``--jobs`` worker processes sharing those threads, side by side on fresh run directories.

The runs both sides depend on but that are not part of the comparison (trimmed encoder, word
pairs) are computed first, once, and copied; then both grids are timed by wall clock. Both must
finish the same runs. Their numbers are not bit-identical: a run's floating-point sums depend on
its thread count, as they do on the machine (each run's provenance records its threads).

    python benchmarks/bench_jobs.py [--profile mini] [--jobs 2] [--set KEY=VALUE ...]

The default subset: POS, baseline + sequential + joint on en-de and en-ar, evaluated on de and
ar (two alignments, five fine-tuning runs with probes, five evaluations). Prints

    jobs speed-up: X.XXx (jobs=1 A s, jobs=N B s, R runs; ...)
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import torch
from gridsubset import SHARED, compute_shared, parse

from xlcore.grid import run_grid

SUBSET = {
    "tasks": ["pos"],
    "regimes": ["baseline", "sequential", "joint"],
    "pairs": ["en-de", "en-ar"],
    "tgt_langs": ["de", "ar"],
    "analyses": ["gradients"],
}


def timed_grid(config, root: Path, jobs: int) -> tuple[float, list]:
    start = time.perf_counter()
    grid = run_grid(config, root=root, progress=False, jobs=jobs)
    return time.perf_counter() - start, grid.steps


def main() -> None:
    args, config = parse(__doc__.splitlines()[0], SUBSET)  # the baseline is jobs=1
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Path(tmp) / "one", Path(tmp) / "many"
        compute_shared(config, one)
        shutil.copytree(one, many)
        t_one, steps_one = timed_grid(config, one, 1)
        t_many, steps_many = timed_grid(config, many, args.jobs)
        timed = [s for s in steps_one if s.run.kind not in SHARED]
        if not all(s.run.complete for s in steps_one + steps_many):
            raise SystemExit("a grid left runs unfinished; no ratio printed")
        if [s.run.path.name for s in steps_one] != [s.run.path.name for s in steps_many]:
            raise SystemExit("the two grids planned different runs; no ratio printed")
        dev = {
            name: [s.run.metrics()["best_dev_accuracy"] for s in steps if s.run.kind == "finetune"]
            for name, steps in (("one", steps_one), ("many", steps_many))
        }
    gap = max(abs(a - b) for a, b in zip(dev["one"], dev["many"], strict=True))
    print(
        f"jobs speed-up: {t_one / t_many:.2f}x (jobs=1 {t_one:.1f} s on "
        f"{torch.get_num_threads()} threads, jobs={args.jobs} {t_many:.1f} s, {len(timed)} runs; "
        f"{args.profile} {' '.join(args.set) or 'default subset'}; largest difference in best "
        f"dev accuracy between the two {100 * gap:.2f} points)"
    )


if __name__ == "__main__":
    main()
