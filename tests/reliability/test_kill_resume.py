"""SIGKILL a running grid again and again: it resumes, recomputes nothing finished, and ends with
the metrics of an uninterrupted grid.

The kill moments are fixed by a seeded schedule of conditions on the runs directory (k more runs
finished, a fresh fine-tuning checkpoint on disk) plus seeded delays, so every execution kills at
the same points of the grid's progress.
"""

import os
import random
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from xlcore import runs
from xlcore.config import make_config
from xlcore.grid import plan

OVERRIDES = {
    "tasks": "pos",
    "regimes": "baseline,sequential",
    "pairs": "en-de",
    "tgt_langs": "de,ru",
    # A smoke fine-tuning step takes ~10 ms here: 200 steps with a checkpoint every 4 keep each
    # fine-tuning run (and its checkpoints) alive for seconds, far longer than the kill delays and
    # the poll interval, so every kill lands where the schedule says on fast and slow machines.
    "pos_max_steps": "200",
    "checkpoint_steps": "4",
    "eval_steps": "100",
}
# word pairs (2), aligned encoder, distances (4), fine-tuning (2), evaluation (2), probes (2)
STEPS = 13
SEED = 20251125
TIMEOUT = 240


@dataclass(frozen=True)
class Kill:
    """Kill once ``more`` further runs are complete, or (``checkpoint``) once a fine-tuning run
    has written a checkpoint since the attempt started; then wait ``delay`` seconds."""

    more: int = 0
    checkpoint: bool = False
    delay: float = 0.0


def schedule(seed: int) -> list[Kill]:
    rng = random.Random(seed)
    return [
        Kill(more=rng.randint(1, 2), delay=round(rng.uniform(0.0, 0.5), 2)),
        Kill(checkpoint=True),  # in the middle of the baseline's fine-tuning
        Kill(more=1, delay=round(rng.uniform(0.0, 0.5), 2)),
        Kill(checkpoint=True),  # in the middle of the sequential regime's fine-tuning
    ]


def fresh_checkpoint(root: Path, since: float) -> bool:
    for path in root.glob("finetune/*/checkpoint.pt"):
        try:
            if path.stat().st_mtime >= since and not (path.parent / "complete.json").exists():
                return True
        except FileNotFoundError:  # the run finished between glob and stat
            continue
    return False


def fingerprint(run: Path) -> tuple:
    """What a recomputation would change: the files' inodes, modification times and bytes."""
    files = [run / name for name in ("metrics.json", "provenance.json", "complete.json")]
    return tuple((f.stat().st_ino, f.stat().st_mtime_ns, f.read_bytes()) for f in files)


def kill_when(proc, root: Path, kill: Kill, complete) -> None:
    start, done_before = time.time(), len(complete(root))
    deadline = time.monotonic() + TIMEOUT
    while True:
        assert proc.poll() is None, f"grid ended before the kill {kill}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no kill condition {kill} in {TIMEOUT} s"
        if kill.checkpoint and fresh_checkpoint(root, start):
            break
        if not kill.checkpoint and len(complete(root)) >= done_before + kill.more:
            break
        time.sleep(0.02)
    time.sleep(kill.delay)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def check_only_complete_runs_read(root: Path, config, complete) -> set[str]:
    """After a kill: every marked run verifies, every other planned run reads as unfinished,
    and the results table holds exactly the marked runs. Returns the unfinished runs' names."""
    done = complete(root)
    steps = plan(config, root=root, progress=False).steps
    state = {s.run.path.relative_to(root).as_posix(): s.run.complete for s in steps}
    assert {name for name, ok in state.items() if ok} == done
    assert len(state) == STEPS and len(done) < STEPS, "the kill came after the grid's end"
    for path in runs.iter_runs(root):
        assert runs.is_complete(path) == (path.relative_to(root).as_posix() in done)
    table = runs.results_frame(root)
    assert set(table["run"]) == {Path(name).name for name in done}
    return set(state) - done


def test_sigkilled_grid_resumes_without_recomputing(tmp_path, runs_probe):
    config = make_config("smoke", OVERRIDES)
    root = tmp_path / "killed"
    frozen: dict[str, tuple] = {}
    resumed_from_checkpoint = set()
    for kill in schedule(SEED):
        kill_when(runs_probe.cli(root, OVERRIDES), root, kill, runs_probe.complete)
        unfinished = check_only_complete_runs_read(root, config, runs_probe.complete)
        resumed_from_checkpoint |= {
            name for name in unfinished if (root / name / runs.CHECKPOINT).exists()
        }
        for name in runs_probe.complete(root):
            frozen.setdefault(name, fingerprint(root / name))
    assert any(name.startswith("finetune/") for name in resumed_from_checkpoint)

    last = runs_probe.cli(root, OVERRIDES)
    out, err = last.communicate(timeout=TIMEOUT)
    assert last.returncode == 0, err
    assert re.search(rf"{STEPS} steps \({len(frozen)} already complete\)", out), out
    assert runs_probe.complete(root) == {
        s.run.path.relative_to(root).as_posix() for s in plan(config, root=root).steps
    }
    for name, print_ in frozen.items():  # finished before a kill: never written again
        assert fingerprint(root / name) == print_, f"{name} was recomputed"

    reference = tmp_path / "uninterrupted"
    once = runs_probe.cli(reference, OVERRIDES)
    _, err = once.communicate(timeout=TIMEOUT)
    assert once.returncode == 0, err
    names = runs_probe.complete(reference)
    assert names == runs_probe.complete(root) and len(names) == STEPS
    for name in sorted(names):  # bit-identical metrics, loss curves and accuracies included
        assert (root / name / "metrics.json").read_bytes() == (
            reference / name / "metrics.json"
        ).read_bytes(), name
    table, expected = (runs.results_frame(r).drop(columns="wall_time_s") for r in (root, reference))
    assert len(table) > STEPS and table.equals(expected)
