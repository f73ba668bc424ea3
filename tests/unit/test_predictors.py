"""Finding 1: margins, primary correlations with cluster intervals and Holm, and the sentence."""

import numpy as np
import pandas as pd
import pytest

from xlcore.analysis.predictors import finding_sentence, primary_correlations, with_margins


def test_margin_is_pairs_minus_random_per_encoder_layer_and_level():
    base = dict(stage="base", task=None, regime=None, pair=None, seed=None, lang="de", n=10)
    rows = [
        {**base, "layer": 1, "level": "word", "metric": "cos_pairs", "value": 0.7},
        {**base, "layer": 1, "level": "word", "metric": "cos_random", "value": 0.5},
        {**base, "layer": 1, "level": "sentence", "metric": "cos", "value": 0.9},
        {**base, "layer": 1, "level": "sentence", "metric": "cos_random", "value": 0.6},
    ]
    out = with_margins(pd.DataFrame(rows))
    margin = out[out["metric"] == "margin"].set_index("level")["value"]
    assert margin["word"] == pytest.approx(0.2) and margin["sentence"] == pytest.approx(0.3)
    assert len(out) == 6


def _points(rng, slope: float, encoders=4, langs=12):
    """Δdistance and Δaccuracy of ``encoders`` × ``langs`` points; Δaccuracy follows the
    margin's change with ``slope`` (plus noise) on every primary measure."""
    rows = []
    for e in range(encoders):
        for lang in range(langs):
            d = rng.normal()
            acc = slope * d + rng.normal(scale=0.3 if slope else 1.0)
            for metric, layer in (("margin", 12), ("margin", 8), ("p1_strong_fwd", 12)):
                rows.append(
                    dict(stage="aligned", task="pos", level="word", metric=metric, layer=layer,
                         encoder=f"en-x{e}/s1", lang=f"l{lang}", delta=d, delta_accuracy=acc)
                )  # fmt: skip
    return pd.DataFrame(rows)


LAYERS = {"last": 12, "wordpair": 8}


def test_a_planted_relation_is_detected_after_holm():
    out = primary_correlations(_points(np.random.default_rng(0), 1.0), LAYERS, n_boot=1000)
    assert len(out) == 3 and out["detected"].all()
    assert (out["n"] == 48).all() and (out["encoders"] == 4).all()
    assert (out["p_holm"] >= out["p"]).all()
    text = finding_sentence(out)
    assert text.startswith("Of 3 primary correlations") and "3 are detected" in text


def test_no_relation_is_reported_as_what_the_interval_excludes():
    out = primary_correlations(_points(np.random.default_rng(1), 0.0), LAYERS, n_boot=1000)
    assert not out["detected"].any()
    text = finding_sentence(out)
    assert "0 are detected" in text
    assert f"|ρ| above {out['excluded'].max():.2f}" in text
    assert "absence of evidence" in text


def test_too_few_points_say_so():
    assert "No primary correlation" in finding_sentence(pd.DataFrame())
