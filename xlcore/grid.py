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
from dataclasses import dataclass, field
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
from xlcore.steps import align, distances, encoder, evaluate, finetune, wordpairs
from xlcore.steps.finetune import NUM_LABELS, load_task_model

# The settings of a fine-tuning run's key besides model, task, regime, pair, seed and steps.
_FINETUNE_KEYS = (
    "learning_rate",
    "per_device_train_batch_size",
    "max_seq_length",
    "warmup_ratio",
    "weight_decay",
    "eval_steps",
    "pooling",
    "train_limit",
    "dev_limit",
    "eval_max_seq_length",
    "group_by_length",
)
# The settings that decide which texts vocabulary trimming keeps.
_TRIM_KEYS = (
    "tasks",
    "tgt_langs",
    "pairs",
    "train_limit",
    "dev_limit",
    "test_limit",
    "align_train_limit",
    "src_lang",
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

    def add(
        self, kind: str, name: str, spec: dict, fn, *, data=None, deps=None, seed=None
    ) -> runs.Run:
        run = runs.prepare(kind, name, spec, data=data, deps=deps, root=self.root)
        if all(s.run.path != run.path for s in self.steps):
            self.steps.append(Step(run, fn, seed, f"{kind} {name}"))
        return run


def plan(config: Config, *, root: Path | None = None, progress: bool = True) -> Grid:
    """Plan every step of ``config`` (nothing is computed)."""
    source = data_source(config)
    validate_languages(config, source)
    grid = Grid(config=config, source=source, root=root or runs_dir())
    planner = _Planner(grid, StepContext(config, source, progress))
    planner.encoder()
    for pair in config.pairs:
        planner.pair(pair)
    if planner.wants_distances:
        planner.distances("base", {"stage": "base"}, planner.base, dict(planner.base_deps))
        for (pair, seed, _steps), al_run in planner.align_runs.items():
            planner.distances(
                f"aligned-{pair}-s{seed}",
                {"stage": "aligned", "pair": pair, "seed": seed},
                str(al_run.path / "encoder"),
                {"align": al_run},
            )
    for task in config.tasks:
        for seed in config.seeds:
            for regime, pair in planner.variants():
                planner.finetune(task, regime, pair, seed)
    return grid


class _Planner:
    """Adds a config's runs to a grid; remembers the runs later steps read."""

    def __init__(self, grid: Grid, ctx: StepContext):
        c = grid.config
        self.grid, self.ctx, self.c = grid, ctx, c
        # The keys record the precision actually used: a bf16 request on a CPU without native
        # bf16 runs in fp32, the computation of bf16=false, and must not share keys with bf16
        # runs made on another machine (a chapter would mix the two).
        self.bf16 = uses_bf16(ctx.device, c.bf16)
        self.model_spec = {"model_name_or_path": c.model_name_or_path}
        self.pair_langs = [pair_lang(p, c.src_lang) for p in c.pairs]
        self.base_deps: dict[str, runs.Run] = {}
        self.base = c.model_name_or_path
        self.align_runs: dict[tuple[str, int, int], runs.Run] = {}
        self.pair_runs: dict[str, runs.Run] = {}
        self.heldout_runs: dict[str, runs.Run] = {}
        self.aligned_regimes = [r for r in c.regimes if r != "baseline"]
        self.distance_langs = list(dict.fromkeys(self.pair_langs))
        self.wants_distances = "distances" in c.analyses and bool(self.distance_langs)

    def checksums(self, items) -> dict:
        return checksums(self.grid.source, items)

    def encoder(self) -> None:
        """The vocabulary-trimmed base encoder, when the config trims."""
        c = self.c
        if not c.trim_vocab:
            return
        task_files = [(t, c.src_lang, s) for t in c.tasks for s in ("train", "dev")]
        task_files += [
            (t, lg, "test") for t in c.tasks for lg in dict.fromkeys((c.src_lang, *c.tgt_langs))
        ]
        files = task_files + [("parallel", lg, None) for lg in self.pair_langs]
        spec = {**self.model_spec, "texts": {k: getattr(c, k) for k in _TRIM_KEYS}}
        run = self.grid.add(
            "encoder",
            c.model_name_or_path.replace(":", "-").replace("/", "-"),
            spec,
            functools.partial(encoder.run, self.ctx),
            data=self.checksums(files),
        )
        self.base_deps = {"encoder": run}
        self.base = str(run.path / "encoder")

    def pair(self, pair: str) -> None:
        """A pair's word pairs (held-out for the analyses, training for alignment) and its
        aligned encoders."""
        c, lang = self.c, pair_lang(pair, self.c.src_lang)
        spec = {
            **self.model_spec,
            "pair": pair,
            "layer": c.wordpair_layer,
            "method": c.wordpair_method,
            "align_train_limit": c.align_train_limit,
        }
        files = self.checksums([("parallel", lang, None)])
        if set(c.analyses) & {"distances", "gradients"}:
            self.heldout_runs[pair] = self.grid.add(
                "wordpairs",
                f"{pair}-heldout",
                {**spec, "part": "heldout"},
                functools.partial(wordpairs.run, self.ctx, self.base, lang, "heldout"),
                data=files,
                deps=self.base_deps,
            )
        if not any(pair in c.regime_pairs(r) for r in self.aligned_regimes):
            return
        self.pair_runs[pair] = self.grid.add(
            "wordpairs",
            pair,
            spec,
            functools.partial(wordpairs.run, self.ctx, self.base, lang, "train"),
            data=files,
            deps=self.base_deps,
        )
        if "sequential" in c.regimes:
            for seed in c.seeds:
                for task in c.tasks:
                    self.align(pair, seed, c.align_steps or c.max_steps(task))

    def align(self, pair: str, seed: int, steps: int) -> None:
        if (pair, seed, steps) in self.align_runs:
            return
        c = self.c
        spec = {
            **self.model_spec,
            "pair": pair,
            "loss": c.align_loss,
            "layer": c.align_layer,
            "steps": steps,
            "batch_size": c.align_batch_size,
            "seed": seed,
            "learning_rate": c.align_learning_rate or c.learning_rate,
            "max_seq_length": c.max_seq_length,
            "bf16": self.bf16,
        }
        if c.fused_optimizer:  # recorded only when on: older runs keep their keys
            spec["fused_optimizer"] = True
        pairs_run = self.pair_runs[pair]
        self.align_runs[(pair, seed, steps)] = self.grid.add(
            "align",
            f"{pair}-{c.align_loss}-s{seed}",
            spec,
            functools.partial(align.run, self.ctx, self.base, pairs_run, pair, seed, steps),
            deps={**self.base_deps, "wordpairs": pairs_run},
            seed=seed,
        )

    def distances(self, name: str, record: dict, source: str | runs.Run, deps: dict) -> None:
        """The distance run of one encoder: a name or path, or a fine-tuning run's encoder."""
        c, langs = self.c, self.distance_langs
        spec = {
            "langs": langs,
            "distance_limit": c.distance_limit,
            "distance_word_pairs": c.distance_word_pairs,
            "max_length": distances.MAX_LENGTH,
            "bf16": self.bf16,
        }
        files = self.checksums(
            [("sib", lg, "test") for lg in (c.src_lang, *langs)]
            + [("tatoeba", lg, None) for lg in langs]
        )
        heldout = dict(self.heldout_runs)
        self.grid.add(
            "distances",
            name,
            spec,
            functools.partial(distances.run, self.ctx, record, source, heldout, langs),
            data=files,
            deps={**deps, **{f"heldout-{p}": r for p, r in heldout.items()}},
            seed=record.get("seed"),
        )

    def variants(self) -> list[tuple[str, str | None]]:
        """(regime, pair) of every fine-tuning run of one task and seed."""
        out: list[tuple[str, str | None]] = []
        if "baseline" in self.c.regimes:
            out.append(("baseline", None))
        for regime in self.aligned_regimes:
            out.extend((regime, pair) for pair in self.c.regime_pairs(regime))
        return out

    def finetune_spec(self, task: str, regime: str, pair: str | None, seed: int) -> tuple:
        """The key settings and the input runs of one fine-tuning run."""
        c = self.c
        spec = {
            **self.model_spec,
            "task": task,
            "regime": regime,
            "pair": pair,
            "seed": seed,
            "max_steps": c.max_steps(task),
            **{k: getattr(c, k) for k in _FINETUNE_KEYS},
            "bf16": self.bf16,
        }
        deps = dict(self.base_deps)
        if regime == "sequential":
            deps["align"] = self.align_runs[(pair, seed, c.align_steps or c.max_steps(task))]
        if regime in STRATEGY_REGIMES:
            deps["wordpairs"] = self.pair_runs[pair]
            spec.update(
                align_loss=c.align_loss,
                align_layer=c.align_layer,
                align_alpha=c.align_alpha,
                align_batch_size=c.align_batch_size,
            )
        if regime == "gradvac":
            spec["gradvac_beta"] = c.gradvac_beta
        if c.split_by_length:  # recorded only when on: older runs keep their keys
            spec["split_by_length"] = True
        if c.fused_optimizer:  # likewise
            spec["fused_optimizer"] = True
        probe_every = c.probe_interval(task)
        if probe_every:
            probe_pairs = c.pairs if regime == "baseline" else (pair,)
            spec.update(
                probe_every=probe_every,
                probe_batch_size=c.probe_batch_size,
                probe_pairs=list(probe_pairs),
                align_loss=c.align_loss,
                align_layer=c.align_layer,
            )
            for p in probe_pairs:
                deps[f"heldout-{p}"] = self.heldout_runs[p]
        return spec, deps

    def finetune(self, task: str, regime: str, pair: str | None, seed: int) -> None:
        """A fine-tuning run, the distance run of its encoder, and its evaluation."""
        c = self.c
        spec, deps = self.finetune_spec(task, regime, pair, seed)
        files = self.checksums([(task, c.src_lang, "train"), (task, c.src_lang, "dev")])
        variant = Variant(task, regime, pair, seed)
        name = variant.name
        fn = functools.partial(finetune.run, self.ctx, variant, deps, self.base)
        ft_run = self.grid.add("finetune", name, spec, fn, data=files, deps=deps, seed=seed)
        if self.wants_distances and regime in c.distance_regimes:
            record = {"stage": "finetuned", "task": task, "regime": regime, "pair": pair}
            self.distances(
                f"finetuned-{name}", {**record, "seed": seed}, ft_run, {"finetune": ft_run}
            )
        langs = list(dict.fromkeys((c.src_lang, *c.tgt_langs)))
        ev_spec = {
            "langs": langs,
            "test_limit": c.test_limit,
            "eval_max_seq_length": c.eval_max_seq_length,
            "bf16": self.bf16,
        }
        if c.eval_split_by_length:  # recorded only when on: older runs keep their keys
            ev_spec["eval_split_by_length"] = True
        self.grid.add(
            "evaluate",
            name,
            ev_spec,
            functools.partial(evaluate.run, self.ctx, variant, langs, ft_run),
            data=self.checksums([(task, lg, "test") for lg in langs]),
            deps={"finetune": ft_run},
            seed=seed,
        )


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
            for name in dict.fromkeys(config.model_name_or_path for config in configs):
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
    "NUM_LABELS",
    "Grid",
]
