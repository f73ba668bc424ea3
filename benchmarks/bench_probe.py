"""Gradient-probe cost: the baseline model's probes (start and end of fine-tuning, against every
pair) next to the fine-tuning run they probe, timed side by side on the same dependencies.

The dependencies (trimmed encoder, word pairs, alignment runs) are computed first and not
timed; then the fine-tuning run and its probes are timed by wall clock and by the process's CPU
time (with ``--threads 1`` the CPU time is the work done, whatever else shares the cores).

    python benchmarks/bench_probe.py [--profile mini] [--task pos] [--threads 1]
        [--set KEY=VALUE ...]

``--set`` overrides profile keys, e.g. ``--set probe_batch_size=8`` or ``--set probe_batches=3``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from xlcore import runs
from xlcore.config import make_config
from xlcore.grid import plan


def _timed(step) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    runs.execute(step.run, step.fn, seed=step.seed)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--task", default="pos")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="profile override"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if any("=" not in item for item in args.set):
        parser.error("--set takes KEY=VALUE, e.g. --set probe_batch_size=8")
    overrides = dict(item.split("=", 1) for item in args.set)
    # one seed: the probed one (a profile probes its first seeds only), against its own run
    first = make_config(args.profile).finetune.seeds[0]
    settings = {
        "seeds": [first], **overrides, "tasks": [args.task], "regimes": ["baseline"],
        "tgt_langs": ["de"],
    }  # fmt: skip
    config = make_config(args.profile, settings)
    if not config.probed("baseline", config.finetune.seeds[0]):
        raise SystemExit("these settings probe no baseline model; nothing to time")
    timed = {"finetune": [0.0, 0.0], "probe": [0.0, 0.0]}
    with tempfile.TemporaryDirectory() as tmp:
        grid = plan(config, root=Path(tmp), progress=False)
        for step in grid.steps:
            if step.run.kind in ("evaluate", "distances"):
                continue
            wall, cpu = _timed(step)
            if step.run.kind in timed:
                timed[step.run.kind][0] += wall
                timed[step.run.kind][1] += cpu
    (ft_wall, ft_cpu), (pr_wall, pr_cpu) = timed["finetune"], timed["probe"]
    print(
        f"probe cost: {pr_wall / ft_wall:.2f}x the fine-tuning run's wall time, "
        f"{pr_cpu / ft_cpu:.2f}x its CPU time (probes {pr_wall:.1f} s wall / {pr_cpu:.1f} s CPU, "
        f"fine-tuning {ft_wall:.1f} s / {ft_cpu:.1f} s; {args.profile} {args.task} baseline, "
        f"{config.analysis.probe_batches} batches of {config.analysis.probe_batch_size} per "
        f"objective, {len(config.data.pairs)} pairs{''.join(' ' + x for x in args.set)}, "
        f"{torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main()
