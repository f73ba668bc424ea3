"""Word pairs from the encoder itself (SimAlign; Jalili Sabet et al., 2020).

Source and target sentences are embedded *separately*; each word is represented by its first
contentful sub-word (:mod:`xlcore.tokens`); words are compared by S = (cos + 1) / 2 and linked by
ArgMax or IterMax. Then the hygiene of Wu & Dredze (2020): drop identical surface words, keep
one-to-one links only. Extraction is batched: one padded ``(B, M, N)`` similarity tensor per batch,
with masks, and no Python loop over sentence pairs in the arithmetic. :func:`argmax_align` and
:func:`itermax_align` are the plain one-matrix references that the batched path must match exactly.
The alignment losses that read these pairs are in :mod:`xlcore.losses`.

Chapter *Word pairs and alignment losses* explains both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import BatchEncoding

from xlcore.batching import length_sorted_batches
from xlcore.errors import ConfigError, DataError
from xlcore.tokens import BARE_PIECE, word_start_index

ALIGN_METHODS = ("argmax", "itermax")
ITERMAX_MAX_COUNT = 2  # SimAlign's default number of ArgMax rounds
ITERMAX_ALPHA = 0.9  # SimAlign's down-weighting of rows/columns aligned in an earlier round
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

WordPairs = list[tuple[int, int]]


# ----------------------------------------------------------------------------- encoding


class ParallelEncoding(NamedTuple):
    """Source and target sentences tokenised separately, with each word's first sub-word.

    ``src_starts[b][w]`` is the position of word ``w``'s first contentful sub-word in sentence
    ``b`` (:func:`xlcore.tokens.word_start_index`), or -1 when truncation removed the word or
    left only its bare ``"▁"`` piece.
    """

    src: BatchEncoding
    tgt: BatchEncoding
    src_starts: list[list[int]]
    tgt_starts: list[list[int]]


def encode_parallel(
    tokenizer,
    src_words_list: Sequence[Sequence[str]],
    tgt_words_list: Sequence[Sequence[str]],
    max_length: int,
) -> ParallelEncoding:
    """Tokenise pre-split source and target sentences (separately, padded, truncated).

    Returns the two ``BatchEncoding`` objects (PyTorch tensors) and the word-start positions.
    Used by both :func:`extract_word_pairs` and :func:`alignment_forward`.
    """
    if len(src_words_list) != len(tgt_words_list):
        raise DataError(
            f"{len(src_words_list)} source but {len(tgt_words_list)} target sentences; "
            "parallel data needs one target per source sentence"
        )
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            "word alignment needs a fast tokenizer (word_ids()); load it with "
            "xlcore.encoders.load or AutoTokenizer(..., use_fast=True)"
        )
    src = _encode(tokenizer, src_words_list, max_length)
    tgt = _encode(tokenizer, tgt_words_list, max_length)
    return ParallelEncoding(
        src, tgt, _word_starts(src, src_words_list), _word_starts(tgt, tgt_words_list)
    )


def _encode(tokenizer, words_list: Sequence[Sequence[str]], max_length: int) -> BatchEncoding:
    return tokenizer(
        [list(words) for words in words_list],
        is_split_into_words=True,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )


def _word_starts(enc: BatchEncoding, words_list: Sequence[Sequence[str]]) -> list[list[int]]:
    starts = []
    for b, words in enumerate(words_list):
        tokens = enc.tokens(b)
        positions = word_start_index(enc.word_ids(b), tokens, len(words))
        # word_start_index falls back to a bare "▁" when that is all there is of a word (truncation
        # cut the rest, or the word has no piece of its own): nothing to align, so it counts as cut.
        starts.append([-1 if p >= 0 and tokens[p] == BARE_PIECE else p for p in positions])
    return starts


def _hidden(model: nn.Module, enc: BatchEncoding, layer: int) -> torch.Tensor:
    """``hidden_states[layer]`` of ``model`` on ``enc``: (B, T, H); layer 0 = embeddings."""
    device = next(model.parameters()).device
    inputs = {k: enc[k].to(device) for k in MODEL_INPUTS if k in enc}
    return model(**inputs, output_hidden_states=True).hidden_states[layer]


def _states_at(model: nn.Module, enc: BatchEncoding, layer: int) -> torch.Tensor:
    """``hidden_states[layer]`` as :func:`_hidden`, running only the layers up to ``layer``.

    For encoders whose transformer layers are the ModuleList ``encoder.layer`` (BERT, XLM-R) the
    stack is cut for the call and restored afterwards: the first ``layer`` layers compute exactly
    what they compute in a full pass, and the rest is never run. Other encoders run in full.
    """
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    stack = getattr(getattr(model, "encoder", None), "layer", None)
    if n is None or not isinstance(stack, nn.ModuleList) or len(stack) != n:
        return _hidden(model, enc, layer)
    keep = layer % (n + 1)
    if keep == n:
        return _hidden(model, enc, layer)
    device = next(model.parameters()).device
    inputs = {k: enc[k].to(device) for k in MODEL_INPUTS if k in enc}
    model.encoder.layer = stack[:keep]
    try:
        return model(**inputs).last_hidden_state  # the output of layer ``keep`` (0: embeddings)
    finally:
        model.encoder.layer = stack


def _check_layer(model: nn.Module, layer: int) -> None:
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if n is not None and not -(n + 1) <= layer <= n:
        raise ConfigError(
            f"layer {layer} does not exist in a {n}-layer encoder; use 0 (the "
            f"embeddings) to {n} (the last layer), or -1 for the last"
        )


# ----------------------------------------------------------------------------- ArgMax / IterMax


def similarity(src_vecs: torch.Tensor, tgt_vecs: torch.Tensor) -> torch.Tensor:
    """SimAlign's similarity S = (cos + 1) / 2 in [0, 1]: (…, M, H) × (…, N, H) → (…, M, N).

    The shift matters for IterMax, which multiplies S by down-weighting factors.
    """
    a = F.normalize(src_vecs, dim=-1)
    b = F.normalize(tgt_vecs, dim=-1)
    return (a @ b.transpose(-1, -2) + 1.0) / 2.0


def _as_matrix(sim) -> np.ndarray:
    if isinstance(sim, torch.Tensor):
        sim = sim.detach().cpu().numpy()
    sim = np.asarray(sim)
    if sim.ndim != 2:
        raise ValueError(f"expected one (M, N) similarity matrix, got shape {sim.shape}")
    return sim if np.issubdtype(sim.dtype, np.floating) else sim.astype(np.float64)


def argmax_align(sim) -> WordPairs:
    """Reference ArgMax on one (M, N) matrix: (i, j) where j is row i's argmax and i column j's.

    Ties go to the lowest index (``numpy.argmax``). Returns sorted pairs.
    """
    s = _as_matrix(sim)
    m, n = s.shape
    if m == 0 or n == 0:
        return []
    row_best = [int(np.argmax(s[i, :])) for i in range(m)]
    col_best = [int(np.argmax(s[:, j])) for j in range(n)]
    return [(i, row_best[i]) for i in range(m) if col_best[row_best[i]] == i]


def itermax_align(
    sim, max_count: int = ITERMAX_MAX_COUNT, alpha: float = ITERMAX_ALPHA
) -> WordPairs:
    """Reference IterMax (SimAlign's ``iter_max``) on one (M, N) matrix; sorted pairs.

    Round 1 is ArgMax. Each later round (up to ``max_count`` rounds in all) reruns ArgMax on S
    re-weighted cell by cell: ×1 if neither word is aligned yet, ×α if exactly one of them is,
    ×0 if both are; a new link needs at least one unaligned word. Rounds stop when nothing new
    is added or when every row or every column is aligned. As in SimAlign, matrices with
    min(M, N) ≤ 2 get ArgMax only. Computed in the dtype of ``sim``.
    """
    s = _as_matrix(sim)
    m, n = s.shape
    links = set(argmax_align(s))
    if min(m, n) <= 2:
        return sorted(links)
    for _ in range(max_count - 1):
        rows = {i for i, _ in links}
        cols = {j for _, j in links}
        if len(rows) == m or len(cols) == n:
            break
        weights = np.empty_like(s)
        for i in range(m):
            for j in range(n):
                weights[i, j] = min(1.0, alpha * (i not in rows) + alpha * (j not in cols))
        new = {(i, j) for i, j in argmax_align(s * weights) if not (i in rows and j in cols)}
        if not new:
            break
        links |= new
    return sorted(links)


def batched_align(
    sim: torch.Tensor,
    src_mask: torch.Tensor,
    tgt_mask: torch.Tensor,
    method: str = "itermax",
    max_count: int = ITERMAX_MAX_COUNT,
    alpha: float = ITERMAX_ALPHA,
) -> torch.Tensor:
    """ArgMax or IterMax on a padded batch of similarity matrices, all at once.

    ``sim`` is (B, M, N); ``src_mask`` (B, M) and ``tgt_mask`` (B, N) are True on real words.
    Returns a bool (B, M, N) link tensor equal, sentence by sentence, to :func:`argmax_align` /
    :func:`itermax_align` on the unpadded matrix. Values in padded cells are ignored.
    """
    _check_method(method)
    src_mask, tgt_mask = src_mask.bool(), tgt_mask.bool()
    valid = src_mask[:, :, None] & tgt_mask[:, None, :]  # (B, M, N)
    if sim.shape[1] == 0 or sim.shape[2] == 0:
        return valid
    links = _mutual_argmax(sim, valid)
    if method == "argmax":
        return links
    n_src, n_tgt = src_mask.sum(1), tgt_mask.sum(1)  # (B,)
    small = torch.minimum(n_src, n_tgt) <= 2  # SimAlign: tiny matrices get ArgMax only
    for _ in range(max_count - 1):
        row_done = links.any(2)  # (B, M)
        col_done = links.any(1)  # (B, N)
        # Unlike the reference we never break early: a round that adds nothing leaves the masks,
        # hence every later round, unchanged, so running all rounds gives the same links.
        stop = small | (row_done | ~src_mask).all(1) | (col_done | ~tgt_mask).all(1)
        free_row = (~row_done).to(sim.dtype)[:, :, None]
        free_col = (~col_done).to(sim.dtype)[:, None, :]
        weights = (alpha * free_row + alpha * free_col).clamp(0.0, 1.0)  # (B, M, N)
        open_cell = ~(row_done[:, :, None] & col_done[:, None, :])
        new = _mutual_argmax(sim * weights, valid) & open_cell & ~stop[:, None, None]
        links = links | new
    return links


def _mutual_argmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Cells that are both their row's and their column's argmax among valid cells (B, M, N)."""
    _, m, n = scores.shape
    scores = scores.masked_fill(~valid, float("-inf"))
    fwd = F.one_hot(scores.argmax(2), n).bool()  # (B, M, N): row winners
    bwd = F.one_hot(scores.argmax(1), m).bool().transpose(1, 2)  # (B, M, N): column winners
    return fwd & bwd & valid


def _check_method(method: str) -> None:
    if method not in ALIGN_METHODS:
        raise ConfigError(
            f"unknown word-alignment method {method!r}; choose from {', '.join(ALIGN_METHODS)}"
        )


def filter_pairs(
    links: Sequence[tuple[int, int]], src_words: Sequence[str], tgt_words: Sequence[str]
) -> WordPairs:
    """Wu & Dredze's hygiene, in their order: drop links between identical surface words
    (case-sensitive), then keep only links whose source and target word have no other link."""
    kept = [(i, j) for i, j in links if src_words[i] != tgt_words[j]]
    n_src = Counter(i for i, _ in kept)
    n_tgt = Counter(j for _, j in kept)
    return sorted((i, j) for i, j in kept if n_src[i] == 1 and n_tgt[j] == 1)


# ----------------------------------------------------------------------------- extraction


@torch.no_grad()
def extract_word_pairs(
    model: nn.Module,
    tokenizer,
    pairs: Sequence[tuple[Sequence[str], Sequence[str]]],
    *,
    layer: int = 8,
    method: str = "itermax",
    batch_size: int = 32,
    max_length: int = 128,
) -> list[WordPairs]:
    """Word pairs of each (src_words, tgt_words) sentence pair, from the encoder's own states.

    ``hidden_states[layer]`` (0 = embeddings; SimAlign's default 8) of source and target,
    encoded separately; ArgMax or IterMax on S = (cos + 1) / 2 between first sub-words; then
    :func:`filter_pairs`. Words cut off by ``max_length`` get no link. Sentence pairs are
    batched by length to save padding, and the encoder runs only up to ``layer`` where its
    layer stack allows (:func:`_states_at`); the result keeps the input order. The model runs
    in eval mode and gets its previous mode back.
    """
    _check_method(method)
    _check_layer(model, layer)
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    result: list[WordPairs] = [[] for _ in pairs]
    was_training = model.training
    model.eval()
    try:
        for chunk, src, tgt in length_batches(pairs, batch_size):
            grids = word_grids(model, tokenizer, src, tgt, layer, max_length)
            for k, links in zip(chunk, match_grids(src, tgt, *grids, method), strict=True):
                result[k] = links
    finally:
        model.train(was_training)
    return result


def length_batches(
    pairs: Sequence[tuple[Sequence[str], Sequence[str]]], batch_size: int
) -> Iterator[tuple[list[int], list[list[str]], list[list[str]]]]:
    """``(indices, src words, tgt words)`` batches of sentence pairs sorted by total length."""
    for chunk in length_sorted_batches([len(s) + len(t) for s, t in pairs], batch_size):
        yield chunk, [list(pairs[k][0]) for k in chunk], [list(pairs[k][1]) for k in chunk]


WordGrid = tuple[torch.Tensor, torch.Tensor, list[list[int]]]


def word_grids(
    model, tokenizer, src, tgt, layer: int, max_length: int
) -> tuple[WordGrid, WordGrid]:
    """The encoder stage of extraction: source and target word grids (:func:`_word_vectors`)."""
    enc = encode_parallel(tokenizer, src, tgt, max_length)
    return (
        _word_vectors(_states_at(model, enc.src, layer), enc.src_starts),
        _word_vectors(_states_at(model, enc.tgt, layer), enc.tgt_starts),
    )


def match_grids(src, tgt, src_grid: WordGrid, tgt_grid: WordGrid, method: str) -> list[WordPairs]:
    """The matching stage: ArgMax/IterMax on a batch's word grids, then :func:`filter_pairs`."""
    (src_vecs, src_mask, src_kept), (tgt_vecs, tgt_mask, tgt_kept) = src_grid, tgt_grid
    links = batched_align(similarity(src_vecs, tgt_vecs), src_mask, tgt_mask, method)
    found: list[list[tuple[int, int]]] = [[] for _ in src]
    for b, i, j in links.nonzero().tolist():
        found[b].append((src_kept[b][i], tgt_kept[b][j]))
    return [filter_pairs(f, s, t) for f, s, t in zip(found, src, tgt, strict=True)]


def _word_vectors(hidden: torch.Tensor, starts: Sequence[Sequence[int]]) -> WordGrid:
    """Gather first-sub-word vectors into a word grid (B, W, H) with a mask (B, W).

    Also returns, per sentence, the word index of each grid row (truncated words are left out).
    """
    kept = [[w for w, pos in enumerate(s) if pos >= 0] for s in starts]
    width = max((len(k) for k in kept), default=0)
    positions = torch.zeros(len(kept), width, dtype=torch.long)
    mask = torch.zeros(len(kept), width, dtype=torch.bool)
    for b, words in enumerate(kept):
        positions[b, : len(words)] = torch.tensor([starts[b][w] for w in words], dtype=torch.long)
        mask[b, : len(words)] = True
    positions, mask = positions.to(hidden.device), mask.to(hidden.device)
    rows = torch.arange(len(kept), device=hidden.device)[:, None]
    return hidden[rows, positions], mask, kept
