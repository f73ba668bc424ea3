"""The loss comparison: sequential alignment with each of several losses on one pair and task,
each a small grid of its own, run together."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from xlcore.config import Config, pair_lang
from xlcore.frames import evaluation_frame
from xlcore.grid import run_grids


def loss_comparison_configs(
    config: Config, losses: Sequence[str], *, task: str, pair: str | None = None
) -> list[Config]:
    """The small grids of :func:`compare_losses`, one per loss: baseline and sequential
    alignment on ``pair`` (default: the config's first), evaluated on the pair's own language.
    ``xlcore book`` runs them with the chapters' grids, so the combining chapter finds them done."""
    pair = pair or config.pairs[0]
    lang = pair_lang(pair, config.src_lang)
    return [
        dataclasses.replace(
            config,
            align_loss=loss,
            pairs=(pair,),
            tgt_langs=(lang,),
            tasks=(task,),
            regimes=("baseline", "sequential"),
            analyses=(),
            strategy_pairs=(),
        )
        for loss in losses
    ]


def compare_losses(config: Config, losses, *, pair: str, task: str, root: Path | None = None):
    """Sequential alignment with each loss in ``losses`` on one ``pair`` and ``task``: a small
    grid per loss (:func:`loss_comparison_configs`), run or reused; the small grids are executed
    together (:func:`xlcore.grid.run_grids`, ``$XLCORE_JOBS`` runs at a time).

    Returns one row per loss: task, pair, align_loss, baseline, accuracy, delta.
    """
    from xlcore.analysis.relations import transfer_deltas

    smalls = loss_comparison_configs(config, losses, task=task, pair=pair)
    rows = []
    for loss, grid in zip(losses, run_grids(smalls, root=root, progress=False), strict=True):
        d = transfer_deltas(evaluation_frame(grid), config.src_lang)
        own = d[d["own_pair"]]
        rows.append(
            {
                "task": task,
                "pair": pair,
                "align_loss": loss,
                "baseline": own["baseline"].mean(),
                "accuracy": own["accuracy"].mean(),
                "delta": own["delta"].mean(),
            }
        )
    return pd.DataFrame(rows)
