"""The tasks as objects: their labels, how their examples are read, encoded for a model and scored.

POS tagging (UD) labels every word on its first sub-word; SIB-200 labels a sentence. Code that
trains, batches or predicts asks a task for ``token_level`` instead of testing its name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from sklearn.metrics import accuracy_score, f1_score

from xlcore import data as xdata
from xlcore.config import unknown_key_message
from xlcore.errors import ConfigError
from xlcore.readers import UPOS
from xlcore.tokens import IGNORE_INDEX, label_first_subwords


@contextlib.contextmanager
def _quiet_map():
    """``Dataset.map`` draws a progress bar for every split it encodes; the grid draws its own."""
    from datasets.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def _encode(examples, encode_batch: Callable) -> list[dict]:
    """``examples`` (a ``datasets.Dataset``) through ``Dataset.map(batched=True)``, as the rows
    the collator takes: input_ids, labels and n_words."""
    if len(examples) == 0:
        return []
    with _quiet_map():
        mapped = examples.map(encode_batch, batched=True, remove_columns=examples.column_names)
    return mapped.select_columns(["input_ids", "labels", "n_words"]).to_list()


def encode_pos(tokenizer, sentences, max_length: int) -> list[dict]:
    """Tokenise tagged sentences (:func:`xlcore.data.load_pos`); labels on first contentful
    sub-words, -100 elsewhere."""

    def encode_batch(batch: dict) -> dict:
        enc = tokenizer(
            batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length
        )
        return {
            "input_ids": enc["input_ids"],
            "labels": [
                label_first_subwords(enc.word_ids(i), enc.tokens(i), tags)
                for i, tags in enumerate(batch["upos"])
            ],
            "n_words": [len(words) for words in batch["tokens"]],
        }

    return _encode(sentences, encode_batch)


def encode_sib(tokenizer, examples, max_length: int) -> list[dict]:
    """Tokenise labelled sentences (:func:`xlcore.data.load_sib`) for sequence
    classification; the label is the category's index in :data:`xlcore.data.SIB_LABELS`."""
    index = {name: i for i, name in enumerate(xdata.SIB_LABELS)}

    def encode_batch(batch: dict) -> dict:
        enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
        return {
            "input_ids": enc["input_ids"],
            "labels": [index[c] for c in batch["category"]],
            "n_words": [1] * len(batch["text"]),
        }

    return _encode(examples, encode_batch)


def score_pos(encoded: Sequence[dict], preds: Sequence) -> dict[str, float]:
    """Accuracy over words; words cut off by truncation count as wrong."""
    gold, pred = [], []
    n_words = 0
    for e, p in zip(encoded, preds, strict=True):
        gold.extend(lab for lab in e["labels"] if lab != IGNORE_INDEX)
        pred.extend(p)
        n_words += e["n_words"]
    correct = sum(int(a == b) for a, b in zip(gold, pred, strict=True))
    return {
        "accuracy": correct / n_words if n_words else float("nan"),
        "n": n_words,
        "truncated_words": n_words - len(gold),
    }


def score_sib(encoded: Sequence[dict], preds: Sequence) -> dict[str, float]:
    """Accuracy and macro-F1 over the labels present in gold or predictions (sklearn's default)."""
    gold = [e["labels"] for e in encoded]
    return {
        "accuracy": float(accuracy_score(gold, preds)),
        "macro_f1": float(f1_score(gold, preds, average="macro", zero_division=0)),
        "n": len(gold),
    }


def correct_per_example(encoded: Sequence[dict], preds: Sequence) -> tuple[list[int], list[int]]:
    """Per example, the items predicted correctly and the items scored: words for a tagging
    task (words cut off by truncation count as scored and wrong, as in :func:`score_pos`), one
    for a sentence label. Intervals resample these (:mod:`xlcore.analysis.stats`)."""
    correct, total = [], []
    for e, p in zip(encoded, preds, strict=True):
        if isinstance(p, list):
            gold = [lab for lab in e["labels"] if lab != IGNORE_INDEX]
            correct.append(sum(int(a == b) for a, b in zip(gold, p, strict=True)))
        else:
            correct.append(int(e["labels"] == p))
        total.append(int(e["n_words"]))
    return correct, total


@dataclass(frozen=True)
class Task:
    """A task: its name, labels and granularity, and the functions that read, encode and score
    its examples."""

    name: str
    title: str
    labels: tuple[str, ...]
    token_level: bool  # one label per word (on its first sub-word), else one per sentence
    load: Callable  # (lang, split, source=, limit=) -> examples
    encode: Callable  # (tokenizer, examples, max_length) -> encoded examples
    score: Callable  # (encoded, predictions) -> metrics
    text_column: str  # the dataset column the tokenizer reads (words or a sentence)

    @property
    def num_labels(self) -> int:
        return len(self.labels)


POS = Task(
    name="pos",
    title="POS (UD)",
    labels=UPOS,
    token_level=True,
    load=xdata.load_pos,
    encode=encode_pos,
    score=score_pos,
    text_column="tokens",
)
SIB = Task(
    name="sib",
    title="SIB-200",
    labels=xdata.SIB_LABELS,
    token_level=False,
    load=xdata.load_sib,
    encode=encode_sib,
    score=score_sib,
    text_column="text",
)
TASKS = MappingProxyType({t.name: t for t in (POS, SIB)})


def get_task(task: str | Task) -> Task:
    """The task called ``task`` (a :class:`Task` is returned as it is)."""
    if isinstance(task, Task):
        return task
    if task not in TASKS:
        raise ConfigError(unknown_key_message(str(task), TASKS, what="task"))
    return TASKS[task]


__all__ = [
    "Task",
    "POS",
    "SIB",
    "TASKS",
    "get_task",
    "encode_pos",
    "encode_sib",
    "correct_per_example",
]
