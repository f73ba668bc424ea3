"""Run directories: atomic writes, completion, resumption, corruption and locks."""

import json
import os

import pytest

from xlcore import runs
from xlcore.errors import RunLockedError


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    runs.atomic_write_json(target, {"a": 1})

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        runs.atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temp left


def test_execute_once_then_skip(tmp_path):
    calls = []

    def fn(run):
        calls.append(1)
        (run.path / "artifact.txt").write_text("x")
        return {"records": [{"value": 3}]}

    run = runs.prepare("demo", "first", {"x": 1}, version=1, root=tmp_path)
    assert not run.complete
    runs.execute(run, fn, seed=1, data_source="test")
    runs.execute(runs.prepare("demo", "first", {"x": 1}, version=1, root=tmp_path), fn)
    assert len(calls) == 1
    assert run.complete and run.metrics()["records"] == [{"value": 3}]
    prov = run.provenance()
    assert prov["seed"] == 1 and prov["data_source"] == "test"
    assert prov["versions"]["torch"] and prov["wall_time_s"] >= 0
    frame = runs.results_frame(tmp_path)
    assert list(frame["value"]) == [3] and list(frame["kind"]) == ["demo"]


def test_interrupted_run_is_not_complete_and_reruns(tmp_path):
    run = runs.prepare("demo", "crash", {"x": 2}, version=1, root=tmp_path)

    def crash(run):
        (run.path / "partial.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runs.execute(run, crash)
    assert run.path.exists() and not run.complete
    assert runs.results_frame(tmp_path).empty
    runs.execute(run, lambda r: {"records": [{"ok": True}]})
    assert run.complete


def test_tampered_metrics_are_reported(tmp_path):
    run = runs.prepare("demo", "t", {"x": 3}, version=1, root=tmp_path)
    runs.execute(run, lambda r: {"records": [{"v": 1}]})
    (run.path / "metrics.json").write_text('{"records": [{"v": 2}]}')
    with pytest.raises(runs.RunCorruptedError, match="remove that directory"):
        _ = run.complete


def test_grid_lock_is_exclusive(tmp_path):
    with runs.grid_lock(tmp_path):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            with runs.grid_lock(tmp_path):
                pass
    with runs.grid_lock(tmp_path):  # released
        pass


def test_runs_table_shows_the_precision_each_key_records(tmp_path):
    from types import SimpleNamespace

    from xlcore.report import runs_table

    steps = [
        SimpleNamespace(run=runs.prepare(kind, name, spec, version=1, root=tmp_path))
        for kind, name, spec in [
            ("finetune", "bf16-run", {"bf16": True, "seed": 1}),
            ("finetune", "fp32-run", {"bf16": False, "seed": 1}),
            ("wordpairs", "pairs", {"layer": 8}),
        ]
    ]
    table = runs_table(SimpleNamespace(steps=steps))
    assert table["precision"].tolist()[:2] == ["bf16-autocast", "fp32"]
    assert table["precision"].isna().tolist() == [False, False, True]
    assert not table["complete"].any()
