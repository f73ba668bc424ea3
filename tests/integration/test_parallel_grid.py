"""A grid run by several worker processes (``jobs``): the same runs and the same numbers as one
run at a time, errors raised as themselves with finished runs kept, no worker outliving a killed
grid."""

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xlcore import dask_engine, runs
from xlcore.config import make_config
from xlcore.errors import ConfigError, DataError, GridRunError
from xlcore.grid import plan, resolve_jobs, run_grid, run_grids
from xlcore.paths import SAMPLE_ROOT

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SMALL = {
    "tasks": ["pos"],
    "regimes": ["baseline", "sequential"],
    "pairs": ["en-de"],
    "tgt_langs": ["de", "ru"],
}


def _results(root: Path) -> dict[str, dict]:
    """Every complete run's metrics (no wall times: those live in provenance.json)."""
    return {
        path.relative_to(root).as_posix(): json.loads((path / "metrics.json").read_text())
        for path in runs.iter_runs(root)
        if runs.is_complete(path)
    }


@pytest.fixture
def threads():
    """Restore torch's thread count after a test that sets it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_two_workers_compute_what_one_process_computes(tmp_path, threads, capsys):
    config = make_config("smoke", SMALL)
    # Each of two workers gets half of the parent's threads: one, as the sequential reference.
    torch.set_num_threads(1)
    run_grid(config, root=tmp_path / "one", progress=True, jobs=1)
    torch.set_num_threads(2)
    here = capsys.readouterr().err
    grid = run_grid(config, root=tmp_path / "two", progress=True, jobs=2)
    on_dask = capsys.readouterr().err
    # The progress line names the runs at work (on Dask from the workers' start events, which
    # may arrive after a run of a second has already finished).
    assert "now: finetune pos-baseline-s1" in here and "now: evaluate" in here
    assert re.search(r"now: .*finetune pos-(baseline|sequential)", on_dask)
    assert re.search(r"now: .*finetune pos-\w+-s1 \d+/12", on_dask)  # the worker's steps
    assert all(step.run.complete for step in grid.steps)
    one, two = _results(tmp_path / "one"), _results(tmp_path / "two")
    assert len(one) == len(grid.steps) == 13
    assert one == two
    provenance = [json.loads(p.read_text()) for p in (tmp_path / "two").glob("*/*/provenance.json")]
    assert {p["device"]["torch_threads"] for p in provenance} == {1}


def test_grids_run_together_share_their_common_runs(tmp_path):
    losses = ["infonce_strong", "l2"]
    # as compare_losses plans them: no analyses, so the baseline does not depend on the loss
    configs = [
        make_config("smoke", {**SMALL, "align_loss": loss, "analyses": []}) for loss in losses
    ]
    grids = run_grids(configs, root=tmp_path, progress=False, jobs=2)
    paths = [{s.run.path for s in g.steps} for g in grids]
    assert all(s.run.complete for g in grids for s in g.steps)
    shared = paths[0] & paths[1]  # encoder, word pairs, baseline fine-tuning and its evaluation
    assert {p.parent.name for p in shared} >= {"finetune", "evaluate", "wordpairs"}
    assert len(list(runs.iter_runs(tmp_path))) == len(paths[0] | paths[1])


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failing_step_is_reported_once_and_the_other_runs_finish(tmp_path, jobs, capsys):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_ROOT, data)
    test_file = data / "ud" / "de" / "test.conllu"
    lines = test_file.read_text(encoding="utf-8").splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if line[:1].isdigit())
    cols = lines[number - 1].split("\t")
    cols[3] = "VERBB"
    lines[number - 1] = "\t".join(cols)
    test_file.write_text("".join(lines), encoding="utf-8")
    # no test sentences held out for the probes: only the evaluations read the damaged file
    config = make_config("smoke", {**SMALL, "data": str(data), "probe_test_rows": 0})
    root = tmp_path / "runs"
    with pytest.raises(GridRunError) as info:
        run_grid(config, root=root, progress=False, jobs=jobs)
    message = str(info.value)
    assert message.startswith("2 runs failed (finished runs are kept; the next grid resumes")
    assert re.search(
        r"evaluate/pos-baseline-s1-\w+, evaluate/pos-sequential-en-de-s1-\w+: ", message
    )
    assert message.count(f"ud/de/test.conllu:{number}: UPOS 'VERBB'") == 1
    assert isinstance(info.value.__cause__, DataError)
    done = {s.run.kind: s.run.complete for s in plan(config, root=root).steps}
    assert [s.run.kind for s in plan(config, root=root).steps if not s.run.complete] == [
        "evaluate",
        "evaluate",
    ]
    assert {"wordpairs", "align", "finetune", "distances"} <= done.keys()
    out = capsys.readouterr().out
    assert re.search(r"evaluate/pos-baseline-s1-\w+, evaluate/pos-sequential.* failed; ", out)


def test_a_failed_run_stops_only_the_runs_that_read_it(tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE_ROOT, data)
    train = data / "ud" / "en" / "train.conllu"  # read by both fine-tuning runs only
    train.write_text(train.read_text(encoding="utf-8").replace("\tNOUN\t", "\tNOUNN\t", 1))
    config = make_config("smoke", {**SMALL, "data": str(data)})
    root = tmp_path / "runs"
    with pytest.raises(GridRunError, match=r"2 runs failed .*UPOS 'NOUNN'"):
        run_grid(config, root=root, progress=False, jobs=1)
    left = [s.run.kind for s in plan(config, root=root).steps if not s.run.complete]
    # the fine-tuning runs, and the evaluation, distance and end-of-training probe runs of their
    # models (the start probe reads no fine-tuned model)
    assert sorted(left) == ["distances"] * 2 + ["evaluate"] * 2 + ["finetune"] * 2 + ["probe"]
    assert "; 5 runs that need them were not started; " in capsys.readouterr().out


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its entry waits to be reaped


def _children(pid: int) -> list[int]:
    """Every process started by ``pid`` that is still running (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_exit_when_the_grid_is_killed(tmp_path):
    root = tmp_path / "runs"
    overrides = {**SMALL, "regimes": ["baseline"], "pos_max_steps": 3000, "eval_steps": 3000}
    cmd = [sys.executable, "-m", "xlcore.cli", "grid", "--profile", "smoke", "--quiet"]
    cmd += ["--runs", str(root), "--jobs", "2"]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={','.join(value) if isinstance(value, list) else value}"]
    # Output to a file, not a pipe: a worker outliving the grid would hold a pipe open.
    log = (tmp_path / "grid.log").open("w")
    grid = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 180
    holder, workers = None, []
    try:
        while holder is None:  # a worker holds the fine-tuning run's lock
            assert grid.poll() is None, (tmp_path / "grid.log").read_text()
            assert time.monotonic() < deadline, "no worker started the fine-tuning run"
            for lock in root.glob("finetune/*/.lock"):
                text = lock.read_text()
                if text.startswith("pid "):
                    holder = int(text.split()[1])
            time.sleep(0.2)
        assert holder != grid.pid
        workers = _children(grid.pid)  # the two workers (and multiprocessing's helpers)
        assert holder in workers
        os.kill(grid.pid, signal.SIGKILL)
        grid.wait()
        deadline = time.monotonic() + 15
        while alive := [pid for pid in workers if _pid_alive(pid)]:
            assert time.monotonic() < deadline, f"workers {alive} outlived the killed grid"
            time.sleep(0.1)
    finally:
        if grid.poll() is None:
            grid.kill()
            grid.wait()
        for pid in workers:
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
    for lock in [root / ".grid.lock", *root.glob("*/*/.lock")]:  # none is left held
        with lock.open() as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _worker_environ() -> dict:
    return {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}


def test_local_workers_keep_glibcs_malloc_and_leave_this_environment_alone():
    """Dask's default worker environment (``MALLOC_TRIM_THRESHOLD_=65536``) makes training spend
    much of its time in the kernel; and a nanny writes its workers' environment into the process
    that starts them, where a chapter's kernel started later would inherit it."""
    before = dict(os.environ)
    with dask_engine._client(2, None) as (client, threads):
        seen = client.run(_worker_environ)
    assert len(seen) == 2 and threads == max(1, torch.get_num_threads() // 2)
    assert all(env["MALLOC_TRIM_THRESHOLD_"] is None for env in seen.values()), seen
    assert all(env["OMP_NUM_THREADS"] == "1" for env in seen.values()), seen  # Dask's, kept
    assert dict(os.environ) == before


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", ""])
def test_bad_jobs_value_names_the_fix(value, monkeypatch):
    monkeypatch.setenv("XLCORE_JOBS", value)
    with pytest.raises(ConfigError, match="positive whole number or auto"):
        resolve_jobs()


def test_jobs_come_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.setenv("XLCORE_JOBS", "3")
    assert resolve_jobs() == 3
    assert resolve_jobs(2) == 2
    monkeypatch.delenv("XLCORE_JOBS")
    assert resolve_jobs() == 1
    auto = resolve_jobs("auto")
    expected = 2 if not torch.cuda.is_available() and torch.get_num_threads() >= 2 else 1
    assert auto == expected


def _cli_grid(root: Path, overrides: dict, log, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "xlcore.cli", "grid", "--profile", "smoke", "--quiet"]
    cmd += ["--runs", str(root), *extra]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={','.join(value) if isinstance(value, list) else value}"]
    # Output to a file, not a pipe: a worker outliving the grid would hold a pipe open.
    return subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)


def _finished_files(root: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(root)): f.read_bytes()
        for path in runs.iter_runs(root)
        if runs.is_complete(path)
        for f in path.rglob("*")
        if f.is_file() and not f.name.startswith(".")
    }


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_killed_worker_leaves_finished_runs_alone_and_its_run_is_recomputed(tmp_path, threads):
    root = tmp_path / "runs"
    overrides = {**SMALL, "regimes": ["baseline"], "pos_max_steps": 300, "eval_steps": 300}
    with (tmp_path / "grid.log").open("w") as log:
        grid = _cli_grid(root, overrides, log, "--jobs", "2")
        try:
            holder, deadline = None, time.monotonic() + 180
            while holder is None:  # a worker is fine-tuning, past its first checkpoint
                assert grid.poll() is None, (tmp_path / "grid.log").read_text()
                assert time.monotonic() < deadline, "no worker started the fine-tuning run"
                for run in root.glob("finetune/*"):
                    text = (run / ".lock").read_text() if (run / ".lock").exists() else ""
                    if text.startswith("pid ") and (run / runs.CHECKPOINT).exists():
                        holder = int(text.split()[1])
                time.sleep(0.1)
            before = _finished_files(root)
            assert holder in _children(grid.pid)
            os.kill(holder, signal.SIGKILL)
            assert grid.wait(timeout=300) == 0, (tmp_path / "grid.log").read_text()
        finally:
            if grid.poll() is None:
                grid.kill()
                grid.wait()
    after = _finished_files(root)
    assert before and {k: after.get(k) for k in before} == before
    config = make_config("smoke", overrides)
    assert all(step.run.complete for step in plan(config, root=root).steps)
    torch.set_num_threads(1)  # each of the two workers ran on one thread
    run_grid(config, root=tmp_path / "reference", progress=False, jobs=1)
    assert _results(root) == _results(tmp_path / "reference")


def test_a_running_dask_cluster_computes_the_same_runs(tmp_path, monkeypatch, threads):
    from distributed import LocalCluster

    config = make_config("smoke", {**SMALL, "regimes": ["baseline"], "analyses": []})
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the cluster's worker: one thread, as below
    torch.set_num_threads(1)
    run_grid(config, root=tmp_path / "here", progress=False, jobs=1)
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        monkeypatch.setenv("XLCORE_SCHEDULER", cluster.scheduler_address)
        grid = run_grid(config, root=tmp_path / "cluster", progress=False)
    assert all(step.run.complete for step in grid.steps) and len(grid.steps) == 2
    assert _results(tmp_path / "here") == _results(tmp_path / "cluster")
