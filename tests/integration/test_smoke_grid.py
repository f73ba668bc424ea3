"""The smoke grid end to end: all steps run, results complete, reruns reuse, resume is exact."""

import pytest

import xlcore.checkpoint
from xlcore import encoders, runs
from xlcore.config import REGIMES, STRATEGY_REGIMES, make_config
from xlcore.errors import GridRunError
from xlcore.frames import sentence_frame
from xlcore.grid import distance_frame, evaluation_frame, gradient_frame, plan, run_grid
from xlcore.samples import distance_sentences
from xlcore.sources import data_source

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def smoke_grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cfg = make_config("smoke")
    grid = run_grid(cfg, root=root, progress=False)
    return cfg, root, grid


def test_every_step_completes_with_results(smoke_grid):
    cfg, root, grid = smoke_grid
    assert all(step.run.complete for step in grid.steps)
    frame = evaluation_frame(grid)
    # 2 tasks × (baseline + 2 pairs × 5 aligned regimes) models, each on en + 4 targets.
    assert len(frame) == 2 * 11 * 5
    assert set(frame["lang"]) == {"en", "de", "ru", "ar", "zh"}
    assert set(frame["regime"]) == set(REGIMES)
    assert frame["accuracy"].between(0, 1).all()
    table = runs.results_frame(root)
    assert {"encoder", "wordpairs", "align", "finetune", "evaluate", "distances", "probe"} >= set(
        table["kind"]
    )
    assert {"wordpairs", "align", "finetune", "evaluate", "probe"} <= set(table["kind"])


def test_alignment_reduces_its_loss(smoke_grid):
    _, root, _ = smoke_grid
    aligns = runs.results_frame(root, kinds=("align",))
    assert len(aligns) == 2
    assert (aligns["align_loss_last"] < aligns["align_loss_first"]).all()


def test_rerun_recomputes_nothing(smoke_grid):
    cfg, root, grid = smoke_grid
    again = plan(cfg, root=root)
    assert [s.run.path for s in again.steps] == [s.run.path for s in grid.steps]
    assert all(s.run.complete for s in again.steps)


def test_interrupted_grid_resumes_to_identical_results(smoke_grid, tmp_path, monkeypatch):
    cfg, _, reference = smoke_grid
    cfg = make_config(
        "smoke", {"tasks": ["pos"], "regimes": ["baseline", "joint"], "pairs": ["en-de"]}
    )
    root = tmp_path / "runs"
    real_save = xlcore.checkpoint.atomic_torch_save
    state = {"interrupted": 0}

    def save_then_die(obj, path):
        real_save(obj, path)
        if path.name == runs.CHECKPOINT and state["interrupted"] < 2:
            state["interrupted"] += 1
            raise Interrupt(f"killed after writing {path}")

    monkeypatch.setattr(xlcore.checkpoint, "atomic_torch_save", save_then_die)
    # Both fine-tuning runs die after their first checkpoint; the grid reports them together.
    with pytest.raises(GridRunError, match="2 runs failed"):
        run_grid(cfg, root=root, progress=False)
    monkeypatch.setattr(xlcore.checkpoint, "atomic_torch_save", real_save)
    resumed = run_grid(cfg, root=root, progress=False)
    assert state["interrupted"] == 2

    uninterrupted = run_grid(cfg, root=tmp_path / "fresh", progress=False)
    a = evaluation_frame(resumed).sort_values(["regime", "lang"]).reset_index(drop=True)
    b = evaluation_frame(uninterrupted).sort_values(["regime", "lang"]).reset_index(drop=True)
    assert len(a) == 2 * 5
    assert a[["regime", "lang", "accuracy"]].equals(b[["regime", "lang", "accuracy"]])
    logs = [s.run.metrics()["log"] for s in resumed.steps if s.run.kind == "finetune"]
    fresh = [s.run.metrics()["log"] for s in uninterrupted.steps if s.run.kind == "finetune"]
    assert logs == fresh  # identical per-step losses


def test_joint_regime_trains_both_objectives(smoke_grid):
    _, _, grid = smoke_grid
    for step in grid.steps:
        if step.run.kind != "finetune":
            continue
        log = step.run.metrics()["log"]
        regime = step.run.spec["spec"]["regime"]
        has_align = ["align_loss" in entry for entry in log]
        assert all(has_align) if regime in STRATEGY_REGIMES else not any(has_align)
        surgery = ["grad_cos" in entry for entry in log]
        assert all(surgery) if regime in ("pcgrad", "gradvac") else not any(surgery)
        if regime == "sequential":  # starts from the aligned encoder, not the base one
            source = (step.run.path / "encoder_source.json").read_text()
            assert "/align/" in source


def test_analyses_cover_every_model(smoke_grid):
    cfg, _, grid = smoke_grid
    dist = distance_frame(grid)
    # the base encoder, both aligned encoders and all 22 fine-tuned models, on both pair languages
    models = dist.groupby(["stage", "task", "regime", "pair"], dropna=False).ngroups
    assert models == 1 + 2 + 22
    assert set(dist["lang"]) == {"de", "ru"}
    assert set(dist["layer"]) == {0, 1, 2}  # embeddings + 2 layers of tiny-xlmr
    assert dist["value"].notna().all()
    grads = gradient_frame(grid)
    # the baseline model is probed at the start and end of fine-tuning, against both pairs
    assert set(grads["regime"]) == {"baseline"} and set(grads["at"]) == {"start", "end"}
    assert set(grads["probe_pair"]) == {"en-de", "en-ru"}
    assert {"embeddings", "layer.0", "layer.1", "all", "all_but_embeddings"} == set(grads["group"])
    for raw in ("cos", "null_labels_raw", "null_pairs_raw"):
        assert grads[raw].between(-1, 1).all()
    assert (grads["norm_task"] > 0).all() and (grads["norm_align"] > 0).all()
    # SIB-200 has dev sentences in the pair languages; UD's POS reads test sentences that
    # evaluation leaves out (probe_test_rows)
    assert grads["target_raw"].notna().all() and (grads["norm_target"] > 0).all()
    held = {s.run.spec["spec"]["task"]: [tuple(x) for x in s.run.spec["spec"]["probe_held"]]
            for s in grid.steps if s.run.kind == "evaluate"}  # fmt: skip
    assert held == {"pos": [("de", 3), ("ru", 3)], "sib": []}
    sentences = sentence_frame(grid)
    assert sentences.groupby(["task", "lang"])["sentence"].nunique()[("pos", "de")] == 3


def test_trimmed_vocabulary_segments_the_distance_sentences_as_the_full_one(tmp_path):
    """Trimming keeps every piece of the sentences the distance analysis reads (Tatoeba, the
    SIB-200 sample): with a piece trimmed away, a sentence would be split differently from
    the full tokenizer's segmentation and its distances measured on other inputs."""
    cfg = make_config("smoke", {"trim_vocab": True})
    step = next(
        s for s in plan(cfg, root=tmp_path, progress=False).steps if s.run.kind == "encoder"
    )
    trimmed_run = runs.execute(step.run, step.fn)
    _, trimmed = encoders.load(str(trimmed_run.path / "encoder"))
    _, full = encoders.load(cfg.model.model_name_or_path)
    spec = trimmed_run.spec["spec"]
    assert spec["distance_langs"]
    source = data_source(cfg)
    for sentences in distance_sentences(
        source, cfg.data.src_lang, spec["distance_langs"], spec["distance_limit"]
    ):
        assert sentences
        texts = [t for english, other in sentences.values() for t in (*english, *other)]
        assert [trimmed.tokenize(t) for t in texts] == [full.tokenize(t) for t in texts]
