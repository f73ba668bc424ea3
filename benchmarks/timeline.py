"""How busy a finished grid kept its workers: each run's interval from its provenance (finished
at, wall time), then the seconds during which 0, 1, 2, … runs were at work and the runs' own
time by step.

    python benchmarks/timeline.py RUNS_DIR [--jobs 2]

Prints, for example,

    104 runs in 1,620 s (first start to last finish); runs' own time 3,100 s = 1.91 runs at work
    on average of 2; seconds with 0/1/2 runs at work: 5 / 130 / 1,485
    by step: finetune 2,127 s, evaluate 363 s, ...
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

import numpy as np


def intervals(root: Path) -> list[tuple[str, float, float]]:
    """(step, start, end) in seconds since the epoch for every complete run under ``root``."""
    out = []
    for prov in sorted(root.glob("*/*/provenance.json")):
        info = json.loads(prov.read_text())
        end = datetime.fromisoformat(info["finished_at"]).timestamp()
        out.append((prov.parent.parent.name, end - info["wall_time_s"], end))
    return out


def busy_seconds(spans: list[tuple[str, float, float]], jobs: int) -> np.ndarray:
    """Seconds (at one-second resolution) during which 0, 1, …, ``jobs`` or more runs ran."""
    first = min(s for _, s, _ in spans)
    last = max(e for _, _, e in spans)
    active = np.zeros(int(np.ceil(last - first)) + 1)
    for _, start, end in spans:
        active[int(start - first) : int(end - first)] += 1
    return np.bincount(np.minimum(active, jobs).astype(int), minlength=jobs + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    spans = intervals(args.runs)
    span = max(e for _, _, e in spans) - min(s for _, s, _ in spans)
    own = sum(e - s for _, s, e in spans)
    counts = busy_seconds(spans, args.jobs)
    print(
        f"{len(spans)} runs in {span:,.0f} s (first start to last finish); runs' own time "
        f"{own:,.0f} s = {own / span:.2f} runs at work on average of {args.jobs}; seconds with "
        f"{'/'.join(map(str, range(args.jobs + 1)))} runs at work: "
        + " / ".join(f"{c:,}" for c in counts)
    )
    steps: dict[str, float] = {}
    for step, start, end in spans:
        steps[step] = steps.get(step, 0.0) + end - start
    print("by step: " + ", ".join(f"{k} {v:,.0f} s" for k, v in sorted(steps.items())))


if __name__ == "__main__":
    main()
