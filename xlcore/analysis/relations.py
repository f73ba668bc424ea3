"""Do distance or gradient measurements predict transfer gains? Correlations with intervals.

Chapter *Distances vs transfer*: for every aligned model, the change in a distance measure
(aligned − baseline, per layer, level and metric) is set against the change in zero-shot
accuracy (per language, task, pair and seed), and the same for the gradient cosine between the
English task loss and each pair's alignment loss. Spearman and Pearson coefficients come with
95% bootstrap confidence intervals (:func:`scipy.stats.bootstrap`, paired resampling of the
points, percentile intervals). Every function returns one tidy :class:`pandas.DataFrame`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from xlcore.analysis.stats import CORRELATIONS, cluster_correlation
from xlcore.config import pair_lang

KEYS = ["lang", "layer", "level", "metric"]


def transfer_deltas(evaluations: pd.DataFrame, src_lang: str = "en") -> pd.DataFrame:
    """Accuracy of every aligned model minus the baseline's, per task, seed and language.

    Columns: task, regime, pair, seed, lang, accuracy, baseline, delta, own_pair (the language
    is the pair's own).
    """
    cols = ["task", "seed", "lang", "accuracy"]
    base = evaluations.loc[evaluations["regime"] == "baseline", cols]
    base = base.rename(columns={"accuracy": "baseline"})
    other = evaluations.loc[evaluations["regime"] != "baseline", ["regime", "pair", *cols]]
    out = other.merge(base, on=["task", "seed", "lang"], how="inner")
    out["delta"] = out["accuracy"] - out["baseline"]
    langs = [pair_lang(p, src_lang) for p in out["pair"]]
    out["own_pair"] = [a == b for a, b in zip(langs, out["lang"], strict=True)]
    return out.reset_index(drop=True)


def regime_changes(
    deltas: pd.DataFrame, regime: str = "sequential", src_lang: str = "en"
) -> tuple[dict[str, float], pd.DataFrame]:
    """How ``regime`` changed accuracy against the baseline (points), from
    :func:`transfer_deltas`: the number of (pair, task, seed) cases on the pair's own language and
    how many of them gained, the mean change there, on the other target languages and on
    ``src_lang``; and every change as a table (task × pair by language)."""
    part = deltas[deltas["regime"] == regime]
    own = part[part["own_pair"]]
    others = part[~part["own_pair"] & (part["lang"] != src_lang)]
    numbers = {
        "n_own": len(own),
        "n_own_gain": int((own["delta"] > 0).sum()),
        "own_mean": float(100 * own["delta"].mean()),
        "others_mean": float(100 * others["delta"].mean()),
        "en_mean": float(100 * part.loc[part["lang"] == src_lang, "delta"].mean()),
    }
    table = 100 * part.pivot_table(index=["task", "pair"], columns="lang", values="delta")
    return numbers, table.round(2)


def distance_deltas(distances: pd.DataFrame) -> pd.DataFrame:
    """Change of every distance measure caused by alignment.

    ``stage == "aligned"``: the aligned encoder minus the base encoder. ``stage ==
    "finetuned"``: the fine-tuned model of each aligned regime minus the fine-tuned baseline of
    the same task and seed. Columns: stage, task, regime, pair, seed, lang, layer, level,
    metric, value, reference, delta.
    """
    frames = []
    base = distances[distances["stage"] == "base"][[*KEYS, "value"]]
    aligned = distances[distances["stage"] == "aligned"]
    if len(aligned) and len(base):
        a = aligned.merge(base.rename(columns={"value": "reference"}), on=KEYS)
        frames.append(a)
    ft = distances[distances["stage"] == "finetuned"]
    ft_base = ft[ft["regime"] == "baseline"][["task", "seed", *KEYS, "value"]]
    ft_other = ft[ft["regime"] != "baseline"]
    if len(ft_other) and len(ft_base):
        f = ft_other.merge(
            ft_base.rename(columns={"value": "reference"}), on=["task", "seed", *KEYS]
        )
        frames.append(f)
    if not frames:
        return pd.DataFrame(
            columns=["stage", "task", "regime", "pair", "seed", *KEYS, "value", "reference"]
            + ["delta"]
        )
    out = pd.concat(frames, ignore_index=True)
    out["delta"] = out["value"] - out["reference"]
    return out


_STATISTICS = CORRELATIONS

# Fewer points (or a constant variable) leave a correlation undefined.
MIN_POINTS = 3


def correlation(
    x: Sequence[float],
    y: Sequence[float],
    method: str = "spearman",
    *,
    n_resamples: int = 2000,
    confidence_level: float = 0.95,
    seed: int = 0,
    clusters: tuple[Sequence, Sequence] | None = None,
) -> dict:
    """Correlation coefficient with a bootstrap percentile interval.

    Returns ``{"r", "lo", "hi", "n"}``; NaN where it is undefined (fewer than
    :data:`MIN_POINTS` points or a constant variable). The point estimate equals
    :func:`scipy.stats.spearmanr` / :func:`scipy.stats.pearsonr`. Without ``clusters`` the
    points are resampled as independent (:func:`scipy.stats.bootstrap`); with ``clusters``,
    two labels per point (e.g. encoder and language), the levels of both are resampled
    (:func:`xlcore.analysis.stats.cluster_correlation`): points that share an encoder or a
    language are not independent.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    nan = {"r": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": n}
    if n < MIN_POINTS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return nan
    if clusters is not None:
        a, b = (np.asarray(c)[ok] for c in clusters)
        c = cluster_correlation(
            x, y, a, b, method=method, n_boot=n_resamples, level=confidence_level, seed=seed
        )
        return {"r": c.r, "lo": c.interval.low, "hi": c.interval.high, "n": n}
    fn = _STATISTICS[method]
    r = float(fn(x, y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # degenerate resamples, handled below
        res = stats.bootstrap(
            (x, y),
            lambda a, b, axis=-1: fn(np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)),
            paired=True,
            vectorized=True,
            n_resamples=n_resamples,
            confidence_level=confidence_level,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    # Resamples that repeat one point are degenerate (no correlation defined): the interval is
    # taken over the defined resamples (scipy's own percentile would be NaN then).
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    alpha = (1 - confidence_level) / 2
    if np.isfinite(dist).sum() < 0.5 * n_resamples:
        return {**nan, "r": r}
    lo, hi = np.nanquantile(dist, [alpha, 1 - alpha])
    return {"r": r, "lo": float(lo), "hi": float(hi), "n": n}


def correlate(
    frame: pd.DataFrame,
    x: str,
    y: str,
    by: Sequence[str] = (),
    methods: Sequence[str] = ("spearman", "pearson"),
    clusters: tuple[str, str] | None = None,
    **kwargs,
) -> pd.DataFrame:
    """:func:`correlation` of columns ``x`` and ``y`` within each group of ``by``: one row per
    group and method (columns: *by, method, r, lo, hi, n); ``clusters`` names the two columns
    whose levels the bootstrap resamples."""
    rows = []
    groups = frame.groupby(list(by), sort=True, dropna=False) if by else [((), frame)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        for method in methods:
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "method": method,
                    **correlation(
                        part[x],
                        part[y],
                        method,
                        clusters=None
                        if clusters is None
                        else (part[clusters[0]], part[clusters[1]]),
                        **kwargs,
                    ),
                }
            )
    return pd.DataFrame(rows)


def distance_vs_transfer(
    distances: pd.DataFrame,
    evaluations: pd.DataFrame,
    *,
    regime: str = "sequential",
    src_lang: str = "en",
    **kwargs,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Points (Δdistance, Δaccuracy) and their correlations per task, stage, level, metric, layer.

    A point is one aligned pair, seed and evaluation language: the distance change of that
    language under the pair's aligned encoder against the accuracy change of the ``regime``
    model trained from it. Intervals resample encoders (pair and seed) and languages.
    """
    dd = distance_deltas(distances)
    td = transfer_deltas(evaluations, src_lang)
    td = td[td["regime"] == regime]
    aligned = dd[dd["stage"] == "aligned"].drop(columns=["task", "regime"], errors="ignore")
    points_aligned = aligned.merge(
        td[["task", "pair", "seed", "lang", "delta", "own_pair"]].rename(
            columns={"delta": "delta_accuracy"}
        ),
        on=["pair", "seed", "lang"],
    )
    ft = dd[(dd["stage"] == "finetuned") & (dd["regime"] == regime)]
    points_ft = ft.merge(
        td[["task", "pair", "seed", "lang", "delta", "own_pair"]].rename(
            columns={"delta": "delta_accuracy"}
        ),
        on=["task", "pair", "seed", "lang"],
    )
    points = pd.concat([points_aligned, points_ft], ignore_index=True)
    points["encoder"] = points["pair"] + "/s" + points["seed"].astype(str)
    corr = correlate(
        points,
        "delta",
        "delta_accuracy",
        by=["task", "stage", "level", "metric", "layer"],
        clusters=("encoder", "lang"),
        **kwargs,
    )
    return points, corr


def finetuning_shift(distances: pd.DataFrame, metric: str, layer: int) -> float:
    """Mean ``metric`` at ``layer`` of the baseline's fine-tuned encoders minus the base
    encoder's: how far fine-tuning alone moved it."""
    at = distances[(distances["metric"] == metric) & (distances["layer"] == layer)]
    tuned = at[(at["stage"] == "finetuned") & (at["regime"] == "baseline")]
    return float(tuned["value"].mean() - at.loc[at["stage"] == "base", "value"].mean())


def cell(
    points: pd.DataFrame, corr: pd.DataFrame, method: str = "spearman", **where: object
) -> tuple[pd.DataFrame, dict]:
    """The points of one cell of :func:`distance_vs_transfer` (``where``: task, stage, metric,
    layer, ...) and its ``method`` correlation row."""

    def chosen(frame: pd.DataFrame) -> pd.Series:
        return (frame[list(where)] == list(where.values())).all(axis=1)

    rows = corr[chosen(corr) & (corr["method"] == method)]
    if rows.empty:
        raise ValueError(f"no {method} correlation for {where}")
    return points[chosen(points)], rows.iloc[0].to_dict()


def gradient_vs_transfer(
    gradients: pd.DataFrame,
    evaluations: pd.DataFrame,
    *,
    group: str = "all_but_embeddings",
    regimes: Sequence[str] = ("sequential", "joint"),
    src_lang: str = "en",
    **kwargs,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Points (gradient cosine, Δaccuracy on the pair's own language) and their correlations.

    The cosine is that of the baseline model between the English task gradient and each
    pair's alignment gradient, corrected for attenuation (:mod:`xlcore.analysis.probes`) and
    averaged over the probe points (start and end of fine-tuning).
    """
    g = gradients[(gradients["regime"] == "baseline") & (gradients["group"] == group)]
    cos = (
        g.groupby(["task", "seed", "probe_pair"], as_index=False)["disattenuated"]
        .mean()
        .rename(columns={"probe_pair": "pair", "disattenuated": "grad_cos"})
        .dropna(subset=["grad_cos"])
    )
    td = transfer_deltas(evaluations, src_lang)
    td = td[td["own_pair"] & td["regime"].isin(list(regimes))]
    points = cos.merge(td, on=["task", "seed", "pair"])
    corr = correlate(points, "grad_cos", "delta", by=["regime"], **kwargs)
    return points, corr


__all__ = [
    "cell",
    "correlate",
    "correlation",
    "distance_deltas",
    "distance_vs_transfer",
    "finetuning_shift",
    "gradient_vs_transfer",
    "regime_changes",
    "transfer_deltas",
]
