"""Finding 1: do changes of embedding distances predict changes of zero-shot accuracy?
(chapter *Distances vs transfer*).

Three primary measures are named before any result is seen (:data:`PRIMARY`): the margin of
translation pairs over random pairs (word level) at the last layer and at the layer the word
pairs were extracted from, and strong word retrieval P@1 at the last layer. Their correlations
with Δaccuracy get cluster-bootstrap intervals (encoders and languages resampled) and Holm's
correction; every other measure and layer is exploratory.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xlcore.analysis.stats import cluster_correlation, holm

PRIMARY = (
    ("word", "margin", "last"),
    ("word", "margin", "wordpair"),
    ("word", "p1_strong_fwd", "last"),
)
"""(level, metric, layer name) of the primary measures; layer names are resolved by the
``layers`` argument of :func:`primary_correlations`."""

_PAIRED = {"cos_pairs": "word", "cos": "sentence"}  # the cosine each margin is taken from


def with_margins(distances: pd.DataFrame) -> pd.DataFrame:
    """``distances`` plus metric ``margin``: the translation pairs' cosine minus the random
    pairs' (``cos_random``) for every encoder, language, layer and level. A raw cosine mixes
    alignment with a drift of all vectors together (anisotropy); the margin does not."""
    ids = [c for c in distances.columns if c not in ("metric", "value", "n")]
    random = distances[distances["metric"] == "cos_random"][[*ids, "value"]]
    paired = distances[distances["metric"].isin(list(_PAIRED))]
    margin = paired.merge(random.rename(columns={"value": "random"}), on=ids)
    margin = margin.assign(metric="margin", value=margin["value"] - margin["random"])
    return pd.concat([distances, margin.drop(columns="random")], ignore_index=True)


def primary_correlations(
    points: pd.DataFrame,
    layers: dict[str, int],
    *,
    stage: str = "aligned",
    primary=PRIMARY,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Spearman's ρ of Δdistance and Δaccuracy for each task and primary measure, from the
    points of :func:`xlcore.analysis.relations.distance_vs_transfer` (computed on
    :func:`with_margins`): ρ, its cluster-bootstrap interval, the bootstrap p-value and its Holm
    correction over all rows, the |ρ| the interval excludes, the numbers of points, encoders and
    languages, and whether the relation is detected after the correction."""
    rows = []
    at_stage = points[points["stage"] == stage]
    for task, part in at_stage.groupby("task"):
        for lvl, metric, layer_name in primary:
            cell = part[
                (part["level"] == lvl)
                & (part["metric"] == metric)
                & (part["layer"] == layers[layer_name])
            ]
            cell = cell[np.isfinite(cell["delta"]) & np.isfinite(cell["delta_accuracy"])]
            if len(cell) < 3:
                continue
            c = cluster_correlation(
                cell["delta"], cell["delta_accuracy"], cell["encoder"], cell["lang"],
                n_boot=n_boot, level=level, seed=seed,
            )  # fmt: skip
            rows.append(
                {
                    "task": task, "measure": f"{metric} ({lvl}, {layer_name} layer)",
                    "layer": layers[layer_name], "n": c.n, "encoders": cell["encoder"].nunique(),
                    "languages": cell["lang"].nunique(), "rho": c.r, "low": c.interval.low,
                    "high": c.interval.high, "p": c.p, "excluded": c.excluded,
                }
            )  # fmt: skip
    out = pd.DataFrame(rows)
    if len(out):
        out["p_holm"] = holm(out["p"])
        out["detected"] = out["p_holm"] < 1 - level
    return out


def finding_sentence(primary: pd.DataFrame) -> str:
    """What the primary correlations show or exclude, in one Markdown sentence."""
    if not len(primary):
        return (
            "**No primary correlation can be computed from these runs** (each needs at least 3 "
            "points); add aligned pairs, target languages or seeds."
        )
    found = primary[primary["detected"]]
    head = (
        f"Of {len(primary)} primary correlations (task × measure, "
        f"{int(primary['n'].min())}–{int(primary['n'].max())} points from "
        f"{int(primary['encoders'].max())} aligned encoders and "
        f"{int(primary['languages'].max())} languages), {len(found)} "
        f"{'is' if len(found) == 1 else 'are'} detected after Holm's correction"
    )
    if len(found):
        listed = "; ".join(
            f"{r.task.upper()} {r.measure}: ρ = {r.rho:+.2f} ({r.low:+.2f} to {r.high:+.2f})"
            for r in found.itertuples()
        )
        head += f" ({listed})"
    rest = primary[~primary["detected"]]
    if len(rest):
        head += (
            f". For the {'other ' if len(found) else ''}{len(rest)}, the intervals exclude "
            f"|ρ| above {rest['excluded'].max():.2f} at most: a weaker relation than that is "
            "not ruled out, so this is absence of evidence, not evidence of no relation"
        )
    return head + "."
