"""What a chapter reads: its config and the results of runs computed before it is executed.

A chapter's set-up is one call, ``xlcore.chapter.open("transfer", profile=profile, ...)`` with
the chapter's parameters. It plans the chapter's experiments (nothing is computed) and stops,
naming the command that computes them, when a run is missing; when its runs directory is an
extracted results archive (:mod:`xlcore.archive`) it reads the archived runs instead.
``xlcore book`` computes every chapter's experiments first (:func:`experiment_configs`), then
executes the chapters; ``xlcore grid --chapter NAME`` computes one chapter's.
"""

from __future__ import annotations

import functools
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from xlcore.config import Config, config_keys, make_config, parse_overrides
from xlcore.errors import XlcoreError
from xlcore.paths import runs_dir

# The experiments each chapter reads; a chapter not listed reads the grid of its config.
EXPERIMENTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"combining": ("grid", "loss_comparison"), "transfer": ("grid", "training_length")}
)
# Chapters that read what the other chapters' executions produced (the execution table): they
# are executed after the others and again whenever one of those changes.
READS_CHAPTERS = frozenset({"reproducibility"})


class RunsMissingError(XlcoreError):
    """A chapter was executed before the runs it reads were computed."""


def config_of(profile: str, parameters: Mapping[str, object]) -> Config:
    """The config of a chapter: ``profile``, every non-empty parameter that is a config key, and
    the ``overrides`` parameter's ``key=value`` items (any config key)."""
    keys = config_keys()
    chosen = {k: v for k, v in parameters.items() if k in keys and v not in (None, "", [], ())}
    extra = parameters.get("overrides") or []
    if isinstance(extra, str):
        extra = [extra]
    chosen.update(parse_overrides(list(extra)))
    return make_config(profile, chosen)


def experiment_configs(name: str, profile: str, parameters: Mapping[str, object]) -> list[Config]:
    """Every config whose grid chapter ``name`` reads, with these parameters."""
    from xlcore.comparison import loss_comparison_configs
    from xlcore.lengths import length_config

    config = config_of(profile, parameters)
    out = [config]
    kinds = EXPERIMENTS.get(name, ("grid",))
    if "loss_comparison" in kinds:
        out += loss_comparison_configs(
            config, list(parameters["losses"]), task=str(parameters["loss_task"])
        )
    steps, task = parameters.get("longer_steps"), str(parameters.get("length_task", "pos"))
    if "training_length" in kinds and steps and task in config.data.tasks:
        out.append(length_config(config, int(steps), task))
    return out


def command(
    name: str, profile: str, parameters: Mapping[str, object], runs: str | Path | None = None
) -> str:
    """The shell command that computes chapter ``name``'s runs for these parameters (into the
    runs directory ``runs``, when one is given)."""
    given = [
        f"--param '{k}={_literal(v)}'"
        for k, v in parameters.items()
        if k != "profile" and v not in (None, "", [], ())
    ]
    where = [f"--runs {shlex.quote(str(runs))}"] if runs else []
    return " ".join(["xlcore grid", f"--chapter {name}", f"--profile {profile}", *given, *where])


def _literal(value: object) -> str:
    """A Python literal without single quotes (the shell command quotes it in them)."""
    if isinstance(value, str | list | tuple):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return repr(value)


def _frame(name: str) -> functools.cached_property:
    """A chapter attribute that reads the frame :func:`xlcore.frames.<name>` of its grid once."""

    def read(self):
        from xlcore import frames  # pandas and the analyses load only when a frame is read

        return getattr(frames, name)(self.grid)

    read.__doc__ = f"The grid's :func:`xlcore.frames.{name}`."
    return functools.cached_property(read)


@dataclass
class Chapter:
    """A chapter's config and its planned, complete grids; the result frames are read once."""

    name: str
    config: Config
    grid: object
    parameters: Mapping[str, object] = field(default_factory=dict)
    comparison: Sequence = ()
    archive: object = None  # the results archive read instead of the runs directory, if any

    evaluations = _frame("evaluation_frame")
    sentences = _frame("sentence_frame")
    distances = _frame("distance_frame")
    distance_items = _frame("distance_items")
    gradients = _frame("gradient_frame")
    logs = _frame("finetune_logs")
    alignment_losses = _frame("alignment_losses")

    def _comparison(self, reader):
        if not self.comparison:
            raise XlcoreError(f"chapter {self.name!r} declares no loss comparison")
        p = self.parameters
        return reader(self.comparison, list(p["losses"]), task=str(p["loss_task"]))

    @functools.cached_property
    def inventory(self):
        """Per language of the data the build read: test sizes, bitext and whether the config
        uses it (:func:`xlcore.report.data_inventory`; recorded in a results archive)."""
        import pandas as pd

        from xlcore.report import data_inventory

        if self.archive is not None:
            return pd.DataFrame(self.grid.inventory)
        return data_inventory(self.config)

    def encoder_table(self, names: Sequence[str]):
        """One column per encoder: architecture, sizes, parameter count and source."""
        import pandas as pd

        from xlcore import encoders

        describe = self.archive.describe_encoder if self.archive else encoders.describe_or_say
        return pd.DataFrame([describe(name) for name in dict.fromkeys(names)]).set_index("name").T

    @property
    def longer(self):
        """The training-length comparison's grid (:mod:`xlcore.lengths`), None when not run."""
        wanted = "training_length" in EXPERIMENTS.get(self.name, ())
        return self.comparison[0] if wanted and self.comparison else None

    @functools.cached_property
    def loss_comparison(self):
        """One row per compared loss (:func:`xlcore.comparison.loss_table`)."""
        from xlcore.comparison import loss_table

        return self._comparison(loss_table)

    @functools.cached_property
    def loss_contrasts(self):
        """Every compared loss against every other (:func:`xlcore.comparison.loss_contrasts`)."""
        from xlcore.comparison import loss_contrasts

        return self._comparison(loss_contrasts)


def open(  # noqa: A001
    name: str, profile: str = "mini", runs: str | Path | None = None, **parameters
) -> Chapter:
    """Plan chapter ``name``'s experiments for ``profile`` and ``parameters`` and return them,
    read-only; raise :class:`RunsMissingError` with the computing command if a run is missing.
    ``runs``: the runs directory (empty or None: ``$XLCORE_RUNS``, else ``./runs``)."""
    from xlcore import archive, plots
    from xlcore.grid import plan

    root = Path(runs).resolve() if runs else None
    configs = experiment_configs(name, profile, parameters)
    stored = archive.load(root or runs_dir())
    plots.set_style()
    if stored is not None:
        grids = stored.grids(name, configs)
        return Chapter(name, configs[0], grids[0], dict(parameters), grids[1:], stored)
    grids = [plan(c, root=root, progress=False) for c in configs]
    steps = {s.run.path: s for g in grids for s in g.steps}
    missing = [s for s in steps.values() if not s.run.complete]
    if missing:
        raise RunsMissingError(
            f"chapter {name!r} reads {len(steps)} runs, {len(missing)} of them not computed "
            f"(the first: {missing[0].label}) in {grids[0].root}; compute them with\n"
            f"    {command(name, profile, parameters, runs)}\n"
            f"or build the book (`make book`), which computes every chapter's runs first"
        )
    return Chapter(name, configs[0], grids[0], dict(parameters), grids[1:])
