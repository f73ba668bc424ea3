"""Correlations with bootstrap intervals, and the deltas they are computed on."""

import numpy as np
import pandas as pd
import pytest

from xlcore.analysis.relations import correlate, correlation, distance_deltas, transfer_deltas


def test_bootstrap_interval_contains_the_estimate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = 0.5 * x + rng.normal(size=40)
    for method in ("spearman", "pearson"):
        c = correlation(x, y, method, n_resamples=500)
        assert c["lo"] <= c["r"] <= c["hi"]
        assert 0 < c["r"] < 1 and c["n"] == 40


def test_perfect_and_degenerate_relations():
    x = np.arange(10.0)
    assert correlation(x, x**3, "spearman", n_resamples=200)["r"] == pytest.approx(1.0)
    assert np.isnan(correlation(x, np.ones(10))["r"])  # constant: undefined, not 0
    assert np.isnan(correlation([1, 2], [2, 1])["r"])  # too few points
    frame = pd.DataFrame({"g": ["a"] * 5 + ["b"] * 5, "x": list(range(10)), "y": list(range(10))})
    out = correlate(frame, "x", "y", by=["g"], n_resamples=100)
    assert len(out) == 4 and set(out["method"]) == {"spearman", "pearson"}


def _evals():
    rows = []
    for lang, base, seq in [("en", 0.9, 0.88), ("de", 0.8, 0.85)]:
        rows.append(
            {
                "task": "pos",
                "regime": "baseline",
                "pair": None,
                "seed": 1,
                "lang": lang,
                "accuracy": base,
            }
        )
        rows.append(
            {
                "task": "pos",
                "regime": "sequential",
                "pair": "en-de",
                "seed": 1,
                "lang": lang,
                "accuracy": seq,
            }
        )
    return pd.DataFrame(rows)


def test_transfer_deltas():
    d = transfer_deltas(_evals())
    de = d[d["lang"] == "de"].iloc[0]
    assert de["delta"] == pytest.approx(0.05) and bool(de["own_pair"])
    assert not bool(d[d["lang"] == "en"].iloc[0]["own_pair"])


def test_distance_deltas_against_base_and_finetuned_baseline():
    common = {"lang": "de", "layer": 1, "level": "word", "metric": "cos_pairs", "seed": 1}
    frame = pd.DataFrame(
        [
            {**common, "stage": "base", "task": None, "regime": None, "pair": None, "value": 0.3},
            {
                **common,
                "stage": "aligned",
                "task": None,
                "regime": None,
                "pair": "en-de",
                "value": 0.7,
            },
            {
                **common,
                "stage": "finetuned",
                "task": "pos",
                "regime": "baseline",
                "pair": None,
                "value": 0.2,
            },
            {
                **common,
                "stage": "finetuned",
                "task": "pos",
                "regime": "sequential",
                "pair": "en-de",
                "value": 0.5,
            },
        ]
    )
    d = distance_deltas(frame).set_index("stage")["delta"]
    assert d["aligned"] == pytest.approx(0.4)
    assert d["finetuned"] == pytest.approx(0.3)


def test_point_estimates_equal_scipy():
    from scipy import stats

    rng = np.random.default_rng(3)
    x = rng.normal(size=25)
    y = np.round(x + rng.normal(size=25), 1)  # ties, for the average-rank path
    assert correlation(x, y, "spearman", n_resamples=100)["r"] == pytest.approx(
        stats.spearmanr(x, y).statistic
    )
    assert correlation(x, y, "pearson", n_resamples=100)["r"] == pytest.approx(
        stats.pearsonr(x, y).statistic
    )
