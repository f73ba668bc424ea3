"""The gradient probe: statistics read from stream Gram matrices recover planted cosines, the
empirical nulls shuffle what they claim to, and the alignment objective probed is the trained
one (the pair's alignment run's projector, the original encoder as the L2 reference)."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from xlcore import encoders, runs
from xlcore.analysis.probes import group_record
from xlcore.losses import build_alignment_loss
from xlcore.steps import probe
from xlcore.taskmodel import TaskModel

K = 8


def _streams(rng, mu_task, mu_align, noise, k=K, dim=20_000):
    """K noisy batch gradients of two objectives with true gradients mu_task and mu_align."""
    task = [mu_task + noise * rng.standard_normal(dim) for _ in range(k)]
    align = [mu_align + noise * rng.standard_normal(dim) for _ in range(k)]
    return task, align


def _planted(rng, cos, dim=20_000):
    a = rng.standard_normal(dim)
    b = rng.standard_normal(dim)
    b -= a * (a @ b) / (a @ a)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    return a, cos * a + np.sqrt(1 - cos**2) * b


def _record(vectors, streams, alpha=0.1):
    m = np.stack(vectors)
    return group_record(m @ m.T, streams, K, alpha=alpha, size=m.shape[1])


def test_the_corrected_cosine_recovers_a_planted_cosine_that_the_raw_one_understates():
    rng = np.random.default_rng(0)
    covered, raw = 0, []
    for _ in range(40):
        mu_t, mu_a = _planted(rng, 0.3)
        task, align = _streams(rng, mu_t, mu_a, noise=0.009)  # reliability about 0.4
        r = _record(task + align, ["task", "align"])
        covered += r["cos_low"] <= 0.3 <= r["cos_high"]
        raw.append(r["cos"])
    assert covered >= 34  # of 40 jackknife intervals
    assert np.mean(raw) < 0.2  # attenuated by both reliabilities
    assert 0.25 < r["reliability_task"] < 0.6


def test_unrelated_objectives_give_an_interval_around_zero_and_norms_after_alpha():
    rng = np.random.default_rng(1)
    mu_t, mu_a = _planted(rng, 0.0)
    task, align = _streams(rng, mu_t, 3 * mu_a, noise=0.009)
    r = _record(task + align, ["task", "align"], alpha=0.5)
    assert r["cos_low"] < 0 < r["cos_high"]
    assert r["weighted_ratio"] == pytest.approx(0.5 * r["norm_ratio"])
    norms = [np.linalg.norm(np.stack(x), axis=1).mean() for x in (align, task)]
    assert r["norm_ratio"] == pytest.approx(norms[0] / norms[1])
    # cos(g_t + α g_a, g_t) by hand for the first batch pair, averaged over batches
    t, a = np.stack(task), np.stack(align)
    hand = np.mean(
        [
            ((x + 0.5 * y) @ x) / (np.linalg.norm(x + 0.5 * y) * np.linalg.norm(x))
            for x, y in zip(t, a, strict=False)
        ]
    )
    assert r["update_cos"] == pytest.approx(hand)
    assert np.isnan(r["reliability_target"]) and "target" not in r


def test_shuffled_labels_permute_the_labelled_positions_only():
    labels = torch.tensor([[-100, 1, 2, 3, -100], [-100, 4, 5, -100, -100]])
    batch = {"input_ids": torch.zeros_like(labels), "labels": labels}
    out = probe.shuffled_labels(batch, seed=3)["labels"]
    assert torch.equal(out == -100, labels == -100)
    assert sorted(out[out != -100].tolist()) == [1, 2, 3, 4, 5]
    assert not torch.equal(out, labels)
    assert torch.equal(batch["labels"], labels)  # the batch itself is untouched


def test_shuffled_links_keep_sources_and_stay_in_the_sentence():
    tgt = [["a", "b", "c", "d"], ["e", "f", "g"]]
    links = [[(0, 0), (1, 1), (2, 3)], [(0, 2), (1, 0)]]
    out = probe.shuffled_links(links, tgt, seed=0)
    assert [[i for i, _ in s] for s in out] == [[0, 1, 2], [0, 1]]
    assert all(0 <= j < len(w) for s, w in zip(out, tgt, strict=False) for _, j in s)
    assert out != links


def _spec(loss: str) -> probe.Spec:
    return probe.Spec(
        model_name_or_path="tiny-xlmr", task="pos", regime="sequential", pair="en-de", seed=1,
        at="end", src_lang="en", probe_pairs=("en-de",), target_langs=(), held_langs=(),
        held=0, test_limit=None, batches=3,
        batch_size=1, max_seq_length=32, dev_limit=None, pooling="mean", align_loss=loss,
        align_layer=-1, align_alpha=0.1,
    )  # fmt: skip


def test_the_probed_alignment_loss_is_the_trained_one(tmp_path):
    """A fresh projector would probe an objective no run ever trained (issue bug 8)."""
    encoder, _ = encoders.load("tiny-xlmr")
    torch.manual_seed(7)
    trained = build_alignment_loss("infonce_strong", encoder.config.hidden_size)
    run = runs.prepare("align", "en-de", {"x": 1}, version=1, root=tmp_path)
    run.path.mkdir(parents=True)
    runs.atomic_torch_save(trained.state_dict(), run.path / "alignment_loss.pt")
    inputs = probe.Inputs(None, None, aligned={"en-de": run})
    loss = probe._alignment_loss(
        _spec("infonce_strong"), inputs, "en-de", TaskModel(encoder, "pos")
    )
    assert not loss.needs_reference
    for name, value in trained.state_dict().items():
        assert torch.equal(loss.state_dict()[name], value)
    with pytest.raises(Exception, match="alignment run"):
        probe._alignment_loss(_spec("infonce_strong"), probe.Inputs(None, None), "en-de",
                              TaskModel(encoder, "pos"))  # fmt: skip


def test_the_l2_reference_is_the_original_encoder_not_the_aligned_one():
    original, _ = encoders.load("tiny-xlmr")
    aligned = copy.deepcopy(original)
    with torch.no_grad():
        for p in aligned.parameters():
            p.add_(1.0)
    loss = probe._alignment_loss(
        _spec("l2"), probe.Inputs(None, None), "en-de", SimpleNamespace(encoder=aligned)
    )
    assert loss.needs_reference
    reference = probe._reference(_spec("l2"), probe.Inputs(None, None))
    for (name, p), q in zip(reference.named_parameters(), original.parameters(), strict=False):
        assert torch.equal(p, q), name
        assert not p.requires_grad


def test_the_probes_test_rows_are_a_seeded_sample_kept_out_of_evaluation():
    from xlcore.errors import ConfigError
    from xlcore.samples import probe_split

    rows = list(range(40))
    evaluated, probed = probe_split(rows, 12)
    assert len(probed) == 12 and sorted(evaluated + probed) == rows
    assert probed != rows[:12] and probe_split(rows, 12) == (evaluated, probed)
    assert probe_split(rows, 0) == (rows, [])
    with pytest.raises(ConfigError, match="lower probe_test_rows"):
        probe_split(rows, 21)
