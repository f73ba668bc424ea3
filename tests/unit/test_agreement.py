"""Where a build stands on the paper's claims: each verdict follows the intervals and thresholds."""

import pandas as pd
import pytest

from xlcore.analysis import agreement as ag
from xlcore.analysis.stats import GAIN, LOSS, NULL


def _intervals(verdicts, seeds=3):
    pairs = ["en-de", "en-ru", "en-ar", "en-zh"]
    rows = []
    for pair, verdict in zip(pairs, verdicts, strict=False):
        delta = {GAIN: 2.0, LOSS: -2.0, NULL: 0.3}[verdict]
        rows.append(
            {"task": "pos", "regime": "sequential", "pair": pair, "lang": pair[3:],
             "seeds": seeds, "delta": delta, "low": delta - 1, "high": delta + 1, "mde": 1.4,
             "verdict": verdict}
        )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("verdicts", "seeds", "expected"),
    [
        ([GAIN, GAIN, GAIN, NULL], 3, ag.DISAGREES),
        ([GAIN, NULL, LOSS, NULL], 3, ag.AGREES),
        ([NULL, NULL, NULL, NULL], 1, ag.CANNOT_TELL),
    ],
)
def test_the_transfer_verdict_counts_detected_gains(verdicts, seeds, expected):
    assert ag.transfer_claim(_intervals(verdicts, seeds))["verdict"] == expected


def _primary(rhos, lows, highs, detected):
    return pd.DataFrame(
        {"task": "pos", "measure": "margin (word, last layer)", "rho": rhos, "low": lows,
         "high": highs, "detected": detected, "n": 48,
         "excluded": [max(abs(lo), abs(hi)) for lo, hi in zip(lows, highs, strict=True)]}
    )  # fmt: skip


def test_the_distance_verdict_reads_detection_and_the_excluded_bound():
    found = _primary([-0.6, 0.1], [-0.8, -0.2], [-0.3, 0.4], [True, False])
    assert ag.distance_claim(found)["verdict"] == ag.DISAGREES
    narrow = _primary([0.0, 0.1], [-0.3, -0.2], [0.3, 0.4], [False, False])
    assert ag.distance_claim(narrow)["verdict"] == ag.AGREES
    wide = _primary([0.0, 0.1], [-0.7, -0.2], [0.6, 0.4], [False, False])
    row = ag.distance_claim(wide)
    assert row["verdict"] == ag.CANNOT_TELL and "|ρ| above 0.70" in row["this build"]


def _gradients(lows, highs):
    mids = [(a + b) / 2 for a, b in zip(lows, highs, strict=True)]
    return pd.DataFrame(
        {"group": "all_but_embeddings", "regime": "baseline", "cos_low": lows,
         "cos_high": highs, "disattenuated": mids}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("lows", "highs", "expected"),
    [
        ([-0.05, 0.01], [0.08, 0.09], ag.AGREES),
        ([0.12, -0.05], [0.30, 0.05], ag.DISAGREES),
        ([-0.30, 0.01], [0.25, 0.09], ag.CANNOT_TELL),
        ([float("nan"), 0.01], [float("nan"), 0.09], ag.CANNOT_TELL),
    ],
)
def test_the_gradient_verdict_needs_every_interval_inside_the_orthogonal_band(
    lows, highs, expected
):
    assert ag.gradient_claim(_gradients(lows, highs))["verdict"] == expected


def test_the_loss_verdict_needs_a_contrast_whose_interval_excludes_zero():
    row = {"task": "pos", "pair": "en-de", "better": "l2", "worse": "infonce_weak", "seeds": 3,
           "delta": 0.8, "low": -0.4, "high": 2.0, "mde": 1.7, "verdict": NULL}  # fmt: skip
    assert ag.loss_claim(pd.DataFrame([row]))["verdict"] == ag.CANNOT_TELL
    found = {**row, "low": 0.2, "verdict": GAIN}
    assert ag.loss_claim(pd.DataFrame([found]))["verdict"] == ag.AGREES
    assert ag.loss_claim(pd.DataFrame([{**found, "seeds": 1}]))["verdict"] == ag.CANNOT_TELL


def test_the_table_has_one_row_per_claim():
    table = ag.paper_agreement(
        _intervals([NULL] * 4), _primary([0.0], [-0.3], [0.3], [False]),
        _gradients([-0.05], [0.05]), pd.DataFrame(),
    )  # fmt: skip
    assert list(table["claim"]) == ["transfer", "distances", "gradients", "loss"]
    assert list(table["verdict"]) == [ag.AGREES, ag.AGREES, ag.AGREES, ag.CANNOT_TELL]
