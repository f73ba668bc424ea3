"""Readers for the files of a data root: CoNLL-U (validated), TSV and checksums. Malformed input
raises :class:`~xlcore.errors.DataError` with file and line; parsed files are cached in-process,
keyed on path, size and modification time.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from xlcore.errors import DataError

UPOS: tuple[str, ...] = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip
"""The 17 Universal Dependencies part-of-speech tags, alphabetical (label index = position)."""


_UPOS_SET = frozenset(UPOS)


_INT_ID = re.compile(r"[1-9][0-9]*")


_RANGE_ID = re.compile(r"[1-9][0-9]*-[1-9][0-9]*")


_EMPTY_ID = re.compile(r"[0-9]+\.[1-9][0-9]*")


_RAW_FIELDS = ("xpos", "feats", "head", "deps", "misc")


@dataclass(frozen=True)
class TaggedSentence:
    """One UD sentence: syntactic words and their UPOS tags (no multiword ranges, empty nodes)."""

    words: tuple[str, ...]
    upos: tuple[str, ...]


def stat_key(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    return str(path), st.st_size, st.st_mtime_ns


def _read_text(path: str) -> str:
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({exc.reason})") from None


def read_conllu(path: str | os.PathLike) -> list[TaggedSentence]:
    """Sentences of a CoNLL-U file (``conllu.parse_incr``), words with integer ids only.

    Multiword-token ranges (``1-2``) and empty nodes (``8.1``) are skipped. Every token line must
    have 10 tab-separated columns, word ids must run 1, 2, 3 … and every UPOS must be one of
    :data:`UPOS`; otherwise :class:`DataError` names the file and line.
    """
    return list(_read_conllu_cached(*stat_key(Path(path))))


@functools.lru_cache(maxsize=64)
def _read_conllu_cached(path: str, size: int, mtime_ns: int) -> tuple[TaggedSentence, ...]:
    import conllu

    text = _read_text(path)
    blocks = _validate_conllu(path, text)
    sentences: list[TaggedSentence] = []
    # Only FORM and UPOS are used; keeping the other columns raw halves conllu's parse time.
    raw = {name: (lambda line, i: line[i]) for name in _RAW_FIELDS}
    parsed = conllu.parse_incr(io.StringIO(text), field_parsers=raw)
    index = 0
    while True:
        first_line = blocks[index][0] if index < len(blocks) else text.count("\n") + 1
        try:
            tokens = next(parsed)
        except StopIteration:
            break
        except Exception as exc:  # the conllu package's own errors, mapped to file:line
            raise DataError(f"{path}:{first_line}: {exc}") from None
        if index >= len(blocks):
            raise DataError(f"{path}:{first_line}: unexpected extra sentence")
        words = tuple(t["form"] for t in tokens if isinstance(t["id"], int))
        upos = tuple(t["upos"] for t in tokens if isinstance(t["id"], int))
        if words != blocks[index][1]:
            # conllu also splits on runs of two spaces; a FORM containing them would shift columns.
            raise DataError(f"{path}:{first_line}: sentence does not parse into its own columns")
        if words:
            sentences.append(TaggedSentence(words, upos))
        index += 1
    if index != len(blocks):
        raise DataError(f"{path}:{blocks[index][0]}: sentence was not parsed")
    if not sentences:
        raise DataError(f"{path}:1: no sentences (empty CoNLL-U file?)")
    return tuple(sentences)


def _validate_conllu(path: str, text: str) -> list[tuple[int, tuple[str, ...]]]:
    """Check every token line; return (first line number, word forms) per sentence block."""
    blocks: list[tuple[int, tuple[str, ...]]] = []
    start = 0
    forms: list[str] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            if start:
                blocks.append((start, tuple(forms)))
            start, forms = 0, []
            continue
        start = start or number
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise DataError(f"{path}:{number}: expected 10 tab-separated columns, got {len(cols)}")
        token_id, form, upos = cols[0], cols[1], cols[3]
        if _INT_ID.fullmatch(token_id):
            if int(token_id) != len(forms) + 1:
                raise DataError(
                    f"{path}:{number}: word id {token_id} out of order (expected {len(forms) + 1}; "
                    "is a blank line missing between sentences?)"
                )
            if upos not in _UPOS_SET:
                raise DataError(
                    f"{path}:{number}: UPOS {upos!r} is not one of the 17 UD tags: {' '.join(UPOS)}"
                )
            if not form:
                raise DataError(f"{path}:{number}: empty FORM")
            forms.append(form)
        elif not (_RANGE_ID.fullmatch(token_id) or _EMPTY_ID.fullmatch(token_id)):
            raise DataError(
                f"{path}:{number}: ID {token_id!r} is not a word id (1, 2, …), a range (1-2) or "
                "an empty node (8.1)"
            )
    if start:
        blocks.append((start, tuple(forms)))
    return blocks


def read_tsv(path: str | os.PathLike, columns: Sequence[str]) -> list[tuple[str, ...]]:
    """Rows of a tab-separated file whose header must equal ``columns``.

    No quoting or escaping (``csv.QUOTE_NONE``): a ``"`` is an ordinary character. Every row must
    have exactly ``len(columns)`` fields; otherwise :class:`DataError` names the file and line.
    """
    return list(_read_tsv_cached(*stat_key(Path(path)), tuple(columns)))


@functools.lru_cache(maxsize=256)
def _read_tsv_cached(
    path: str, size: int, mtime_ns: int, columns: tuple[str, ...]
) -> tuple[tuple[str, ...], ...]:
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}:1: empty file; expected the header {'<TAB>'.join(columns)}")
        if tuple(header) != columns:
            raise DataError(
                f"{path}:1: header is {'<TAB>'.join(header)!r}; expected {'<TAB>'.join(columns)!r}"
            )
        rows = []
        for row in reader:
            if len(row) != len(columns):
                raise DataError(
                    f"{path}:{reader.line_num}: expected {len(columns)} tab-separated fields "
                    f"({', '.join(columns)}), got {len(row)}"
                )
            rows.append(tuple(row))
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: {exc}") from None
    return tuple(rows)


def file_checksum(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file, memoised on (path, size, modification time)."""
    return _checksum_cached(*stat_key(Path(path)))


@functools.lru_cache(maxsize=1024)
def _checksum_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksums(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """``{str(path): sha256}`` for every path, in the order given."""
    return {str(p): file_checksum(p) for p in paths}
