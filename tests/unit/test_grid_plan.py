"""Grid planning: run keys change exactly when something that determines a result changes."""

from pathlib import Path

import pytest

import xlcore.steps.align
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
    for regime in ("joint", "alternating", "pcgrad", "gradvac"):
        assert any(f"-{regime}-en-de-" in n for n in names)
        assert not any(f"-{regime}-en-ru-" in n for n in names)
    assert any("-sequential-en-ru-" in n for n in names)
    assert not [s for s in grid.steps if s.run.kind == "distances"]


@pytest.mark.shared_data
def test_the_mini_design_seeds_the_core_regimes_and_measures_every_target(tmp_path, data_root):
    """mini (issue "Evidence"): baseline and sequential with 3 seeds on 4 pairs x 2 tasks, joint
    on 2 pairs, full test sets for English and the pair languages and 500 sentences elsewhere,
    the first seed probed, and 4 aligned encoders measured on all 12 targets (48 points)."""
    grid = plan(make_config("mini", {"data": str(data_root)}), root=tmp_path, progress=False)
    ft = [s.run.spec["spec"] for s in grid.steps if s.run.kind == "finetune"]
    for task in ("pos", "sib"):
        cells = [(f["regime"], f["pair"], f["seed"]) for f in ft if f["task"] == task]
        assert {s for r, _, s in cells if r == "baseline"} == {1, 2, 3}
        assert len([1 for r, _, _ in cells if r == "sequential"]) == 4 * 3
        assert {p for r, p, _ in cells if r == "joint"} == {"en-de", "en-ar"}
        assert len([1 for r, _, _ in cells if r == "joint"]) == 2 * 3
    ev = [s.run.spec["spec"] for s in grid.steps if s.run.kind == "evaluate"]
    limits = dict(zip(ev[0]["langs"], ev[0]["test_limits"], strict=True))
    assert {lg for lg, n in limits.items() if n is None} == {"en", "de", "ru", "ar", "zh"}
    assert {n for n in limits.values() if n is not None} == {500}
    held = {(e["task"], tuple(map(tuple, e["probe_held"]))) for e in ev}
    assert held == {("pos", tuple((lg, 96) for lg in ("de", "ru", "ar", "zh"))), ("sib", ())}
    probes = [s.run.spec["spec"] for s in grid.steps if s.run.kind == "probe"]
    assert probes and {p["seed"] for p in probes} == {1}
    for p in probes:  # the target-language stream: SIB-200's dev sets, UD's held-out tests
        langs = p["held_langs"] if p["task"] == "pos" else p["target_langs"]
        assert list(langs) == ["de", "ru", "ar", "zh"]
    dist = [s.run.spec["spec"] for s in grid.steps if s.run.kind == "distances"]
    aligned = [d for d in dist if d["stage"] == "aligned"]
    assert len(aligned) == 4 and {d["seed"] for d in aligned} == {1}
    assert all(len(d["langs"]) == 12 for d in dist)
    assert {(d["stage"], d["regime"]) for d in dist} == {
        ("base", None),
        ("aligned", None),
        ("finetuned", "baseline"),
    }


def test_other_targets_read_fewer_test_sentences_than_the_pair_languages():
    c = make_config("smoke", {"test_limit": 9, "other_test_limit": 4})
    assert [c.data.test_limit_of(lg) for lg in ("en", "de", "ru", "ar")] == [9, 9, 9, 4]
    assert make_config("smoke", {"test_limit": 9}).data.test_limit_of("ar") == 9


def test_extended_adds_the_strategies_and_every_seeds_distances():
    mini, extended = make_config("mini"), make_config("extended")
    assert set(extended.finetune.regimes) - set(mini.finetune.regimes) == {
        "alternating",
        "pcgrad",
        "gradvac",
    }
    assert extended.analysis.distance_seeds is None
    assert extended.finetune.seeds == mini.finetune.seeds


def test_probe_settings_move_the_probes_only(tmp_path):
    """Probes are their own step: changing them never retrains a model."""
    a = plan(make_config("smoke"), root=tmp_path)
    b = plan(make_config("smoke", {"probe_batch_size": 2, "probe_regimes": "baseline,joint"}),
             root=tmp_path)  # fmt: skip
    assert _paths(a, "probe").isdisjoint(_paths(b, "probe"))
    assert len(_paths(b, "probe")) == len(_paths(a, "probe")) + 4  # joint, 2 tasks x 2 pairs
    for kind in ("finetune", "align", "evaluate"):
        assert _paths(a, kind) == _paths(b, kind)


def _keys(grid, kind=None):
    return {s.label: s.run.key for s in grid.steps if kind is None or s.run.kind == kind}


def test_a_step_version_moves_its_runs_and_the_runs_that_read_them(tmp_path, monkeypatch):
    """Bumping ``xlcore.steps.align.VERSION`` renews the aligned encoders, the sequential runs
    fine-tuned from them, their evaluations and distances, and the probes (which read the
    trained alignment loss); nothing else."""
    before = _keys(plan(make_config("smoke"), root=tmp_path))
    monkeypatch.setattr("xlcore.steps.align.VERSION", xlcore.steps.align.VERSION + 1)
    after = _keys(plan(make_config("smoke"), root=tmp_path))
    assert before.keys() == after.keys()
    moved = {label for label in before if before[label] != after[label]}
    assert moved and {label.split()[0] for label in moved} == {
        "align",
        "finetune",
        "evaluate",
        "distances",
        "probe",
    }
    for label in moved - {lb for lb in moved if lb.startswith(("align ", "probe "))}:
        assert "sequential" in label or label.startswith("distances aligned-"), label


def test_keys_do_not_hash_the_package_version(tmp_path, monkeypatch):
    """A release that bumps no step's ``VERSION`` keeps every run (and its results) in place."""
    before = _keys(plan(make_config("smoke"), root=tmp_path))
    monkeypatch.setattr("xlcore.runs.__version__", "999.0")
    monkeypatch.setattr("xlcore.__version__", "999.0")
    assert _keys(plan(make_config("smoke"), root=tmp_path)) == before


@pytest.mark.parametrize(
    ("setting", "value", "moved"),
    [
        ("distance_limit", 3, {"distances"}),
        ("per_device_eval_batch_size", 7, {"finetune", "evaluate", "distances", "probe"}),
        (
            "wordpair_method",
            "argmax",
            {"wordpairs", "align", "finetune", "evaluate", "distances", "probe"},
        ),
        ("checkpoint_steps", 2, set()),
    ],
)
def test_a_setting_moves_exactly_the_steps_that_read_it(tmp_path, setting, value, moved):
    before = _keys(plan(make_config("smoke"), root=tmp_path))
    after = _keys(plan(make_config("smoke", {setting: value}), root=tmp_path))
    kinds = {label.split()[0] for label in before if before[label] != after[label]}
    assert kinds == moved


def test_a_setting_of_one_task_leaves_the_other_tasks_runs(tmp_path):
    before = plan(make_config("smoke"), root=tmp_path)
    after = plan(make_config("smoke", {"sib_max_steps": 5}), root=tmp_path)
    a, b = _keys(before), _keys(after)
    assert {lb for lb in a if " pos-" in lb and a[lb] != b.get(lb)} == set()
    assert any(" sib-" in lb and a[lb] != b.get(lb) for lb in a)


def test_derived_grids_share_the_trimmed_encoder_and_the_runs_they_repeat(tmp_path):
    from xlcore.comparison import loss_comparison_configs
    from xlcore.lengths import length_config

    config = make_config("smoke", {"trim_vocab": True})
    main = plan(config, root=tmp_path)
    strong, l2 = loss_comparison_configs(config, ["infonce_strong", "l2"], task="pos")
    for derived in (strong, l2, length_config(config, 30, "pos")):
        assert _paths(plan(derived, root=tmp_path), "encoder") == _paths(main, "encoder")
    same_loss = plan(strong, root=tmp_path)
    assert _paths(same_loss, "finetune") < _paths(main, "finetune")  # baseline and sequential
    assert _paths(same_loss, "align") < _paths(main, "align")
    assert _paths(plan(l2, root=tmp_path), "align").isdisjoint(_paths(main, "align"))


def test_an_archive_tells_a_derived_grid_by_the_grid_it_derives_from():
    from xlcore.archive import config_digest

    one, other = make_config("smoke"), make_config("smoke", {"tgt_langs": "de"})
    derived = one.derived(tgt_langs=("de",))
    assert derived.flat() == other.flat()
    assert config_digest(derived) != config_digest(other)
    assert config_digest(one.derived(tgt_langs=("de",))) == config_digest(derived)


def test_a_probe_does_not_hold_the_aligned_encoders_whose_trained_loss_it_reads(tmp_path):
    from xlcore import weights
    from xlcore.grid import _steps_by_path

    steps = _steps_by_path(
        [plan(make_config("smoke", {"regimes": "baseline,sequential"}), root=tmp_path)]
    )
    by_reader = weights.readers(steps)
    kind = {path: step.run.kind for path, (step, _) in steps.items()}
    aligned = [p for p in steps if kind[p] == "align"]
    probes = [p for p in steps if kind[p] == "probe"]
    assert aligned and probes
    for path in aligned:
        assert {kind[r] for r in by_reader[path]} == {"finetune", "distances"}
        assert any(path in map(Path, steps[p][0].run.spec["deps"].values()) for p in probes)
    # a released aligned encoder is not recomputed for a probe that reads its loss only
    (aligned[0] / weights.RELEASED).parent.mkdir(parents=True)
    (aligned[0] / weights.RELEASED).write_text("{}")
    assert weights.reclaim(steps, probes) == []
