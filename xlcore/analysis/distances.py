"""How close translations are in an encoder's space, per layer: words and sentences.

The paper's first measurement (chapters *Alignment* and *Distances vs transfer*): alignment
pulls translations together, so distances between them should fall and retrieval should rise.
For one encoder (baseline, aligned or fine-tuned) and a set of en–X languages, at every layer
(0 = embeddings):

* **word level**, on word pairs of the held-out part of the bitext (first contentful sub-word of
  each word; Gaschi et al., 2023): mean cosine of aligned pairs against random pairs, and
  nearest-neighbour retrieval P@1 forward (en→X) and backward (X→en), *weak* (search the other
  language's words) and *strong* (search both languages' words, except the query itself);
* **sentence level**: mean-pooled cosine and L2 distance of parallel SIB-200 (FLORES-200) test
  sentences, with mismatched pairs as the random baseline, and Tatoeba sentence retrieval P@1
  forward and backward.

Everything is batched (one forward pass per sentence with all hidden states), without
gradients; sentences are sorted by token count so batches carry little padding. With ``bf16``
the forward passes run under bf16 autocast where it is native (:func:`xlcore.device.autocast`),
as evaluation does; pooled states then differ from fp32 by about 0.3 % of their norm, which moves
mean cosines by about 1e-4 (``benchmarks/bench_distances.py`` prints both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xlcore.align import MODEL_INPUTS
from xlcore.batching import length_sorted_batches
from xlcore.device import autocast
from xlcore.tokens import BARE_PIECE, word_start_index

WORD_METRICS = (
    "cos_pairs",
    "cos_random",
    "p1_weak_fwd",
    "p1_weak_bwd",
    "p1_strong_fwd",
    "p1_strong_bwd",
)
SENTENCE_METRICS = ("cos", "cos_random", "l2", "tatoeba_p1_fwd", "tatoeba_p1_bwd")


# ----------------------------------------------------------------------------- retrieval


def retrieval_p1(queries: torch.Tensor, keys: torch.Tensor) -> float:
    """Share of queries whose nearest key (cosine) is the key with the same index."""
    q, k = F.normalize(queries.float(), dim=-1), F.normalize(keys.float(), dim=-1)
    best = (q @ k.T).argmax(dim=1)
    return float((best == torch.arange(len(q), device=q.device)).float().mean())


def strong_retrieval_p1(queries: torch.Tensor, keys: torch.Tensor) -> float:
    """P@1 when the search space holds the keys *and* the other queries (not the query itself):
    a query whose own language is closer than its translation counts as wrong."""
    q, k = F.normalize(queries.float(), dim=-1), F.normalize(keys.float(), dim=-1)
    cross = q @ k.T
    same = q @ q.T
    same.fill_diagonal_(float("-inf"))
    best = torch.cat([cross, same], dim=1).argmax(dim=1)
    return float((best == torch.arange(len(q), device=q.device)).float().mean())


def pair_cosines(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Mean cosine of row-aligned pairs, and of mismatched pairs (``b`` rolled by one)."""
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    matched = (a * b).sum(-1).mean()
    if len(a) < 2:
        return float(matched), float("nan")
    return float(matched), float((a * b.roll(1, dims=0)).sum(-1).mean())


# ----------------------------------------------------------------------------- states


def _token_lengths(tokenizer, texts: Sequence, max_length: int, **kwargs) -> list[int]:
    """Tokens per text after truncation: batches of equal token length carry the least padding
    (character or word counts are poor proxies, e.g. for Chinese)."""
    if not texts:
        return []
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, **kwargs)
    return [len(ids) for ids in enc["input_ids"]]


def _hidden_states(model: nn.Module, enc) -> tuple[torch.Tensor, ...]:
    """The embedding output and every layer's output, each (B, T, H)."""
    device = next(model.parameters()).device
    inputs = {k: enc[k].to(device) for k in MODEL_INPUTS if k in enc}
    return model(**inputs, output_hidden_states=True).hidden_states


def _precision(model: nn.Module, bf16: bool) -> torch.autocast:
    """One autocast context for all batches of a call: autocast then casts each weight to bf16
    once per call instead of once per batch."""
    return autocast(next(model.parameters()).device, bf16)


@torch.no_grad()
def sentence_states(
    model: nn.Module,
    tokenizer,
    texts: Sequence[str],
    *,
    max_length: int = 128,
    batch_size: int = 32,
    bf16: bool = False,
) -> torch.Tensor:
    """Mean-pooled states of ``texts`` at every layer: (L+1, N, H), on the CPU, in fp32
    (computed under bf16 autocast when ``bf16`` and native)."""
    was_training = model.training
    model.eval()
    pooled: list[torch.Tensor | None] = [None] * len(texts)
    try:
        with _precision(model, bf16):
            lengths = _token_lengths(tokenizer, texts, max_length)
            for idx in length_sorted_batches(lengths, batch_size):
                enc = tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                layers = _hidden_states(model, enc)
                mask = enc["attention_mask"].to(layers[0].device, torch.float32)[:, :, None]
                counts = mask.sum(1).clamp_min(1.0)  # (B, 1)
                # pooled in fp32 one layer at a time: no (L+1, B, T, H) copy of the states
                means = torch.stack([(h.float() * mask).sum(1) for h in layers]) / counts
                for row, i in enumerate(idx):
                    pooled[i] = means[:, row].cpu()
    finally:
        model.train(was_training)
    return torch.stack(pooled, dim=1)


@torch.no_grad()
def word_states(
    model: nn.Module,
    tokenizer,
    sentences: Sequence[Sequence[str]],
    words: Sequence[Sequence[int]],
    *,
    max_length: int = 128,
    batch_size: int = 32,
    bf16: bool = False,
) -> tuple[torch.Tensor, list[list[bool]]]:
    """First-sub-word states of the requested words at every layer.

    ``words[b]`` lists word indices of sentence ``b``. Returns ``(L+1, N, H)`` for the N words
    that survived truncation (in request order), and per sentence which requests survived.
    """
    was_training = model.training
    model.eval()
    found: list[list[torch.Tensor | None]] = [[None] * len(w) for w in words]
    try:
        with _precision(model, bf16):
            words_list = [list(s) for s in sentences]
            lengths = _token_lengths(tokenizer, words_list, max_length, is_split_into_words=True)
            for idx in length_sorted_batches(lengths, batch_size):
                batch_words = [words_list[i] for i in idx]
                enc = tokenizer(
                    batch_words,
                    is_split_into_words=True,
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                hidden = torch.stack(_hidden_states(model, enc)).float()  # (L+1, B, T, H)
                for row, i in enumerate(idx):
                    tokens = enc.tokens(row)
                    starts = word_start_index(enc.word_ids(row), tokens, len(sentences[i]))
                    for k, w in enumerate(words[i]):
                        pos = starts[w] if w < len(starts) else -1
                        if pos >= 0 and tokens[pos] != BARE_PIECE:
                            found[i][k] = hidden[:, row, pos].cpu()
    finally:
        model.train(was_training)
    kept = [[v is not None for v in sent] for sent in found]
    vectors = [v for sent in found for v in sent if v is not None]
    if not vectors:
        return torch.empty(0), kept
    return torch.stack(vectors, dim=1), kept


# ----------------------------------------------------------------------------- measures


@dataclass
class WordPairSet:
    """Held-out parallel sentences (pre-split) and their word pairs, for one en–X language."""

    src: list[list[str]]
    tgt: list[list[str]]
    links: list[list[tuple[int, int]]]

    def limited(self, max_pairs: int | None) -> WordPairSet:
        """The first sentences whose links add up to at most ``max_pairs`` pairs."""
        if max_pairs is None:
            return self
        src, tgt, links, total = [], [], [], 0
        for s, t, ln in zip(self.src, self.tgt, self.links, strict=True):
            if not ln:
                continue
            take = ln[: max_pairs - total]
            src.append(s)
            tgt.append(t)
            links.append(take)
            total += len(take)
            if total >= max_pairs:
                break
        return WordPairSet(src, tgt, links)


def word_measures(
    model, tokenizer, pairs: WordPairSet, *, max_length: int = 128, bf16: bool = False
) -> list[dict]:
    """Per layer: :data:`WORD_METRICS` on the word pairs of ``pairs``."""
    src_vecs, src_kept = word_states(
        model,
        tokenizer,
        pairs.src,
        [[i for i, _ in ln] for ln in pairs.links],
        max_length=max_length,
        bf16=bf16,
    )
    tgt_vecs, tgt_kept = word_states(
        model,
        tokenizer,
        pairs.tgt,
        [[j for _, j in ln] for ln in pairs.links],
        max_length=max_length,
        bf16=bf16,
    )
    # Keep the pairs whose two words both survived truncation.
    keep_src, keep_tgt, s_row, t_row = [], [], 0, 0
    for sk, tk in zip(src_kept, tgt_kept, strict=True):
        for a, b in zip(sk, tk, strict=True):
            if a and b:
                keep_src.append(s_row)
                keep_tgt.append(t_row)
            s_row += a
            t_row += b
    n = len(keep_src)
    if n < 2:
        return []
    src_vecs, tgt_vecs = src_vecs[:, keep_src], tgt_vecs[:, keep_tgt]
    records = []
    for layer in range(src_vecs.shape[0]):
        s, t = src_vecs[layer], tgt_vecs[layer]
        cos, cos_random = pair_cosines(s, t)
        values = {
            "cos_pairs": cos,
            "cos_random": cos_random,
            "p1_weak_fwd": retrieval_p1(s, t),
            "p1_weak_bwd": retrieval_p1(t, s),
            "p1_strong_fwd": strong_retrieval_p1(s, t),
            "p1_strong_bwd": strong_retrieval_p1(t, s),
        }
        records.extend(
            {"layer": layer, "level": "word", "metric": m, "value": v, "n": n}
            for m, v in values.items()
        )
    return records


def sentence_measures(
    en_states: torch.Tensor,
    x_states: torch.Tensor,
    tatoeba_en: torch.Tensor | None = None,
    tatoeba_x: torch.Tensor | None = None,
) -> list[dict]:
    """Per layer: cosine / L2 of parallel sentences and Tatoeba retrieval, from pooled states."""
    records = []
    for layer in range(en_states.shape[0]):
        a, b = en_states[layer], x_states[layer]
        cos, cos_random = pair_cosines(a, b)
        values = {"cos": cos, "cos_random": cos_random, "l2": float((a - b).norm(dim=-1).mean())}
        n = {"cos": len(a), "cos_random": len(a), "l2": len(a)}
        if tatoeba_en is not None and tatoeba_x is not None:
            values["tatoeba_p1_fwd"] = retrieval_p1(tatoeba_en[layer], tatoeba_x[layer])
            values["tatoeba_p1_bwd"] = retrieval_p1(tatoeba_x[layer], tatoeba_en[layer])
            n["tatoeba_p1_fwd"] = n["tatoeba_p1_bwd"] = len(tatoeba_en[layer])
        records.extend(
            {"layer": layer, "level": "sentence", "metric": m, "value": v, "n": n[m]}
            for m, v in values.items()
        )
    return records


def measure(
    model: nn.Module,
    tokenizer,
    *,
    word_pairs: dict[str, WordPairSet],
    parallel: dict[str, tuple[list[str], list[str]]],
    tatoeba: dict[str, tuple[list[str], list[str]]],
    max_length: int = 128,
    bf16: bool = False,
) -> list[dict]:
    """All distance records of one encoder: one row per language, layer, level and metric.

    ``parallel[lang]`` and ``tatoeba[lang]`` are ``(english, x)`` sentence lists in
    correspondence. Languages may appear in any subset of the three inputs.
    """
    records: list[dict] = []
    for lang, pairs in word_pairs.items():
        records.extend(
            {"lang": lang, **r}
            for r in word_measures(model, tokenizer, pairs, max_length=max_length, bf16=bf16)
        )
    english_cache: dict[tuple[str, ...], torch.Tensor] = {}

    def pooled(texts: list[str]) -> torch.Tensor:
        return sentence_states(model, tokenizer, texts, max_length=max_length, bf16=bf16)

    def states(texts: list[str]) -> torch.Tensor:
        key = tuple(texts)
        if key not in english_cache:
            english_cache[key] = pooled(texts)
        return english_cache[key]

    for lang in dict.fromkeys([*parallel, *tatoeba]):
        en_x = parallel.get(lang)
        tat = tatoeba.get(lang)
        if en_x is None:
            continue
        en_states = states(en_x[0])
        x_states = pooled(en_x[1])
        t_en = t_x = None
        if tat is not None:
            t_en, t_x = pooled(tat[0]), pooled(tat[1])
        records.extend(
            {"lang": lang, **r} for r in sentence_measures(en_states, x_states, t_en, t_x)
        )
    return records


__all__ = [
    "WORD_METRICS",
    "SENTENCE_METRICS",
    "WordPairSet",
    "measure",
    "pair_cosines",
    "retrieval_p1",
    "sentence_measures",
    "sentence_states",
    "strong_retrieval_p1",
    "word_measures",
    "word_states",
]
