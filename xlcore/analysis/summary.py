"""Summaries the chapters print, and the guidelines they end with, computed from result frames.

Every statement here is generated from the numbers it quotes (chapters *Alignment*, *Gradients*
and *Combining alignment with fine-tuning*); nothing is typed by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xlcore.analysis import transfer
from xlcore.analysis.stats import GAIN, LOSS, ONE_SEED_CAVEAT, random_cosine
from xlcore.config import pair_lang

ALIGNMENT_METRICS = ("cos_pairs", "p1_strong_fwd", "cos", "tatoeba_p1_fwd")


def alignment_effect(
    distances: pd.DataFrame, metrics=ALIGNMENT_METRICS, src_lang: str = "en"
) -> pd.DataFrame:
    """Last-layer value of each metric on each pair's own language: base encoder vs aligned.

    Columns: pair, metric, base, aligned, change (mean over seeds).
    """
    last = distances["layer"].max()
    d = distances[(distances["layer"] == last) & distances["metric"].isin(metrics)]
    base = d[d["stage"] == "base"].groupby(["lang", "metric"])["value"].mean()
    rows = []
    aligned = d[d["stage"] == "aligned"]
    for (pair, metric), part in aligned.groupby(["pair", "metric"]):
        lang = pair_lang(pair, src_lang)
        own = part[part["lang"] == lang]["value"].mean()
        ref = base.get((lang, metric), np.nan)
        rows.append(
            {"pair": pair, "metric": metric, "base": ref, "aligned": own, "change": own - ref}
        )
    return pd.DataFrame(rows)


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


def gradient_summary(gradients: pd.DataFrame, group: str = "all_but_embeddings") -> pd.DataFrame:
    """Per task and regime, over all probes and pairs in ``group``: the mean task–align cosine,
    its mean magnitude, each loss's same-loss reliability (the cosine of one loss on two
    independent batches: the share of a batch gradient that is signal, a ceiling on any cosine
    between two batch gradients), the cosine corrected for both (Spearman's correction for
    attenuation, NaN where a reliability is not above zero) and the alignment/task norm ratio."""
    g = gradients[gradients["group"] == group].copy()
    g["abs_cos"] = g["cos"].abs()
    g["norm_ratio"] = g["norm_align"] / g["norm_task"]
    out = (
        g.groupby(["task", "regime"])[["cos", "abs_cos", "floor_task", "floor_align", "norm_ratio"]]
        .mean()
        .reset_index()
        .rename(columns={"floor_task": "reliability_task", "floor_align": "reliability_align"})
    )
    rel_t, rel_a = out["reliability_task"].to_numpy(), out["reliability_align"].to_numpy()
    with np.errstate(invalid="ignore"):
        corrected = out["cos"].to_numpy() / np.sqrt(rel_t * rel_a)
    out["disattenuated"] = np.where((rel_t > 0) & (rel_a > 0), corrected, np.nan)
    return out


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


def _gradient_sentences(gradients: pd.DataFrame, alpha: float) -> list[str]:
    """What the baseline runs' probes say about direction and magnitude. The probes reuse the
    same two batches per objective, so the corrected cosine is a point estimate only."""
    out: list[str] = []
    gs = gradient_summary(gradients)
    for _, r in gs[gs["regime"] == "baseline"].iterrows():
        dis, ratio = r["disattenuated"], r["norm_ratio"]
        reading = (
            f"corrected for that attenuation, the objectives' cosine is about {dis:+.2f} (a point "
            "estimate without an interval: the probes reuse the same two batches), far from the "
            f"|cos| below {random_cosine(10**6):.0e} of unrelated directions of a million or "
            "more parameters, so the two objectives are not orthogonal but "
            + ("weakly aligned" if dis > 0 else "weakly opposed")
            if np.isfinite(dis)
            else "a reliability is not above zero, so no corrected cosine can be read"
        )
        out.append(
            f"{r['task'].upper()}: task and alignment gradients on the encoder (without "
            f"embeddings) had a mean cosine of {r['cos']:+.3f}, while one loss reproduces its own "
            f"batch gradient on another batch only to a cosine of {r['reliability_task']:.2f} "
            f"(task) and {r['reliability_align']:.2f} (alignment), a ceiling on any cosine between "
            f"batch gradients; {reading}. The alignment gradient was {ratio:.2g}× the task "
            f"gradient's norm, {alpha * ratio:.2g}× after the weight α = {alpha:g} of joint "
            "training, so "
            + (
                "alignment dominates the shared update."
                if alpha * ratio > 1
                else "the task dominates the shared update."
            )
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
    alpha: float = 0.1,
) -> list[str]:
    """Guidelines as sentences, each generated from the numbers it quotes: ``intervals`` from
    :func:`xlcore.analysis.transfer.delta_intervals`, ``primary`` from
    :func:`xlcore.analysis.predictors.primary_correlations`, ``loss_contrasts`` from
    :func:`xlcore.comparison.loss_contrasts`."""
    out = _regime_sentences(intervals, src_lang)
    if gradients is not None and len(gradients):
        out += _gradient_sentences(gradients, alpha)
    if primary is not None and len(primary):
        out += _distance_sentences(primary)
    if loss_contrasts is not None and len(loss_contrasts):
        out += _loss_sentences(loss_contrasts)
    return out


__all__ = [
    "distance_correlations_at",
    "seed_intervals",
    "alignment_effect",
    "gradient_summary",
    "guidelines",
]
