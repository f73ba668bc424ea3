"""Gradient-probing overhead: one fine-tuning run with the profile's probing schedule vs the same
run with probing off, side by side (same data, steps, seed; fresh run directories).

The dependencies (trimmed encoder, held-out word pairs) are computed first and not timed; then
the two fine-tuning runs are timed, by wall clock and by the process's CPU time (with
``--threads 1`` the CPU time is the work done, whatever else shares the cores). Their training
logs are asserted identical, since a probe must not change the course of training.

    python benchmarks/bench_probe.py [--profile mini] [--task pos] [--regime baseline] [--threads 1]
        [--set KEY=VALUE ...]

``--set`` overrides profile keys for both runs, e.g. ``--set pos_max_steps=400 --set
probe_every=none`` for a longer run with the library's default schedule (a probe every quarter
of the run: five probes).
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


def finetune_seconds(config, root: Path) -> tuple[float, float, dict]:
    grid = plan(config, root=root, progress=False)
    steps = [s for s in grid.steps if s.run.kind != "evaluate" and s.run.kind != "distances"]
    target = next(s for s in steps if s.run.kind == "finetune")
    for step in steps:
        if step is target:
            break
        if not step.run.complete:
            runs.execute(step.run, step.fn, seed=step.seed)
    start, cpu = time.perf_counter(), time.process_time()
    runs.execute(target.run, target.fn, seed=target.seed)
    return time.perf_counter() - start, time.process_time() - cpu, target.run.metrics()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--task", default="pos")
    parser.add_argument("--regime", default="baseline")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="profile override"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if any("=" not in item for item in args.set):
        parser.error("--set takes KEY=VALUE, e.g. --set pos_max_steps=400")
    overrides = dict(item.split("=", 1) for item in args.set)
    common = {**overrides, "tasks": [args.task], "regimes": [args.regime], "tgt_langs": ["de"]}
    if args.regime != "baseline":
        common["regimes"] = (
            ["baseline", args.regime] if args.regime == "sequential" else [args.regime]
        )
    with tempfile.TemporaryDirectory() as tmp:
        probed_cfg = make_config(args.profile, common)
        if probed_cfg.probe_interval(args.task) == 0:
            raise SystemExit("these settings turn probing off in both runs; nothing to compare")
        plain_cfg = make_config(args.profile, {**common, "probe_every": 0})
        # the same dependencies for both: compute them once in a shared root
        t_plain, c_plain, m_plain = finetune_seconds(plain_cfg, Path(tmp))
        t_probed, c_probed, m_probed = finetune_seconds(probed_cfg, Path(tmp))
    if m_plain["log"] != m_probed["log"]:
        raise SystemExit("probing changed the training log; no ratio printed")
    probes = sorted({r["step"] for r in m_probed["gradients"]})
    pairs = sorted({r["probe_pair"] for r in m_probed["gradients"]})
    print(
        f"probe overhead: {100 * (t_probed / t_plain - 1):+.1f}% wall time, "
        f"{100 * (c_probed / c_plain - 1):+.1f}% CPU time (probed {t_probed:.1f} s wall / "
        f"{c_probed:.1f} s CPU, plain {t_plain:.1f} s / {c_plain:.1f} s; {args.profile} "
        f"{args.task} {args.regime}{''.join(' ' + x for x in args.set)}, "
        f"{torch.get_num_threads()} threads, probes at steps "
        f"{probes} against {', '.join(pairs)})"
    )


if __name__ == "__main__":
    main()
