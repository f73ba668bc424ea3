"""Which sentences the distance analysis reads: seeded samples of the SIB-200 test sentences
(stratified over the topics) and of the Tatoeba pairs, per language.

One function chooses them for the distances step and for vocabulary trimming, which must cover
every text a model of the grid reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xlcore import data as xdata
from xlcore.errors import ConfigError

SAMPLE_SEED = 0
"""Seeds the sentence samples (and the distance analysis's random pairs): one sample for every
encoder, so stages compare on the same items."""


PROBE_SEED = 1
"""Draws the test rows kept out of evaluation for the gradient probes' target-language stream."""


def sample_rows(n: int, limit: int | None, seed: int = 0) -> list[int]:
    """``limit`` of ``range(n)`` drawn at random (seeded), in file order; all when None.

    A file's first rows are no sample of it: Tatoeba's first 100 of 1,000 put German P@1 at its
    ceiling."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=limit, replace=False).tolist())


def _rows(examples, rows: list[int]):
    """The ``rows`` of a ``datasets.Dataset`` (as one) or of a list."""
    if hasattr(examples, "select"):
        return examples.select(rows)
    return [examples[i] for i in rows]


def probe_split(examples, held: int):
    """(evaluated, probed): ``held`` test examples drawn at random (seeded) for the gradient
    probes' target-language stream where a language has no dev split, and the rest, which
    alone are evaluated; both in file order, of the type of ``examples`` (a dataset or a
    list)."""
    n = len(examples)
    if held > n // 2:
        raise ConfigError(
            f"probe_test_rows={held} would keep {held} of {n} test examples out of "
            "evaluation (at most half may go); lower probe_test_rows"
        )
    probed = set(sample_rows(n, held, seed=PROBE_SEED)) if held else set()
    evaluated = [i for i in range(n) if i not in probed]
    return _rows(examples, evaluated), _rows(examples, sorted(probed))


def stratified_rows(labels: Sequence[int], limit: int | None, seed: int = 0) -> list[int]:
    """``limit`` row indices drawn at random (seeded) within each label, in file order, with
    each label's share of the rows (largest remainder); all when None.

    SIB-200 files are sorted by topic: their first 100 test rows cover 3 of the 7 topics.
    """
    n = len(labels)
    if limit is None or limit >= n:
        return list(range(n))
    labels = np.asarray(labels)
    values, sizes = np.unique(labels, return_counts=True)
    quota = sizes * limit // n
    short = limit - int(quota.sum())
    # stable: equal remainders go to the lower label, so the quotas are deterministic
    quota[np.argsort(-(sizes * limit % n), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    rows = [
        rng.choice(np.flatnonzero(labels == v), size=int(q), replace=False)
        for v, q in zip(values, quota, strict=True)
    ]
    return sorted(np.concatenate(rows).tolist())


def distance_sentences(
    source, src_lang: str, langs: Sequence[str], limit: int | None, seed: int = SAMPLE_SEED
) -> tuple[dict, dict]:
    """Per language of ``langs``, ``(english, x)`` sentence lists: ``limit`` SIB-200 test
    sentences shared with English (stratified over the topics) and ``limit`` Tatoeba pairs
    (where the data source has them)."""
    parallel, tatoeba = {}, {}
    en_sib = xdata.load_sib(src_lang, "test", source=source).to_list()
    for lang in langs:
        x_sib = xdata.load_sib(lang, "test", source=source)
        x_text = dict(zip(x_sib["index_id"], x_sib["text"], strict=True))
        # English file order and topics: languages sharing the same ids get the same sample
        shared = [e for e in en_sib if e["index_id"] in x_text]
        topics = [xdata.SIB_LABELS.index(e["category"]) for e in shared]
        rows = stratified_rows(topics, limit, seed)
        parallel[lang] = (
            [shared[i]["text"] for i in rows],
            [x_text[shared[i]["index_id"]] for i in rows],
        )
        if lang in xdata.available_languages("tatoeba", source=source):
            pairs = xdata.load_tatoeba(lang, source=source)
            rows = sample_rows(len(pairs), limit, seed)
            tatoeba[lang] = ([pairs[i][0] for i in rows], [pairs[i][1] for i in rows])
    return parallel, tatoeba
