"""What the grid benchmarks share: a profile's subset from the command line, and the runs both
sides read but that are not compared, computed once before the timed grids."""

from __future__ import annotations

import argparse
from pathlib import Path

from xlcore import runs
from xlcore.config import Config, make_config
from xlcore.grid import plan

SHARED = ("encoder", "wordpairs")  # computed once, not timed


def parse(description: str, subset: dict) -> tuple[argparse.Namespace, Config]:
    """``--profile``, ``--jobs`` and ``--set KEY=VALUE`` overrides of ``subset``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="subset override"
    )
    args = parser.parse_args()
    if any("=" not in item for item in args.set):
        parser.error("--set takes KEY=VALUE, e.g. --set pairs=en-de")
    if args.jobs < 2:
        parser.error("--jobs must be at least 2")
    config = make_config(args.profile, {**subset, **dict(i.split("=", 1) for i in args.set)})
    return args, config


def compute_shared(config: Config, root: Path) -> None:
    """Compute the :data:`SHARED` runs of ``config``'s grid into ``root``."""
    for step in plan(config, root=root, progress=False).steps:
        if step.run.kind in SHARED and not step.run.complete:
            runs.execute(step.run, step.fn, seed=step.seed)
