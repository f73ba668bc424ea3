"""Scoring task models: POS token accuracy and SIB-200 accuracy / macro-F1, per language.

The same functions score English dev sets for model selection and every target language for
zero-shot transfer (chapter *Transfer*).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from sklearn.metrics import accuracy_score, f1_score

from xlcore.batching import collate, length_pieces, length_sorted_batches
from xlcore.data import LabelledText
from xlcore.device import autocast
from xlcore.readers import UPOS, TaggedSentence
from xlcore.tokens import IGNORE_INDEX, label_first_subwords

UPOS_INDEX = {tag: i for i, tag in enumerate(UPOS)}


def encode_pos(tokenizer, sentences: Sequence[TaggedSentence], max_length: int) -> list[dict]:
    """Tokenise tagged sentences; labels on first contentful sub-words, -100 elsewhere."""
    if not sentences:
        return []
    enc = tokenizer(
        [list(s.words) for s in sentences],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
    )
    out = []
    for i, sent in enumerate(sentences):
        labels = label_first_subwords(
            enc.word_ids(i), enc.tokens(i), [UPOS_INDEX[t] for t in sent.upos]
        )
        out.append({"input_ids": enc["input_ids"][i], "labels": labels, "n_words": len(sent.words)})
    return out


def encode_sib(tokenizer, examples: Sequence[LabelledText], max_length: int) -> list[dict]:
    """Tokenise labelled sentences for sequence classification."""
    if not examples:
        return []
    enc = tokenizer([e.text for e in examples], truncation=True, max_length=max_length)
    return [
        {"input_ids": ids, "labels": e.label, "n_words": 1}
        for ids, e in zip(enc["input_ids"], examples, strict=True)
    ]


@torch.no_grad()
def predict(
    model,
    encoded: Sequence[dict],
    task: str,
    pad_id: int,
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
                    _predict_batch(model, encoded, rows, task, pad_id, device, preds)
    finally:
        model.train(was_training)
    return preds


def _predict_batch(model, encoded, rows, task, pad_id, device, preds) -> None:
    """Fill ``preds`` for the examples ``rows``, run as one batch padded to its longest."""
    batch = collate([encoded[i] for i in rows], pad_id, task)
    logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
    best = logits.argmax(-1).cpu()
    for row, i in enumerate(rows):
        if task == "pos":
            keep = batch["labels"][row] != IGNORE_INDEX
            preds[i] = best[row][keep].tolist()
        else:
            preds[i] = int(best[row])


def score(encoded: Sequence[dict], preds: Sequence, task: str) -> dict[str, float]:
    """Accuracy (POS: over words, truncated words counted wrong) and, for SIB, macro-F1."""
    if task == "pos":
        gold, pred = [], []
        n_words = 0
        for e, p in zip(encoded, preds, strict=True):
            g = [lab for lab in e["labels"] if lab != IGNORE_INDEX]
            gold.extend(g)
            pred.extend(p)
            n_words += e["n_words"]
        correct = sum(int(a == b) for a, b in zip(gold, pred, strict=True))
        return {
            "accuracy": correct / n_words if n_words else float("nan"),
            "n": n_words,
            "truncated_words": n_words - len(gold),
        }
    gold = [e["labels"] for e in encoded]
    return {
        "accuracy": float(accuracy_score(gold, preds)),
        # Macro-F1 over the labels present in gold or predictions (sklearn's default).
        "macro_f1": float(f1_score(gold, preds, average="macro", zero_division=0)),
        "n": len(gold),
    }


def evaluate(
    model,
    encoded: Sequence[dict],
    task: str,
    pad_id: int,
    batch_size: int,
    device: torch.device,
    bf16: bool = False,
    split_by_length: bool = False,
) -> dict[str, float]:
    """Predict and score in one call."""
    preds = predict(model, encoded, task, pad_id, batch_size, device, bf16, split_by_length)
    return score(encoded, preds, task)


def majority_baseline(train: Sequence[TaggedSentence], test: Sequence[TaggedSentence]) -> float:
    """Accuracy of always predicting the most frequent English training tag."""
    counts = Counter(tag for s in train for tag in s.upos)
    if not counts or not test:
        return float("nan")
    top = counts.most_common(1)[0][0]
    total = sum(len(s.upos) for s in test)
    return sum(tag == top for s in test for tag in s.upos) / total
