"""Result frames: the finished runs of a planned grid as tidy pandas DataFrames."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd


def _complete_runs(grid, kind: str) -> Iterator:
    for step in grid.steps:
        if step.run.kind == kind and step.run.complete:
            yield step.run


def _frame(grid, kind: str, key: str = "records") -> pd.DataFrame:
    rows = []
    for run in _complete_runs(grid, kind):
        rows.extend(run.metrics().get(key, []))
    return pd.DataFrame(rows)


def evaluation_frame(grid) -> pd.DataFrame:
    """The grid's zero-shot results as one tidy DataFrame (one row per model and language)."""
    return _frame(grid, "evaluate")


def sentence_frame(grid) -> pd.DataFrame:
    """Per test sentence of every zero-shot evaluation: columns task, regime, pair, seed, lang,
    sentence (its index in the test set), correct and total (words, or 1 for a sentence
    label)."""
    parts = []
    for run in _complete_runs(grid, "evaluate"):
        spec = run.spec["spec"]
        for block in run.metrics()["sentences"]:
            part = pd.DataFrame({"correct": block["correct"], "total": block["total"]})
            part.insert(0, "sentence", range(len(part)))
            for name in ("lang", "seed", "pair", "regime", "task"):
                part.insert(0, name, block["lang"] if name == "lang" else spec[name])
            parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def distance_frame(grid) -> pd.DataFrame:
    """Distance measures of every encoder of the grid: columns stage (base, aligned,
    finetuned), task, regime, pair, seed, lang, layer, level, metric, value, n."""
    return _frame(grid, "distances")


def distance_items(grid) -> pd.DataFrame:
    """Per-item values of :data:`xlcore.analysis.measures.ITEM_METRICS` at the last layer: one
    row per encoder, language and metric, with lists ``item``, ``cluster`` (a word pair's
    sentence) and ``value``, and the columns of :func:`distance_frame` that name the encoder."""
    return _frame(grid, "distances", "items")


def gradient_frame(grid) -> pd.DataFrame:
    """Gradient probe records: one row per probed model (task, regime, pair, seed, at: start
    or end of fine-tuning), probe pair and parameter group, with the columns of
    :func:`xlcore.analysis.probes.group_record`."""
    return _frame(grid, "probe")


def alignment_losses(grid) -> pd.DataFrame:
    """Per-step alignment losses of every aligned encoder: columns pair, seed, step, loss."""
    rows = []
    for run in _complete_runs(grid, "align"):
        spec = run.spec["spec"]
        rows.extend(
            {"pair": spec["pair"], "seed": spec["seed"], "step": i + 1, "loss": v}
            for i, v in enumerate(run.metrics()["align_losses"])
        )
    return pd.DataFrame(rows)


def finetune_logs(grid) -> pd.DataFrame:
    """Per-step training logs of every fine-tuning run (losses, dev accuracy, and for
    pcgrad/gradvac the cosine of the two gradients at every step)."""
    rows = []
    for run in _complete_runs(grid, "finetune"):
        spec = run.spec["spec"]
        context = {k: spec[k] for k in ("task", "regime", "pair", "seed")}
        rows.extend({**context, **e} for e in run.metrics()["log"])
    return pd.DataFrame(rows)
