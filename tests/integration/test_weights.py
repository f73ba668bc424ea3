"""Released weights: gone once every planned reader is complete, recomputed (and checked
against the released tensors) when a later plan adds a reader, kept with ``keep_weights``."""

import json

import pytest

from xlcore import runs
from xlcore.config import make_config
from xlcore.grid import evaluation_frame, plan, run_grid
from xlcore.weights import RELEASED, WeightsChangedError

SMALL = {
    "tasks": ["pos"],
    "regimes": ["baseline", "sequential"],
    "pairs": ["en-de"],
    "tgt_langs": ["de"],
    "analyses": [],
}
WEIGHT_FILES = ("model.pt", "model.safetensors")


def _weights(root):
    return sorted(p.relative_to(root).as_posix() for n in WEIGHT_FILES for p in root.rglob(n))


def _metrics(root):
    return {
        p.relative_to(root).as_posix(): json.loads((p / "metrics.json").read_text())
        for p in runs.iter_runs(root)
        if runs.is_complete(p)
    }


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    root = tmp_path_factory.mktemp("kept")
    run_grid(make_config("smoke", SMALL), root=root, progress=False)
    return root


def test_weights_are_released_once_their_readers_are_complete(tmp_path, kept):
    root = tmp_path / "runs"
    grid = run_grid(
        make_config("smoke", {**SMALL, "keep_weights": False}), root=root, progress=False
    )
    assert _weights(kept) and not _weights(root)
    assert all(step.run.complete for step in grid.steps)
    assert _metrics(root) == _metrics(kept)  # same runs, same results
    released = sorted(p.parent.parent.name for p in root.rglob(RELEASED))
    assert released == ["align", "finetune", "finetune"]


def test_weights_are_released_while_the_grid_runs(tmp_path, monkeypatch):
    """The runs directory's peak stays near the weights still to be read: a model goes as soon
    as its last reader finishes, before the grid's end (where nothing is left to release)."""
    from xlcore import weights

    at_end = []
    settle = weights.settle
    monkeypatch.setattr(
        weights, "settle", lambda steps, keep: at_end.append(settle(steps, keep)) or at_end[-1]
    )
    root = tmp_path / "runs"
    run_grid(make_config("smoke", {**SMALL, "keep_weights": False}), root=root, progress=False)
    assert at_end == [0] and not _weights(root)


def test_a_new_reader_recomputes_released_weights_identical_to_the_released_ones(tmp_path, kept):
    root = tmp_path / "runs"
    run_grid(make_config("smoke", {**SMALL, "keep_weights": False}), root=root, progress=False)
    wider = {**SMALL, "tgt_langs": ["de", "ru"]}
    grid = run_grid(
        make_config("smoke", {**wider, "keep_weights": False}), root=root, progress=False
    )
    reference = run_grid(make_config("smoke", wider), root=kept, progress=False)
    assert evaluation_frame(grid).equals(evaluation_frame(reference))
    assert not _weights(root)  # released again once the new readers finished


def test_recomputed_weights_that_differ_are_one_clear_error_and_results_survive(tmp_path):
    root = tmp_path / "runs"
    config = make_config("smoke", {**SMALL, "keep_weights": False})
    run_grid(config, root=root, progress=False)
    base = next(s.run for s in plan(config, root=root).steps if "baseline" in s.run.path.name)
    record = base.path / RELEASED
    record.write_text(json.dumps({"model.pt": "0" * 64}))  # as if made elsewhere
    before = _metrics(root)
    wider = {**SMALL, "tgt_langs": ["de", "ru"], "keep_weights": False}
    with pytest.raises(WeightsChangedError, match=r"evaluate/pos-baseline-s1-\w+") as info:
        run_grid(make_config("smoke", wider), root=root, progress=False)
    assert "Remove them to recompute" in str(info.value) and "\n" not in str(info.value)
    after = _metrics(root)
    assert {k: after.get(k) for k in before} == before  # nothing finished was lost or changed
