"""Zero-shot accuracy differences against the baseline, each with its interval and verdict
(chapters *Zero-shot transfer* and *Combining alignment with fine-tuning*).

Every aligned model is compared with the baseline trained from the same seed, on the same test
sentences (:func:`xlcore.frames.sentence_frame`), through
:func:`xlcore.analysis.stats.delta_interval`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xlcore.analysis.stats import GAIN, LOSS, NULL, ONE_SEED_CAVEAT, delta_interval
from xlcore.config import pair_lang

COLUMNS = [
    "task", "regime", "pair", "lang", "seeds", "delta", "low", "high", "se", "mde", "verdict",
]  # fmt: skip

HEADERS = {
    "delta": "Δ (points)", "low": "95 % low", "high": "95 % high", "se": "SE",
    "mde": "detectable (±)", "lang": "language",
}  # fmt: skip
"""Human column names for :func:`delta_intervals` tables in the book."""


def _by_seed(part: pd.DataFrame, column: str) -> pd.DataFrame:
    return part.pivot(index="seed", columns="sentence", values=column).sort_index()


def delta_intervals(
    sentences: pd.DataFrame,
    *,
    baseline: str = "baseline",
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Accuracy of every regime minus ``baseline``'s, per task, regime, pair and language, in
    points: the mean over the seeds both have, its interval, standard error, minimum detectable
    effect and verdict (gain, loss or no effect detectable).

    ``sentences`` is :func:`xlcore.frames.sentence_frame`'s table. Raises ``ValueError`` when
    the two sides were scored on different test sentences.
    """
    base = sentences[sentences["regime"] == baseline]
    bases = {key: part for key, part in base.groupby(["task", "lang"])}
    rows = []
    others = sentences[sentences["regime"] != baseline]
    for (task, regime, pair, lang), part in others.groupby(["task", "regime", "pair", "lang"]):
        ref = bases.get((task, lang))
        if ref is None:
            continue
        seeds = sorted(set(part["seed"]) & set(ref["seed"]))
        if not seeds:
            continue
        treated = _by_seed(part[part["seed"].isin(seeds)], "correct")
        control = _by_seed(ref[ref["seed"].isin(seeds)], "correct")
        totals = _by_seed(ref[ref["seed"].isin(seeds)], "total").iloc[0]
        if treated.shape != control.shape or not (
            _by_seed(part[part["seed"].isin(seeds)], "total") == totals
        ).all(axis=None):
            raise ValueError(
                f"{task} {regime} {pair} on {lang} was scored on other test sentences than the "
                f"{baseline}; evaluate both with the same data settings (test_limit)"
            )
        iv = delta_interval(
            control.to_numpy(), treated.to_numpy(), totals.to_numpy(),
            n_boot=n_boot, level=level, seed=seed,
        )  # fmt: skip
        rows.append(
            {
                "task": task, "regime": regime, "pair": pair, "lang": lang, "seeds": len(seeds),
                "delta": 100 * iv.estimate, "low": 100 * iv.low, "high": 100 * iv.high,
                "se": 100 * iv.se, "mde": 100 * iv.mde, "verdict": iv.verdict,
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def seed_deltas(
    sentences: pd.DataFrame, task: str, regime: str, pair: str, lang: str,
    baseline: str = "baseline",
) -> pd.Series:  # fmt: skip
    """Each seed's accuracy difference (points) of one case against the baseline of the same
    seed, on the same test sentences: what an interval over seeds is made of."""

    def accuracy(part: pd.DataFrame) -> pd.Series:
        sums = part.groupby("seed")[["correct", "total"]].sum()
        return 100 * sums["correct"] / sums["total"]

    on = sentences[(sentences["task"] == task) & (sentences["lang"] == lang)]
    treated = accuracy(on[(on["regime"] == regime) & (on["pair"] == pair)])
    return (treated - accuracy(on[on["regime"] == baseline])).dropna()


def widest_sentence(sentences: pd.DataFrame, intervals: pd.DataFrame, src_lang: str = "en") -> str:
    """Where the widest own-language interval comes from: its seeds' differences, on the
    pair's language and on English (the same runs), so a reader can tell a seed that trained
    worse everywhere from a language effect."""
    own = own_language(intervals, src_lang)
    own = own[own["seeds"] > 1]
    if own.empty:
        return ""
    r = own.loc[(own["high"] - own["low"]).idxmax()]
    per_seed = {
        lg: seed_deltas(sentences, r.task, r.regime, r.pair, lg) for lg in (r.lang, src_lang)
    }

    def listed(values: pd.Series) -> str:
        return ", ".join(f"{v:+.1f} (seed {s})" for s, v in values.items())

    same = (intervals[["task", "regime", "pair"]] == [r.task, r.regime, r.pair]).all(axis=1)
    src = intervals[same & (intervals["lang"] == src_lang)]
    src_span = "".join(f" (interval {e.low:+.1f} to {e.high:+.1f})" for e in src.itertuples())
    return (
        f"The widest of these intervals, {r.task} {r.regime} on {r.pair} ({r.low:+.1f} to "
        f"{r.high:+.1f} points), is made of its seeds' differences on {r.lang}: "
        f"{listed(per_seed[r.lang])}; the same runs moved {src_lang} by "
        f"{listed(per_seed[src_lang])} points{src_span}."
    )


def verdict_counts(intervals: pd.DataFrame, by=("task", "regime")) -> pd.DataFrame:
    """How many differences of each group are gains, losses and undetectable, with the median
    minimum detectable effect (points)."""
    counts = pd.crosstab([intervals[k] for k in by], intervals["verdict"])
    counts["median_mde"] = intervals.groupby(list(by))["mde"].median()
    return counts.reset_index().rename_axis(columns=None).fillna(np.nan)


def own_language(intervals: pd.DataFrame, src_lang: str = "en") -> pd.DataFrame:
    """The rows of :func:`delta_intervals` on each pair's own (non-English) language."""
    langs = [pair_lang(p, src_lang) for p in intervals["pair"]]
    return intervals[np.asarray(langs, dtype=object) == intervals["lang"].to_numpy()]


def own_language_verdict(intervals: pd.DataFrame, regime: str, src_lang: str = "en") -> dict:
    """What ``regime`` did on each pair's own language, from the intervals alone: the number of
    (task, pair) cases, of gains, losses and undetectable changes, the median minimum
    detectable effect (points), the seeds per case, and a sentence that says it."""
    own = own_language(intervals[intervals["regime"] == regime], src_lang)
    n = len(own)
    counts = {v: int((own["verdict"] == v).sum()) for v in (GAIN, LOSS, NULL)}
    mde = float(own["mde"].median()) if n else float("nan")
    seeds = int(own["seeds"].min()) if n else 0
    if not n:
        sentence = f"No {regime} run has a baseline to compare with."
    else:
        sentence = (
            f"On its own language, {regime} alignment gave a detectable gain in "
            f"{counts[GAIN]} of {n} task–pair cases and a detectable loss in {counts[LOSS]}; "
            f"in the other {counts[NULL]} no effect was detectable at this size (the design "
            f"detects changes of about ±{mde:.1f} points; {seeds} seed{'s' if seeds > 1 else ''}"
            f" per case)."
        )
        if seeds == 1:
            sentence += " " + ONE_SEED_CAVEAT
    return {"cases": n, "gains": counts[GAIN], "losses": counts[LOSS], "undetected": counts[NULL],
            "mde": mde, "seeds": seeds, "sentence": sentence}  # fmt: skip
