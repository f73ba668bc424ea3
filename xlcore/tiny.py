"""``tiny-xlmr``: a tiny, randomly initialised ``XLMRobertaModel`` with a Unigram tokenizer trained
on the built-in sample corpus, deterministically (for tests and the smallest profile).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from tokenizers import (
    Tokenizer,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaModel,
)

from xlcore.encoder_cache import PROVENANCE_FILE, RECIPE_VERSION, cached, encoders_cache
from xlcore.errors import XlcoreError
from xlcore.paths import SAMPLE_ROOT
from xlcore.spm import META, SPECIALS, unigram_backend, wrap_tokenizer

Model = PreTrainedModel
Tok = PreTrainedTokenizerFast


TINY_XLMR = "tiny-xlmr"


TINY_VOCAB_SIZE = 1000


TINY_SEED = 0


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
            texts.extend(" ".join(w) for w in data.load_pos(lang, split, source=source)["tokens"])
        for lang in data.available_languages("sib", split=split, source=source):
            texts.extend(data.load_sib(lang, split, source=source)["text"])
    if not texts:
        raise XlcoreError(
            f"no sample texts under {root}; the package data is missing (reinstall xlalign)"
        )
    return texts


def tiny_dir(cache: Path | None) -> Path:
    texts = sample_texts(SAMPLE_ROOT)
    digest = hashlib.sha256(f"{RECIPE_VERSION}\n".encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\n")
    directory = encoders_cache(cache) / f"tiny-xlmr-{digest.hexdigest()[:16]}"
    return cached(directory, lambda tmp: _build_tiny(texts, tmp))


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
    return unigram_backend(vocab, SPECIALS.index("<unk>"), normalizers.NFKC())


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
    positions = config.max_position_embeddings - config.pad_token_id - 1
    wrap_tokenizer(rebuilt, positions).save_pretrained(out)
    provenance = {
        "name": TINY_XLMR,
        "seed": TINY_SEED,
        "sample_root": str(SAMPLE_ROOT),
        "sentences": len(texts),
        "recipe_version": RECIPE_VERSION,
        "model_kwargs": {"add_pooling_layer": False},
    }
    (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1))
