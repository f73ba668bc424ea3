"""What more training steps buy against what more seeds buy (chapter *Transfer*).

The baseline is fine-tuned again with more steps on one task, seed for seed, and scored on the
same English and pair-language test sentences as the profile's baseline: the paired difference
is what the longer training buys. The profile's own seeds give the other side: how the interval
of an alignment effect narrows from one seed to all of them.
"""

from __future__ import annotations

import pandas as pd

from xlcore.analysis.stats import NULL
from xlcore.config import Config, pair_lang
from xlcore.frames import sentence_frame

STEPS_KEY = {"pos": "pos_max_steps", "sib": "sib_max_steps"}


def length_config(config: Config, steps: int, task: str) -> Config:
    """The longer baseline: ``steps`` fine-tuning steps of ``task``, tested on English and the
    first pair's language."""
    pair = config.data.pairs[0]
    return config.derived(
        **{STEPS_KEY[task]: steps},
        pairs=(pair,),
        tgt_langs=(pair_lang(pair, config.data.src_lang),),
        tasks=(task,),
        regimes=("baseline",),
        analyses=(),
        strategy_pairs=(),
    )


def steps_sentences(main_grid, longer_grid) -> pd.DataFrame:
    """The per-sentence results of both baselines on the longer grid's languages, the regime
    column naming the steps (``"60 steps"``, ``"120 steps"``)."""
    c = longer_grid.config
    task = c.data.tasks[0]
    langs = c.data.test_langs
    parts = []
    for grid in (main_grid, longer_grid):
        frame = sentence_frame(grid)
        frame = frame[
            (frame["task"] == task) & (frame["regime"] == "baseline") & frame["lang"].isin(langs)
        ]
        steps = grid.config.max_steps(task)
        parts.append(frame.assign(regime=f"{steps} steps", pair=""))
    return pd.concat(parts, ignore_index=True)


def steps_gain(main_grid, longer_grid) -> pd.DataFrame:
    """The longer baseline's accuracy minus the profile's, per language, in points, with its
    seed-paired interval and verdict (:func:`xlcore.analysis.transfer.delta_intervals`)."""
    from xlcore.analysis.transfer import delta_intervals

    task = longer_grid.config.data.tasks[0]
    short = f"{main_grid.config.max_steps(task)} steps"
    out = delta_intervals(steps_sentences(main_grid, longer_grid), baseline=short)
    return out.drop(columns="pair").rename(columns={"regime": "steps"})


def seeds_width(sentences: pd.DataFrame, regime: str, langs) -> pd.DataFrame:
    """Mean half-width (points) of ``regime``'s intervals against the baseline on each pair's
    own language among ``langs``, from the first 1, 2, … of the profile's seeds: what each seed
    buys in precision."""
    from xlcore.analysis.transfer import delta_intervals, own_language

    seeds = sorted(sentences["seed"].unique())
    part = sentences[sentences["regime"].isin(["baseline", regime]) & sentences["lang"].isin(langs)]
    rows = []
    for k in range(1, len(seeds) + 1):
        iv = own_language(delta_intervals(part[part["seed"].isin(seeds[:k])]))
        rows.append({"seeds": k, "half_width": float(((iv["high"] - iv["low"]) / 2).mean())})
    return pd.DataFrame(rows)


def dev_curve(grids, task: str) -> pd.DataFrame:
    """English dev accuracy (%) of the baseline of each grid per evaluation step: the mean,
    lowest and highest over seeds, with the grid's training length (column ``run``)."""
    from xlcore.frames import finetune_logs

    parts = []
    for grid in grids:
        logs = finetune_logs(grid)
        dev = logs[(logs["task"] == task) & (logs["regime"] == "baseline")]
        dev = dev.dropna(subset=["dev_accuracy"])
        out = dev.groupby("step")["dev_accuracy"].agg(["mean", "min", "max", "count"])
        out = (100 * out[["mean", "min", "max"]]).assign(seeds=out["count"])
        parts.append(out.reset_index().assign(run=f"{grid.config.max_steps(task)} steps"))
    return pd.concat(parts, ignore_index=True)


def tradeoff_sentence(
    gain: pd.DataFrame | None, width: pd.DataFrame | None, src_lang: str = "en"
) -> str:
    """What the longer training and the seeds bought, read from their intervals (None: the
    comparison did not run)."""
    if gain is None or width is None or gain.empty or width.empty:
        return "The training-length comparison did not run (parameter `longer_steps`)."
    parts = [
        f"{r.lang}: {r.delta:+.1f} points ({r.low:+.1f} to {r.high:+.1f}, {r.verdict})"
        for r in gain.itertuples()
    ]
    first, last = width.iloc[0], width.iloc[-1]
    target = gain[gain["lang"] != src_lang]
    moved = bool(len(target)) and (target["verdict"] != NULL).any()
    seeds = _seeds_sentence(float(first["half_width"]), float(last["half_width"]), last["seeds"])
    choice = (
        "Longer training changes the zero-shot accuracy of the models compared, so the study's "
        "conclusions hold for briefly fine-tuned models; the profile keeps its steps for the "
        "budget and spends it on seeds."
        if moved
        else "Longer training left zero-shot accuracy on the pair's language without a "
        "detectable change: at this budget, seeds buy more than steps."
    )
    return (
        f"Training the baseline for {' and '.join(gain['steps'].unique())} instead of the "
        f"profile's steps changed its accuracy by {'; '.join(parts)}. {seeds} {choice}"
    )


def _seeds_sentence(one: float, many: float, n: int) -> str:
    """How the own-language intervals moved from one seed to ``n``: an interval of one seed
    leaves out the variation between seeds, so it may be the narrower one."""
    moved = "narrowed" if many < one else "widened"
    why = (
        ""
        if many < one
        else ": an interval from one seed leaves out the variation between "
        "seeds, which is larger here than the test sentences' noise"
    )
    return (
        f"Going from 1 to {int(n)} seeds {moved} the own-language intervals of sequential "
        f"alignment from ±{one:.1f} to ±{many:.1f} points{why}."
    )
