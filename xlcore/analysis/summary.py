"""Summaries the chapters print, and the guidelines they end with, computed from result frames.

Every statement here is generated from the numbers it quotes (chapters *Alignment*, *Gradients*
and *Combining alignment with fine-tuning*); nothing is typed by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xlcore.analysis import transfer
from xlcore.analysis.stats import GAIN, LOSS, ONE_SEED_CAVEAT


def seed_intervals(evaluations: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Zero-shot accuracy per task, regime, pair and language: mean over seeds and a Student-t
    interval (NaN bounds with a single seed: one run gives no interval).

    Columns: task, regime, pair, lang, seeds, mean, low, high (accuracy in points).
    """
    from scipy import stats

    rows = []
    keys = ["task", "regime", "pair", "lang"]
    ev = evaluations.assign(pair=evaluations["pair"].fillna(""))
    for key, part in ev.groupby(keys, sort=True):
        acc = 100 * part["accuracy"].to_numpy(dtype=float)
        n = len(acc)
        mean = float(acc.mean())
        if n > 1:
            half = float(stats.t.ppf(0.5 + level / 2, n - 1) * acc.std(ddof=1) / n**0.5)
            low, high = mean - half, mean + half
        else:
            low = high = float("nan")
        rows.append(dict(zip(keys, key, strict=True), seeds=n, mean=mean, low=low, high=high))
    return pd.DataFrame(rows, columns=[*keys, "seeds", "mean", "low", "high"])


_MEANS = (
    "cos", "disattenuated", "null_labels", "null_pairs", "target", "reliability_task",
    "reliability_align", "norm_ratio", "weighted_ratio", "alpha", "update_cos", "random_cos",
)  # fmt: skip


def gradient_summary(gradients: pd.DataFrame, group: str = "all_but_embeddings") -> pd.DataFrame:
    """Per task, regime and probe point (``at``) in ``group``, over the probed pairs: the mean
    raw and corrected task–align cosine (:mod:`xlcore.analysis.probes`), its range, how many
    pairs' 95 % intervals lie above / below zero, the empirical nulls, the reliabilities, the
    norm ratios (raw and after α), the joint update's cosine with the task-only update, and how
    many pairs' estimates lie inside the shuffled-label null's interval (``in_null``)."""
    g = gradients[gradients["group"] == group].copy()
    g["above"] = g["cos_low"] > 0
    g["below"] = g["cos_high"] < 0
    g["readable"] = g["cos_low"].notna()
    g["in_null"] = g["disattenuated"].between(g["null_labels_low"], g["null_labels_high"])
    if "target_low" in g:
        g["target_above"], g["target_below"] = g["target_low"] > 0, g["target_high"] < 0
        g["target_pairs"] = g["target_low"].notna()
    means = [c for c in _MEANS if c in g]
    by = g.groupby(["task", "regime", "at"], sort=False)
    out = by[means].mean()
    out["pairs"] = by.size()
    out["dis_min"], out["dis_max"] = by["disattenuated"].min(), by["disattenuated"].max()
    counts = ["above", "below", "readable", "in_null", "target_above", "target_below"]
    for c in [*counts, "target_pairs"]:
        if c in g:
            out[c] = by[c].sum()
    return out.reset_index()


def _direction(r) -> str:
    """What the pairs' intervals allow about the direction of the two objectives."""
    n, above, below = int(r["pairs"]), int(r["above"]), int(r["below"])
    if int(r["readable"]) < n:
        return (
            f"for {n - int(r['readable'])} of {n} pairs a reliability is too close to zero for "
            "any interval (more or larger probe batches would be needed)"
        )
    if above == n or below == n:
        return f"the two objectives are weakly {'aligned' if above else 'opposed'} for every pair"
    if above + below == 0:
        return "no alignment or opposition of the two objectives is detectable at this size"
    if above and below:
        return "the direction differs between pairs"
    side = "aligned" if above else "opposed"
    count = above or below
    return f"the objectives are weakly {side} for {count} of {n} pairs, undetectable for the rest"


def _null_reading(r) -> str:
    """The empirical nulls, and whether every pair's estimate lies inside the interval of its
    shuffled-label null (then the data cannot separate the two)."""
    nl, npairs = r["null_labels"], r["null_pairs"]
    if not (np.isfinite(nl) and np.isfinite(npairs)):
        return "the empirical nulls cannot be read either"
    n, inside = int(r["pairs"]), int(r["in_null"])
    return (
        f"empirical nulls give {nl:+.2f} (shuffled labels) and {npairs:+.2f} (shuffled word pairs)"
        f"; {inside} of {n} pairs' estimates lie inside their shuffled-label null's interval"
        + (", so the data do not separate this agreement from one without the task's labels"
           if inside == n else "")
    )  # fmt: skip


def _target_reading(r) -> str:
    """The alignment gradient against the task gradient in the pair's own language."""
    n = int(r.get("target_pairs", 0) or 0)
    if not n:
        return ""
    return (
        f"Against the task gradient in the pair's own language (the one that bears on "
        f"transfer) the corrected cosine is {r['target']:+.2f} on average; its interval lies "
        f"above zero for {int(r['target_above'])} and below zero for "
        f"{int(r['target_below'])} of {n} pairs. "
    )


def gradient_sentences(gradients: pd.DataFrame) -> list[str]:
    """What the baseline model's probes say about direction (intervals over K independent
    batches per objective, against empirical nulls) and magnitude (after the weight α)."""
    out: list[str] = []
    gs = gradient_summary(gradients)
    for _, r in gs[gs["regime"] == "baseline"].iterrows():
        out.append(
            f"{r['task'].upper()}, {r['at']} of fine-tuning (baseline model, encoder without "
            "embeddings): corrected for the reliability of one batch's gradient "
            f"({r['reliability_task']:.2f} task, {r['reliability_align']:.2f} alignment), the "
            f"task–alignment cosine is {r['dis_min']:+.2f} to {r['dis_max']:+.2f} over the "
            f"{int(r['pairs'])} pairs (mean {r['disattenuated']:+.2f}); its 95 % interval lies "
            f"above zero for {int(r['above'])} and below zero for {int(r['below'])}: "
            f"{_direction(r)}; {_null_reading(r)}; unrelated directions of this size give "
            f"|cos| ≈ {r['random_cos']:.0e}. {_target_reading(r)}"
            f"The alignment gradient is {r['norm_ratio']:.2g}× the task gradient's norm, "
            f"{r['weighted_ratio']:.2g}× after the weight α = {r['alpha']:g} of joint training, "
            f"and the joint update keeps a cosine of {r['update_cos']:.2f} with the task-only one."
        )
    return out


def gradient_conflicts(logs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Per task and regime of PCGrad and GradVac, the mean logged cosine of the α-weighted
    alignment gradient and the task gradient and the share of steps where it was negative (a
    conflict); and the sentence that reads it (or says that no such regime ran)."""
    surgery = logs[logs["regime"].isin(["pcgrad", "gradvac"])] if "grad_cos" in logs else None
    if surgery is None or surgery.empty:
        return pd.DataFrame(), (
            "Neither PCGrad nor GradVac ran in this profile (profile `extended` runs both), so "
            "no step's gradient conflict was logged."
        )
    table = surgery.groupby(["task", "regime"])["grad_cos"].agg(
        mean_cos="mean", share_negative=lambda c: float((c < 0).mean())
    )
    share = float((surgery["grad_cos"] < 0).mean())
    return table, (
        "At every training step of PCGrad and GradVac the cosine of the (α-weighted) alignment "
        f"gradient and the task gradient is logged: it was negative, a conflict, at {share:.0%} "
        "of the steps."
    )


def _pts(x: float) -> str:
    return f"{x:+.1f}"


def _cases(rows: pd.DataFrame) -> str:
    return "; ".join(
        f"{r.regime} on {r.pair} ({_pts(r.delta)} points, {_pts(r.low)} to {_pts(r.high)})"
        for r in rows.itertuples()
    )


def _regime_sentences(intervals: pd.DataFrame, src_lang: str) -> list[str]:
    """Per task, what every regime did on each pair's own language and on English, judged by the
    intervals of :func:`xlcore.analysis.transfer.delta_intervals` and only on the pairs that
    every regime ran, so that no regime is judged on easier pairs than another."""
    out: list[str] = []
    own = transfer.own_language(intervals, src_lang)
    for task, part in own.groupby("task"):
        common = set.intersection(*(set(p["pair"]) for _, p in part.groupby("regime")))
        shared = part[part["pair"].isin(common)].sort_values(["regime", "pair"])
        gains, losses = shared[shared["verdict"] == GAIN], shared[shared["verdict"] == LOSS]
        head = (
            f"{task.upper()}, on the pair(s) every regime ran ({', '.join(sorted(common))}), "
            f"{shared['seeds'].min()} seed(s) each: "
        )
        if len(gains):
            body = f"detectable gains on the aligned language: {_cases(gains)}"
        else:
            body = (
                "no regime gave a detectable gain on the aligned language (the design detects "
                f"about ±{shared['mde'].median():.1f} points), so do not expect one from "
                "alignment alone"
            )
        if len(losses):
            body += f"; detectable losses: {_cases(losses)}"
        caveat = f" {ONE_SEED_CAVEAT}" if shared["seeds"].min() < 2 else ""
        out.append(head + body + "." + caveat)
        english = intervals[(intervals["task"] == task) & (intervals["lang"] == src_lang)]
        costly = english[english["verdict"] == LOSS].sort_values(["regime", "pair"])
        if len(costly):
            out.append(
                f"{task.upper()}: these regimes cost English accuracy detectably: "
                f"{_cases(costly)}; check the source language when adding an alignment loss."
            )
    return out


def distance_correlations_at(
    corr: pd.DataFrame, layer: int, method: str = "spearman"
) -> tuple[str, pd.DataFrame]:
    """What the aligned encoders' distance-vs-transfer correlations (:func:`xlcore.analysis.
    relations.distance_vs_transfer`) say, in one Markdown sentence, and their ``r`` at
    ``layer`` (level and measure by task)."""
    from xlcore.analysis.relations import MIN_POINTS

    c = corr[(corr["method"] == method) & (corr["stage"] == "aligned")].dropna(subset=["lo"])
    if len(c):
        excl = c[(c["lo"] > 0) | (c["hi"] < 0)]
        verdict = (
            f"Of {len(c)} (task, measure, layer) combinations, {len(excl)} have a "
            f"{method.capitalize()} interval that excludes zero; the median |ρ| is "
            f"{c['r'].abs().median():.2f}. The table shows ρ at layer {layer}."
        )
    else:
        most = int(corr["n"].max()) if len(corr) else 0
        verdict = (
            f"**No correlation can be computed from these runs**: each has at most {most} "
            f"point(s), and a correlation needs at least {MIN_POINTS} that vary. Add target "
            "languages (`tgt_langs`), pairs or seeds."
        )
    table = c[c["layer"] == layer].pivot(index=["level", "metric"], columns="task", values="r")
    return verdict, table.round(2)


def _distance_sentences(primary: pd.DataFrame) -> list[str]:
    """The distance guideline, from :func:`xlcore.analysis.predictors.primary_correlations`."""
    found = primary[primary["detected"]]
    if len(found):
        listed = ", ".join(
            f"{r.task.upper()} {r.measure} (ρ = {r.rho:+.2f})" for r in found.itertuples()
        )
        return [
            f"Distances as predictors: after Holm's correction, changes of {listed} went with "
            "changes of zero-shot accuracy; the other primary measures did not, so check which "
            "measure before using a distance change as a proxy for transfer."
        ]
    return [
        "Distances as predictors: no primary measure's change went detectably with the change "
        f"of zero-shot accuracy (the intervals exclude |ρ| above {primary['excluded'].max():.2f}"
        " at most); do not use a distance change as a proxy for a transfer gain."
    ]


MIN_SEEDS_TO_PREFER = 3
"""Seed-paired runs per loss before the guidelines prefer one loss over another."""


def _loss_sentences(loss_comparison: pd.DataFrame) -> list[str]:
    """The loss guideline: a loss is preferred only over the losses whose seed-paired
    difference to it has an interval above zero (:func:`xlcore.comparison.loss_contrasts`)."""
    lc = loss_comparison
    first = lc.iloc[0]
    where = f"Loss choice ({first['task'].upper()}, {first['pair']}, sequential)"
    seeds = int(lc["seeds"].min())
    if seeds < MIN_SEEDS_TO_PREFER:
        return [
            f"{where}: with {seeds} seed(s) per loss the intervals leave out the training seed's "
            f"noise, so no loss is preferred (that takes {MIN_SEEDS_TO_PREFER} seed-paired runs "
            "per loss); the contrasts are in the table above."
        ]
    preferred = lc[lc["verdict"] == GAIN]
    if not len(preferred):
        return [
            f"{where}: no loss's difference to another has an interval above zero (the design "
            f"detects about ±{lc['mde'].median():.1f} points), so the data do not favour any "
            "of them; choose by cost."
        ]
    return [
        f"{where}: prefer {r.better} over {r.worse} ({_pts(r.delta)} points, {_pts(r.low)} to "
        f"{_pts(r.high)})."
        for r in preferred.itertuples()
    ]


def guidelines(
    intervals: pd.DataFrame,
    gradients: pd.DataFrame | None = None,
    primary: pd.DataFrame | None = None,
    loss_contrasts: pd.DataFrame | None = None,
    src_lang: str = "en",
) -> list[str]:
    """Guidelines as sentences, each generated from the numbers it quotes: ``intervals`` from
    :func:`xlcore.analysis.transfer.delta_intervals`, ``primary`` from
    :func:`xlcore.analysis.predictors.primary_correlations`, ``loss_contrasts`` from
    :func:`xlcore.comparison.loss_contrasts`."""
    out = _regime_sentences(intervals, src_lang)
    if gradients is not None and len(gradients):
        out += gradient_sentences(gradients)
    if primary is not None and len(primary):
        out += _distance_sentences(primary)
    if loss_contrasts is not None and len(loss_contrasts):
        out += _loss_sentences(loss_contrasts)
    return out


__all__ = [
    "distance_correlations_at",
    "seed_intervals",
    "gradient_sentences",
    "gradient_summary",
    "guidelines",
]
