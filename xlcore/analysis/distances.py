"""How close translations are in an encoder's space, per layer: words and sentences.

The paper's first measurement (chapters *Alignment* and *Distances vs transfer*): alignment
pulls translations together, so distances between them should fall and retrieval should rise.
For one encoder (baseline, aligned or fine-tuned) and a set of en–X languages, at every layer
(0 = embeddings):

* **word level**, on word pairs of the held-out part of the bitext (first contentful sub-word of
  each word; Gaschi et al., 2023): mean cosine of aligned pairs against random pairs (each word
  with a word of another sentence), and nearest-neighbour retrieval P@1 forward (en→X) and
  backward (X→en), *weak* (search the other language's words) and *strong* (search both
  languages' words, except the query's own word). Word pairs repeat across sentences, so
  retrieving any occurrence of the query's (en word, X word) pair is a hit;
* **sentence level**: mean-pooled cosine and L2 distance of parallel SIB-200 (FLORES-200) test
  sentences, with a seeded derangement of them as the random baseline, and Tatoeba sentence
  retrieval P@1 forward and backward, each on a seeded sample of its file
  (:func:`xlcore.samples.distance_sentences`).

Everything is batched (one forward pass per sentence with all hidden states), without
gradients; sentences are sorted by token count so batches carry little padding. With ``bf16``
the forward passes run under bf16 autocast where it is native (:func:`xlcore.device.autocast`),
as evaluation does; pooled states then differ from fp32 by about 0.3 % of their norm, which moves
mean cosines by about 1e-4 (``benchmarks/bench_distances.py`` prints both).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from xlcore.align import MODEL_INPUTS
from xlcore.analysis.neighbours import (
    cross_group_partners,
    derangement,
    pair_cosines,
    retrieval_hits,
    retrieval_p1,
    row_cosines,
    strong_retrieval_hits,
    strong_retrieval_p1,
)
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

    def link_ids(self) -> tuple[list[int], list[int]]:
        """Per link, in order: an id of its (source word, target word) pair, the same for every
        occurrence of the pair, and the index of its sentence."""
        ids: dict[tuple[str, str], int] = {}
        pair_ids, sentences = [], []
        for b, links in enumerate(self.links):
            for i, j in links:
                pair_ids.append(ids.setdefault((self.src[b][i], self.tgt[b][j]), len(ids)))
                sentences.append(b)
        return pair_ids, sentences


def _kept_links(
    src_kept: list[list[bool]], tgt_kept: list[list[bool]]
) -> tuple[list[int], list[int], list[int]]:
    """The links whose two words both survived truncation, and their rows in the source and
    target states (which hold only the surviving words of each side)."""
    links, src_rows, tgt_rows = [], [], []
    link, s_row, t_row = 0, 0, 0
    for sk, tk in zip(src_kept, tgt_kept, strict=True):
        for a, b in zip(sk, tk, strict=True):
            if a and b:
                links.append(link)
                src_rows.append(s_row)
                tgt_rows.append(t_row)
            link += 1
            s_row += a
            t_row += b
    return links, src_rows, tgt_rows


@dataclass
class PairStates:
    """Both sides' states of the word pairs that survived truncation, at every layer."""

    src: torch.Tensor  # (L+1, N, H)
    tgt: torch.Tensor
    links: list[int]  # each kept pair's index among all pairs of the set
    pair_ids: torch.Tensor  # the same id for every occurrence of an (en word, X word) pair
    sentences: list[int]  # each kept pair's sentence


def word_pair_states(
    model, tokenizer, pairs: WordPairSet, *, max_length: int = 128, bf16: bool = False
) -> PairStates:
    """First-sub-word states of both words of every pair of ``pairs``."""
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
    links, keep_src, keep_tgt = _kept_links(src_kept, tgt_kept)
    ids, sentences = pairs.link_ids()
    return PairStates(
        src_vecs[:, keep_src] if links else src_vecs,
        tgt_vecs[:, keep_tgt] if links else tgt_vecs,
        links,
        torch.tensor(ids, dtype=torch.long)[links],
        [sentences[i] for i in links],
    )


def word_records(states: PairStates, seed: int = 0) -> list[dict]:
    """Per layer: :data:`WORD_METRICS` of the word pairs (``seed`` draws the random pairs)."""
    n = len(states.links)
    if n < 2:
        return []
    partners = cross_group_partners(states.sentences, seed)
    records = []
    for layer in range(states.src.shape[0]):
        s, t, ids = states.src[layer], states.tgt[layer], states.pair_ids
        cos, cos_random = pair_cosines(s, t, partners)
        values = {
            "cos_pairs": cos,
            "cos_random": cos_random,
            "p1_weak_fwd": retrieval_p1(s, t, ids),
            "p1_weak_bwd": retrieval_p1(t, s, ids),
            "p1_strong_fwd": strong_retrieval_p1(s, t, ids),
            "p1_strong_bwd": strong_retrieval_p1(t, s, ids),
        }
        records.extend(
            {"layer": layer, "level": "word", "metric": m, "value": v, "n": n}
            for m, v in values.items()
        )
    return records


def word_measures(
    model,
    tokenizer,
    pairs: WordPairSet,
    *,
    max_length: int = 128,
    bf16: bool = False,
    seed: int = 0,
) -> list[dict]:
    """Per layer: :data:`WORD_METRICS` on the word pairs of ``pairs`` (``seed`` draws the
    random pairs)."""
    states = word_pair_states(model, tokenizer, pairs, max_length=max_length, bf16=bf16)
    return word_records(states, seed)


def _item_record(level: str, layer: int, metric: str, values, clusters=None, items=None) -> dict:
    values = torch.as_tensor(values).float()
    n = len(values)
    return {
        "level": level,
        "layer": layer,
        "metric": metric,
        "item": list(range(n)) if items is None else list(items),
        "cluster": list(range(n)) if clusters is None else list(clusters),
        # four decimals: a cosine change is read to 1e-3, and the archive stays small
        "value": [round(v, 4) for v in values.tolist()],
    }


def word_items(states: PairStates) -> list[dict]:
    """Last-layer :data:`ITEM_METRICS` of each word pair, with its sentence as the cluster:
    the per-item values that give the change between two encoders an interval."""
    if len(states.links) < 2:
        return []
    layer = states.src.shape[0] - 1
    s, t = states.src[layer], states.tgt[layer]
    cos = row_cosines(s, t)
    hits = strong_retrieval_hits(s, t, states.pair_ids)
    keyed = {"clusters": states.sentences, "items": states.links}
    return [
        _item_record("word", layer, "cos_pairs", cos, **keyed),
        _item_record("word", layer, "p1_strong_fwd", hits, **keyed),
    ]


def sentence_measures(
    en_states: torch.Tensor,
    x_states: torch.Tensor,
    tatoeba_en: torch.Tensor | None = None,
    tatoeba_x: torch.Tensor | None = None,
    *,
    seed: int = 0,
) -> list[dict]:
    """Per layer: cosine / L2 of parallel sentences and Tatoeba retrieval, from pooled states
    (``seed`` draws the mismatched pairs, the same at every layer)."""
    records = []
    partners = derangement(en_states.shape[1], seed)
    for layer in range(en_states.shape[0]):
        a, b = en_states[layer], x_states[layer]
        cos, cos_random = pair_cosines(a, b, partners)
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


def sentence_items(
    en_states: torch.Tensor,
    x_states: torch.Tensor,
    tatoeba_en: torch.Tensor | None = None,
    tatoeba_x: torch.Tensor | None = None,
) -> list[dict]:
    """Last-layer cosine of each parallel sentence pair and Tatoeba hit (en→X) of each row."""
    layer = en_states.shape[0] - 1
    a, b = en_states[layer], x_states[layer]
    items = [_item_record("sentence", layer, "cos", row_cosines(a, b))]
    if tatoeba_en is not None and tatoeba_x is not None:
        hits = retrieval_hits(tatoeba_en[layer], tatoeba_x[layer])
        items.append(_item_record("sentence", layer, "tatoeba_p1_fwd", hits))
    return items


@dataclass
class Measured:
    """All distance records of one encoder, and the per-item values of :data:`ITEM_METRICS`
    (one record per language and metric, its values in lists)."""

    records: list[dict]
    items: list[dict]


def measure(
    model: nn.Module,
    tokenizer,
    *,
    word_pairs: dict[str, WordPairSet],
    parallel: dict[str, tuple[list[str], list[str]]],
    tatoeba: dict[str, tuple[list[str], list[str]]],
    max_length: int = 128,
    bf16: bool = False,
    seed: int = 0,
    item_langs: Sequence[str] | None = None,
) -> Measured:
    """All distance records of one encoder (one row per language, layer, level and metric)
    and its per-item values.

    ``parallel[lang]`` and ``tatoeba[lang]`` are ``(english, x)`` sentence lists in
    correspondence. Languages may appear in any subset of the three inputs. ``seed`` draws the
    random pairs. Per-item values are kept for ``item_langs`` (all languages when None).
    """
    out = Measured([], [])

    def keeps(lang: str) -> bool:
        return item_langs is None or lang in item_langs

    def add(lang: str, records: list[dict], items: list[dict]) -> None:
        out.records.extend({"lang": lang, **r} for r in records)
        out.items.extend({"lang": lang, **r} for r in items)

    for lang, pairs in word_pairs.items():
        states = word_pair_states(model, tokenizer, pairs, max_length=max_length, bf16=bf16)
        add(lang, word_records(states, seed), word_items(states) if keeps(lang) else [])

    def pooled(texts: list[str]) -> torch.Tensor:
        return sentence_states(model, tokenizer, texts, max_length=max_length, bf16=bf16)

    english = functools.lru_cache(maxsize=None)(lambda texts: pooled(list(texts)))
    for lang in dict.fromkeys([*parallel, *tatoeba]):
        if lang not in parallel:
            continue
        en_states, x_states = english(tuple(parallel[lang][0])), pooled(parallel[lang][1])
        t_en = t_x = None
        if lang in tatoeba:
            t_en, t_x = pooled(tatoeba[lang][0]), pooled(tatoeba[lang][1])
        add(
            lang,
            sentence_measures(en_states, x_states, t_en, t_x, seed=seed),
            sentence_items(en_states, x_states, t_en, t_x) if keeps(lang) else [],
        )
    return out


__all__ = [
    "WORD_METRICS",
    "SENTENCE_METRICS",
    "WordPairSet",
    "Measured",
    "PairStates",
    "measure",
    "sentence_items",
    "sentence_measures",
    "sentence_states",
    "word_items",
    "word_measures",
    "word_pair_states",
    "word_records",
    "word_states",
]
