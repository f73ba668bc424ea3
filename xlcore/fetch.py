"""Fetch the real data from its public upstream sources (``xlcore data fetch``).

Fills a data root with the same layout and the same bytes as ``../shared/data``: Universal
Dependencies and SIB-200 files are copied as they are, LASER's two-file Tatoeba sets and NTREX-128's
line-aligned files are joined into the TSVs of the data README (§3, §4). Every source, its upstream
URL(s) at a fixed commit and the SHA-256 of the final file are listed in ``xlcore/sources.tsv``.

Downloads stream into ``<file>.part`` and resume with an HTTP ``Range`` request when a ``.part`` is
left from an interrupted run (a server that ignores ``Range`` gets the download restarted); each
final file is checked against its SHA-256 and moved into place atomically (``os.replace``); files
already present with the right checksum are skipped. This is the only module of xlcore that uses
the network. Chapter *Data and encoders* shows the command.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tqdm.auto import tqdm

from xlcore.errors import DataError
from xlcore.languages import LANGUAGES
from xlcore.paths import PACKAGE_DIR, download_root
from xlcore.readers import read_tsv

PARTS: tuple[str, ...] = ("ud", "sib200", "tatoeba", "parallel")
UPSTREAM = "https://raw.githubusercontent.com"
MIRROR_ENV = "XLCORE_MIRROR"  # a URL with the same paths that replaces UPSTREAM (builds' fetch)
SOURCES_FILE = PACKAGE_DIR / "sources.tsv"
SOURCE_COLUMNS = ("lang", "part", "path", "method", "sha256", "bytes", "urls")
STAGING = ".upstream"  # below the data root: upstream files that are joined into one final file
_CHUNK = 1 << 16
_TIMEOUT_S = 60
_USER_AGENT = "xlalign-data-fetch/0.1 (Python urllib)"


class UnreachableError(DataError):
    """The upstream server (or the mirror) could not be reached, or is busy or down (HTTP 429,
    5xx): no network, offline, or try later."""


@dataclass(frozen=True)
class Source:
    """One final file of a data root and where it comes from (a row of ``sources.tsv``).

    ``lang`` is ``*`` for a file every language of the part needs (NTREX document ids);
    ``method`` is ``copy`` (one URL, bytes unchanged), ``tatoeba`` (join the LASER ``.eng`` and
    ``.<xxx>`` files), ``ntrex`` (join NTREX source and reference with ids ``nt0001``…) or
    ``ntrex_documents`` (number NTREX's ``DOCUMENT_IDS.tsv``); ``size`` is the final file's
    size in bytes (what a fetch announces; the upstream pieces of a joined file are about as large).
    """

    lang: str
    part: str
    path: str
    method: str
    sha256: str
    size: int
    urls: tuple[str, ...]


def load_sources(path: Path = SOURCES_FILE) -> list[Source]:
    """Every row of ``sources.tsv``."""
    rows = read_tsv(path, SOURCE_COLUMNS)
    return [Source(*row[:5], int(row[5]), tuple(row[6].split())) for row in rows]


def plan(langs: Sequence[str], parts: Sequence[str] = PARTS) -> list[Source]:
    """The sources to fetch for ``langs`` (English, the source language, is always included)."""
    sources = load_sources()
    known = sorted({s.lang for s in sources} - {"*"})
    unknown = [lang for lang in langs if lang not in known]
    if unknown:
        raise DataError(
            f"unknown language(s) {', '.join(map(repr, unknown))}; available: {', '.join(known)} "
            "(ISO 639-1 codes, see xlcore.languages.LANGUAGES)"
        )
    bad = [p for p in parts if p not in PARTS]
    if not parts:
        raise DataError(f"no parts given; choose from: {', '.join(PARTS)}")
    if bad:
        raise DataError(
            f"unknown part(s) {', '.join(map(repr, bad))}; choose from: {', '.join(PARTS)}"
        )
    wanted = {"en", *langs}
    chosen = [s for s in sources if s.lang in wanted and s.part in parts]
    needed_parts = {s.part for s in chosen}
    chosen += [s for s in sources if s.lang == "*" and s.part in needed_parts]
    if not chosen:
        raise DataError(
            f"nothing to fetch for {', '.join(sorted(wanted))} and parts {', '.join(parts)}"
        )
    return chosen


def fetch(
    langs: Sequence[str],
    root: str | os.PathLike,
    *,
    mirror: str | None = None,
    parts: Sequence[str] = PARTS,
    progress: bool = True,
) -> list[Path]:
    """Download ``parts`` of the data for ``langs`` (plus English) into the data root ``root``.

    ``mirror`` replaces ``https://raw.githubusercontent.com`` in every URL (e.g. a local server
    with the same paths). Returns the final files, fetched or already present. Raises
    :class:`DataError` for an unknown language, a failed download or a checksum mismatch (the bad
    file is deleted; the message names it with the expected and the actual SHA-256).
    """
    root = Path(root).expanduser().resolve()
    sources = plan(list(langs), tuple(parts))
    out = []
    for source in tqdm(
        sources, desc="files", unit="file", disable=not progress or len(sources) < 2
    ):
        target = root / source.path
        if target.is_file() and _sha256(target) == source.sha256:
            out.append(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.method == "copy":
            _fetch_copy(source, target, mirror, progress)
        else:
            _fetch_joined(source, root, target, mirror, progress)
        out.append(target)
    shutil.rmtree(root / STAGING, ignore_errors=True)
    return out


def _fetch_copy(source: Source, target: Path, mirror: str | None, progress: bool) -> None:
    part = target.with_name(target.name + ".part")
    _download(_url(source.urls[0], mirror), part, progress=progress, desc=source.path)
    _verify(part, source)
    os.replace(part, target)


def _fetch_joined(
    source: Source, root: Path, target: Path, mirror: str | None, progress: bool
) -> None:
    pieces = []
    for url in source.urls:
        staged = root / STAGING / urlparse(url).path.lstrip("/")
        if not staged.is_file():
            staged.parent.mkdir(parents=True, exist_ok=True)
            part = staged.with_name(staged.name + ".part")
            _download(_url(url, mirror), part, progress=progress, desc=staged.name)
            os.replace(part, staged)
        pieces.append(staged)
    data = JOINERS[source.method](source, [p.read_bytes() for p in pieces])
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    try:
        _verify(tmp, source)
    except DataError:
        for piece in pieces:  # a bad upstream copy must not be reused by the next run
            piece.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)


def _url(url: str, mirror: str | None) -> str:
    if mirror is None:
        return url
    if not url.startswith(UPSTREAM + "/"):
        raise DataError(f"cannot mirror {url}: it does not start with {UPSTREAM}/")
    return mirror.rstrip("/") + url[len(UPSTREAM) :]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, source: Source) -> None:
    got = _sha256(path)
    if got != source.sha256:
        path.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {source.path} (from {' + '.join(source.urls)}): expected "
            f"sha256 {source.sha256}, got {got}; the file was deleted. Run the fetch again; if "
            "the mismatch persists, the upstream file has changed (see xlcore/sources.tsv)"
        )


def _download(url: str, part: Path, *, progress: bool, desc: str) -> None:
    """Stream ``url`` into ``part``, resuming from its current size with a ``Range`` request."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S
        )
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part is not a prefix we can extend: start over
            part.unlink()
            return _download(url, part, progress=progress, desc=desc)
        hint = (
            "; if the commit in the URL is abbreviated, put the full 40-character commit into "
            "xlcore/sources.tsv"
            if exc.code == 404
            else ""
        )
        error = UnreachableError if exc.code == 429 or exc.code >= 500 else DataError  # busy, down
        raise error(f"download failed: {url}: HTTP {exc.code} {exc.reason}{hint}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UnreachableError(
            f"could not download {url}: {reason}; check the network connection (or use --mirror); "
            "partial downloads are resumed on the next run"
        ) from None
    with response:
        resumed = bool(offset) and response.status == 206 and _range_start(response) == offset
        if not resumed:
            offset = 0  # the server ignored Range (200) or answered another range: restart
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        received = offset
        with (
            part.open("ab" if resumed else "wb") as f,
            tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc, disable=not progress, leave=False,
            ) as bar,
        ):  # fmt: skip
            try:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, TimeoutError) as exc:
                raise DataError(
                    f"download of {url} interrupted after {received} bytes ({exc}); run the fetch "
                    f"again to resume from {part}"
                ) from None
    if total is not None and received != total:
        raise DataError(
            f"download of {url} ended after {received} of {total} bytes; run the fetch again to "
            f"resume from {part}"
        )


def _range_start(response) -> int | None:
    value = response.headers.get("Content-Range", "")  # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# Joining upstream files into the data root's TSVs (data README §3, §4)


def _lines(data: bytes, name: str) -> list[str]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: not valid UTF-8 ({exc.reason})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _check_aligned(source: Source, left: list[str], right: list[str]) -> None:
    if len(left) != len(right):
        raise DataError(
            f"{source.path}: upstream files are not line-aligned ({len(left)} vs {len(right)} "
            f"lines: {' + '.join(source.urls)})"
        )
    for number, line in enumerate(left + right, start=1):
        if "\t" in line:
            raise DataError(f"{source.path}: upstream line {number} contains a tab")


def _join_tatoeba(source: Source, pieces: list[bytes]) -> bytes:
    """LASER ``tatoeba.<xxx>-eng.eng`` + ``.<xxx>`` → ``en\\t<lang>`` TSV, text unchanged."""
    en, x = _lines(pieces[0], source.urls[0]), _lines(pieces[1], source.urls[1])
    _check_aligned(source, en, x)
    rows = [f"en\t{source.lang}\n", *(f"{a}\t{b}\n" for a, b in zip(en, x, strict=True))]
    return "".join(rows).encode("utf-8")


def _join_ntrex(source: Source, pieces: list[bytes]) -> bytes:
    """NTREX source + reference → ``id\\ten\\t<lang>`` with ids nt0001…, CRLF and outer
    whitespace removed."""
    en = [s.strip() for s in _lines(pieces[0], source.urls[0])]
    x = [s.strip() for s in _lines(pieces[1], source.urls[1])]
    _check_aligned(source, en, x)
    rows = [f"id\ten\t{source.lang}\n"]
    rows += [f"nt{i:04d}\t{a}\t{b}\n" for i, (a, b) in enumerate(zip(en, x, strict=True), start=1)]
    return "".join(rows).encode("utf-8")


def _join_ntrex_documents(source: Source, pieces: list[bytes]) -> bytes:
    """NTREX ``DOCUMENT_IDS.tsv`` (one document id per sentence line) → ``id\\tdocument_id``."""
    docs = [s.strip() for s in _lines(pieces[0], source.urls[0])]
    rows = ["id\tdocument_id\n", *(f"nt{i:04d}\t{d}\n" for i, d in enumerate(docs, start=1))]
    return "".join(rows).encode("utf-8")


JOINERS = {
    "tatoeba": _join_tatoeba,
    "ntrex": _join_ntrex,
    "ntrex_documents": _join_ntrex_documents,
}


# ---------------------------------------------------------------------------------------------
# Command line: xlcore data fetch


def add_fetch_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``fetch`` to the ``xlcore data`` sub-commands."""
    p = subparsers.add_parser(
        "fetch",
        help="download the real data from its public sources",
        description="Download UD, SIB-200, Tatoeba and NTREX-128 files for the given languages "
        "(English always included) into a data root, verified against SHA-256 checksums.",
    )
    p.add_argument(
        "--langs", required=True,
        help="comma-separated ISO 639-1 codes, e.g. de,ru, or 'all'",
    )  # fmt: skip
    p.add_argument("--root", help=f"data root to fill (default: {download_root()})")
    p.add_argument("--mirror", help=f"URL that replaces {UPSTREAM} (same paths below it)")
    p.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_fetch)
    return p


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def run_fetch(args: argparse.Namespace) -> int:
    """Run ``xlcore data fetch`` and say where the data went and how xlcore finds it."""
    langs = list(LANGUAGES) if args.langs.strip() == "all" else _csv(args.langs)
    root = Path(args.root).expanduser().resolve() if args.root else download_root()
    files = fetch(langs, root, mirror=args.mirror, parts=_csv(args.parts), progress=not args.quiet)
    print(f"{len(files)} files (checksums verified) in {root}")
    if root == download_root():
        print("xlcore reads them automatically when XLCORE_DATA is unset; or set it explicitly:")
    else:
        print("to use them, point XLCORE_DATA at this data root:")
    print(f"  export XLCORE_DATA={root}")
    return 0
