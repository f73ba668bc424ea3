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
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from tqdm.auto import tqdm

from xlcore import data as xdata
from xlcore import encoders, engine, runs
from xlcore.config import STRATEGY_REGIMES, Config, pair_lang
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
from xlcore.sources import checksums, data_source, validate_languages
from xlcore.steps import align, declare, distances, encoder, evaluate, finetune, wordpairs
from xlcore.steps.finetune import load_task_model
from xlcore.tasks import get_task

# Settings a fine-tuning run reads from the config under their own names.
_FINETUNE_KEYS = (
    "src_lang",
    "learning_rate",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "max_seq_length",
    "eval_max_seq_length",
    "warmup_ratio",
    "weight_decay",
    "eval_steps",
    "pooling",
    "train_limit",
    "dev_limit",
    "group_by_length",
)


@dataclass
class Step:
    """One planned run plus the function that computes it."""

    run: runs.Run
    fn: Callable[[runs.Run], dict]
    seed: int | None = None
    label: str = ""


@dataclass
class Grid:
    """A planned grid: its steps in dependency order, and the finished evaluation runs."""

    config: Config
    source: xdata.DataSource
    steps: list[Step] = field(default_factory=list)
    root: Path = field(default_factory=runs_dir)


def plan(config: Config, *, root: Path | None = None, progress: bool = True) -> Grid:
    """Plan every step of ``config`` (nothing is computed)."""
    source = data_source(config)
    validate_languages(config, source)
    grid = Grid(config=config, source=source, root=root or runs_dir())
    planner = _Planner(grid, StepContext(config, source, progress))
    planner.encoder()
    for pair in config.data.pairs:
        planner.pair(pair)
    if planner.wants_distances:
        planner.distances({"stage": "base"}, planner.encoder_run, "base")
        for (pair, seed, _steps), al_run in planner.align_runs.items():
            record = {"stage": "aligned", "pair": pair, "seed": seed}
            planner.distances(record, al_run, f"aligned-{pair}-s{seed}")
    for task in config.data.tasks:
        for seed in config.finetune.seeds:
            for regime, pair in planner.variants():
                planner.finetune(Variant(task, regime, pair, seed))
    return grid


class _Planner:
    """Declares a config's runs on a grid; remembers the runs later steps read."""

    def __init__(self, grid: Grid, ctx: StepContext):
        c = grid.config
        self.grid, self.ctx, self.c = grid, ctx, c
        # The keys record the precision actually used: a bf16 request on a CPU without native
        # bf16 runs in fp32, the computation of bf16=false, and must not share keys with bf16
        # runs made on another machine (a chapter would mix the two).
        self.bf16 = uses_bf16(ctx.device, c.model.bf16)
        self.pair_langs = [pair_lang(p, c.data.src_lang) for p in c.data.pairs]
        self.encoder_run: runs.Run | None = None
        self.align_runs: dict[tuple[str, int, int], runs.Run] = {}
        self.pair_runs: dict[str, runs.Run] = {}
        self.heldout_runs: dict[str, runs.Run] = {}
        self.aligned_regimes = [r for r in c.finetune.regimes if r != "baseline"]
        self.distance_langs = tuple(dict.fromkeys(self.pair_langs))
        self.wants_distances = "distances" in c.analysis.analyses and bool(self.distance_langs)

    def add(self, step, name: str, spec, inputs, files=()) -> runs.Run:
        """Declare the run of ``step`` (once: a run planned twice is the same run)."""
        data = checksums(self.grid.source, files)
        run = declare(step, name, spec, inputs, data=data, root=self.grid.root)
        if all(s.run.path != run.path for s in self.grid.steps):
            fn = functools.partial(step.run, spec, inputs, ctx=self.ctx)
            seed = getattr(spec, "seed", None)
            self.grid.steps.append(Step(run, fn, seed, f"{step.KIND} {name}"))
        return run

    def encoder(self) -> None:
        """The vocabulary-trimmed base encoder, when the config trims."""
        c = self.c
        if not c.model.trim_vocab:
            return
        langs = dict.fromkeys((c.data.src_lang, *c.data.tgt_langs))
        files = [(t, c.data.src_lang, s) for t in c.data.tasks for s in ("train", "dev")]
        files += [(t, lg, "test") for t in c.data.tasks for lg in langs]
        files += [("parallel", lg, None) for lg in self.pair_langs]
        names = [f.name for f in fields(encoder.Spec)]
        flat = c.flat()
        spec = encoder.Spec(**{k: flat[k] for k in names})
        name = c.model.model_name_or_path.replace(":", "-").replace("/", "-")
        self.encoder_run = self.add(encoder, name, spec, encoder.Inputs(), files)

    def pair(self, pair: str) -> None:
        """A pair's word pairs (held-out for the analyses, training for alignment) and its
        aligned encoders."""
        c, lang = self.c, pair_lang(pair, self.c.data.src_lang)
        spec = wordpairs.Spec(
            model_name_or_path=c.model.model_name_or_path,
            src_lang=c.data.src_lang,
            pair=pair,
            part="heldout",
            layer=c.align.wordpair_layer,
            method=c.align.wordpair_method,
            align_train_limit=None,  # the held-out part is split off before the limit
        )
        inputs, files = wordpairs.Inputs(self.encoder_run), [("parallel", lang, None)]
        if set(c.analysis.analyses) & {"distances", "gradients"}:
            self.heldout_runs[pair] = self.add(wordpairs, f"{pair}-heldout", spec, inputs, files)
        if not any(pair in c.regime_pairs(r) for r in self.aligned_regimes):
            return
        spec = replace(spec, part="train", align_train_limit=c.align.train_limit)
        self.pair_runs[pair] = self.add(wordpairs, pair, spec, inputs, files)
        if "sequential" in c.finetune.regimes:
            for seed in c.finetune.seeds:
                for task in c.data.tasks:
                    self.align(pair, seed, c.align.steps or c.max_steps(task))

    def align(self, pair: str, seed: int, steps: int) -> None:
        if (pair, seed, steps) in self.align_runs:
            return
        c = self.c
        spec = align.Spec(
            model_name_or_path=c.model.model_name_or_path,
            pair=pair,
            loss=c.align.loss,
            layer=c.align.layer,
            steps=steps,
            batch_size=c.align.batch_size,
            seed=seed,
            learning_rate=c.align.learning_rate or c.finetune.learning_rate,
            max_seq_length=c.finetune.max_seq_length,
            bf16=self.bf16,
        )
        inputs = align.Inputs(self.encoder_run, self.pair_runs[pair])
        name = f"{pair}-{c.align.loss}-s{seed}"
        self.align_runs[(pair, seed, steps)] = self.add(align, name, spec, inputs)

    def distances(self, record: dict, model: runs.Run | None, name: str) -> None:
        """The distance run of one encoder: the base model (``model`` None or the trimmed
        encoder's run), an aligned encoder's run or a fine-tuning run."""
        c, langs = self.c, self.distance_langs
        cell = {"task": None, "regime": None, "pair": None, "seed": None, **record}
        spec = distances.Spec(
            model_name_or_path=c.model.model_name_or_path,
            **cell,
            src_lang=c.data.src_lang,
            langs=langs,
            distance_limit=c.analysis.distance_limit,
            distance_word_pairs=c.analysis.distance_word_pairs,
            max_length=distances.MAX_LENGTH,
            bf16=self.bf16,
        )
        files = [("sib", lg, "test") for lg in (c.data.src_lang, *langs)]
        files += [("tatoeba", lg, None) for lg in langs]
        inputs = distances.Inputs(model, dict(self.heldout_runs))
        self.add(distances, name, spec, inputs, files)

    def variants(self) -> list[tuple[str, str | None]]:
        """(regime, pair) of every fine-tuning run of one task and seed."""
        out: list[tuple[str, str | None]] = []
        if "baseline" in self.c.finetune.regimes:
            out.append(("baseline", None))
        for regime in self.aligned_regimes:
            out.extend((regime, pair) for pair in self.c.regime_pairs(regime))
        return out

    def finetune_spec(self, v: Variant) -> tuple[finetune.Spec, finetune.Inputs]:
        """The spec and the input runs of one fine-tuning run."""
        c, steps = self.c, self.c.max_steps(v.task)
        flat = c.flat()
        settings = {k: flat[k] for k in _FINETUNE_KEYS}
        settings.update(
            model_name_or_path=c.model.model_name_or_path, max_steps=steps, bf16=self.bf16
        )
        inputs: dict = {"encoder": self.encoder_run}
        if v.regime == "sequential":
            inputs["align"] = self.align_runs[(v.pair, v.seed, c.align.steps or steps)]
        if v.regime in STRATEGY_REGIMES:
            inputs["wordpairs"] = self.pair_runs[v.pair]
            settings.update(align_alpha=c.align.alpha, align_batch_size=c.align.batch_size)
        if v.regime == "gradvac":
            settings["gradvac_beta"] = c.align.gradvac_beta
        probe_pairs = tuple(c.data.pairs) if v.regime == "baseline" else (v.pair,)
        if c.probe_interval(v.task) and probe_pairs:
            settings.update(
                probe_every=c.probe_interval(v.task),
                probe_batch_size=c.analysis.probe_batch_size,
                probe_pairs=probe_pairs,
            )
            inputs["heldout"] = {p: self.heldout_runs[p] for p in probe_pairs}
        if v.regime in STRATEGY_REGIMES or "probe_every" in settings:
            settings.update(align_loss=c.align.loss, align_layer=c.align.layer)
        spec = finetune.Spec(**asdict(v), **settings)
        return spec, finetune.Inputs(**inputs)

    def finetune(self, v: Variant) -> None:
        """A fine-tuning run, the distance run of its encoder, and its evaluation."""
        c = self.c
        spec, inputs = self.finetune_spec(v)
        files = [(v.task, c.data.src_lang, "train"), (v.task, c.data.src_lang, "dev")]
        ft_run = self.add(finetune, v.name, spec, inputs, files)
        if self.wants_distances and v.regime in c.analysis.distance_regimes:
            record = {"stage": "finetuned", **asdict(v)}
            self.distances(record, ft_run, f"finetuned-{v.name}")
        langs = tuple(dict.fromkeys((c.data.src_lang, *c.data.tgt_langs)))
        ev_spec = evaluate.Spec(
            **asdict(v),
            src_lang=c.data.src_lang,
            langs=langs,
            test_limit=c.data.test_limit,
            train_limit=c.data.train_limit if get_task(v.task).token_level else None,
            eval_max_seq_length=c.finetune.eval_max_seq_length,
            per_device_eval_batch_size=c.finetune.per_device_eval_batch_size,
            bf16=self.bf16,
        )
        files = [(v.task, lg, "test") for lg in langs]
        self.add(evaluate, v.name, ev_spec, evaluate.Inputs(ft_run), files)


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
    with runs.grid_lock(root):
        grids = [plan(config, root=root, progress=progress) for config in configs]
        steps = _steps_by_path(grids)
        todo = [path for path, (step, _) in steps.items() if not step.run.complete]
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
        bar = tqdm(
            total=len(steps), initial=len(steps) - len(todo), desc="grid", disable=not progress
        )
        try:
            engine.execute(
                steps,
                todo,
                planner=functools.partial(steps_of, list(configs), root),
                jobs=n_jobs,
                scheduler=scheduler,
                on_done=lambda path: bar.update(),
            )
        finally:
            bar.close()
        print(
            f"xlcore grid: done in {time.perf_counter() - start:.0f} s; "
            f"results: `xlcore results` (runs in {root})",
            flush=True,
        )
    return grids


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
