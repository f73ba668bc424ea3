"""The data a grid reads: its source (fetched from the public sources when there is none), the
languages that source has, and the file checksums that run keys hash."""

from __future__ import annotations

import os
from pathlib import Path

from xlcore import data as xdata
from xlcore import fetch
from xlcore.config import Config, pair_lang
from xlcore.errors import ConfigError, DataError
from xlcore.paths import SAMPLE_ROOT, download_root, env_data_root, env_wants_sample
from xlcore.readers import file_checksum

LAYOUT = {
    "pos": "ud/{lang}/{split}.conllu",
    "sib": "sib200/{lang}/{split}.tsv",
    "parallel": "parallel/en-{lang}.tsv",
    "tatoeba": "tatoeba/{lang}-en.tsv",
}
_WHAT = {
    "pos": "POS (UD)",
    "sib": "SIB-200",
    "parallel": "parallel (NTREX)",
    "tatoeba": "Tatoeba",
}


def data_source(config: Config) -> xdata.DataSource:
    """The data source a config reads (``data`` = auto, sample, or a path)."""
    if config.data.root == "sample":
        return xdata.DataSource(root=SAMPLE_ROOT, kind="sample")
    if config.data.root == "auto":
        return xdata.resolve_source()
    return xdata.resolve_source(Path(config.data.root))


def fetch_plan(config: Config) -> tuple[list[str], list[str]]:
    """The languages and ``xlcore data fetch`` parts that ``config`` reads: every file of the
    public sources it needs, dev splits included (the probes read them where they exist)."""
    d, distances = config.data, "distances" in config.analysis.analyses
    langs = [d.src_lang, *d.tgt_langs, *d.pair_langs, *(config.distance_langs if distances else ())]
    wanted = {
        "ud": "pos" in d.tasks,
        "sib200": "sib" in d.tasks,
        "parallel": bool(d.pairs) or distances,
        "tatoeba": distances,
    }
    return list(dict.fromkeys(langs)), [part for part in fetch.PARTS if wanted[part]]


def provide(config: Config, progress: bool = True) -> xdata.DataSource:
    """The data source of ``config``, fetched first where there is none.

    With ``data: auto``, ``XLCORE_DATA`` unset and files the profile needs missing from the
    download folder, it says what and how much, then downloads them (progress bars, checksums,
    resume; ``XLCORE_MIRROR`` replaces the upstream host). Offline, one :class:`DataError` names
    the two ways on.
    """
    if config.data.root != "auto" or env_wants_sample() or env_data_root() is not None:
        return data_source(config)
    root = download_root()
    langs, parts = fetch_plan(config)
    missing = [s for s in fetch.plan(langs, parts) if not (root / s.path).is_file()]
    if missing:
        size = sum(s.size for s in missing) / 1e6
        print(
            f"xlcore: no data root; fetching the {len(missing)} files ({size:.1f} MB) that profile "
            f"{config.profile} needs from UD, SIB-200, Tatoeba and NTREX-128 into {root}",
            flush=True,
        )
        try:
            fetch.fetch(langs, root, mirror=os.environ.get(fetch.MIRROR_ENV), parts=parts,
                        progress=progress)  # fmt: skip
        except fetch.UnreachableError as exc:
            lacking = f"lacks {len(missing)} of the files profile {config.profile} reads"
            raise DataError(xdata.no_data_message(root, str(exc), lacking)) from None
    return data_source(config)


def _needs(config: Config) -> list[tuple[str, str, str | None]]:
    needs: list[tuple[str, str, str | None]] = []
    for task in config.data.tasks:
        needs.append((task, config.data.src_lang, "train"))
        needs.append((task, config.data.src_lang, "dev"))
        needs.extend((task, lang, "test") for lang in config.data.tgt_langs)
    src = config.data.src_lang
    needs.extend(("parallel", pair_lang(pair, src), None) for pair in config.data.pairs)
    if "distances" in config.analysis.analyses:
        for lang in config.distance_langs:
            needs += [("parallel", lang, None), ("tatoeba", lang, None)]
    return list(dict.fromkeys(needs))


def validate_languages(config: Config, source: xdata.DataSource) -> None:
    """Reject languages the data source lacks, listing the ones it has."""
    for task, lang, split in _needs(config):
        available = xdata.available_languages(task, split=split, source=source)
        if lang in available:
            continue
        split_txt = f" {split}" if split else ""
        message = (
            f"language {lang!r} has no {_WHAT[task]}{split_txt} data in {source.describe()}; "
            f"available: {', '.join(available) or 'none'}"
        )
        if split and lang in xdata.available_languages(task, source=source):
            has = [s for s in xdata.SPLITS if lang in xdata.available_languages(task, s, source)]
            message += (
                f". {lang!r} has only {', '.join(has)}: add "
                f"{source.root / LAYOUT[task].format(lang=lang, split=split)}"
            )
        raise ConfigError(message)


def checksums(source: xdata.DataSource, items: list[tuple[str, str, str | None]]) -> dict:
    """``{relative path: sha256}`` of the files ``(task, lang, split)`` of ``source``."""
    out = {}
    for task, lang, split in items:
        rel = LAYOUT[task].format(lang=lang, split=split)
        out[rel] = file_checksum(source.root / rel)
    return out
