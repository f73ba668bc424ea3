"""xlcore.analysis.transfer: seed-paired differences against the baseline, with verdicts."""

import numpy as np
import pandas as pd
import pytest

from xlcore.analysis.transfer import (
    delta_intervals,
    own_language_verdict,
    seed_deltas,
    verdict_counts,
    widest_sentence,
)


def _frame(effects: dict, n=400, seeds=(1, 2, 3), words=None):
    """A sentence frame for POS on ``de``: baseline plus one run per (regime, pair) of
    ``effects`` per seed, the regime's sentences correct with probability 0.7 + effect."""
    rng = np.random.default_rng(0)
    words = np.full(n, 10) if words is None else words
    rows = []
    for regime, pair, effect in [("baseline", None, 0.0), *effects]:
        for seed in seeds:
            correct = rng.binomial(words, 0.7 + effect)
            rows.append(
                pd.DataFrame(
                    {
                        "task": "pos", "regime": regime, "pair": pair, "seed": seed,
                        "lang": "de", "sentence": range(n), "correct": correct, "total": words,
                    }
                )
            )  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def test_delta_intervals_give_verdicts_from_the_interval():
    frame = _frame([("sequential", "en-de", 0.05), ("joint", "en-de", 0.0)])
    out = delta_intervals(frame, n_boot=500).set_index("regime")
    assert out.loc["sequential", "verdict"] == "gain"
    assert out.loc["sequential", "low"] > 0
    assert out.loc["joint", "verdict"] == "no effect detectable"
    assert out.loc["joint", "low"] < 0 < out.loc["joint", "high"]
    assert (out["seeds"] == 3).all()
    seq = frame[frame["regime"] == "sequential"]["correct"].sum()
    base = frame[frame["regime"] == "baseline"]["correct"].sum()
    assert out.loc["sequential", "delta"] == pytest.approx(100 * (seq - base) / (3 * 4000))
    counts = verdict_counts(out.reset_index()).set_index("regime")
    assert counts.loc["sequential", "gain"] == 1 and counts.loc["joint", "gain"] == 0


def test_only_seeds_both_sides_have_are_paired():
    frame = _frame([("sequential", "en-de", 0.0)])
    frame = frame[~((frame["regime"] == "sequential") & (frame["seed"] == 3))]
    assert delta_intervals(frame, n_boot=100)["seeds"].tolist() == [2]


def test_other_test_sentences_are_an_error():
    frame = _frame([("sequential", "en-de", 0.0)])
    frame.loc[frame["regime"] == "sequential", "total"] = 11
    with pytest.raises(ValueError, match="other test sentences"):
        delta_intervals(frame, n_boot=100)


def test_own_language_verdict_follows_the_intervals():
    frame = _frame([("sequential", "en-de", 0.05), ("sequential", "en-ar", 0.0)])
    out = delta_intervals(frame, n_boot=500)
    verdict = own_language_verdict(out, "sequential")
    # de is en-de's own language (a gain); en-ar's own language is not in the frame
    assert (verdict["cases"], verdict["gains"], verdict["losses"]) == (1, 1, 0)
    assert "detectable gain in 1 of 1" in verdict["sentence"]
    null = own_language_verdict(delta_intervals(_frame([("joint", "en-de", 0.0)])), "joint")
    assert null["undetected"] == 1
    assert "no effect was detectable" in null["sentence"]


def test_the_widest_interval_is_explained_by_its_seeds_on_both_languages():
    # en-de's seed 2 trained worse on German and English alike (same runs); en-ar is tight
    frame = pd.concat(
        [_frame([("sequential", "en-de", 0.0)]), _frame([("sequential", "en-de", 0.0)])],
        keys=["de", "en"],
    ).reset_index(level=0, names="on")
    frame["lang"] = frame.pop("on")
    bad = (frame["regime"] == "sequential") & (frame["seed"] == 2)
    frame.loc[bad, "correct"] = (frame.loc[bad, "correct"] - 2).clip(lower=0)
    per_seed = seed_deltas(frame, "pos", "sequential", "en-de", "de")
    assert per_seed.idxmin() == 2 and per_seed[2] < -10 < per_seed[1]
    text = widest_sentence(frame, delta_intervals(frame, n_boot=200))
    assert text.startswith("The widest of these intervals, pos sequential on en-de")
    assert "(seed 2)" in text and "the same runs moved en by" in text
    assert widest_sentence(frame, delta_intervals(frame[frame["seed"] == 1], n_boot=50)) == ""
