"""How a grid orders its runs and reports those that failed: once each, in a fixed order."""

from pathlib import Path

import pytest

from xlcore.engine import raise_failures
from xlcore.errors import DataError, GridRunError


def test_failures_are_named_in_run_order_whatever_order_workers_failed_in(capsys):
    late, early, waiting = Path("r/evaluate/pos-b"), Path("r/evaluate/pos-a"), Path("r/x/y")
    failures = {late: DataError("bad tag"), early: DataError("bad tag"), waiting: DataError("w")}
    with pytest.raises(GridRunError) as info:
        raise_failures(failures, {waiting: {early}})  # waiting only waited on a failed run
    assert str(info.value).endswith("evaluate/pos-a, evaluate/pos-b: DataError: bad tag")
    assert str(info.value).startswith("2 runs failed")
    assert "evaluate/pos-a, evaluate/pos-b failed; 1 runs that need them" in capsys.readouterr().out


def test_run_depths_order_submissions_on_a_cluster():
    from xlcore.dask_engine import depths

    align, finetune, evaluate, other = (Path(f"r/{k}/x") for k in ("a", "f", "e", "o"))
    deps = {align: set(), finetune: {align}, evaluate: {finetune}, other: set()}
    assert depths(deps) == {align: 0, finetune: 1, evaluate: 2, other: 0}
