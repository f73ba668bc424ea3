"""The loss comparison: sequential alignment with each of several losses on one pair and task,
each a small grid of its own (computed with the chapters' grids, read by the combining chapter)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from xlcore.config import Config, pair_lang
from xlcore.frames import evaluation_frame


def loss_comparison_configs(
    config: Config, losses: Sequence[str], *, task: str, pair: str | None = None
) -> list[Config]:
    """The small grids of the loss comparison, one per loss: baseline and sequential alignment
    on ``pair`` (default: the config's first), evaluated on the pair's own language."""
    pair = pair or config.data.pairs[0]
    lang = pair_lang(pair, config.data.src_lang)
    return [
        config.replace(
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


def loss_table(grids: Sequence, losses: Sequence[str], *, task: str) -> pd.DataFrame:
    """The loss comparison read from its computed small grids (one per loss, in the order of
    :func:`loss_comparison_configs`): one row per loss with task, pair, align_loss, baseline,
    accuracy and delta on the pair's own language."""
    from xlcore.analysis.relations import transfer_deltas

    rows = []
    for loss, grid in zip(losses, grids, strict=True):
        c = grid.config
        d = transfer_deltas(evaluation_frame(grid), c.data.src_lang)
        own = d[d["own_pair"]]
        rows.append(
            {
                "task": task,
                "pair": c.data.pairs[0],
                "align_loss": loss,
                "baseline": own["baseline"].mean(),
                "accuracy": own["accuracy"].mean(),
                "delta": own["delta"].mean(),
            }
        )
    return pd.DataFrame(rows)
