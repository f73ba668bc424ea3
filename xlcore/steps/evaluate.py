"""Step ``evaluate``: a fine-tuned model's zero-shot accuracy on every target language's test set
(and, for POS, the majority-tag baseline of the same sentences), with each test sentence's
correct and scored items, so that intervals are computed without running a model again."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tqdm.auto import tqdm

from xlcore import runs
from xlcore.config import Config
from xlcore.context import StepContext, Variant
from xlcore.evaluate import majority_baseline, predict
from xlcore.samples import probe_split
from xlcore.steps import Planned
from xlcore.steps.finetune import load_task_model
from xlcore.tasks import correct_per_example, get_task

KIND = "evaluate"
VERSION = 2  # 2: per-sentence correctness stored beside the accuracies


@dataclass(frozen=True)
class Spec:
    task: str
    regime: str
    pair: str | None
    seed: int
    src_lang: str
    langs: tuple[str, ...]
    test_limits: tuple[int | None, ...]  # per language of ``langs``
    probe_held: tuple[tuple[str, int], ...]  # test examples left to the probes, per language
    train_limit: int | None  # the English training sentences of the majority-tag baseline
    eval_max_seq_length: int
    per_device_eval_batch_size: int
    bf16: bool

    @property
    def variant(self) -> Variant:
        return Variant(self.task, self.regime, self.pair, self.seed)


@dataclass(frozen=True)
class Inputs:
    finetune: runs.Run


def planned(
    c: Config, v: Variant, bf16: bool, finetune: runs.Run, dev_langs: tuple[str, ...]
) -> Planned:
    """The zero-shot evaluation of the fine-tuning run of ``v`` on every test language, less
    the test examples the probes read where ``v.task`` has no dev split (``dev_langs``)."""
    d = c.data
    langs = d.test_langs
    spec = Spec(
        **asdict(v),
        src_lang=d.src_lang,
        langs=langs,
        test_limits=tuple(d.test_limit_of(lg) for lg in langs),
        probe_held=tuple(d.probe_held(dev_langs).items()),
        train_limit=d.train_limit if get_task(v.task).token_level else None,
        eval_max_seq_length=c.finetune.eval_max_seq_length,
        per_device_eval_batch_size=c.finetune.per_device_eval_batch_size,
        bf16=bf16,
    )
    files = tuple((v.task, lg, "test") for lg in langs)
    return Planned(v.name, spec, Inputs(finetune), files)


def run(spec: Spec, inputs: Inputs, out: runs.Run, ctx: StepContext) -> dict:
    task = get_task(spec.task)
    model, tok = load_task_model(inputs.finetune, ctx.device)
    majority = task.token_level  # the majority-tag baseline of a tagging task
    if majority:
        majority_train = ctx.task_data(task.name, spec.src_lang, "train", spec.train_limit)
    records, sentences = [], []
    limits, held = dict(zip(spec.langs, spec.test_limits, strict=True)), dict(spec.probe_held)
    for lang in tqdm(
        spec.langs, desc=f"evaluate {out.path.name[:40]}", leave=False, disable=not ctx.progress
    ):
        test = ctx.task_data(task.name, lang, "test", limits[lang])
        test = probe_split(test, held.get(lang, 0))[0]
        encoded = task.encode(tok, test, spec.eval_max_seq_length)
        batch = spec.per_device_eval_batch_size
        preds = predict(model, encoded, task, tok, batch, ctx.device, spec.bf16, True)
        rec = {**spec.variant.record(), "lang": lang, "split": "test", **task.score(encoded, preds)}
        correct, total = correct_per_example(encoded, preds)
        sentences.append({"lang": lang, "correct": correct, "total": total})
        if majority:
            rec["majority_accuracy"] = majority_baseline(majority_train, test)
        records.append(rec)
    return {"records": records, "sentences": sentences}
