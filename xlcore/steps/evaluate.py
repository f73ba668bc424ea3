"""Step ``evaluate``: a fine-tuned model's zero-shot accuracy on every target language's test set
(and, for POS, the majority-tag baseline of the same sentences)."""

from __future__ import annotations

from tqdm.auto import tqdm

from xlcore import runs
from xlcore.context import StepContext, Variant
from xlcore.evaluate import evaluate, majority_baseline
from xlcore.steps.finetune import load_task_model


def run(
    ctx: StepContext, variant: Variant, langs: list[str], finetune_run: runs.Run, run: runs.Run
) -> dict:
    c, task = ctx.config, variant.task
    model, tok = load_task_model(finetune_run, ctx.device)
    majority_train = ctx.pos(c.src_lang, "train", c.train_limit) if task == "pos" else None
    records = []
    for lang in tqdm(
        langs, desc=f"evaluate {run.path.name[:40]}", leave=False, disable=not ctx.progress
    ):
        encoded = ctx.encoded(tok, task, lang, "test", c.test_limit, c.eval_max_seq_length)
        scores = evaluate(
            model,
            encoded,
            task,
            tok.pad_token_id,
            c.per_device_eval_batch_size,
            ctx.device,
            c.bf16,
            split_by_length=c.eval_split_by_length,
        )
        rec = {**variant.record(), "lang": lang, "split": "test", **scores}
        if task == "pos":
            rec["majority_accuracy"] = majority_baseline(
                majority_train, ctx.pos(lang, "test", c.test_limit)
            )
        records.append(rec)
    return {"records": records}
