"""Scoring task models: POS token accuracy and SIB-200 accuracy / macro-F1, per language.

The same functions score English dev sets for model selection and every target language for
zero-shot transfer (chapter *Transfer*).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from xlcore.batching import collate, length_pieces, length_sorted_batches
from xlcore.device import autocast
from xlcore.tasks import Task, get_task
from xlcore.tokens import IGNORE_INDEX


@torch.no_grad()
def predict(
    model,
    encoded: Sequence[dict],
    task: str | Task,
    tokenizer,
    batch_size: int,
    device: torch.device,
    bf16: bool = False,
    split_by_length: bool = False,
) -> list:
    """Predicted label ids: per example, a list over labelled positions (POS) or one id (SIB).

    Examples run in length-sorted batches of ``batch_size``; with ``split_by_length`` each batch
    runs in its :func:`length_pieces`, every piece padded only to its own longest example (the
    same predictions up to floating-point rounding, far fewer padded tokens on treebanks whose
    sentence lengths vary). One autocast context covers the call, so each weight is cast to
    bf16 once, not once per batch.
    """
    task = get_task(task)
    was_training = model.training
    model.eval()
    preds: list = [None] * len(encoded)
    lengths = [len(e["input_ids"]) for e in encoded]
    try:
        with autocast(device, bf16):
            for idx in length_sorted_batches(lengths, batch_size):
                whole = [range(len(idx))]
                pieces = length_pieces([lengths[i] for i in idx]) if split_by_length else whole
                for piece in pieces:
                    rows = [idx[j] for j in piece]
                    _predict_batch(model, encoded, rows, task, tokenizer, device, preds)
    finally:
        model.train(was_training)
    return preds


def _predict_batch(model, encoded, rows, task: Task, tokenizer, device, preds) -> None:
    """Fill ``preds`` for the examples ``rows``, run as one batch padded to its longest."""
    batch = collate([encoded[i] for i in rows], tokenizer, task)
    logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
    best = logits.argmax(-1).cpu()
    for row, i in enumerate(rows):
        if task.token_level:
            keep = batch["labels"][row] != IGNORE_INDEX
            preds[i] = best[row][keep].tolist()
        else:
            preds[i] = int(best[row])


def evaluate(
    model,
    encoded: Sequence[dict],
    task: str | Task,
    tokenizer,
    batch_size: int,
    device: torch.device,
    bf16: bool = False,
    split_by_length: bool = False,
) -> dict[str, float]:
    """Predict and score in one call."""
    preds = predict(model, encoded, task, tokenizer, batch_size, device, bf16, split_by_length)
    return get_task(task).score(encoded, preds)


def majority_baseline(train, test) -> float:
    """Accuracy of always predicting the most frequent English training tag (UD datasets,
    :func:`xlcore.data.load_pos`)."""
    counts = Counter(tag for tags in train["upos"] for tag in tags)
    if not counts or not len(test):
        return float("nan")
    top = counts.most_common(1)[0][0]
    tags = test["upos"]
    return sum(tag == top for t in tags for tag in t) / sum(len(t) for t in tags)
