"""The loss comparison: sequential alignment with each of several losses on one pair and task,
each a small grid derived from the chapter's (computed with the chapters' grids, read by the
combining chapter); the default loss's runs and the baselines are the chapter grid's own."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from xlcore.config import Config, pair_lang
from xlcore.frames import sentence_frame


def loss_comparison_configs(
    config: Config, losses: Sequence[str], *, task: str, pair: str | None = None
) -> list[Config]:
    """The small grids of the loss comparison, one per loss: baseline and sequential alignment
    on ``pair`` (default: the config's first), evaluated on the pair's own language."""
    pair = pair or config.data.pairs[0]
    lang = pair_lang(pair, config.data.src_lang)
    return [
        config.derived(
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


def _own_sentences(grids: Sequence, losses: Sequence[str]) -> pd.DataFrame:
    """The per-sentence results of the comparison on the pair's own language: the baseline
    once, and each loss's sequential runs as the regime named after the loss."""
    parts = []
    for i, (loss, grid) in enumerate(zip(losses, grids, strict=True)):
        c = grid.config
        frame = sentence_frame(grid)
        frame = frame[frame["lang"] == pair_lang(c.data.pairs[0], c.data.src_lang)]
        if i == 0:
            parts.append(frame[frame["regime"] == "baseline"])
        parts.append(frame[frame["regime"] == "sequential"].assign(regime=loss))
    return pd.concat(parts, ignore_index=True)


def loss_table(grids: Sequence, losses: Sequence[str], *, task: str) -> pd.DataFrame:
    """The loss comparison read from its computed small grids (one per loss, in the order of
    :func:`loss_comparison_configs`): one row per loss with task, pair, align_loss, seeds and
    the change against the baseline on the pair's own language (points) with its interval,
    minimum detectable effect and verdict (:func:`xlcore.analysis.transfer.delta_intervals`)."""
    from xlcore.analysis.transfer import delta_intervals

    out = delta_intervals(_own_sentences(grids, losses)).rename(columns={"regime": "align_loss"})
    out = out.set_index("align_loss").loc[list(losses)].reset_index()
    return out[["task", "pair", "align_loss", "seeds", "delta", "low", "high", "mde", "verdict"]]


def loss_contrasts(grids: Sequence, losses: Sequence[str], *, task: str) -> pd.DataFrame:
    """Every loss against every other, seed-paired on the same test sentences: one row per
    (better, worse) pair whose point estimate favours ``better``, with the difference (points),
    its interval, minimum detectable effect and verdict."""
    from xlcore.analysis.transfer import delta_intervals

    frame = _own_sentences(grids, losses)
    frame = frame[frame["regime"] != "baseline"]
    rows = []
    for worse in losses:
        d = delta_intervals(frame, baseline=worse)
        rows.append(d[d["delta"] > 0].assign(worse=worse).rename(columns={"regime": "better"}))
    out = pd.concat(rows, ignore_index=True)
    cols = ["task", "pair", "better", "worse", "seeds", "delta", "low", "high", "mde", "verdict"]
    return out[cols].sort_values("delta", ascending=False, ignore_index=True)
