"""The interactive explorer of chapter *Distances vs transfer*: pick a pair, task, layer and
distance measure; see, per evaluation language, how much alignment moved that measure and how
much zero-shot accuracy moved.

It works in two modes at once. With a kernel (Jupyter), changing a control recomputes the view
from the points table and draws the scatter plot of the selection. In the static HTML book
(no kernel), every view is pre-rendered into nested ``Stack`` widgets whose ``selected_index``
is linked to the controls in the browser (``jslink``), so the controls still switch views.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd

from xlcore.analysis.measures import METRIC_LABELS

CONTROLS = ("pair", "task", "layer", "metric")


def view_table(
    points: pd.DataFrame, *, pair: str, task: str, layer: int, metric: str
) -> pd.DataFrame:
    """Per evaluation language: mean Δdistance (aligned − base encoder) and mean Δaccuracy
    (aligned regime − baseline) over seeds, and the number of seeds. ``points`` is the first
    frame of :func:`xlcore.analysis.relations.distance_vs_transfer`."""
    sel = points[
        (points["stage"] == "aligned")
        & (points["pair"] == pair)
        & (points["task"] == task)
        & (points["layer"] == layer)
        & (points["metric"] == metric)
    ]
    if sel.empty:
        return pd.DataFrame(columns=["lang", "delta", "delta_accuracy", "seeds"])
    out = sel.groupby("lang", sort=True).agg(
        delta=("delta", "mean"),
        delta_accuracy=("delta_accuracy", "mean"),
        seeds=("seed", "nunique"),
    )
    return out.reset_index()


def _bar(value: float, scale: float, colour: str) -> str:
    width = 0 if not np.isfinite(value) or scale <= 0 else min(50.0, 50.0 * abs(value) / scale)
    side = "left:50%" if value >= 0 else f"left:{50 - width:.1f}%"
    return (
        '<div style="position:relative;height:0.9em;width:8em;background:#f2f2f2">'
        f'<div style="position:absolute;{side};width:{width:.1f}%;height:100%;'
        f'background:{colour}"></div></div>'
    )


def view_html(table: pd.DataFrame, *, pair: str, task: str, layer: int, metric: str) -> str:
    """One view as an HTML table with bars (zero in the middle), and Pearson's r of the two
    columns when there are at least three languages."""
    label = METRIC_LABELS.get(metric, metric)
    head = (
        f'<div class="xl-view" data-view="{html.escape(f"{pair}|{task}|{layer}|{metric}")}">'
        f"<p><b>{html.escape(pair)}</b>, {html.escape(task)}, layer {layer}: "
        f"{html.escape(label)}</p>"
    )
    if table.empty:
        return head + "<p><i>no points for this selection</i></p></div>"
    sd = float(np.nanmax(np.abs(table["delta"]))) if len(table) else 0.0
    sa = float(np.nanmax(np.abs(table["delta_accuracy"]))) if len(table) else 0.0
    rows = []
    for r in table.itertuples(index=False):
        rows.append(
            f"<tr><td>{html.escape(str(r.lang))}</td>"
            f"<td style='text-align:right'>{r.delta:+.4f}</td>"
            f"<td>{_bar(r.delta, sd, '#0173b2')}</td>"
            f"<td style='text-align:right'>{100 * r.delta_accuracy:+.2f}</td>"
            f"<td>{_bar(r.delta_accuracy, sa, '#de8f05')}</td><td>{r.seeds}</td></tr>"
        )
    foot = ""
    if len(table) >= 3 and table["delta"].std() > 0 and table["delta_accuracy"].std() > 0:
        r_ = float(np.corrcoef(table["delta"], table["delta_accuracy"])[0, 1])
        foot = f"<p>Pearson r over these {len(table)} languages: {r_:+.2f}</p>"
    return (
        head
        + "<table><thead><tr><th>lang</th><th colspan=2>Δ measure</th>"
        + "<th colspan=2>Δ accuracy (points)</th><th>seeds</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + foot
        + "</div>"
    )


def options(points: pd.DataFrame, layers: Sequence[int] | None = None) -> dict[str, list]:
    """The values each control offers: those present among the aligned-stage points."""
    aligned = points[points["stage"] == "aligned"]
    out = {
        "pair": sorted(aligned["pair"].unique()),
        "task": sorted(aligned["task"].unique()),
        "layer": sorted(int(x) for x in aligned["layer"].unique()),
        "metric": [m for m in METRIC_LABELS if m in set(aligned["metric"])],
    }
    if layers is not None:
        out["layer"] = [x for x in out["layer"] if x in set(layers)]
    return out


def explorer(
    points: pd.DataFrame,
    *,
    layers: Sequence[int] | None = None,
    metrics: Sequence[str] | None = None,
):
    """The explorer widget (a ``VBox``): four dropdowns, the pre-rendered views, and an output
    area that the kernel fills with a recomputed view and its scatter plot on every change."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    opts = options(points, layers)
    if metrics is not None:
        opts["metric"] = [m for m in opts["metric"] if m in set(metrics)]
    empty = [k for k, v in opts.items() if not v]
    if empty:
        raise ValueError(f"explorer: no aligned-stage points for {', '.join(empty)}")
    labels = {
        "pair": list(opts["pair"]),
        "task": list(opts["task"]),
        "layer": [f"layer {x}" for x in opts["layer"]],
        "metric": [METRIC_LABELS[m] for m in opts["metric"]],
    }
    controls = {
        k: w.Dropdown(
            options=[(lab, i) for i, lab in enumerate(labels[k])],
            value=0,
            description=k.capitalize(),
            layout=w.Layout(width="22em"),
        )
        for k in CONTROLS
    }
    links = []

    def nest(level: int, chosen: dict):
        key = CONTROLS[level]
        children = []
        for value in opts[key]:
            here = {**chosen, key: value}
            if level == len(CONTROLS) - 1:
                table = view_table(points, **here)
                children.append(w.HTML(view_html(table, **here)))
            else:
                children.append(nest(level + 1, here))
        stack = w.Stack(children=children, selected_index=0)
        links.append(w.jslink((controls[key], "index"), (stack, "selected_index")))
        return stack

    views = nest(0, {})
    live = w.Output()

    def recompute(_change=None) -> None:
        chosen = {k: opts[k][controls[k].index] for k in CONTROLS}
        table = view_table(points, **chosen)
        live.outputs = ()
        if len(table):
            fig, ax = plt.subplots(figsize=(5.0, 3.2))
            ax.scatter(table["delta"], 100 * table["delta_accuracy"])
            for r in table.itertuples(index=False):
                ax.annotate(r.lang, (r.delta, 100 * r.delta_accuracy), fontsize=9)
            ax.axhline(0, color="grey", lw=0.8)
            ax.axvline(0, color="grey", lw=0.8)
            ax.set_xlabel(f"Δ {METRIC_LABELS[chosen['metric']]}")
            ax.set_ylabel("Δ accuracy (points)")
            ax.set_title("recomputed by the kernel")
            live.append_display_data(fig)
            plt.close(fig)

    for c in controls.values():
        c.observe(recompute, names="index")
    box = w.VBox(
        [
            w.HBox([controls["pair"], controls["task"]]),
            w.HBox([controls["layer"], controls["metric"]]),
            views,
            live,
        ]
    )
    box._xl_links = links  # keep the links alive with the widget
    return box


__all__ = ["CONTROLS", "explorer", "options", "view_html", "view_table"]
