"""The training-length comparison: what more steps and more seeds buy, read from intervals."""

import numpy as np
import pandas as pd
import pytest

from xlcore import lengths
from xlcore.analysis.stats import GAIN, NULL
from xlcore.config import make_config


def _sentences(n_seeds=3, n=200, seed=0):
    """Baseline and sequential per sentence on de; the sequential models gain 3 points."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(1, n_seeds + 1):
        for regime, p in (("baseline", 0.80), ("sequential", 0.83)):
            for i in range(n):
                rows.append(
                    {"task": "pos", "regime": regime, "pair": "en-de" if regime != "baseline"
                     else None, "seed": s, "lang": "de", "sentence": i,
                     "correct": int(rng.binomial(10, p + 0.02 * (s - 2))), "total": 10}
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_seeds_narrow_the_alignment_intervals():
    width = lengths.seeds_width(_sentences(), "sequential", ["de"])
    assert list(width["seeds"]) == [1, 2, 3]
    assert width["half_width"].iloc[-1] < width["half_width"].iloc[0]


def _gain(verdict_de):
    return pd.DataFrame(
        [
            {"task": "pos", "steps": "120 steps", "lang": "en", "delta": 2.0, "low": 1.0,
             "high": 3.0, "verdict": GAIN},
            {"task": "pos", "steps": "120 steps", "lang": "de", "delta": 0.2, "low": -0.9,
             "high": 1.3, "verdict": verdict_de},
        ]
    )  # fmt: skip


@pytest.mark.parametrize(("verdict", "says"), [(NULL, "seeds buy more"), (GAIN, "briefly")])
def test_the_tradeoff_follows_the_target_languages_interval(verdict, says):
    width = pd.DataFrame({"seeds": [1, 2, 3], "half_width": [2.0, 1.5, 1.1]})
    text = lengths.tradeoff_sentence(_gain(verdict), width)
    assert says in text and "±2.0 to ±1.1" in text and "120 steps" in text


def test_intervals_that_widen_with_seeds_are_called_so():
    width = pd.DataFrame({"seeds": [1, 2, 3], "half_width": [0.5, 1.2, 1.7]})
    text = lengths.tradeoff_sentence(_gain(NULL), width)
    assert "widened the own-language intervals" in text and "±0.5 to ±1.7" in text
    assert "narrowed" not in text and "leaves out the variation between seeds" in text


def test_without_the_comparison_the_sentence_says_so():
    assert "did not run" in lengths.tradeoff_sentence(None, None)


def test_the_longer_baseline_changes_only_the_steps_and_the_scope():
    c = make_config("smoke")
    longer = lengths.length_config(c, 30, "pos")
    assert longer.finetune.pos_max_steps == 30 and longer.finetune.regimes == ("baseline",)
    assert longer.data.tgt_langs == ("de",) and longer.data.tasks == ("pos",)
    assert longer.finetune.seeds == c.finetune.seeds
    assert longer.data.test_limit_of("de") == c.data.test_limit_of("de")
