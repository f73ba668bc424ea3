"""Alignment's effect on distances, with intervals over seeds and items (clustered by
sentence)."""

import numpy as np
import pandas as pd
import pytest

from xlcore.analysis.alignment import (
    alignment_effect,
    change_interval,
    closer_sentence,
    effect_table,
    moved_sentence,
)
from xlcore.analysis.stats import GAIN, LOSS, NULL


def _record(stage, pair, seed, values, clusters, lang="de", metric="cos_pairs", items=None):
    items = list(range(len(values))) if items is None else items
    return {
        "stage": stage,
        "pair": pair,
        "seed": seed,
        "lang": lang,
        "metric": metric,
        "item": items,
        "cluster": list(clusters),
        "value": list(values),
    }


def _items(shift, *, seeds=3, sentences=60, words=5, sentence_sd=0.0, pair="en-de", seed=0):
    rng = np.random.default_rng(seed)
    clusters = np.repeat(np.arange(sentences), words)
    base = rng.normal(0.5, 0.1, len(clusters))
    lang = pair.split("-")[1]
    rows = [_record("base", None, None, base, clusters, lang)]
    for s in range(1, seeds + 1):
        # a shared move per sentence (context) and per word
        per_sentence = rng.normal(0, sentence_sd, sentences)[clusters]
        aligned = base + shift + per_sentence + rng.normal(0, 0.02, len(clusters))
        rows.append(_record("aligned", pair, s, aligned, clusters, lang))
    return pd.DataFrame(rows)


def test_a_planted_shift_is_a_gain_and_its_interval_covers_it():
    effect = alignment_effect(_items(0.05))
    (row,) = effect.itertuples()
    assert row.verdict == GAIN and row.low < 0.05 < row.high
    assert row.seeds == 3 and row.items == 300 and row.lang == "de"
    assert row.aligned - row.base == pytest.approx(row.change)


def test_no_shift_is_no_effect_detectable_and_a_negative_one_a_loss():
    assert alignment_effect(_items(0.0))["verdict"].item() == NULL
    assert alignment_effect(_items(-0.05))["verdict"].item() == LOSS


def test_words_of_one_sentence_are_resampled_together():
    # the same moves, once as 60 sentences of 5 words and once as 300 one-word sentences
    clustered = _items(0.0, sentence_sd=0.05)
    loose = clustered.copy()
    loose["cluster"] = [list(range(len(v))) for v in loose["value"]]
    width = {
        name: (lambda r: r.high - r.low)(alignment_effect(frame).iloc[0])
        for name, frame in (("clustered", clustered), ("loose", loose))
    }
    assert width["clustered"] > 1.5 * width["loose"]


def test_only_items_every_encoder_kept_are_compared():
    base = _record("base", None, None, [0.1, 0.2, 0.9], [0, 0, 1])
    aligned = _record("aligned", "en-de", 1, [0.3, 0.4], [0, 0], items=[0, 1])  # item 2 lost
    got = change_interval(pd.Series(base), [pd.Series(aligned)])
    assert got["items"] == 2
    assert got["base"] == pytest.approx(0.15) and got["change"] == pytest.approx(0.2)


def test_closer_sentence_counts_pairs_from_their_intervals():
    frame = pd.concat(
        [_items(0.05, pair="en-de"), _items(0.0, pair="en-ar", seed=1)], ignore_index=True
    )
    text = closer_sentence(alignment_effect(frame))
    assert "closer at the last layer for 1 of 2 pairs" in text
    assert "en-ar: no change detectable at this size" in text


def test_one_seed_says_its_interval_leaves_the_seed_out_and_measures_are_counted():
    one = alignment_effect(_items(0.05, seeds=1))
    assert "not the alignment seed" in closer_sentence(one)
    assert "not the alignment seed" not in closer_sentence(alignment_effect(_items(0.05)))
    frame = pd.concat(
        [_items(0.05), _items(-0.05, seed=1).assign(metric="tatoeba_p1_fwd")], ignore_index=True
    )
    text = moved_sentence(alignment_effect(frame))
    assert text == (
        "cosine of aligned word pairs: higher for 1 of 1 pairs, lower for 0; "
        "Tatoeba retrieval P@1, en→X: higher for 0 of 1 pairs, lower for 1."
    )
    assert list(effect_table(alignment_effect(frame)).columns) == [
        "cosine of aligned word pairs",
        "Tatoeba retrieval P@1, en→X",
    ]


def test_no_measured_encoder_is_said_not_raised():
    effect = alignment_effect(pd.DataFrame())
    assert effect.empty and "verdict" in effect.columns
    assert closer_sentence(effect).startswith("No aligned encoder's distances were measured")
    assert moved_sentence(effect) == "no measure was computed."
