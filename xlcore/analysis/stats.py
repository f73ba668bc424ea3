"""Intervals and verdicts for the study's claims: a paired hierarchical bootstrap for accuracy
differences, a two-way cluster bootstrap for correlations with Holm's correction, and the
disattenuated cosine of two noisy gradient streams with a jackknife interval.

Verdicts follow from intervals, never from point estimates: a difference is a *gain* when its
interval lies above zero, a *loss* when it lies below, and otherwise *no effect detectable*, with
the smallest effect the design would have detected. Methods: Efron & Tibshirani (1993) for the
bootstrap, Holm (1979), Spearman (1904) for the correction for attenuation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

# z(0.975) + z(0.80): a true effect this many standard errors from zero is detected by a
# two-sided 95 % interval four times out of five.
MDE_FACTOR = float(sps.norm.ppf(0.975) + sps.norm.ppf(0.80))

GAIN, LOSS, NULL = "gain", "loss", "no effect detectable"

ONE_SEED_CAVEAT = (
    "With one seed per case the intervals cover the test sentences only, not the training "
    "seed, which alone can move such a difference by a point or more (Wu & Dredze, 2020): "
    "read these verdicts as this seed's."
)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval (``low``, ``high``) and standard error."""

    estimate: float
    low: float
    high: float
    se: float
    level: float = 0.95

    @property
    def verdict(self) -> str:
        """``gain`` (interval above zero), ``loss`` (below) or ``no effect detectable``."""
        if self.low > 0:
            return GAIN
        if self.high < 0:
            return LOSS
        return NULL

    @property
    def mde(self) -> float:
        """Minimum detectable effect: the size a design with this standard error detects with
        80 % power at the 5 % level."""
        return MDE_FACTOR * self.se

    def describe(self, scale: float = 100.0, unit: str = "points") -> str:
        """One sentence-part in words, e.g. ``gain of +1.2 points (95 % interval +0.3 to
        +2.1)``; values are multiplied by ``scale`` (fractions to points by default)."""
        span = f"{self.level:.0%} interval {self.low * scale:+.1f} to {self.high * scale:+.1f}"
        span = span.replace("%", " %", 1)
        if self.verdict == NULL:
            return (
                f"no effect detectable at this size ({self.estimate * scale:+.1f} {unit}, {span};"
                f" an effect of ±{self.mde * scale:.1f} {unit} would have been detected)"
            )
        return f"{self.verdict} of {self.estimate * scale:+.1f} {unit} ({span})"


def _draw_counts(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(size, n) counts of each of ``n`` items in ``size`` draws of ``n`` with replacement."""
    picks = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
    return np.bincount(picks.ravel(), minlength=size * n).reshape(size, n)


def _percentile(estimate: float, draws: np.ndarray, level: float) -> Interval:
    draws = draws[np.isfinite(draws)]
    alpha = (1 - level) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return Interval(float(estimate), float(low), float(high), float(draws.std(ddof=1)), level)


# ------------------------------------------------------------------ accuracy differences


def delta_interval(
    baseline: np.ndarray,
    treated: np.ndarray,
    totals: np.ndarray | None = None,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean accuracy difference ``treated − baseline`` over seeds, with a paired hierarchical
    bootstrap interval (2.5 and 97.5 percentiles by default).

    ``baseline`` and ``treated`` are (seeds, sentences) arrays of correct items per test
    sentence (0/1 for sentence classification, correct words for tagging); row ``s`` of both
    comes from the same training seed, so a seed's two runs form a pair. ``totals`` holds the
    items per sentence (ones when None). Each replicate resamples seeds and, once for every seed
    and both arms, test sentences: words of one sentence stay together. With S seeds, the seed
    deviations are widened by √(S/(S−1)) before resampling, since resampling S values
    underestimates their variance by (S−1)/S.
    """
    diff = np.atleast_2d(np.asarray(treated, float)) - np.atleast_2d(np.asarray(baseline, float))
    n_seeds, n_sent = diff.shape
    totals = np.ones(n_sent) if totals is None else np.asarray(totals, float)
    if totals.shape != (n_sent,) or np.atleast_2d(baseline).shape != diff.shape:
        raise ValueError(
            f"baseline and treated must both be (seeds, sentences) with totals of length "
            f"{n_sent}; got {np.shape(baseline)}, {np.shape(treated)} and {totals.shape}"
        )
    estimate = diff.mean(axis=0).sum() / totals.sum()
    if n_seeds > 1:
        diff = _seed_deviations_scaled(diff, totals)
    rng = np.random.default_rng(seed)
    seed_weights = _draw_counts(rng, n_seeds, n_boot) / n_seeds
    sentence_counts = _draw_counts(rng, n_sent, n_boot)
    draws = np.einsum("bs,sn,bn->b", seed_weights, diff, sentence_counts) / (
        sentence_counts @ totals
    )
    return _percentile(estimate, draws, level)


def _seed_deviations_scaled(diff: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """``diff`` (seeds, sentences) with each seed's deviation from the seeds' mean rescaled so
    that resampling seeds adds the seed variance alone.

    Seeds and sentences are crossed: a seed's accuracy on the test set varies with the seed and
    with the test-sample noise of that run, and resampling sentences already counts the latter.
    The deviations are scaled to the seed variance component (between-seed variance minus the
    seed × sentence mean square over N, a moment estimate, floored at 0) and widened by
    √(S/(S−1)), since resampling S values shrinks their variance by (S−1)/S.
    """
    n_seeds, n_sent = diff.shape
    z = diff * n_sent / totals.sum()  # a row's mean is that seed's accuracy difference
    rows, cols = z.mean(axis=1, keepdims=True), z.mean(axis=0, keepdims=True)
    between = rows.var(ddof=1)
    if between == 0:
        return diff
    interaction = ((z - rows - cols + z.mean()) ** 2).sum() / ((n_seeds - 1) * (n_sent - 1))
    share = max(0.0, 1 - interaction / n_sent / between)
    small_sample = sps.t.ppf(0.975, n_seeds - 1) / sps.norm.ppf(0.975)
    centre = diff.mean(axis=0, keepdims=True)
    return centre + small_sample * np.sqrt(share * n_seeds / (n_seeds - 1)) * (diff - centre)


# ----------------------------------------------------------------------- correlations


def pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r along the last axis (NaN where either side is constant)."""
    x = x - x.mean(axis=-1, keepdims=True)
    y = y - y.mean(axis=-1, keepdims=True)
    denom = np.sqrt((x * x).sum(axis=-1) * (y * y).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (x * y).sum(axis=-1) / denom, np.nan)


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ along the last axis: Pearson's r of the (average) ranks."""
    return pearson(sps.rankdata(x, axis=-1), sps.rankdata(y, axis=-1))


CORRELATIONS = {"spearman": spearman, "pearson": pearson}


@dataclass(frozen=True)
class Correlation:
    """A correlation with its cluster-bootstrap interval and two-sided bootstrap p-value."""

    r: float
    interval: Interval
    p: float
    n: int

    @property
    def excluded(self) -> float:
        """|ρ| above this is excluded by the interval (meaningful when it contains zero)."""
        return max(abs(self.interval.low), abs(self.interval.high))


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson's r of each row of weights ``w`` (B, n) over the points ``x``, ``y`` (B, n) or
    (n,): a point of weight k counts as k copies."""
    total = w.sum(axis=1, keepdims=True)
    dx = x - (w * x).sum(axis=1, keepdims=True) / total
    dy = y - (w * y).sum(axis=1, keepdims=True) / total
    denom = np.sqrt((w * dx * dx).sum(axis=1) * (w * dy * dy).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (w * dx * dy).sum(axis=1) / denom, np.nan)


def _weighted_ranks(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average ranks of the points ``v`` (n,) in the sample where point i appears ``w[b, i]``
    times, for each row b of ``w`` (B, n)."""
    values, group = np.unique(v, return_inverse=True)
    per_value = w @ (group[:, None] == np.arange(len(values))[None, :])  # (B, distinct values)
    below = np.cumsum(per_value, axis=1) - per_value
    return (below + (per_value + 1) / 2)[:, group]


def _resampled(x: np.ndarray, y: np.ndarray, w: np.ndarray, method: str) -> np.ndarray:
    if method == "spearman":
        return _weighted_pearson(_weighted_ranks(x, w), _weighted_ranks(y, w), w)
    return _weighted_pearson(x, y, w)


def cluster_correlation(
    x: Sequence[float],
    y: Sequence[float],
    clusters_a: Sequence,
    clusters_b: Sequence | None = None,
    *,
    method: str = "spearman",
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Correlation:
    """Correlation of ``x`` and ``y`` whose points share clusters (e.g. ``clusters_a`` the
    encoder, ``clusters_b`` the language of each point): each replicate resamples the levels of
    both factors with replacement and keeps every point whose two levels were drawn, as many
    times as both were drawn. The p-value is the smallest two-sided level at which the
    percentile interval excludes zero.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    b_levels = np.zeros(len(x), int) if clusters_b is None else np.asarray(clusters_b)
    a = np.unique(np.asarray(clusters_a), return_inverse=True)[1]
    b = np.unique(b_levels, return_inverse=True)[1]
    r = float(CORRELATIONS[method](x, y))
    rng = np.random.default_rng(seed)
    n_a, n_b = a.max() + 1, b.max() + 1
    count_a, count_b = _draw_counts(rng, n_a, n_boot), _draw_counts(rng, n_b, n_boot)
    weights = count_a[:, a] * count_b[:, b]  # (B, n): copies of each point in each replicate
    draws = _resampled(x, y, weights.astype(float), method)
    ok = draws[np.isfinite(draws)]
    p = min(1.0, 2 * min(np.mean(ok <= 0), np.mean(ok >= 0))) if len(ok) else float("nan")
    return Correlation(r, _percentile(r, draws, level), float(p), len(x))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (scipy offers only the Benjamini–Hochberg procedure)."""
    p = np.asarray(pvalues, float)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


# ------------------------------------------------------------------- gradient cosines


def random_cosine(dim: int) -> float:
    """E|cos| of two independent random directions in ``dim`` dimensions, √(2/(π·dim))."""
    return float(np.sqrt(2 / (np.pi * dim)))


def cosines(gram: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.diag(gram))
    return gram / np.outer(norms, norms)


def reliability(cos: np.ndarray, rows: Sequence[int]) -> float:
    """Mean same-loss cosine of one stream (its batches ``rows`` of a cosine matrix) over its
    K(K−1)/2 pairs of batches."""
    rows = np.asarray(rows)
    return float(cos[np.ix_(rows, rows)][np.triu_indices(len(rows), 1)].mean())


def _mean_cosines(cos: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Mean cross cosine of streams ``a`` and ``b`` and each stream's reliability."""
    return float(cos[np.ix_(a, b)].mean()), reliability(cos, a), reliability(cos, b)


def _disattenuate(cross: float, rel_a: float, rel_b: float) -> float:
    return cross / np.sqrt(rel_a * rel_b) if rel_a > 0 and rel_b > 0 else float("nan")


@dataclass(frozen=True)
class StreamCosine:
    """Cosines between two gradient streams of K independent batches each: the mean of the K²
    cross cosines, each stream's reliability (mean same-loss cosine of its K(K−1)/2 pairs of
    batches, the signal share of one batch's gradient: a ceiling, not a noise floor), and the
    cross cosine divided by √(reliability·reliability) with a jackknife interval."""

    raw: float
    reliability_a: float
    reliability_b: float
    disattenuated: Interval


def stream_cosine(gram: np.ndarray, a: Sequence[int], b: Sequence[int], level: float = 0.95):
    """:class:`StreamCosine` of the gradients indexed ``a`` and ``b`` in a Gram matrix of flat
    gradients (``gram[i, j]`` = ⟨g_i, g_j⟩). Batch ``k`` of both streams is left out together
    in the jackknife (it needs K ≥ 3); the interval is Student-t with K − 1 degrees of freedom,
    NaN where a reliability is not above zero."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) != len(b) or len(a) < 3:
        raise ValueError(f"stream_cosine needs K ≥ 3 batches per stream, got {len(a)} and {len(b)}")
    cos = cosines(np.asarray(gram, float))
    raw, rel_a, rel_b = _mean_cosines(cos, a, b)
    estimate = _disattenuate(raw, rel_a, rel_b)
    k = len(a)
    keep = ~np.eye(k, dtype=bool)
    leave_one_out = np.array(
        [_disattenuate(*_mean_cosines(cos, a[keep[i]], b[keep[i]])) for i in range(k)]
    )
    se = float(np.sqrt((k - 1) / k * ((leave_one_out - leave_one_out.mean()) ** 2).sum()))
    half = float(sps.t.ppf(0.5 + level / 2, k - 1)) * se
    interval = Interval(estimate, estimate - half, estimate + half, se, level)
    return StreamCosine(raw, rel_a, rel_b, interval)
