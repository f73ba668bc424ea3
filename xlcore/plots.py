"""The book's figures: one seaborn style and one function per figure.

Every function takes a tidy results DataFrame (from :mod:`xlcore.grid` or
:mod:`xlcore.analysis.relations`) and returns ``(fig, ax)``, so a chapter can add a caption,
save the figure or draw on it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from xlcore.analysis.measures import METRIC_LABELS
from xlcore.analysis.relations import MIN_POINTS
from xlcore.config import pair_lang

REGIME_ORDER = ["baseline", "sequential", "joint", "alternating", "pcgrad", "gradvac"]


def set_style() -> None:
    """The book's one style: seaborn whitegrid, colour-blind palette, compact figures."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.figsize": (7.0, 4.2), "figure.dpi": 100, "savefig.dpi": 120})


def glue_figure(name: str, fig) -> None:
    """Glue ``fig`` under ``name`` for a ``{glue:figure}`` directive and close it.

    Closing matters: the inline backend otherwise also shows every open pyplot figure under
    the cell that made it, so the page would carry each figure twice.
    """
    from myst_nb import glue

    glue(name, fig, display=False)
    plt.close(fig)


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing or frame.empty:
        raise ValueError(
            f"{what} needs a non-empty frame with columns {', '.join(columns)}; "
            f"missing: {', '.join(missing) or 'rows'}"
        )


def _layer_groups(groups) -> list[str]:
    names = [g for g in dict.fromkeys(groups) if g == "embeddings" or g.startswith("layer.")]
    return sorted(names, key=lambda g: -1 if g == "embeddings" else int(g.split(".")[1]))


def distance_curves(
    distances: pd.DataFrame,
    metric: str = "cos_pairs",
    *,
    seed: int | None = None,
    src_lang: str = "en",
):
    """Per-layer curves of one distance metric: the base encoder against each aligned encoder,
    each measured on its own pair's language (one colour per pair, dashed = base)."""
    _require(distances, ["stage", "pair", "lang", "layer", "metric", "value"], "distance_curves")
    d = distances[distances["metric"] == metric]
    if seed is not None:
        d = d[(d["seed"] == seed) | (d["stage"] == "base")]
    aligned = d[d["stage"] == "aligned"]
    fig, ax = plt.subplots()
    palette = sns.color_palette("colorblind", n_colors=max(1, aligned["pair"].nunique()))
    for color, (pair, part) in zip(palette, aligned.groupby("pair"), strict=False):
        lang = pair_lang(pair, src_lang)
        own = part[part["lang"] == lang].groupby("layer")["value"].mean()
        base = d[(d["stage"] == "base") & (d["lang"] == lang)].groupby("layer")["value"].mean()
        ax.plot(own.index, own.values, color=color, marker="o", ms=3, label=f"aligned on {pair}")
        ax.plot(base.index, base.values, color=color, ls="--", alpha=0.8, label=f"base, {lang}")
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    return fig, ax


def alignment_loss(losses: pd.DataFrame):
    """The alignment loss per step for each pair (mean over seeds), from
    :func:`xlcore.grid.alignment_losses`."""
    _require(losses, ["pair", "step", "loss"], "alignment_loss")
    fig, ax = plt.subplots()
    sns.lineplot(data=losses, x="step", y="loss", hue="pair", errorbar=None, ax=ax)
    ax.set_xlabel("alignment step")
    ax.set_ylabel("alignment loss")
    fig.tight_layout()
    return fig, ax


def finetuning_shift(distances: pd.DataFrame, metric: str = "cos_pairs"):
    """How fine-tuning moves a distance metric: per layer, the base encoder against the encoder of
    each task's fine-tuned baseline model (mean over the measured languages)."""
    _require(distances, ["stage", "regime", "task", "layer", "metric", "value"], "plot")
    d = distances[distances["metric"] == metric]
    base = d[d["stage"] == "base"].groupby("layer")["value"].mean()
    fig, ax = plt.subplots()
    ax.plot(
        base.index, base.values, color="0.3", ls="--", marker="o", ms=3, label="before fine-tuning"
    )
    ft = d[(d["stage"] == "finetuned") & (d["regime"] == "baseline")]
    for task, part in ft.groupby("task"):
        curve = part.groupby("layer")["value"].mean()
        ax.plot(curve.index, curve.values, marker="o", ms=3, label=f"after fine-tuning on {task}")
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig, ax


def dev_curve(curve: pd.DataFrame):
    """English dev accuracy per fine-tuning step, one line per training length (the mean over
    seeds, the band their lowest and highest); from :func:`xlcore.lengths.dev_curve`."""
    _require(curve, ["run", "step", "mean", "min", "max"], "dev_curve")
    fig, ax = plt.subplots()
    for run, part in curve.groupby("run", sort=False):
        (line,) = ax.plot(part["step"], part["mean"], marker="o", ms=3, label=run)
        ax.fill_between(part["step"], part["min"], part["max"], color=line.get_color(), alpha=0.2)
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("English dev accuracy (%)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig, ax


def delta_scatter(points: pd.DataFrame, correlation: dict | None = None, *, x: str = "delta"):
    """Δdistance against Δaccuracy, one point per pair, seed and language; the title carries
    the correlation and its 95% interval when ``correlation`` (a row of
    :func:`xlcore.analysis.relations.correlate`) is given."""
    _require(points, [x, "delta_accuracy", "lang"], "delta_scatter")
    fig, ax = plt.subplots()
    sns.scatterplot(
        data=points,
        x=x,
        y="delta_accuracy",
        hue="lang",
        style="own_pair" if "own_pair" in points else None,
        ax=ax,
    )
    ax.axhline(0, color="0.5", lw=0.8)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_xlabel("Δ distance measure (aligned − baseline)")
    ax.set_ylabel("Δ zero-shot accuracy (aligned − baseline)")
    if correlation is not None and np.isfinite(correlation["r"]):
        ax.set_title(
            f"{correlation['method']} r = {correlation['r']:.2f} "
            f"[{correlation['lo']:.2f}, {correlation['hi']:.2f}], n = {correlation['n']}"
        )
    elif correlation is not None:
        ax.set_title(
            f"no {correlation['method']} r: n = {correlation['n']} "
            f"(needs {MIN_POINTS} varying points)"
        )
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig, ax


def gradient_cosine(gradients: pd.DataFrame, *, regime: str = "baseline", task: str | None = None):
    """Per layer group, the task–alignment gradient cosine corrected for attenuation with its
    jackknife 95 % interval, one colour per pair, one panel per probe point (start and end of
    fine-tuning); grey lines: the empirical nulls (shuffled labels, shuffled word pairs; mean
    over pairs)."""
    need = ["regime", "group", "at", "probe_pair", "disattenuated", "cos_low", "cos_high"]
    _require(gradients, [*need, "null_labels", "null_pairs"], "plot")
    g = gradients[gradients["regime"] == regime]
    if task is not None:
        g = g[g["task"] == task]
    order = _layer_groups(g["group"])
    xs = np.arange(len(order))
    ats = [a for a in ("start", "end") if a in set(g["at"])]
    pairs = sorted(g["probe_pair"].unique())
    palette = sns.color_palette(n_colors=len(pairs))
    fig, axes = plt.subplots(1, len(ats), sharey=True, figsize=(4.5 * len(ats), 3.6), squeeze=False)
    for ax, at in zip(axes[0], ats, strict=True):
        part = g[g["at"] == at]
        for j, (pair, color) in enumerate(zip(pairs, palette, strict=True)):
            p = part[part["probe_pair"] == pair].set_index("group").reindex(order)
            est = p["disattenuated"].to_numpy()
            err = np.vstack([est - p["cos_low"].to_numpy(), p["cos_high"].to_numpy() - est])
            shift = (j - (len(pairs) - 1) / 2) * 0.12
            ax.errorbar(xs + shift, est, yerr=err, fmt="o", ms=3, lw=0.8, color=color, label=pair)
        nulls = part.groupby("group")[["null_labels", "null_pairs"]].mean().reindex(order)
        ax.plot(xs, nulls["null_labels"], color="0.5", ls=":", label="null: shuffled labels")
        ax.plot(xs, nulls["null_pairs"], color="0.5", ls="--", label="null: shuffled pairs")
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set_title(f"{at} of fine-tuning", fontsize="small")
        ax.set_xticks(xs, [o.replace("layer.", "L") for o in order], fontsize="x-small")
    axes[0][0].set_ylabel("corrected gradient cosine")
    axes[0][-1].legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    return fig, ax


def gradient_norm_ratio(gradients: pd.DataFrame, *, regime: str = "baseline"):
    """‖∇L_align‖ / ‖∇L_task‖ per layer group (log scale), one line per task: above 1 the
    alignment objective dominates that part of the encoder (the band spans pairs and probe
    points)."""
    _require(gradients, ["regime", "group", "norm_task", "norm_align", "task"], "plot")
    g = gradients[gradients["regime"] == regime].copy()
    order = _layer_groups(g["group"])
    g = g[g["group"].isin(order)]
    g["ratio"] = g["norm_align"] / g["norm_task"]
    g["x"] = g["group"].map({name: i for i, name in enumerate(order)})
    fig, ax = plt.subplots()
    sns.lineplot(data=g, x="x", y="ratio", hue="task", marker="o", errorbar=("pi", 100), ax=ax)
    ax.set_yscale("log")
    ax.axhline(1, color="0.3", lw=0.8)
    ax.set_xticks(range(len(order)), [o.replace("layer.", "L") for o in order], fontsize="small")
    ax.set_xlabel("parameter group")
    ax.set_ylabel("‖∇ align‖ / ‖∇ task‖")
    fig.tight_layout()
    return fig, ax


def message(text: str):
    """A figure that only says ``text`` (where a configuration has nothing to plot)."""
    fig, ax = plt.subplots(figsize=(7.0, 1.2))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    return fig, ax


def zero_shot(intervals: pd.DataFrame, *, task: str, regimes=("baseline", "sequential")):
    """Zero-shot accuracy per target language: the baseline and each pair's aligned model on
    the pair's own language, with seed intervals where there are several seeds (from
    :func:`xlcore.analysis.summary.seed_intervals`)."""
    _require(intervals, ["task", "regime", "pair", "lang", "mean", "low", "high"], "zero_shot")
    d = intervals[(intervals["task"] == task) & intervals["regime"].isin(regimes)].copy()
    own = d["pair"].str.split("-").str[-1] == d["lang"]
    d = d[(d["regime"] == "baseline") | own]
    langs = sorted(d["lang"].unique())
    order = [r for r in regimes if r in set(d["regime"])]
    fig, ax = plt.subplots()
    width = 0.8 / max(1, len(order))
    for i, regime in enumerate(order):
        part = d[d["regime"] == regime].set_index("lang").reindex(langs)
        xs = np.arange(len(langs)) + (i - (len(order) - 1) / 2) * width
        ax.bar(xs, part["mean"], width, label=regime)
        err = np.vstack([part["mean"] - part["low"], part["high"] - part["mean"]])
        if np.isfinite(err).any():
            ax.errorbar(xs, part["mean"], yerr=np.nan_to_num(err), fmt="none", ecolor="0.2")
    ax.set_xticks(np.arange(len(langs)), langs)
    ax.set_xlabel("evaluation language")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig, ax


def regime_comparison(deltas: pd.DataFrame, *, task: str):
    """Δ zero-shot accuracy against the baseline per language (each pair's own language) and
    regime (from :func:`xlcore.analysis.relations.transfer_deltas`)."""
    _require(deltas, ["task", "regime", "lang", "delta", "own_pair"], "regime_comparison")
    d = deltas[(deltas["task"] == task) & deltas["own_pair"]].copy()
    d["delta_points"] = 100 * d["delta"]
    order = [r for r in REGIME_ORDER if r in set(d["regime"])]
    fig, ax = plt.subplots()
    sns.barplot(
        data=d, x="lang", y="delta_points", hue="regime", hue_order=order, ax=ax, errorbar=None
    )
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xlabel("target language (aligned on en–X)")
    ax.set_ylabel("Δ accuracy vs baseline (points)")
    ax.legend(fontsize="small", ncol=3)
    fig.tight_layout()
    return fig, ax


__all__ = [
    "message",
    "zero_shot",
    "set_style",
    "alignment_loss",
    "finetuning_shift",
    "distance_curves",
    "delta_scatter",
    "gradient_cosine",
    "gradient_norm_ratio",
    "regime_comparison",
]
