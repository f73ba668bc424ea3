"""Figures say what their numbers are, including when a number cannot be computed."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from xlcore import plots  # noqa: E402
from xlcore.analysis.relations import correlation  # noqa: E402


def _points(n):
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "delta": rng.normal(size=n),
            "delta_accuracy": rng.normal(size=n),
            "lang": ["fi", "tr", "de", "ru"][:n],
            "own_pair": [True, False, True, False][:n],
        }
    )


def test_delta_scatter_title_carries_the_correlation():
    points = _points(4)
    row = {"method": "spearman", **correlation(points["delta"], points["delta_accuracy"])}
    fig, ax = plots.delta_scatter(points, row)
    title = ax.get_title()
    assert title.startswith(f"spearman r = {row['r']:.2f} [") and title.endswith("n = 4")
    plt.close(fig)


def test_delta_scatter_says_when_no_correlation_exists():
    points = _points(1)
    row = {"method": "spearman", **correlation(points["delta"], points["delta_accuracy"])}
    assert np.isnan(row["r"])
    fig, ax = plots.delta_scatter(points, row)
    assert ax.get_title() == "no spearman r: n = 1 (needs 3 varying points)"
    assert "nan" not in ax.get_title()
    plt.close(fig)
