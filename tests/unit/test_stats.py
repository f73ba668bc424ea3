"""xlcore.analysis.stats: intervals that cover planted effects, verdicts that follow them."""

import numpy as np
import pytest
from scipy import stats as sps

from xlcore.analysis import stats


def _tagging_runs(rng, delta, n_seeds=3, n_sent=300, seed_sd=0.02, spread=0.03):
    """Synthetic zero-shot tagging: per-sentence correct words of seed-paired baseline and
    treated runs, whose population mean difference is ``delta``."""
    words = 1 + rng.poisson(12, n_sent)
    ease = rng.uniform(0.3, 0.8, n_sent)
    effect = delta + rng.normal(0, spread, n_sent)  # the effect differs between sentences
    shift = rng.normal(0, seed_sd, n_seeds)[:, None]  # a seed moves both of its runs
    own = rng.normal(0, seed_sd / 2, n_seeds)[:, None]  # ... and the treated run on its own
    base = rng.binomial(words, np.clip(ease + shift, 0, 1))
    treated = rng.binomial(words, np.clip(ease + effect + shift + own, 0, 1))
    return base, treated, words


def _verdicts(delta, sims=200, **kwargs):
    rng = np.random.default_rng(1)
    out = []
    for i in range(sims):
        base, treated, words = _tagging_runs(rng, delta, **kwargs)
        out.append(stats.delta_interval(base, treated, words, n_boot=1000, seed=i))
    return out


def test_delta_interval_covers_a_planted_effect():
    intervals = _verdicts(0.03)
    covered = np.mean([iv.low <= 0.03 <= iv.high for iv in intervals])
    assert covered >= 0.90
    assert np.mean([iv.verdict == stats.LOSS for iv in intervals]) == 0


def test_delta_interval_detects_an_effect_above_its_mde():
    intervals = _verdicts(0.06, sims=100)
    assert np.mean([iv.mde for iv in intervals]) < 0.06
    assert np.mean([iv.verdict == stats.GAIN for iv in intervals]) >= 0.8


def test_delta_interval_null_gives_few_false_verdicts():
    intervals = _verdicts(0.0)
    false = np.mean([iv.verdict != stats.NULL for iv in intervals])
    assert false <= 0.08
    assert np.mean([iv.verdict == stats.GAIN for iv in intervals]) <= 0.05


def test_delta_interval_estimate_is_the_mean_paired_difference():
    base = np.array([[1, 0, 1, 1], [0, 0, 1, 1]])
    treated = np.array([[1, 1, 1, 1], [1, 0, 1, 0]])
    words = np.array([1, 1, 1, 1])
    iv = stats.delta_interval(base, treated, words, n_boot=200)
    assert iv.estimate == pytest.approx(((4 - 3) / 4 + (2 - 2) / 4) / 2)
    weighted = stats.delta_interval(base[:1], treated[:1], np.array([3, 1, 1, 1]), n_boot=200)
    assert weighted.estimate == pytest.approx(1 / 6)


def test_sentences_are_resampled_whole():
    """Words of one sentence move together: when whole sentences gain or lose six words, the
    interval's standard error is the sentence-level one, twice the per-word binomial one."""
    rng = np.random.default_rng(0)
    words = np.full(200, 20)
    base = rng.binomial(words, 0.7)[None]
    change = np.where(rng.random(200) < 0.5, 6, -6).clip(-base, words - base)
    iv = stats.delta_interval(base, base + change, words, n_boot=4000)
    sentence_se = change.std() * np.sqrt(200) / words.sum()
    assert iv.se == pytest.approx(sentence_se, rel=0.1)
    assert iv.se > 1.5 * np.sqrt(2 * 0.7 * 0.3 / words.sum())


def test_delta_interval_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="seeds, sentences"):
        stats.delta_interval(np.ones((2, 5)), np.ones((2, 5)), np.ones(4))


def test_verdict_and_text_follow_the_interval():
    gain = stats.Interval(0.02, 0.005, 0.035, 0.0075)
    null = stats.Interval(0.004, -0.01, 0.018, 0.007)
    loss = stats.Interval(-0.02, -0.03, -0.01, 0.005)
    assert (gain.verdict, null.verdict, loss.verdict) == (stats.GAIN, stats.NULL, stats.LOSS)
    assert gain.describe().startswith("gain of +2.0 points (95 % interval +0.5 to +3.5)")
    assert "no effect detectable" in null.describe()
    assert f"±{100 * 0.007 * stats.MDE_FACTOR:.1f} points" in null.describe()
    assert stats.MDE_FACTOR == pytest.approx(2.80, abs=0.01)


def test_cluster_correlation_point_estimate_is_spearman():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=48), rng.normal(size=48)
    enc, lang = np.repeat(np.arange(4), 12), np.tile(np.arange(12), 4)
    c = stats.cluster_correlation(x, y, enc, lang, n_boot=300)
    assert c.r == pytest.approx(sps.spearmanr(x, y).statistic)
    assert c.n == 48
    assert c.excluded == pytest.approx(max(abs(c.interval.low), abs(c.interval.high)))


def test_resampled_correlation_counts_copies():
    """A replicate's weights act as copies of points: the same ρ as scipy on the expanded
    sample, ties included."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 6, 20).astype(float)  # ties
    y = rng.normal(size=20)
    w = rng.integers(0, 3, size=(5, 20))
    got = stats._resampled(x, y, w.astype(float), "spearman")
    for row, value in zip(w, got, strict=True):
        idx = np.repeat(np.arange(20), row)
        assert value == pytest.approx(sps.spearmanr(x[idx], y[idx]).statistic)
    got = stats._resampled(x, y, w.astype(float), "pearson")
    idx = np.repeat(np.arange(20), w[0])
    assert got[0] == pytest.approx(sps.pearsonr(x[idx], y[idx]).statistic)


def _clustered(rng, rho_lang=0.0):
    """4 encoders × 12 languages; x and y share language effects that are correlated
    ``rho_lang`` across languages (0: x and y independent), plus point noise."""
    lang_x = rng.normal(size=12)
    lang_y = rho_lang * lang_x + np.sqrt(1 - rho_lang**2) * rng.normal(size=12)
    enc, lang = np.repeat(np.arange(4), 12), np.tile(np.arange(12), 4)
    x = lang_x[lang] + 0.3 * rng.normal(size=48)
    y = lang_y[lang] + 0.3 * rng.normal(size=48)
    return x, y, enc, lang


def test_cluster_bootstrap_keeps_false_positives_near_the_level():
    """Points that share a language are not independent: resampling points alone would find a
    correlation far more often than 5 % under the null; resampling clusters does not."""
    rng = np.random.default_rng(2)
    hits = []
    for i in range(200):
        x, y, enc, lang = _clustered(rng)
        c = stats.cluster_correlation(x, y, enc, lang, n_boot=400, seed=i)
        hits.append(c.interval.low > 0 or c.interval.high < 0)
    assert np.mean(hits) <= 0.10


def test_cluster_correlation_detects_a_planted_relation():
    rng = np.random.default_rng(3)
    x, y, enc, lang = _clustered(rng, rho_lang=0.95)
    c = stats.cluster_correlation(x, y, enc, lang, n_boot=1000)
    assert c.interval.low > 0 and c.p < 0.05


def test_holm_matches_a_hand_computation():
    adjusted = stats.holm([0.01, 0.04, 0.03])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06])
    np.testing.assert_allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])


def _streams(rng, planted, k=8, dim=4000, reliability=0.3):
    """Two gradient streams of ``k`` batches: g = μ + ε with cos(μ_a, μ_b) = ``planted`` and
    each batch's signal share ``reliability``."""
    mu_a = rng.normal(size=dim)
    mu_a /= np.linalg.norm(mu_a)
    other = rng.normal(size=dim)
    other -= other @ mu_a * mu_a
    other /= np.linalg.norm(other)
    mu_b = planted * mu_a + np.sqrt(1 - planted**2) * other
    sd = np.sqrt((1 - reliability) / reliability / dim)
    g = np.vstack([mu_a + sd * rng.normal(size=(k, dim)), mu_b + sd * rng.normal(size=(k, dim))])
    return g @ g.T, np.arange(k), np.arange(k, 2 * k)


def test_disattenuation_recovers_a_planted_cosine():
    rng = np.random.default_rng(4)
    results = [stats.stream_cosine(*_streams(rng, 0.3)) for _ in range(100)]
    covered = np.mean([r.disattenuated.low <= 0.3 <= r.disattenuated.high for r in results])
    assert covered >= 0.85
    one = results[0]
    assert one.reliability_a == pytest.approx(0.3, abs=0.05)
    assert one.raw == pytest.approx(0.3 * 0.3, abs=0.03)  # attenuated by the noise
    assert one.disattenuated.estimate == pytest.approx(0.3, abs=0.1)


def test_stream_cosine_of_unrelated_objectives_is_near_zero():
    rng = np.random.default_rng(5)
    r = stats.stream_cosine(*_streams(rng, 0.0))
    assert r.disattenuated.low < 0 < r.disattenuated.high


def test_stream_cosine_is_nan_without_reliability():
    """Three batches of one loss at 120° to each other (reliability −0.5): no cosine can be
    read against them."""
    angles = np.radians([0, 120, 240])
    spread = np.column_stack([np.cos(angles), np.sin(angles), np.zeros(3), np.zeros(3)])
    steady = np.array([[0, 0, 1, 0.1], [0, 0, 1, -0.1], [0, 0.1, 1, 0]])
    g = np.vstack([spread, steady])
    r = stats.stream_cosine(g @ g.T, range(3), range(3, 6))
    assert r.reliability_a == pytest.approx(-0.5)
    assert r.reliability_b > 0.9
    assert np.isnan(r.disattenuated.estimate)
    with pytest.raises(ValueError, match="K ≥ 3"):
        stats.stream_cosine(g @ g.T, [0, 1], [2, 3])


def test_random_cosine_matches_random_directions():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(2, 500, 2000))
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert np.abs(cos).mean() == pytest.approx(stats.random_cosine(2000), rel=0.1)
