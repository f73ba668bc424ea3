"""Batching shared by training, inference and the analyses: shuffled (optionally length-grouped)
training batches as a pure function of (seed, step), length-sorted inference batches, length
pieces that cut padding inside a batch, and dynamic-padding collation (transformers'
collators)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from transformers import (
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
)

from xlcore.tasks import Task, get_task
from xlcore.tokens import IGNORE_INDEX

GROUP_SIZE = 50  # batches per length-sorted chunk (as transformers' LengthGroupedSampler)


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, lengths: Sequence[int] | None = None
) -> list[np.ndarray]:
    """The shuffled batches of one epoch, a pure function of (seed, epoch).

    With ``lengths``, batches are grouped by length: the shuffled order is cut into chunks of
    ``GROUP_SIZE`` batches, each chunk is sorted by length, and the batches are shuffled again,
    so padding shrinks while every batch still mixes examples from the whole epoch's chunk.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    if lengths is None:
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    lengths = np.asarray(lengths)
    chunk = GROUP_SIZE * batch_size
    batches = []
    for start in range(0, n, chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def batch_at(
    step: int, n: int, batch_size: int, seed: int, lengths: Sequence[int] | None = None
) -> np.ndarray:
    """Indices of the examples in training step ``step`` (epochs follow each other)."""
    per_epoch = math.ceil(n / batch_size)
    epoch, within = divmod(step, per_epoch)
    return epoch_batches(n, batch_size, seed, epoch, lengths)[within]


def collate(
    examples: Sequence[dict], tokenizer: PreTrainedTokenizerBase, task: str | Task
) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and ``labels`` of a batch padded to its longest example
    (a token-level task's labels with the ignore index)."""
    features = [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples]
    if get_task(task).token_level:
        pad = DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE_INDEX)
    else:
        pad = DataCollatorWithPadding(tokenizer)
    return dict(pad(features))


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of similar length for inference (less padding); order is restored by index."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]


# A forward + backward call costs about as much as this many more tokens per CPU thread (small
# encoders): the fixed per-call cost that :func:`length_pieces` trades against padding, in training
# and (forward only) in prediction. Threads share the per-token work but not the per-call
# dispatch, hence "per thread". A heuristic.
CALL_COST_TOKENS = 32


def length_pieces(lengths: Sequence[int]) -> list[list[int]]:
    """Split a batch into pieces of similar length: indices into ``lengths``, grouped.

    The examples are sorted by length and cut into contiguous pieces that minimise
    Σ (piece size · longest length in the piece + a per-call cost), i.e. the tokens computed
    when each piece is padded only to its own longest example (dynamic programming over the
    cut points); the per-call cost is :data:`CALL_COST_TOKENS` times torch's thread count.
    """
    call_cost = CALL_COST_TOKENS * torch.get_num_threads()
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    best = [0.0] + [math.inf] * n  # best[j]: cost of the first j sorted examples
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = lengths[order[j - 1]]
        for i in range(j):
            cost = best[i] + (j - i) * longest + call_cost
            if cost < best[j]:
                best[j], cut[j] = cost, i
    pieces, j = [], n
    while j > 0:
        pieces.append(order[cut[j] : j])
        j = cut[j]
    return pieces[::-1]
