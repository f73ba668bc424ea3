"""Vocabulary trimming: keep only the pieces a corpus needs, with the same segmentation of it."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable

import numpy as np
import torch
from tokenizers import (
    Tokenizer,
)
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from xlcore.errors import ConfigError
from xlcore.spm import SPECIAL_ATTRS

Model = PreTrainedModel
Tok = PreTrainedTokenizerFast


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
