"""The experiment grid: every step of a profile as a cached run, executed in dependency order.

Steps (:mod:`xlcore.steps`): (optional) vocabulary-trimmed encoder → word pairs per language pair
→ aligned encoder per pair and seed → fine-tuned task model per task, regime, pair and seed →
zero-shot evaluation on every target language, and the analyses' distance runs. :func:`plan`
declares the runs; :func:`run_grids` computes those not yet complete (:mod:`xlcore.engine`).
Chapter *Introduction* shows how to run it; ``xlcore grid --profile P`` is the command-line
front end.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path

from tqdm.auto import tqdm

from xlcore import data as xdata
from xlcore import encoders, engine, runs, weights
from xlcore.config import Config
from xlcore.context import StepContext, Variant
from xlcore.device import uses_bf16
from xlcore.engine import resolve_jobs, resolve_scheduler
from xlcore.frames import (
    alignment_losses,
    distance_frame,
    evaluation_frame,
    finetune_logs,
    gradient_frame,
)
from xlcore.paths import runs_dir
from xlcore.sources import checksums, data_source, provide, validate_languages
from xlcore.steps import (
    Planned,
    align,
    declare,
    distances,
    encoder,
    evaluate,
    finetune,
    probe,
    wordpairs,
)
from xlcore.steps.finetune import load_task_model


@dataclass
class Step:
    """One planned run plus the function that computes it."""

    run: runs.Run
    fn: Callable[[runs.Run], dict]
    seed: int | None = None
    label: str = ""
    unweighted: tuple[str, ...] = ()  # inputs whose model weights the run does not read


@dataclass
class Grid:
    """A planned grid: its steps in dependency order."""

    config: Config
    source: xdata.DataSource
    ctx: StepContext
    root: Path = field(default_factory=runs_dir)
    steps: list[Step] = field(default_factory=list)

    def add(self, planned: Planned) -> runs.Run:
        """Declare a planned run (once: a run planned twice is the same run)."""
        step, spec, inputs = planned.step, planned.spec, planned.inputs
        data = checksums(self.source, list(planned.files))
        run = declare(step, planned.name, spec, inputs, data=data, root=self.root)
        if all(s.run.path != run.path for s in self.steps):
            fn = functools.partial(step.run, spec, inputs, ctx=self.ctx)
            seed = getattr(spec, "seed", None)
            label = f"{step.KIND} {planned.name}"
            self.steps.append(Step(run, fn, seed, label, planned.unweighted))
        return run


def plan(config: Config, *, root: Path | None = None, progress: bool = True) -> Grid:
    """Declare every run of ``config``'s grid (nothing is computed)."""
    c, source = config, data_source(config)
    validate_languages(c, source)
    grid = Grid(c, source, StepContext(c, source, progress), root or runs_dir())
    # Keys record the precision actually used (bf16 requested and native on this device), so
    # fp32 fallbacks never share keys with bf16 runs made elsewhere.
    bf16 = uses_bf16(grid.ctx.device, c.model.bf16)
    distances_wanted = "distances" in c.analysis.analyses and bool(c.data.pairs)
    encoder_run = grid.add(encoder.planned(c)) if c.model.trim_vocab else None
    heldout, train, aligned = {}, {}, {}
    dev_langs = {t: tuple(xdata.available_languages(t, "dev", source)) for t in c.data.tasks}
    probing = any(c.probed(r, s) for r, s in product(c.finetune.regimes, c.finetune.seeds))
    # a probe reads each pair's trained alignment loss: probing aligns every pair
    aligned_pairs = c.data.pairs if probing else c.aligned_pairs()
    if {"distances", "gradients"} & set(c.analysis.analyses):
        for pair in _heldout_pairs(c, distances_wanted):
            heldout[pair] = grid.add(wordpairs.planned(c, pair, "heldout", encoder_run))
    for pair in aligned_pairs:
        train[pair] = grid.add(wordpairs.planned(c, pair, "train", encoder_run))
        inputs = align.Inputs(encoder_run, train[pair])
        for seed, task in product(c.finetune.seeds, c.data.tasks):
            if "sequential" in c.finetune.regimes or probing:
                key = (pair, seed, _align_steps(c, task))
                aligned[key] = grid.add(align.planned(c, *key, bf16, inputs))
    if distances_wanted:
        inputs = distances.Inputs(encoder_run, heldout)
        grid.add(distances.planned(c, "base", {"stage": "base"}, bf16, inputs))
        for (pair, seed, _), run in aligned.items():
            if c.measured_seed(seed):
                record = {"stage": "aligned", "pair": pair, "seed": seed}
                inputs = distances.Inputs(run, heldout)
                grid.add(distances.planned(c, f"aligned-{pair}-s{seed}", record, bf16, inputs))
    for task, seed, (regime, pair) in product(c.data.tasks, c.finetune.seeds, c.variants()):
        v = Variant(task, regime, pair, seed)
        offered = aligned.get((pair, seed, _align_steps(c, task)))
        inputs = finetune.Inputs(encoder_run, offered, train.get(pair))
        ft_run = grid.add(finetune.planned(c, v, bf16, inputs))
        measured = regime in c.analysis.distance_regimes and c.measured_seed(seed)
        if distances_wanted and measured:
            record = {"stage": "finetuned", **asdict(v)}
            inputs = distances.Inputs(ft_run, heldout)
            grid.add(distances.planned(c, f"finetuned-{v.name}", record, bf16, inputs))
        grid.add(evaluate.planned(c, v, bf16, ft_run, dev_langs[task]))
        if c.probed(regime, seed):
            pair_heldout = {p: heldout[p] for p in c.data.pairs}
            inputs = probe.Inputs(encoder_run, ft_run, heldout=pair_heldout)
            _plan_probes(grid, v, inputs, aligned, dev_langs[task])
    return grid


def _plan_probes(
    grid: Grid, v: Variant, inputs: probe.Inputs, aligned: dict, dev_langs: tuple[str, ...]
) -> None:
    """The probes of ``v``'s fine-tuned model: at the end, and for the baseline at the start."""
    c = grid.config
    steps = _align_steps(c, v.task)
    own = {p: r for (p, seed, n), r in aligned.items() if seed == v.seed and n == steps}
    inputs = probe.Inputs(inputs.encoder, inputs.finetuned, own, inputs.heldout)
    for at in ("start", "end") if v.regime == "baseline" else ("end",):
        grid.add(probe.planned(c, v, at, inputs, dev_langs))


def _heldout_pairs(c: Config, distances_wanted: bool) -> list[str]:
    """The pairs whose held-out word pairs an analysis reads: every aligned pair, and for the
    distances one pair per target language with bitext."""
    langs = c.distance_langs if distances_wanted else ()
    return list(dict.fromkeys([*c.data.pairs, *(f"{c.data.src_lang}-{lg}" for lg in langs)]))


def _align_steps(c: Config, task: str) -> int:
    """Steps of the sequential regime's alignment: its own, else as many as fine-tuning's."""
    return c.align.steps or c.max_steps(task)


def run_grid(
    config: Config,
    *,
    root: Path | None = None,
    progress: bool = True,
    jobs: int | str | None = None,
    scheduler: str | None = None,
) -> Grid:
    """Plan and execute every step of ``config``; finished steps are skipped, partial resumed.

    ``jobs`` (default ``$XLCORE_JOBS``, else 1; see :func:`xlcore.engine.resolve_jobs`) runs that
    many steps at once on a local Dask cluster, each as soon as the runs it reads are complete;
    ``scheduler`` (default ``$XLCORE_SCHEDULER``) sends them to a running Dask cluster instead.
    """
    return run_grids([config], root=root, progress=progress, jobs=jobs, scheduler=scheduler)[0]


def steps_of(configs: Sequence[Config], root: Path, progress: bool = False) -> dict:
    """Every step of the grids of ``configs`` once (a run two grids share: the first grid's
    step), in plan order, with its grid's data source description. A worker's planner."""
    return _steps_by_path([plan(config, root=root, progress=progress) for config in configs])


def _steps_by_path(grids: Sequence[Grid]) -> dict[Path, tuple[Step, str]]:
    steps: dict[Path, tuple[Step, str]] = {}
    for grid in grids:
        for step in grid.steps:
            steps.setdefault(step.run.path, (step, grid.source.describe()))
    return steps


def run_grids(
    configs: Sequence[Config],
    *,
    root: Path | None = None,
    progress: bool = True,
    jobs: int | str | None = None,
    scheduler: str | None = None,
) -> list[Grid]:
    """:func:`run_grid` for several configs at once: their steps (a run shared by two configs
    is computed once) are executed together, so ``jobs`` workers can overlap the grids."""
    root = root or runs_dir()
    n_jobs = resolve_jobs(jobs)
    scheduler = resolve_scheduler(scheduler)
    for config in configs:  # a build without a data root fetches what it reads, before planning
        provide(config, progress=progress)
    with runs.grid_lock(root):
        grids = [plan(config, root=root, progress=progress) for config in configs]
        steps = _steps_by_path(grids)
        todo = [path for path, (step, _) in steps.items() if not step.run.complete]
        pending = set(todo) | set(weights.reclaim(steps, todo))  # released weights a run reads
        todo = [path for path in steps if path in pending]
        if todo:  # a missing encoder is refused before any run directory is made
            for name in dict.fromkeys(config.model.model_name_or_path for config in configs):
                encoders.check_available(name)
        n_jobs = min(n_jobs, len(todo)) or 1
        where = f"; on the Dask cluster at {scheduler}" if scheduler else ""
        where = where or (f"; {n_jobs} runs at a time" if n_jobs > 1 else "")
        print(
            f"xlcore grid: profile {configs[0].profile}, {len(steps)} steps "
            f"({len(steps) - len(todo)} already complete); data: "
            f"{grids[0].source.describe()}; runs in {root}{where}",
            flush=True,
        )
        start = time.perf_counter()
        bar = _GridBar(steps, initial=len(steps) - len(todo), show=progress)
        keep = all(c.model.keep_weights for c in configs)
        freed = [0]
        by_reader = weights.readers(steps)

        def done(path: Path) -> None:
            bar.done(path)
            if not keep:
                freed[0] += weights.release_read(steps, by_reader, path)

        try:
            engine.execute(
                steps,
                todo,
                planner=functools.partial(steps_of, list(configs), root),
                jobs=n_jobs,
                scheduler=scheduler,
                listener=engine.Listener(bar.started, done, bar.failed, bar.progressed),
            )
        finally:
            bar.close()
        freed = freed[0] + weights.settle(steps, keep=keep)
        print(
            f"xlcore grid: done in {time.perf_counter() - start:.0f} s; "
            + (f"{freed / 1e6:,.0f} MB of model weights released; " if freed else "")
            + f"results: `xlcore results` (runs in {root})",
            flush=True,
        )
    return grids


class _GridBar:
    """The grid's progress line: runs complete of all, the runs at work by name, and tqdm's
    estimate of the time left. ``started`` may be called from Dask's event thread."""

    def __init__(self, steps: Mapping[Path, tuple], *, initial: int, show: bool):
        self.labels = {path: step.label for path, (step, _) in steps.items()}
        self.active: dict[Path, str] = {}
        self.steps_done: dict[Path, str] = {}  # "40/60" of a run that reports its steps
        self.finished: set[Path] = set()  # a start event may arrive after its run finished
        self.lock = threading.Lock()
        self.bar = tqdm(total=len(steps), initial=initial, desc="grid", disable=not show)

    def started(self, path: Path) -> None:
        with self.lock:
            if path not in self.finished:
                self.active[path] = self.labels.get(path, path.name)
                self._show()

    def progressed(self, path: Path, done: int, total: int) -> None:
        with self.lock:
            if path in self.active:
                self.steps_done[path] = f"{done}/{total}"
                self._show()

    def done(self, path: Path) -> None:
        self.failed(path)
        self.bar.update()

    def failed(self, path: Path) -> None:
        with self.lock:
            self.finished.add(path)
            self.active.pop(path, None)
            self.steps_done.pop(path, None)
            self._show()

    def _show(self) -> None:
        names = [f"{n} {self.steps_done.get(p, '')}".rstrip() for p, n in self.active.items()]
        self.bar.set_postfix_str(f"now: {', '.join(names)}" if names else "", refresh=True)

    def close(self) -> None:
        self.bar.close()


__all__ = [
    "plan",
    "resolve_jobs",
    "run_grid",
    "run_grids",
    "steps_of",
    "validate_languages",
    "data_source",
    "evaluation_frame",
    "distance_frame",
    "gradient_frame",
    "finetune_logs",
    "alignment_losses",
    "load_task_model",
    "Grid",
]
