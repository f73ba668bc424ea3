"""Computed guidelines: every qualifier follows from the numbers it quotes."""

import math

import pandas as pd
import pytest

from xlcore.analysis.summary import difference_se, guidelines


def _evaluations(n: int, gain: float) -> pd.DataFrame:
    rows = []
    for lang in ("en", "de", "ar"):
        rows.append(
            dict(task="sib", regime="baseline", pair=None, seed=1, lang=lang, accuracy=0.8, n=n)
        )
        for pair in ("en-de", "en-ar"):
            own = pair.endswith(lang)
            rows.append(
                dict(
                    task="sib",
                    regime="sequential",
                    pair=pair,
                    seed=1,
                    lang=lang,
                    accuracy=0.8 + (gain if own else 0.0),
                    n=n,
                )
            )
    return pd.DataFrame(rows)


def _gradients(cos: float, floor: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            dict(
                task="pos",
                regime="baseline",
                pair=None,
                seed=1,
                step=0,
                probe_pair="en-de",
                group="all_but_embeddings",
                cos=cos,
                norm_task=1.0,
                norm_align=4.0,
                floor_task=floor,
                floor_align=floor,
            )
        ]
    )


def test_difference_se_is_the_binomial_formula():
    ev = _evaluations(100, 0.0)
    assert difference_se(ev, "sib") == pytest.approx(100 * math.sqrt(2 * 0.8 * 0.2 / 100))


@pytest.mark.parametrize(("n", "gain", "noisy"), [(100, 0.02, True), (100_000, 0.02, False)])
def test_small_gains_on_small_test_sets_are_called_noise(n, gain, noisy):
    line = guidelines(_evaluations(n, gain))[0]
    assert "**sequential** (+2.0 points" in line
    assert "it helped on every pair" in line
    assert ("within noise" in line) is noisy


@pytest.mark.parametrize(("cos", "floor", "separable"), [(0.05, 0.4, True), (0.05, 0.1, False)])
def test_orthogonality_is_claimed_only_against_a_clear_noise_floor(cos, floor, separable):
    lines = guidelines(_evaluations(100, 0.0), _gradients(cos, floor))
    line = next(x for x in lines if "gradients on the encoder" in x)
    assert ("near-orthogonal, well below" in line) is separable
    assert ("cannot be told apart from noise" in line) is not separable
    assert "4× the task gradient's norm" in line
