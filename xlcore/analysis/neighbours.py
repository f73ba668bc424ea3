"""Nearest-neighbour retrieval and random-pair baselines of the distance measures: whether a
query's nearest key is its translation (P@1, weak and strong), and the mismatched pairs that
matched pairs are compared with."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------- retrieval


def _item_ids(ids: Sequence[int] | torch.Tensor | None, n: int, device) -> torch.Tensor:
    """The item each row stands for: its own index unless ``ids`` says which rows are copies."""
    if ids is None:
        return torch.arange(n, device=device)
    return torch.as_tensor(ids, device=device)


def retrieval_hits(
    queries: torch.Tensor, keys: torch.Tensor, ids: Sequence[int] | torch.Tensor | None = None
) -> torch.Tensor:
    """Per query, whether its nearest key (cosine) stands for the same item: the key with the
    same index, or with the same ``ids`` entry (a word pair that occurs in several sentences is
    one item: finding another occurrence of it is no error)."""
    q, k = F.normalize(queries.float(), dim=-1), F.normalize(keys.float(), dim=-1)
    item = _item_ids(ids, len(q), q.device)
    best = (q @ k.T).argmax(dim=1)
    return item[best] == item


def retrieval_p1(
    queries: torch.Tensor, keys: torch.Tensor, ids: Sequence[int] | torch.Tensor | None = None
) -> float:
    """Share of queries retrieved correctly (:func:`retrieval_hits`)."""
    return float(retrieval_hits(queries, keys, ids).float().mean())


def strong_retrieval_hits(
    queries: torch.Tensor, keys: torch.Tensor, ids: Sequence[int] | torch.Tensor | None = None
) -> torch.Tensor:
    """Per query, a hit when the search space holds the keys *and* the other queries: a query
    whose own language is closer than its translation counts as wrong.

    Queries of the query's own item (itself, and with ``ids`` its other occurrences) are left
    out: the same word in the same language says nothing about alignment, and as a competitor
    it would fail every repeated word.
    """
    q, k = F.normalize(queries.float(), dim=-1), F.normalize(keys.float(), dim=-1)
    item = _item_ids(ids, len(q), q.device)
    cross = q @ k.T
    same = (q @ q.T).masked_fill(item[:, None] == item[None, :], float("-inf"))
    best = torch.cat([cross, same], dim=1).argmax(dim=1)
    # a same-language row found is another item (the query's own are masked): a miss
    return torch.cat([item, item])[best] == item


def strong_retrieval_p1(
    queries: torch.Tensor, keys: torch.Tensor, ids: Sequence[int] | torch.Tensor | None = None
) -> float:
    """Share of queries retrieved correctly (:func:`strong_retrieval_hits`)."""
    return float(strong_retrieval_hits(queries, keys, ids).float().mean())


# ----------------------------------------------------------------------------- random pairs


def derangement(n: int, seed: int = 0) -> torch.Tensor:
    """A uniformly drawn permutation of ``range(n)`` without fixed points (empty below 2).

    The random-pair baseline of parallel sentences: every sentence meets exactly one other
    sentence's translation. Drawn, not rolled by one: files are sorted by topic, so a
    neighbour mostly shares the topic and the baseline would be too close.
    """
    if n < 2:
        return torch.empty(0, dtype=torch.long)
    rng = np.random.default_rng(seed)
    while True:  # rejection: about e draws on average
        perm = rng.permutation(n)
        if not (perm == np.arange(n)).any():
            return torch.from_numpy(perm)


def cross_group_partners(groups: Sequence[int], seed: int = 0) -> torch.Tensor:
    """For each item, one item of another group drawn uniformly (seeded); empty when all items
    share one group.

    The random-pair baseline of words, grouped by sentence: two words of one sentence share its
    context, so pairing them would put the baseline too close.
    """
    g = torch.as_tensor(groups, dtype=torch.long)
    order = torch.argsort(g, stable=True)
    _, inverse, counts = torch.unique_consecutive(g[order], return_inverse=True, return_counts=True)
    if len(counts) < 2:
        return torch.empty(0, dtype=torch.long)
    # Each item's group is one run [start, start + size) of ``order``: draw among the other
    # n - size positions and step over the run.
    size = torch.empty_like(g)
    start = torch.empty_like(g)
    size[order] = counts[inverse]
    start[order] = (torch.cumsum(counts, 0) - counts)[inverse]
    others = len(g) - size
    draw = torch.from_numpy(np.random.default_rng(seed).random(len(g))).mul(others).long()
    draw = draw.minimum(others - 1)
    return order[draw + size * (draw >= start)]


def row_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The cosine of row ``i`` of ``a`` with row ``i`` of ``b``, for every ``i`` (in fp32)."""
    return (F.normalize(a.float(), dim=-1) * F.normalize(b.float(), dim=-1)).sum(-1)


def pair_cosines(
    a: torch.Tensor, b: torch.Tensor, partners: torch.Tensor | None = None
) -> tuple[float, float]:
    """Mean cosine of row-aligned pairs, and of mismatched pairs: row ``i`` of ``a`` with row
    ``partners[i]`` of ``b`` (default: a seeded :func:`derangement`); NaN without partners."""
    matched = float(row_cosines(a, b).mean())
    if partners is None:
        partners = derangement(len(a))
    if len(partners) == 0:
        return matched, float("nan")
    return matched, float(row_cosines(a, b[partners.to(b.device)]).mean())
