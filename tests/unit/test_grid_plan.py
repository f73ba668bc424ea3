"""Grid planning: run keys change exactly when something that determines a result changes."""

from pathlib import Path

import pytest

from xlcore.config import make_config
from xlcore.grid import plan


def _paths(grid, kind):
    return {s.run.path for s in grid.steps if s.run.kind == kind}


def test_evaluation_settings_reuse_trained_models(tmp_path):
    a = plan(make_config("smoke"), root=tmp_path)
    b = plan(make_config("smoke", {"test_limit": 3}), root=tmp_path)
    assert _paths(a, "finetune") == _paths(b, "finetune")
    assert _paths(a, "align") == _paths(b, "align")
    assert _paths(a, "evaluate").isdisjoint(_paths(b, "evaluate"))


def test_training_settings_change_training_keys_only_downstream(tmp_path):
    a = plan(make_config("smoke"), root=tmp_path)
    c = plan(make_config("smoke", {"learning_rate": 5e-4}), root=tmp_path)
    assert _paths(a, "wordpairs") == _paths(c, "wordpairs")
    assert _paths(a, "finetune").isdisjoint(_paths(c, "finetune"))


@pytest.mark.parametrize("native", [True, False])
def test_keys_record_the_precision_used(tmp_path, monkeypatch, native):
    """bf16 changes the keys where it runs natively; elsewhere it runs in fp32, as bf16=false."""
    monkeypatch.setattr("xlcore.device.bf16_supported", lambda device: native)
    fp32 = plan(make_config("smoke", {"bf16": False}), root=tmp_path)
    asked = plan(make_config("smoke", {"bf16": True}), root=tmp_path)
    assert _paths(fp32, "wordpairs") == _paths(asked, "wordpairs")
    for kind in ("align", "finetune", "evaluate", "distances"):
        assert _paths(asked, kind), kind
        if native:
            assert _paths(fp32, kind).isdisjoint(_paths(asked, kind)), kind
        else:
            assert _paths(fp32, kind) == _paths(asked, kind), kind


def test_grid_shape(tmp_path):
    grid = plan(make_config("smoke", {"seeds": [1, 2]}), root=tmp_path)
    kinds = [s.run.kind for s in grid.steps]
    # 2 pairs × (training + held-out) word pairs; 2 pairs × 2 seeds aligned encoders (both tasks
    # share the step count); 2 tasks × 2 seeds × (baseline + 2 pairs × 5 aligned regimes) models,
    # each evaluated once; distances for the base encoder, each aligned and each fine-tuned one.
    assert kinds.count("wordpairs") == 4
    assert kinds.count("align") == 4
    assert kinds.count("finetune") == kinds.count("evaluate") == 2 * 2 * 11
    assert kinds.count("distances") == 1 + 4 + 2 * 2 * 11
    # dependencies come first
    order = {s.run.path: i for i, s in enumerate(grid.steps)}
    for step in grid.steps:
        for dep in step.run.spec["deps"].values():
            assert order[Path(dep)] < order[step.run.path]


def test_strategy_pairs_and_analyses_shape_the_grid(tmp_path):
    grid = plan(
        make_config(
            "smoke",
            {"strategy_pairs": "en-de", "analyses": "gradients", "distance_regimes": "baseline"},
        ),
        root=tmp_path,
    )
    names = [s.run.path.name for s in grid.steps if s.run.kind == "finetune"]
    for regime in ("alternating", "pcgrad", "gradvac"):
        assert any(f"-{regime}-en-de-" in n for n in names)
        assert not any(f"-{regime}-en-ru-" in n for n in names)
    assert any("-joint-en-ru-" in n for n in names)
    assert not [s for s in grid.steps if s.run.kind == "distances"]


def test_probe_settings_change_finetune_keys(tmp_path):
    a = plan(make_config("smoke"), root=tmp_path)
    b = plan(make_config("smoke", {"probe_every": 0}), root=tmp_path)
    assert _paths(a, "finetune").isdisjoint(_paths(b, "finetune"))
    assert _paths(a, "align") == _paths(b, "align")


def test_fused_optimizer_is_recorded_only_when_on(tmp_path):
    """Fused AdamW (the default) marks the alignment and fine-tuning runs it trains; switched
    off, the keys are those of runs made before it, so those runs are found and reused."""
    on = plan(make_config("smoke"), root=tmp_path)
    off = plan(make_config("smoke", {"fused_optimizer": False}), root=tmp_path)
    for kind in ("align", "finetune", "evaluate"):
        assert _paths(on, kind).isdisjoint(_paths(off, kind)), kind
    assert _paths(on, "wordpairs") == _paths(off, "wordpairs")
    trained = [s for s in on.steps if s.run.kind in ("align", "finetune")]
    assert trained and all(s.run.spec["spec"]["fused_optimizer"] for s in trained)
    assert not any("fused_optimizer" in s.run.spec["spec"] for s in off.steps)


def test_eval_split_by_length_is_recorded_only_when_on(tmp_path):
    """Test evaluation in length pieces (the default) marks the evaluation runs only; switched
    off, their keys are those of runs made before it."""
    on = plan(make_config("smoke"), root=tmp_path)
    off = plan(make_config("smoke", {"eval_split_by_length": False}), root=tmp_path)
    assert _paths(on, "evaluate").isdisjoint(_paths(off, "evaluate"))
    for kind in ("align", "finetune", "distances", "wordpairs"):
        assert _paths(on, kind) == _paths(off, kind), kind
    evaluations = [s for s in on.steps if s.run.kind == "evaluate"]
    assert evaluations and all(s.run.spec["spec"]["eval_split_by_length"] for s in evaluations)
    assert not any("eval_split_by_length" in s.run.spec["spec"] for s in off.steps)


def test_split_by_length_changes_finetune_keys_only_when_on(tmp_path):
    a = plan(make_config("smoke"), root=tmp_path)
    off = plan(make_config("smoke", {"split_by_length": False}), root=tmp_path)
    on = plan(make_config("smoke", {"split_by_length": True}), root=tmp_path)
    assert _paths(a, "finetune") == _paths(off, "finetune")
    assert _paths(a, "finetune").isdisjoint(_paths(on, "finetune"))
    assert _paths(a, "align") == _paths(on, "align")
    assert all(s.run.spec["spec"]["split_by_length"] for s in on.steps if s.run.kind == "finetune")
