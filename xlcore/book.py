"""Build the executable paper: execute the chapters with papermill, then build the HTML.

The chapters are MyST Markdown notebooks in ``book/`` (reviewable, no outputs). :func:`build`

1. resolves the data source (fetching what the profile reads when there is none) and says
   plainly when it is the built-in sample corpus;
2. runs the grids of every chapter, the combining chapter's loss comparison included, as one
   set of runs in the terminal (every chapter then finds its runs finished), and writes the
   results archive (:mod:`xlcore.archive`);
3. converts each chapter with jupytext and executes it with papermill into ``_build/src/book/``,
   skipping a chapter whose source, parameters, xlcore code and data are unchanged since its
   last execution (its fingerprint is stored in the executed notebook's metadata);
4. builds the HTML with ``jupyter-book build`` (execution off, warnings as errors) from
   ``_build/src``, a copy of the root's ``_config.yml`` and ``_toc.yml`` beside the executed
   chapters, into ``_build/html``.

``build(results=archive)`` skips 1 and 2 and executes the chapters on the archive's runs.
A chapter re-executed with other parameters (``make chapter CHAPTER=distances
PARAMS='pairs=["en-fi"]'``) has them checked against its ``parameters`` cell first: an unknown
name is an error. Explained in the book's introduction and reproducibility appendix.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xlcore import archive, chapter, launch, notebooks, widgets
from xlcore.config import make_config, pair_lang, unknown_key_message
from xlcore.errors import BookError, ConfigError
from xlcore.paths import PACKAGE_DIR, PROJECT_DIR, runs_dir

METADATA_KEY = "xlalign"
RESULTS_FILE = "_build/results/xlalign-results-{profile}.zip"  # below the project root
ARCHIVE_LINK = "results.zip"  # the archive's name beside the executed chapters (download link)


@dataclass
class BookBuild:
    """A finished build: where its index page is, and what happened to each chapter."""

    index: Path
    chapters: list[ChapterResult]

    def status(self) -> dict[str, str]:
        return {c.name: c.status for c in self.chapters}


@dataclass
class ChapterResult:
    """What happened to one chapter: ``executed`` or ``unchanged``, and how long it took."""

    name: str
    status: str
    seconds: float
    parameters: dict = field(default_factory=dict)


def chapters(root: Path = PROJECT_DIR) -> list[str]:
    """Chapter names in ``_toc.yml`` order (``book/intro`` → ``intro``)."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files.extend(entry["file"] for entry in part.get("chapters", []))
    files.extend(entry["file"] for entry in toc.get("chapters", []))
    return [Path(f).name for f in files]


def _source(root: Path, name: str) -> Path:
    path = root / "book" / f"{name}.md"
    if not path.is_file():
        raise ConfigError(f"unknown chapter {name!r}; choose one of: {', '.join(chapters(root))}")
    return path


def read_chapter(root: Path, name: str):
    """The chapter as a notebook (jupytext), with exactly one ``parameters`` cell."""
    import jupytext

    nb = jupytext.read(_source(root, name))
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ConfigError(
            f"chapter {name!r} must have exactly one cell tagged 'parameters', found {len(tagged)}"
        )
    return nb


def chapter_parameters(root: Path, name: str) -> dict[str, object]:
    """Parameter names and default values of a chapter, from its ``parameters`` cell."""
    nb = read_chapter(root, name)
    (cell,) = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    out: dict[str, object] = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(target, ast.Name) and node.value is not None:
                out[target.id] = ast.literal_eval(node.value)
    return out


def check_parameters(root: Path, name: str, parameters: Mapping[str, object]) -> None:
    """Reject a parameter the chapter does not declare (naming the ones it does)."""
    known = chapter_parameters(root, name)
    for key in parameters:
        if key not in known:
            raise ConfigError(unknown_key_message(key, known, f"parameter of chapter {name!r}"))


def parse_parameters(items: Sequence[str]) -> dict[str, object]:
    """``['pairs=["en-fi"]', 'profile=smoke']`` → values (Python literals, else plain strings)."""
    out: dict[str, object] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(
                f"parameter {item!r} is not of the form name=value, e.g. pairs=['en-fi']"
            )
        key, text = item.split("=", 1)
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        out[key.strip()] = value
    return out


def _code_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE_DIR)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def fingerprint(root: Path, name: str, parameters: Mapping[str, object], extra: str = "") -> str:
    """What a chapter's output depends on: its source, parameters, xlcore's code, the data root
    and the runs directory (plus ``extra``, e.g. the other chapters' fingerprints)."""
    h = hashlib.sha256()
    h.update(_source(root, name).read_bytes())
    h.update(json.dumps(dict(parameters), sort_keys=True, default=str).encode())
    h.update(_code_digest().encode())
    h.update(os.environ.get("XLCORE_DATA", "").encode())
    h.update(str(runs_dir()).encode())
    h.update(extra.encode())
    return h.hexdigest()


def _stored_fingerprint(path: Path) -> str | None:
    try:
        meta = json.loads(path.read_text())["metadata"]
    except (OSError, ValueError, KeyError):
        return None
    return meta.get(METADATA_KEY, {}).get("fingerprint")


def execute_chapter(
    root: Path,
    name: str,
    parameters: Mapping[str, object],
    *,
    out_dir: Path,
    force: bool = False,
    extra: str = "",
) -> ChapterResult:
    """Execute one chapter into ``out_dir/<name>.ipynb`` unless its fingerprint is unchanged.

    The notebook is written to a temporary file and renamed only when every cell succeeded,
    so a failed execution never replaces a good page; the failed notebook is kept as
    ``<name>.failed.ipynb`` for inspection.
    """
    import nbformat
    import papermill as pm

    check_parameters(root, name, parameters)
    out = out_dir / f"{name}.ipynb"
    fp = fingerprint(root, name, parameters, extra)
    if not force and out.is_file() and _stored_fingerprint(out) == fp:
        return ChapterResult(name, "unchanged", 0.0, dict(parameters))
    nb = read_chapter(root, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{name}.partial.ipynb"
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            nb,
            str(tmp),
            parameters=dict(parameters),
            cwd=str(root / "book"),
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
            report_mode=False,
            # ipykernel warns on every start that its TCP transport is unencrypted (it listens
            # on 127.0.0.1 only); that line would bury what the build says.
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    except pm.PapermillExecutionError as exc:
        failed = out_dir / f"{name}.failed.ipynb"
        os.replace(tmp, failed)
        raise BookError(
            f"chapter {name!r} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
            f"  the executed notebook is in {failed}"
        ) from None
    seconds = time.perf_counter() - start
    done = nbformat.read(tmp, as_version=4)
    notebooks.reader_view(done)
    done.metadata[METADATA_KEY] = {
        "fingerprint": fp,
        "parameters": dict(parameters),
        "executed_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(seconds, 1),
    }
    nbformat.write(done, tmp)
    os.replace(tmp, out)
    return ChapterResult(name, "executed", seconds, dict(parameters))


def execution_table(root: Path = PROJECT_DIR):
    """The executed chapters of the last build: name, when, how long, with which parameters."""
    import pandas as pd

    rows = []
    for name in chapters(root):
        path = root / "_build" / "src" / "book" / f"{name}.ipynb"
        try:
            meta = json.loads(path.read_text())["metadata"].get(METADATA_KEY, {})
        except (OSError, ValueError, KeyError):
            meta = {}
        rows.append(
            {
                "chapter": name,
                "executed_at": meta.get("executed_at", "not yet (being executed or never)"),
                "seconds": meta.get("seconds"),
                "parameters": json.dumps(meta.get("parameters", {}), sort_keys=True),
            }
        )
    return pd.DataFrame(rows)


def stage(root: Path, src: Path, vendored: bool = True) -> None:
    """Lay out ``src`` as a book root: config, toc, vendored JS and xlcore (for literalinclude).
    Without ``vendored`` widget JavaScript the config loads it from the pinned CDN location."""
    (src / "book").mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "_toc.yml", src / "_toc.yml")
    if vendored:
        shutil.copy(root / "_config.yml", src / "_config.yml")
    else:
        widgets.write_cdn_config(root, src / "_config.yml")
    url = launch.repository_url(root)
    launch.configure(src / "_config.yml", url)
    if url is None:
        _say(f"no GitHub remote `origin` (or {launch.ENV}): no repository or launch buttons")
    for name, target in (("book/_vendor", root / "book" / "_vendor"), ("xlcore", PACKAGE_DIR)):
        link = src / name
        if link.is_symlink() or link.exists():
            if link.is_symlink() and link.resolve() == target.resolve():
                continue
            link.unlink() if link.is_symlink() else shutil.rmtree(link)
        link.symlink_to(target.resolve(), target_is_directory=True)


def build_html(src: Path, out: Path) -> Path:
    """``jupyter-book build`` with warnings as errors; returns the path of index.html."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe), "build", str(src), "--path-output", str(out), "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        log = (proc.stdout + proc.stderr)[-4000:]
        raise BookError(f"jupyter-book build failed (warnings count as errors):\n{log}")
    return out / "_build" / "html" / "index.html"


def _sample_restrictions(profile: str, parameters: Mapping[str, object]) -> dict[str, object]:
    """On the sample corpus, keep only the languages it has (and say which were dropped)."""
    from xlcore import data as xdata
    from xlcore.sources import data_source

    config = make_config(profile)
    source = data_source(config)
    if source.kind != "sample":
        return {}
    have = set(xdata.available_languages("pos", split="test", source=source))
    have &= set(xdata.available_languages("sib", split="test", source=source))
    parallel = set(xdata.available_languages("parallel", source=source))
    out: dict[str, object] = {}
    if "tgt_langs" not in parameters:
        keep = [lang for lang in config.data.tgt_langs if lang in have]
        if keep != list(config.data.tgt_langs):
            out["tgt_langs"] = keep
    if "pairs" not in parameters:
        keep = [p for p in config.data.pairs if pair_lang(p, config.data.src_lang) in parallel]
        if keep != list(config.data.pairs):
            out["pairs"] = keep
    return out


def _say(msg: str) -> None:
    print(f"xlcore book: {msg}", flush=True)


def build(
    profile: str = "mini",
    *,
    root: Path = PROJECT_DIR,
    only: str | None = None,
    parameters: Mapping[str, object] | None = None,
    force: bool = False,
    progress: bool = True,
    runs: str | Path | None = None,
    jobs: int | str | None = None,
    scheduler: str | None = None,
    results: str | Path | None = None,
) -> BookBuild:
    """Compute every chapter's runs, execute every chapter (``only``: re-execute just that one
    with ``parameters``) and build the HTML into ``_build/html``. ``runs``, ``jobs`` and
    ``scheduler`` are :func:`xlcore.grid.run_grids`'s (the runs directory is also each chapter's
    ``runs`` parameter). The build writes a results archive (:mod:`xlcore.archive`);
    ``results``: build from such an archive instead, computing nothing."""
    from xlcore.grid import run_grids
    from xlcore.sources import provide

    root = Path(root).resolve()
    runs_root = Path(runs).resolve() if runs else runs_dir()
    names = chapters(root)
    parameters = dict(parameters or {})
    if only is None and parameters:
        raise ConfigError("chapter parameters need a chapter: give --chapter NAME")
    if "runs" in parameters:
        raise ConfigError("every chapter reads the build's runs directory: give --runs DIR")
    if only is not None:
        _source(root, only)
        check_parameters(root, only, parameters)
    if results is not None:
        if only is not None:
            raise ConfigError("--results builds the whole book as archived: drop --chapter")
        return _build_from_archive(root, names, results, force)
    profile = str(parameters.pop("profile", profile))
    provide(make_config(profile), progress=progress)
    restrict = _sample_restrictions(profile, parameters)
    _announce_data(profile, restrict)

    def params_of(name: str) -> dict[str, object]:
        known = chapter_parameters(root, name)
        p: dict[str, object] = {"profile": profile, "runs": _kernel_path(runs_root, root)}
        p.update({k: v for k, v in restrict.items() if k in known})
        if name == only:
            p.update(parameters)
        return p

    # One execution for every chapter's grid.
    plans = _chapter_plans(root, names, profile, params_of)
    configs = list({archive.config_digest(c): c for p in plans for c in p.configs}.values())
    grids = run_grids(configs, root=runs_root, progress=progress, jobs=jobs, scheduler=scheduler)
    written = archive.write(
        root / RESULTS_FILE.format(profile=profile),
        plans,
        {archive.config_digest(g.config): g for g in grids},
    )
    _say(f"results archive: {written} ({written.stat().st_size / 1e6:.1f} MB)")
    return _execute_and_build(root, names, params_of, force, only, written)


def _build_from_archive(root: Path, names: list[str], path: str | Path, force: bool) -> BookBuild:
    """Execute every chapter on an extracted results archive and build the HTML. Every
    chapter's runs are looked up first: an archive that lacks one stops before anything is
    staged or executed."""
    stored = archive.extract(path, root / "_build" / "archives")
    archived = {name: stored.chapter_parameters(name) for name in names}
    for name, parameters in archived.items():
        check_parameters(root, name, parameters)
        given = {**chapter_parameters(root, name), **parameters}
        stored.grids(name, chapter.experiment_configs(name, str(given["profile"]), given))
    _say(f"reading the {stored.origin}")

    def params_of(name: str) -> dict[str, object]:
        return {**archived[name], "runs": _kernel_path(stored.root, root)}

    return _execute_and_build(root, names, params_of, force, None, stored.source)


def _execute_and_build(
    root: Path, names: list[str], params_of: Callable, force: bool, only: str | None, results: Path
) -> BookBuild:
    vendored = widgets.vendor_widgets(root) is not None
    src = root / "_build" / "src"
    stage(root, src, vendored)
    shutil.copyfile(results, src / "book" / ARCHIVE_LINK)  # the book links to the archive
    results_ = _execute_chapters(root, names, src / "book", params_of, force, only)
    _say("building HTML (jupyter-book, warnings are errors)")
    index = build_html(src, root)
    _say(f"done; open {index}")
    return BookBuild(index, results_)


def _kernel_path(path: Path, root: Path) -> str:
    """``path`` as a chapter's kernel (working directory ``root/book``) reads it: relative when
    inside the project, so that the executed chapters name no machine's directories."""
    return os.path.relpath(path, root / "book") if path.is_relative_to(root) else str(path)


def _announce_data(profile: str, restrict: Mapping[str, object]) -> None:
    """Say which data the build reads; loudly when it is the sample corpus."""
    from xlcore.sources import data_source

    source = data_source(make_config(profile))
    if source.kind == "sample":
        why = "by design" if make_config(profile).data.root == "sample" else "(XLCORE_DATA=sample)"
        _say(
            f"profile {profile} reads the built-in sample corpus {why}: five languages, a few "
            "sentences each; its numbers mean nothing"
        )
        if restrict:
            _say(f"sample corpus: restricted to {restrict}")
    else:
        _say(f"profile {profile}; data: {source.describe()}")


def _chapter_plans(
    root: Path, names: list[str], profile: str, params_of: Callable
) -> list[archive.ChapterPlan]:
    """What every chapter reads with its default parameters and the build's: the configs of
    :func:`xlcore.chapter.experiment_configs`."""
    plans = []
    for name in names:
        parameters = {**chapter_parameters(root, name), **params_of(name)}
        configs = chapter.experiment_configs(name, profile, parameters)
        plans.append(archive.ChapterPlan(name, parameters, configs))
    return plans


def _execute_chapters(
    root: Path, names: list[str], out_dir: Path, params_of: Callable, force: bool, only: str | None
) -> list[ChapterResult]:
    """Execute the chapters in order; a chapter of :data:`xlcore.chapter.READS_CHAPTERS` is
    executed again whenever an earlier chapter's output changes."""
    results = []
    summary = ""
    for name in names:
        extra = summary if name in chapter.READS_CHAPTERS else ""
        result = execute_chapter(
            root, name, params_of(name), out_dir=out_dir, force=force or name == only, extra=extra
        )
        summary += _stored_fingerprint(out_dir / f"{name}.ipynb") or ""
        results.append(result)
        _say(f"{name}: {result.status}" + (f" in {result.seconds:.0f} s" if result.seconds else ""))
    return results


__all__ = [
    "BookBuild",
    "BookError",
    "ChapterResult",
    "build",
    "build_html",
    "chapter_parameters",
    "chapters",
    "check_parameters",
    "execute_chapter",
    "execution_table",
    "fingerprint",
    "parse_parameters",
    "stage",
]
