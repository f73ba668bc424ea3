"""Correlations with bootstrap intervals, and the deltas they are computed on."""

import numpy as np
import pandas as pd
import pytest

from xlcore.analysis.relations import (
    cell,
    correlate,
    correlation,
    distance_deltas,
    finetuning_shift,
    regime_changes,
    transfer_deltas,
)
from xlcore.analysis.summary import distance_correlations_at


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


def test_regime_changes_count_and_average_the_changes_in_points():
    evals = pd.concat([_evals(), _evals().assign(seed=2)], ignore_index=True)
    evals.loc[(evals["seed"] == 2) & (evals["regime"] == "sequential"), "accuracy"] = 0.7
    numbers, table = regime_changes(transfer_deltas(evals))
    # de, the own language: +5 points (seed 1) and -10 (seed 2); en: -2 and -20
    assert numbers["n_own"] == 2 and numbers["n_own_gain"] == 1
    assert numbers["own_mean"] == pytest.approx(-2.5)
    assert numbers["en_mean"] == pytest.approx((-2 - 20) / 2)
    assert np.isnan(numbers["others_mean"])  # no other target language here
    assert table.loc[("pos", "en-de"), "de"] == pytest.approx(-2.5)


def _distances():
    common = {"lang": "de", "layer": 1, "level": "word", "metric": "cos_pairs", "seed": 1}
    return pd.DataFrame(
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


def test_distance_deltas_against_base_and_finetuned_baseline():
    d = distance_deltas(_distances()).set_index("stage")["delta"]
    assert d["aligned"] == pytest.approx(0.4)
    assert d["finetuned"] == pytest.approx(0.3)


def test_finetuning_shift_is_the_baselines_fine_tuned_minus_the_base_encoder():
    assert finetuning_shift(_distances(), "cos_pairs", 1) == pytest.approx(0.2 - 0.3)
    assert np.isnan(finetuning_shift(_distances(), "cos_pairs", 2))  # no such layer


def _correlations() -> pd.DataFrame:
    rows = [
        {"task": "pos", "stage": "aligned", "level": "word", "metric": "cos", "layer": layer,
         "method": method, "r": r, "lo": r - 0.2, "hi": r + 0.2, "n": 12}
        for layer, r in ((1, 0.1), (2, 0.5))
        for method in ("spearman", "pearson")
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_one_cell_of_the_correlations_and_its_points():
    corr = _correlations()
    points = pd.DataFrame({"task": "pos", "stage": "aligned", "metric": "cos", "layer": [1, 2, 2]})
    shown, row = cell(points, corr, task="pos", stage="aligned", metric="cos", layer=2)
    assert len(shown) == 2 and row["r"] == 0.5 and row["method"] == "spearman"
    with pytest.raises(ValueError, match="no spearman correlation"):
        cell(points, corr, task="sib", stage="aligned", metric="cos", layer=2)


def test_the_correlation_verdict_follows_the_intervals():
    verdict, table = distance_correlations_at(_correlations(), layer=2)
    assert verdict.startswith("Of 2 (task, measure, layer) combinations, 1 have a Spearman")
    assert "median |ρ| is 0.30" in verdict
    assert table.loc[("word", "cos"), "pos"] == 0.5
    empty = _correlations().assign(lo=np.nan, n=2)
    verdict, table = distance_correlations_at(empty, layer=2)
    assert verdict.startswith("**No correlation can be computed") and "at most 2" in verdict
    assert table.empty


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
