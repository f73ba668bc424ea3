"""What alignment did to the encoder's space, with intervals (chapters *Introduction* and
*Alignment*).

The change of a distance measure (aligned − base, on the pair's own language, last layer) is read
from per-item values (:data:`xlcore.analysis.measures.ITEM_METRICS`): the base and the aligned
encoder are measured on the same word pairs and sentences, so each item is paired with itself.
The interval is the paired hierarchical bootstrap of accuracy differences
(:func:`xlcore.analysis.stats.delta_interval`) with a word pair's sentence as its cluster, since
words of one sentence share its context.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xlcore.analysis.measures import ITEM_METRICS, METRIC_LABELS
from xlcore.analysis.stats import GAIN, LOSS, delta_interval
from xlcore.config import pair_lang


def _values(row: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"cluster": row["cluster"], "value": row["value"]}, index=row["item"])


def _cluster_sums(values: pd.DataFrame, items: pd.Index, clusters: pd.Index) -> np.ndarray:
    part = values.loc[items]
    return part.groupby("cluster")["value"].sum().reindex(clusters).to_numpy()


def change_interval(base: pd.Series, aligned: list[pd.Series]) -> dict:
    """The change of one measure from ``base`` to the ``aligned`` encoders (one item record
    each, one per seed) on the items all of them kept, with its interval."""
    ref = _values(base)
    arms = [_values(r) for r in aligned]
    items = ref.index
    for arm in arms:
        items = items.intersection(arm.index)
    totals = ref.loc[items].groupby("cluster")["value"].size()
    clusters = totals.index
    treated = np.stack([_cluster_sums(a, items, clusters) for a in arms])
    baseline = np.tile(_cluster_sums(ref, items, clusters), (len(arms), 1))
    iv = delta_interval(baseline, treated, totals.to_numpy())
    base_mean = float(ref.loc[items, "value"].mean())
    return {
        "items": len(items),
        "seeds": len(arms),
        "base": base_mean,
        "aligned": base_mean + iv.estimate,
        "change": iv.estimate,
        "low": iv.low,
        "high": iv.high,
        "verdict": iv.verdict,
    }


def alignment_effect(
    items: pd.DataFrame, metrics=ITEM_METRICS, src_lang: str = "en"
) -> pd.DataFrame:
    """Per pair and measure, on the pair's own language at the last layer: base and aligned
    means over the items, the change with its 95 % interval over seeds and items, and its
    verdict (``gain``: higher, ``loss``: lower, or no effect detectable).

    ``items`` is :func:`xlcore.frames.distance_items`. Columns: pair, metric, lang, items, seeds,
    base, aligned, change, low, high, verdict.
    """
    columns = ["pair", "metric", "lang", "items", "seeds", "base", "aligned", "change", "low",
               "high", "verdict"]  # fmt: skip
    if items.empty:
        return pd.DataFrame(columns=columns)
    items = items[items["metric"].isin(metrics)]
    base = items[items["stage"] == "base"].set_index(["lang", "metric"])
    rows = []
    for (pair, metric), part in items[items["stage"] == "aligned"].groupby(["pair", "metric"]):
        lang = pair_lang(pair, src_lang)
        own = part[part["lang"] == lang].sort_values("seed")
        if own.empty or (lang, metric) not in base.index:
            continue
        ref = base.loc[[(lang, metric)]].iloc[0]
        aligned = [r for _, r in own.iterrows()]
        rows.append({"pair": pair, "metric": metric, "lang": lang, **change_interval(ref, aligned)})
    return pd.DataFrame(rows, columns=columns)


def _not_closer(r) -> str:
    what = "further apart" if r.verdict == LOSS else "no change detectable at this size"
    return f"{r.pair}: {what} ({r.low:+.3f} to {r.high:+.3f})"


def _seed_note(part: pd.DataFrame) -> str:
    if part["seeds"].max() > 1:
        return ""
    return (
        " With one aligned encoder per pair (setting `distance_seeds`), the intervals cover the"
        " held-out items, not the alignment seed."
    )


def closer_sentence(effect: pd.DataFrame, metric: str = "cos_pairs") -> str:
    """How many pairs alignment brought closer, read from the intervals of the pair cosine's
    change, and what it did to the others."""
    part = effect[effect["metric"] == metric]
    if part.empty:
        return "No aligned encoder's distances were measured (setting `distance_seeds`)."
    gains = int((part["verdict"] == GAIN).sum())
    text = (
        f"Alignment brought word translations measurably closer at the last layer for {gains} "
        f"of {len(part)} pairs (95 % interval of the pair cosine's change above zero)"
    )
    others = [_not_closer(r) for r in part.itertuples() if r.verdict != GAIN]
    return text + ("; " + "; ".join(others) if others else "") + "." + _seed_note(part)


def moved_sentence(effect: pd.DataFrame) -> str:
    """Per measure, for how many pairs it rose and fell detectably, e.g. "Tatoeba retrieval
    P@1, en→X: higher for 0 of 4 pairs, lower for 1"."""
    parts = []
    for metric in (m for m in ITEM_METRICS if m in set(effect["metric"])):
        verdicts = effect.loc[effect["metric"] == metric, "verdict"]
        parts.append(
            f"{METRIC_LABELS[metric]}: higher for {int((verdicts == GAIN).sum())} of "
            f"{len(verdicts)} pairs, lower for {int((verdicts == LOSS).sum())}"
        )
    return "; ".join(parts) + "." if parts else "no measure was computed."


def effect_table(effect: pd.DataFrame) -> pd.DataFrame:
    """One row per pair, one column per measure (named in words): the change and its
    interval, as text."""
    cells = effect.assign(
        cell=[f"{r.change:+.3f} [{r.low:+.3f}, {r.high:+.3f}]" for r in effect.itertuples()]
    )
    table = cells.pivot(index="pair", columns="metric", values="cell")
    table = table[[m for m in ITEM_METRICS if m in table.columns]]
    return table.rename(columns=METRIC_LABELS).rename_axis(index="pair", columns=None)


__all__ = [
    "alignment_effect",
    "change_interval",
    "closer_sentence",
    "effect_table",
    "moved_sentence",
]
