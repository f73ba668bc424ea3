"""Refused grids leave the lock holder's name and the finished runs of a runs directory alone.

Extends tests/integration/test_concurrency.py (two real grids, the second names the first): here
the holder is this test process, so the refused grids can be repeated and the lock file and every
finished file compared before and after.
"""

import os
import re
import socket

import pytest

from xlcore import runs
from xlcore.errors import RunLockedError


def test_refused_grids_keep_the_holder_named_and_runs_intact(workspace, runs_probe):
    ws = workspace
    lock = ws.runs / ".grid.lock"
    holder = rf"pid {os.getpid()} on {re.escape(socket.gethostname())} since [0-9-]+ [0-9:]+"
    before = runs_probe.files(ws.runs)
    overrides = {
        "tasks": "pos",
        "regimes": "baseline",
        "pairs": "en-de",
        "tgt_langs": "de",
        "analyses": "",
        "data": str(ws.data),
    }
    with runs.grid_lock(ws.runs):
        assert re.fullmatch(holder, lock.read_text())
        other = runs_probe.cli(ws.runs, overrides)
        out, err = other.communicate(timeout=120)
        assert other.returncode == 2, err
        assert re.fullmatch(
            rf"xlcore: error: runs directory {re.escape(str(ws.runs.resolve()))} is locked by "
            rf"{holder}; wait for it to finish, or point XLCORE_RUNS at another directory\n",
            err,
        ), err
        assert out == ""
        assert re.fullmatch(holder, lock.read_text())  # the refused process left it in place
        with pytest.raises(RunLockedError, match=f"is locked by {holder};"):
            ws.grid()
        assert re.fullmatch(holder, lock.read_text())
    assert lock.read_text() == ""  # released by its holder
    assert runs_probe.files(ws.runs) == before
    grid = ws.grid()  # the next grid reuses every finished run
    assert all(s.run.complete for s in grid.steps)
    assert runs_probe.files(ws.runs) == before
