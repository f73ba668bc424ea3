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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
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


def _item_ids(ids: Sequence[int] | torch.Tensor | None, n: int, device) -> torch.Tensor:
    """The item each row stands for: its own index unless ``ids`` says which rows are copies."""
    if ids is None:
        return torch.arange(n, device=device)
    return torch.as_tensor(ids, device=device)


def retrieval_p1(
    queries: torch.Tensor, keys: torch.Tensor, ids: Sequence[int] | torch.Tensor | None = None
) -> float:
    """Share of queries whose nearest key (cosine) stands for the same item: the key with the
    same index, or with the same ``ids`` entry (a word pair that occurs in several sentences is
    one item: finding another occurrence of it is no error)."""
    q, k = F.normalize(queries.float(), dim=-1), F.normalize(keys.float(), dim=-1)
    item = _item_ids(ids, len(q), q.device)
    best = (q @ k.T).argmax(dim=1)
    return float((item[best] == item).float().mean())


def strong_retrieval_p1(
    queries: torch.Tensor, keys: torch.Tensor, ids: Sequence[int] | torch.Tensor | None = None
) -> float:
    """P@1 when the search space holds the keys *and* the other queries: a query whose own
    language is closer than its translation counts as wrong.

    Queries of the query's own item (itself, and with ``ids`` its other occurrences) are left
    out: the same word in the same language says nothing about alignment, and as a competitor
    it would fail every repeated word.
    """
    q, k = F.normalize(queries.float(), dim=-1), F.normalize(keys.float(), dim=-1)
    item = _item_ids(ids, len(q), q.device)
    cross = q @ k.T
    same = (q @ q.T).masked_fill(item[:, None] == item[None, :], float("-inf"))
    best = torch.cat([cross, same], dim=1).argmax(dim=1)
    # a same-language row found is another item (the query's own are masked): a miss
    return float((torch.cat([item, item])[best] == item).float().mean())


# ----------------------------------------------------------------------------- random pairs


def derangement(n: int, seed: int = 0) -> torch.Tensor:
    """A uniformly drawn permutation of ``range(n)`` without fixed points (empty below 2).

    The random-pair baseline of parallel sentences: every sentence meets exactly one other
    sentence's translation. Drawn, not rolled by one: files are sorted by topic, so a
    neighbour mostly shares the topic and the baseline would be too close.
    """
    if n < 2:
        return torch.empty(0, dtype=torch.long)
    rng = np.random.default_rng(seed)
    while True:  # rejection: about e draws on average
        perm = rng.permutation(n)
        if not (perm == np.arange(n)).any():
            return torch.from_numpy(perm)


def cross_group_partners(groups: Sequence[int], seed: int = 0) -> torch.Tensor:
    """For each item, one item of another group drawn uniformly (seeded); empty when all items
    share one group.

    The random-pair baseline of words, grouped by sentence: two words of one sentence share its
    context, so pairing them would put the baseline too close.
    """
    g = torch.as_tensor(groups, dtype=torch.long)
    order = torch.argsort(g, stable=True)
    _, inverse, counts = torch.unique_consecutive(g[order], return_inverse=True, return_counts=True)
    if len(counts) < 2:
        return torch.empty(0, dtype=torch.long)
    # Each item's group is one run [start, start + size) of ``order``: draw among the other
    # n - size positions and step over the run.
    size = torch.empty_like(g)
    start = torch.empty_like(g)
    size[order] = counts[inverse]
    start[order] = (torch.cumsum(counts, 0) - counts)[inverse]
    others = len(g) - size
    draw = torch.from_numpy(np.random.default_rng(seed).random(len(g))).mul(others).long()
    draw = draw.minimum(others - 1)
    return order[draw + size * (draw >= start)]


def pair_cosines(
    a: torch.Tensor, b: torch.Tensor, partners: torch.Tensor | None = None
) -> tuple[float, float]:
    """Mean cosine of row-aligned pairs, and of mismatched pairs: row ``i`` of ``a`` with row
    ``partners[i]`` of ``b`` (default: a seeded :func:`derangement`); NaN without partners."""
    a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
    matched = (a * b).sum(-1).mean()
    if partners is None:
        partners = derangement(len(a))
    if len(partners) == 0:
        return float(matched), float("nan")
    return float(matched), float((a * b[partners.to(b.device)]).sum(-1).mean())


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
    n = len(links)
    if n < 2:
        return []
    src_vecs, tgt_vecs = src_vecs[:, keep_src], tgt_vecs[:, keep_tgt]
    ids, sentences = pairs.link_ids()
    pair_ids = torch.tensor(ids)[links]
    partners = cross_group_partners([sentences[i] for i in links], seed)
    records = []
    for layer in range(src_vecs.shape[0]):
        s, t = src_vecs[layer], tgt_vecs[layer]
        cos, cos_random = pair_cosines(s, t, partners)
        values = {
            "cos_pairs": cos,
            "cos_random": cos_random,
            "p1_weak_fwd": retrieval_p1(s, t, pair_ids),
            "p1_weak_bwd": retrieval_p1(t, s, pair_ids),
            "p1_strong_fwd": strong_retrieval_p1(s, t, pair_ids),
            "p1_strong_bwd": strong_retrieval_p1(t, s, pair_ids),
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
) -> list[dict]:
    """All distance records of one encoder: one row per language, layer, level and metric.

    ``parallel[lang]`` and ``tatoeba[lang]`` are ``(english, x)`` sentence lists in
    correspondence. Languages may appear in any subset of the three inputs. ``seed`` draws the
    random pairs.
    """
    records: list[dict] = []
    for lang, pairs in word_pairs.items():
        records.extend(
            {"lang": lang, **r}
            for r in word_measures(
                model, tokenizer, pairs, max_length=max_length, bf16=bf16, seed=seed
            )
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
            {"lang": lang, **r}
            for r in sentence_measures(en_states, x_states, t_en, t_x, seed=seed)
        )
    return records


__all__ = [
    "WORD_METRICS",
    "SENTENCE_METRICS",
    "WordPairSet",
    "cross_group_partners",
    "derangement",
    "measure",
    "pair_cosines",
    "retrieval_p1",
    "sentence_measures",
    "sentence_states",
    "strong_retrieval_p1",
    "word_measures",
    "word_states",
]
