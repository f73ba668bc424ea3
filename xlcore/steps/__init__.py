"""The grid's expensive steps, one module each. A step module declares

* ``KIND`` (its runs' directory) and ``VERSION``: a change that moves the step's numbers bumps
  the version, so its runs, and every run that reads them, get new keys;
* ``Spec``, a frozen dataclass of exactly the settings the step reads that can move its numbers;
* ``Inputs``, a frozen dataclass of the finished runs it reads (a run, ``None``, or a dict of
  runs per name);
* ``planned(config, ...)``: the :class:`Planned` run of one grid cell, its spec read from the
  config;
* ``run(spec, inputs, out, ctx)``: computes the run into ``out.path`` and returns its metrics
  (:func:`xlcore.runs.execute` records them). ``ctx`` (:class:`xlcore.context.StepContext`)
  holds what does not move numbers: the data source, the device, progress bars, checkpoint
  spacing.

The run key is the hash of the spec, the input runs' keys, the data checksums and ``VERSION``
(:func:`declare`). The grid (:func:`xlcore.grid.plan`) declares which runs exist.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from types import ModuleType

from xlcore import runs


@dataclasses.dataclass(frozen=True)
class Planned:
    """A run to declare: its spec and input runs, its name, the data files ``(task, lang,
    split)`` it reads (their checksums are part of the run key), and the inputs whose weights it
    does not read (:mod:`xlcore.weights` releases those without waiting for it)."""

    name: str
    spec: object
    inputs: object
    files: tuple[tuple[str, str, str | None], ...] = ()
    # inputs (by :func:`input_runs` name) the run reads other files of than their model weights
    unweighted: tuple[str, ...] = ()

    @property
    def step(self) -> ModuleType:
        """The step module that declares the spec's class."""
        return sys.modules[type(self.spec).__module__]


def input_runs(inputs) -> dict[str, runs.Run]:
    """The runs an ``Inputs`` holds, by name (``heldout-en-de`` for a dict field's entry)."""
    out: dict[str, runs.Run] = {}
    for f in dataclasses.fields(inputs):
        value = getattr(inputs, f.name)
        if isinstance(value, runs.Run):
            out[f.name] = value
        elif isinstance(value, dict):
            out.update({f"{f.name}-{k}": r for k, r in value.items()})
    return out


def declare(step: ModuleType, name: str, spec, inputs, *, data=None, root: Path) -> runs.Run:
    """The run of ``step`` for ``spec`` and ``inputs`` (nothing is written)."""
    if not isinstance(spec, step.Spec) or not isinstance(inputs, step.Inputs):
        raise TypeError(f"step {step.KIND} takes a {step.__name__}.Spec and .Inputs")
    return runs.prepare(
        step.KIND,
        name,
        dataclasses.asdict(spec),
        version=step.VERSION,
        data=data,
        deps=input_runs(inputs),
        root=root,
    )


def encoder_path(model_name_or_path: str, encoder: runs.Run | None) -> str:
    """The encoder a step starts from: a trimmed encoder run's, else the named model."""
    return str(encoder.path / "encoder") if encoder is not None else model_name_or_path
