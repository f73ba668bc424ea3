"""Computed guidelines: every qualifier follows from the numbers it quotes."""

import pandas as pd
import pytest

from xlcore.analysis.summary import gradient_sentences, guidelines


def _row(regime, pair, lang, delta, low, high, task="pos", seeds=3):
    verdict = "gain" if low > 0 else "loss" if high < 0 else "no effect detectable"
    return dict(task=task, regime=regime, pair=pair, lang=lang, seeds=seeds, delta=delta,
                low=low, high=high, se=(high - low) / 4, mde=0.7 * (high - low),
                verdict=verdict)  # fmt: skip


def _intervals(rows) -> pd.DataFrame:
    return pd.DataFrame([_row(*r) for r in rows])


def _gradients(lows: list[float], highs: list[float]) -> pd.DataFrame:
    """Baseline probe records at the end of fine-tuning, one pair per interval."""
    rows = []
    for i, (low, high) in enumerate(zip(lows, highs, strict=True)):
        rows.append(
            dict(task="pos", regime="baseline", pair=None, seed=1, at="end",
                 probe_pair=f"en-x{i}", group="all_but_embeddings", cos=0.05,
                 disattenuated=0.1, cos_low=low, cos_high=high, null_labels=0.01,
                 null_labels_low=-0.05, null_labels_high=0.07,
                 null_pairs=-0.01, reliability_task=0.4, reliability_align=0.5, norm_ratio=4.0,
                 weighted_ratio=0.4, alpha=0.1, update_cos=0.98, random_cos=2e-4)
        )  # fmt: skip
    return pd.DataFrame(rows)


def test_regimes_are_judged_on_the_pairs_every_regime_ran():
    """PCGrad ran on en-de and en-ar only: sequential's gains on en-ru and en-zh must not make
    it look better than PCGrad (means over different pairs)."""
    iv = _intervals(
        [
            ("sequential", "en-de", "de", 0.2, -0.5, 0.9),
            ("sequential", "en-ar", "ar", -0.1, -0.8, 0.6),
            ("sequential", "en-ru", "ru", 2.0, 1.0, 3.0),
            ("sequential", "en-zh", "zh", 2.5, 1.2, 3.8),
            ("pcgrad", "en-de", "de", 1.5, 0.4, 2.6),
            ("pcgrad", "en-ar", "ar", 0.1, -0.6, 0.8),
        ]
    )
    line = guidelines(iv)[0]
    assert "(en-ar, en-de)" in line
    assert "pcgrad on en-de (+1.5 points, +0.4 to +2.6)" in line
    assert "en-ru" not in line and "en-zh" not in line


def test_no_gain_is_claimed_without_an_interval_above_zero():
    iv = _intervals([("sequential", "en-de", "de", 1.9, -0.1, 3.9)])
    line = guidelines(iv)[0]
    assert "no regime gave a detectable gain" in line
    assert f"±{0.7 * 4.0:.1f} points" in line


def test_english_cost_is_named_only_when_detectable():
    iv = _intervals(
        [
            ("joint", "en-de", "de", 0.0, -1.0, 1.0),
            ("joint", "en-de", "en", -4.0, -5.0, -3.0),
            ("sequential", "en-de", "de", 0.0, -1.0, 1.0),
            ("sequential", "en-de", "en", -0.5, -1.5, 0.5),
        ]
    )
    lines = guidelines(iv)
    cost = next(x for x in lines if "cost English" in x)
    assert "joint on en-de (-4.0 points" in cost and "sequential" not in cost


def _contrasts(low: float, seeds: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        [dict(task="sib", pair="en-de", better="l2", worse="infonce_strong", seeds=seeds, delta=1.0,
              low=low, high=2.0, se=0.5, mde=1.4,
              verdict="gain" if low > 0 else "no effect detectable")]
    )  # fmt: skip


@pytest.mark.parametrize(("low", "prefer"), [(0.2, True), (-0.3, False)])
def test_a_loss_is_preferred_only_where_its_interval_excludes_zero(low, prefer):
    iv = _intervals([("sequential", "en-de", "de", 0.0, -1.0, 1.0)])
    line = guidelines(iv, loss_contrasts=_contrasts(low))[-1]
    assert ("prefer l2 over infonce_strong" in line) is prefer
    assert ("do not favour any" in line) is not prefer


@pytest.mark.parametrize(
    ("lows", "highs", "reading"),
    [
        ([0.05, 0.1], [0.2, 0.3], "weakly aligned for every pair"),
        ([-0.3, -0.2], [-0.05, -0.1], "weakly opposed for every pair"),
        (
            [-0.1, -0.2],
            [0.1, 0.2],
            "no alignment or opposition of the two objectives is detectable",
        ),
        ([0.05, -0.2], [0.2, 0.1], "weakly aligned for 1 of 2 pairs, undetectable for the rest"),
        ([0.05, -0.3], [0.2, -0.1], "the direction differs between pairs"),
        ([0.05, float("nan")], [0.2, float("nan")], "for 1 of 2 pairs a reliability is too close"),
    ],
)
def test_the_gradient_reading_follows_the_pairs_intervals(lows, highs, reading):
    """A direction is named only where the corrected cosine's intervals exclude zero; the
    same-loss cosine is a reliability, never a noise floor; norms are given after α."""
    iv = _intervals([("sequential", "en-de", "de", 0.0, -1.0, 1.0)])
    lines = guidelines(iv, _gradients(lows, highs))
    line = next(x for x in lines if x.startswith("POS, end of fine-tuning"))
    assert reading in line
    assert "orthogonal" not in line and "noise floor" not in line and "nan" not in line
    assert "0.4× after the weight α = 0.1" in line


@pytest.mark.parametrize("detected", [True, False])
def test_the_distance_guideline_follows_the_primary_correlations(detected):
    primary = pd.DataFrame(
        [dict(task="pos", measure="margin (word, last layer)", rho=0.6, low=0.2, high=0.8,
              excluded=0.8, detected=detected),
         dict(task="sib", measure="margin (word, last layer)", rho=0.1, low=-0.4, high=0.5,
              excluded=0.5, detected=False)]
    )  # fmt: skip
    iv = _intervals([("sequential", "en-de", "de", 0.0, -1.0, 1.0)])
    line = next(x for x in guidelines(iv, primary=primary) if x.startswith("Distances"))
    assert ("POS margin (word, last layer) (ρ = +0.60)" in line) is detected
    assert ("exclude |ρ| above 0.80" in line) is not detected


def test_no_loss_is_preferred_from_fewer_than_three_seeds():
    iv = _intervals([("sequential", "en-de", "de", 0.0, -1.0, 1.0)])
    line = guidelines(iv, loss_contrasts=_contrasts(0.2, seeds=1))[-1]
    assert "prefer l2" not in line and "no loss is preferred" in line


def test_one_seed_verdicts_say_what_their_interval_leaves_out():
    one = _intervals([("sequential", "en-de", "de", 1.5, 0.4, 2.6, "pos", 1)])
    assert "With one seed per case" in guidelines(one)[0]
    three = _intervals([("sequential", "en-de", "de", 1.5, 0.4, 2.6, "pos", 3)])
    assert "With one seed per case" not in guidelines(three)[0]


@pytest.mark.parametrize(("null_high", "separated"), [(0.07, True), (0.2, False)])
def test_the_null_reading_follows_the_null_intervals(null_high, separated):
    """ "Not separated from the null" only where every pair's estimate lies inside the
    shuffled-label null's interval."""
    gradients = _gradients([0.05, 0.05], [0.2, 0.2]).assign(null_labels_high=null_high)
    iv = _intervals([("sequential", "en-de", "de", 0.0, -1.0, 1.0)])
    line = next(x for x in guidelines(iv, gradients) if x.startswith("POS, end"))
    assert ("0 of 2 pairs' estimates lie inside" in line) == separated
    assert ("do not separate this agreement" in line) == (not separated)


def test_the_target_language_cosine_is_read_from_its_own_intervals():
    g = _gradients([0.01, 0.02], [0.2, 0.3]).assign(
        target=[0.2, -0.1], target_low=[0.05, -0.3], target_high=[0.35, 0.1]
    )
    line = next(x for x in gradient_sentences(g) if x.startswith("POS, end"))
    assert "own language" in line and "above zero for 1 and below zero for 0 of 2 pairs" in line
    assert "own language" not in next(iter(gradient_sentences(_gradients([0.1], [0.2]))))
