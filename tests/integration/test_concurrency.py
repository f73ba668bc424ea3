"""Two grid processes on one runs directory: the second stops at once and names the holder."""

import os
import subprocess
import sys
import time

from xlcore.config import make_config
from xlcore.grid import plan

LONG = make_config("smoke", {"tasks": ["pos"], "regimes": ["baseline"], "pos_max_steps": 1500})


def _grid(runs, *extra):
    cmd = [
        sys.executable,
        "-m",
        "xlcore.cli",
        "grid",
        "--profile",
        "smoke",
        "--quiet",
        "--runs",
        str(runs),
        "--set",
        "tasks=pos",
        "--set",
        "regimes=baseline",
        *extra,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_second_grid_reports_the_lock_holder(tmp_path):
    runs = tmp_path / "runs"
    first = _grid(runs, "--set", "pos_max_steps=1500")  # long enough to overlap
    lock = runs / ".grid.lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().startswith("pid")):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "first grid never took the lock"
        time.sleep(0.2)
    try:
        second = _grid(runs)
        _, err = second.communicate(timeout=120)
        assert first.poll() is None, "first grid finished before the second could collide"
        assert second.returncode == 2, err
        assert f"locked by pid {first.pid}" in err and "XLCORE_RUNS" in err
        assert "Traceback" not in err
    finally:
        first.kill()
        first.communicate()
    # The killed first grid left a partial run; the same grid started again completes it.
    assert not all(s.run.complete for s in plan(LONG, root=runs).steps)
    done = _grid(runs, "--set", "pos_max_steps=1500")
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert all(s.run.complete for s in plan(LONG, root=runs).steps)
