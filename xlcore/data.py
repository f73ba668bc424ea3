"""The data module: one data root and the loaders of its tasks.

UD and SIB-200 splits come as ``datasets.Dataset`` objects with the column names of their
Hugging Face dataset cards (:func:`pos_features`, :func:`sib_features`); the bitext and Tatoeba
come as lists of pairs.

Languages are ISO 639-1 codes throughout (:mod:`xlcore.languages` maps the upstream schemes);
the file readers are in :mod:`xlcore.readers`.

**Data root.** A data root has the layout of ``../shared/data`` (see its README)::

    ud/<lang>/{train,dev,test}.conllu    Universal Dependencies (UPOS tagging)
    sib200/<lang>/{train,dev,test}.tsv   SIB-200 topic classification (index_id, category, text)
    tatoeba/<lang>-en.tsv                Tatoeba retrieval pairs (en, <lang>)
    parallel/en-<lang>.tsv               NTREX-128 pairs for alignment (id, en, <lang>)
    parallel/ntrex_document_ids.tsv      id -> NTREX document id

:func:`resolve_source` picks the root: an explicit path, else ``$XLCORE_DATA``, else the download
folder of ``xlcore data fetch`` (which ``xlcore grid`` and ``xlcore book`` fill first,
:func:`xlcore.sources.provide`); ``XLCORE_DATA=sample`` asks for the small built-in sample corpus
(``xlcore/sample``, same layout, five languages), read only when asked for. Malformed input raises
:class:`~xlcore.errors.DataError` with file and line. Chapter *Data and encoders* explains the data
and the sample corpus.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xlcore.errors import ConfigError, DataError
from xlcore.languages import LANGUAGES
from xlcore.paths import SAMPLE_ROOT, download_root, env_data_root, env_wants_sample
from xlcore.readers import UPOS, TaggedSentence, read_conllu, read_tsv, stat_key

SIB_LABELS: tuple[str, ...] = (
    "science/technology", "travel", "politics", "sports", "health", "entertainment", "geography",
)  # fmt: skip
"""The 7 SIB-200 topic categories (label index = position)."""


TASKS: tuple[str, ...] = ("pos", "sib", "tatoeba", "parallel")
SPLITS: tuple[str, ...] = ("train", "dev", "test")
SIB_COLUMNS: tuple[str, ...] = ("index_id", "category", "text")
DOCUMENT_IDS_FILE = "parallel/ntrex_document_ids.tsv"

_TASK_NAMES = {"pos": "POS (UD)", "sib": "SIB-200", "tatoeba": "Tatoeba", "parallel": "parallel"}
_SOURCE_PARTS = ("ud", "sib200", "tatoeba", "parallel")


@dataclass(frozen=True)
class ParallelPair:
    """One English–X sentence pair; ``id`` is the same sentence in every language's file."""

    id: str
    en: str
    x: str


@dataclass(frozen=True)
class DataSource:
    """A data root and how it was chosen (``XLCORE_DATA``, ``download``, ``sample``, ``explicit``).

    ``note`` (optional) says why, e.g. "XLCORE_DATA=sample".
    """

    root: Path
    kind: str
    note: str = ""

    def describe(self) -> str:
        """One human sentence naming the data, e.g. "real data from /x/data (XLCORE_DATA)"."""
        if self.kind == "sample":
            return "the built-in sample corpus" + (f" ({self.note})" if self.note else "")
        text = {
            "XLCORE_DATA": f"real data from {self.root} (XLCORE_DATA)",
            "download": f"downloaded data from {self.root} (xlcore data fetch)",
            "explicit": f"data from {self.root}",
        }.get(self.kind, f"data from {self.root} ({self.kind})")
        return text + (f" ({self.note})" if self.note else "")

    def label(self) -> str:
        """The data named without this machine's paths, for pages and archives, e.g. "the
        data root named by XLCORE_DATA"."""
        if self.kind == "sample":
            return self.describe()
        return {
            "XLCORE_DATA": "the data root named by XLCORE_DATA",
            "download": "the data fetched from the public sources (xlcore/sources.tsv)",
        }.get(self.kind, "a data root given by path")


# ---------------------------------------------------------------------------------------------
# Language codes


# ---------------------------------------------------------------------------------------------
# Choosing the data root


def _holds_data(root: Path) -> bool:
    return any((root / part).is_dir() and any((root / part).iterdir()) for part in _SOURCE_PARTS)


def _check_root(root: Path, origin: str) -> None:
    hint = (
        "point it at a data root with the layout of ../shared/data (ud/, sib200/, tatoeba/, "
        "parallel/), fill one with `xlcore data fetch --langs de,ru --root DIR`, or set it to "
        "`sample` for the built-in sample corpus"
    )
    if not root.is_dir():
        raise DataError(f"{origin} data root {root} does not exist; {hint}")
    if not _holds_data(root):
        raise DataError(
            f"{origin} data root {root} holds no ud/, sib200/, tatoeba/ or parallel/ data; {hint}"
        )


def resolve_source(root: str | os.PathLike | None = None) -> DataSource:
    """The data source to read: ``root`` if given, else ``$XLCORE_DATA`` (a data root, or
    ``sample`` for the built-in sample corpus), else the download folder of ``xlcore data fetch``.

    A root named explicitly or by ``XLCORE_DATA`` that does not exist (or holds no data) is an
    error, and so is an empty download folder: the sample corpus is read only when asked for.
    """
    if root is not None:
        path = Path(root).expanduser().resolve()
        _check_root(path, "the given")
        return DataSource(path, "explicit")
    if env_wants_sample():
        return DataSource(SAMPLE_ROOT, "sample", "XLCORE_DATA=sample")
    env = env_data_root()
    if env is not None:
        _check_root(env, f"XLCORE_DATA={env}:")
        return DataSource(env, "XLCORE_DATA")
    downloaded = download_root()
    if downloaded.is_dir() and _holds_data(downloaded):
        return DataSource(downloaded, "download")
    raise DataError(no_data_message(downloaded))


def no_data_message(downloaded: Path, reason: str = "", lacking: str = "holds no data") -> str:
    """The one message for a build without data, naming the two ways on."""
    why = f" and the public sources cannot be reached ({reason})" if reason else ""
    return (
        f"no data: XLCORE_DATA is unset, the download folder {downloaded} {lacking}{why}. "
        "Either set XLCORE_DATA to a data root (the layout of the data README: ud/, sib200/, "
        "tatoeba/, parallel/), or build the demo on the built-in sample corpus, whose numbers "
        "mean nothing: `make book DATA=sample` (XLCORE_DATA=sample)"
        + ("" if reason else "; `xlcore grid` and `make book` fetch what a profile needs")
    )


def _source(source: DataSource | str | os.PathLike | None) -> DataSource:
    if isinstance(source, DataSource):
        return source
    return resolve_source(source)


# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Checksums


# ---------------------------------------------------------------------------------------------
# Layout and languages


def task_path(task: str, lang: str, split: str | None = None) -> str:
    """Path of a task file relative to the data root, e.g. ``ud/de/test.conllu``."""
    _check_task(task, split)
    return {
        "pos": f"ud/{lang}/{split}.conllu",
        "sib": f"sib200/{lang}/{split}.tsv",
        "tatoeba": f"tatoeba/{lang}-en.tsv",
        "parallel": f"parallel/en-{lang}.tsv",
    }[task]


def _check_task(task: str, split: str | None) -> None:
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    if task in ("pos", "sib"):
        if split is not None and split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    elif split is not None:
        raise ConfigError(f"{task} data has no splits (one file per language); pass split=None")


def _files(task: str, root: Path) -> dict[str, list[str]]:
    """language → splits present (``[""]`` for split-less tasks)."""
    found: dict[str, list[str]] = {}
    if task in ("pos", "sib"):
        base = root / ("ud" if task == "pos" else "sib200")
        suffix = ".conllu" if task == "pos" else ".tsv"
        if base.is_dir():
            for lang_dir in base.iterdir():
                splits = [s for s in SPLITS if (lang_dir / f"{s}{suffix}").is_file()]
                if splits:
                    found[lang_dir.name] = splits
    else:
        pattern = re.compile(r"(\w+)-en\.tsv" if task == "tatoeba" else r"en-(\w+)\.tsv")
        base = root / task
        if base.is_dir():
            for f in base.iterdir():
                m = pattern.fullmatch(f.name)
                if m and f.is_file():
                    found[m.group(1)] = [""]
    return found


def available_languages(
    task: str, split: str | None = None, source: DataSource | str | os.PathLike | None = None
) -> list[str]:
    """Sorted language codes that have ``task`` data (the ``split`` file, if given) in ``source``.

    ``task`` is one of ``pos``, ``sib``, ``tatoeba``, ``parallel``; the last two have no splits.
    """
    _check_task(task, split)
    found = _files(task, _source(source).root)
    return sorted(lang for lang, splits in found.items() if split is None or split in splits)


def _locate(task: str, lang: str, split: str | None, source: DataSource) -> Path:
    _check_task(task, split)
    found = _files(task, source.root)
    what = _TASK_NAMES[task] + (f" {split}" if split else "")
    if lang not in found:
        available = sorted(lg for lg, splits in found.items() if split is None or split in splits)
        known = f" ({LANGUAGES[lang]})" if lang in LANGUAGES else ""
        raise DataError(
            f"unknown language {lang!r}{known} for {what}; available in {source.describe()}: "
            f"{', '.join(available) or 'none'}"
        )
    if split is not None and split not in found[lang]:
        raise DataError(
            f"{_TASK_NAMES[task]} has no {split!r} split for {lang!r} in {source.describe()}; "
            f"{lang!r} has: {', '.join(found[lang])}"
        )
    return source.root / task_path(task, lang, split)


def _take(items: list, limit: int | None) -> list:
    """``limit`` items spread over the whole file, in file order (all items when None).

    Files are often sorted (SIB-200 by category), so the first N would be a biased sample.
    The subset is a fixed pseudo-random choice that depends only on the file's length, so
    parallel files (SIB-200 in every language) give the same rows in every language.
    """
    if limit is None:
        return items
    if limit < 0:
        raise ConfigError(f"limit must be None or >= 0, got {limit}")
    if limit >= len(items):
        return items
    chosen = np.sort(np.random.default_rng(len(items)).permutation(len(items))[:limit])
    return [items[i] for i in chosen]


# ---------------------------------------------------------------------------------------------
# Task loaders


def _datasets():
    # imported on first use: ``datasets`` takes about a second to import (bench_datasets.py),
    # which the CLI and the chapters need not pay
    import datasets

    return datasets


def pos_features():
    """The columns of a UD split, named as on the Hugging Face ``universal_dependencies``
    dataset card: ``tokens`` (syntactic words) and ``upos`` (:data:`~xlcore.readers.UPOS`
    indices; the feature's ``names`` decode them)."""
    ds = _datasets()
    return ds.Features(
        {
            "tokens": ds.List(ds.Value("string")),
            "upos": ds.List(ds.ClassLabel(names=list(UPOS))),
        }
    )


def sib_features():
    """The columns of a SIB-200 split, named as on the Hugging Face ``Davlan/sib200`` dataset
    card: ``index_id``, ``category`` (one of :data:`SIB_LABELS`) and ``text``."""
    ds = _datasets()
    return ds.Features(
        {"index_id": ds.Value("string"), "category": ds.Value("string"), "text": ds.Value("string")}
    )


def pos_dataset(sentences: Sequence[TaggedSentence]):
    """Parsed UD sentences as a ``datasets.Dataset`` with :func:`pos_features`."""
    index = {tag: i for i, tag in enumerate(UPOS)}
    columns = {
        "tokens": [list(s.words) for s in sentences],
        "upos": [[index[t] for t in s.upos] for s in sentences],
    }
    return _datasets().Dataset.from_dict(columns, features=pos_features())


def sib_dataset(rows: Sequence[Sequence[str]]):
    """SIB-200 rows ``(index_id, category, text)`` as a ``datasets.Dataset`` with
    :func:`sib_features`."""
    columns = {name: [r[i] for r in rows] for i, name in enumerate(SIB_COLUMNS)}
    return _datasets().Dataset.from_dict(columns, features=sib_features())


def load_pos(
    lang: str,
    split: str,
    source: DataSource | str | os.PathLike | None = None,
    limit: int | None = None,
):
    """UD sentences of ``ud/<lang>/<split>.conllu`` as a ``datasets.Dataset``
    (:func:`pos_features`); a fixed subset of ``limit`` when given."""
    path = _locate("pos", lang, split, _source(source))
    return pos_dataset(_take(read_conllu(path), limit))


def load_sib(
    lang: str,
    split: str,
    source: DataSource | str | os.PathLike | None = None,
    limit: int | None = None,
):
    """SIB-200 examples of ``sib200/<lang>/<split>.tsv`` as a ``datasets.Dataset``
    (:func:`sib_features`); a fixed subset of ``limit`` when given."""
    path = _locate("sib", lang, split, _source(source))
    return sib_dataset(_take(list(_sib_cached(*stat_key(path))), limit))


@functools.lru_cache(maxsize=128)
def _sib_cached(path: str, size: int, mtime_ns: int) -> tuple[tuple[str, str, str], ...]:
    out = []
    for line, (index_id, category, text) in enumerate(read_tsv(path, SIB_COLUMNS), start=2):
        if category not in SIB_LABELS:
            raise DataError(
                f"{path}:{line}: unknown category {category!r}; expected one of: "
                f"{', '.join(SIB_LABELS)}"
            )
        if not text.strip():
            raise DataError(f"{path}:{line}: empty text")
        out.append((index_id, category, text))
    _check_unique(path, [x[0] for x in out])
    if not out:
        raise DataError(f"{path}:2: no examples after the header")
    return tuple(out)


def load_tatoeba(
    lang: str, source: DataSource | str | os.PathLike | None = None
) -> list[tuple[str, str]]:
    """Tatoeba retrieval pairs ``(en, x)`` of ``tatoeba/<lang>-en.tsv``, in file order."""
    path = _locate("tatoeba", lang, None, _source(source))
    rows = read_tsv(path, ("en", lang))
    _check_pairs(path, rows)
    return [(en, x) for en, x in rows]


def load_parallel(
    lang: str, source: DataSource | str | os.PathLike | None = None
) -> list[ParallelPair]:
    """English–X sentence pairs of ``parallel/en-<lang>.tsv``, in file order."""
    path = _locate("parallel", lang, None, _source(source))
    rows = read_tsv(path, ("id", "en", lang))
    _check_pairs(path, [row[1:] for row in rows])
    _check_unique(path, [row[0] for row in rows])
    return [ParallelPair(*row) for row in rows]


def _check_pairs(path: Path, pairs: Sequence[Sequence[str]]) -> None:
    if not pairs:
        raise DataError(f"{path}:2: no sentence pairs after the header")
    for line, pair in enumerate(pairs, start=2):
        for side in pair:
            if not side.strip():
                raise DataError(f"{path}:{line}: empty sentence")


def _check_unique(path: str | Path, ids: Sequence[str]) -> None:
    seen: dict[str, int] = {}
    for line, item in enumerate(ids, start=2):
        if item in seen:
            raise DataError(f"{path}:{line}: duplicate id {item!r} (first on line {seen[item]})")
        seen[item] = line


# ---------------------------------------------------------------------------------------------
# Held-out split of the bitext


def heldout_split(
    pairs: Sequence[ParallelPair],
    heldout_fraction: float = 0.1,
    *,
    source: DataSource | str | os.PathLike | None = None,
) -> tuple[list[ParallelPair], list[ParallelPair]]:
    """Deterministic ``(train, heldout)`` split of parallel pairs, both in input order.

    When the source has ``parallel/ntrex_document_ids.tsv`` and it lists every pair's id, whole
    documents go to one side (no held-out sentence shares a news story with training); documents
    are taken in the order of the SHA-256 of their id until ``heldout_fraction`` of the pairs is
    held out. Otherwise (the sample corpus) the last pairs by id are held out.
    """
    if not 0 <= heldout_fraction < 1:
        raise ConfigError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    pairs = list(pairs)
    target = round(len(pairs) * heldout_fraction)
    if heldout_fraction > 0 and len(pairs) > 1:
        target = max(target, 1)
    documents = _document_ids(_source(source), [p.id for p in pairs])
    if documents is None:
        held = {p.id for p in sorted(pairs, key=lambda p: p.id)[len(pairs) - target :]}
    else:
        sizes: dict[str, int] = {}
        for p in pairs:
            sizes[documents[p.id]] = sizes.get(documents[p.id], 0) + 1
        order = sorted(sizes, key=lambda d: hashlib.sha256(d.encode()).hexdigest())
        chosen: set[str] = set()
        count = 0
        for doc in order:
            if count >= target:
                break
            chosen.add(doc)
            count += sizes[doc]
        held = {p.id for p in pairs if documents[p.id] in chosen}
    return [p for p in pairs if p.id not in held], [p for p in pairs if p.id in held]


def _document_ids(source: DataSource, ids: Sequence[str]) -> dict[str, str] | None:
    path = source.root / DOCUMENT_IDS_FILE
    if not path.is_file():
        return None
    mapping = dict(read_tsv(path, ("id", "document_id")))
    missing = [i for i in ids if i not in mapping]
    if len(missing) == len(ids):
        return None  # pairs from another corpus: no document information applies
    if missing:
        raise DataError(
            f"{path}: no document id for {len(missing)} of the pairs (e.g. {missing[0]!r}); "
            "the file does not belong to this parallel data"
        )
    return mapping
