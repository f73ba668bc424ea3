"""Step ``finetune``: a task model trained on English in one regime (baseline, sequential, or an
alignment strategy during fine-tuning), with gradient probes when the config asks for them."""

from __future__ import annotations

import copy
import json

import torch

from xlcore import data as xdata
from xlcore import encoders, runs
from xlcore.config import STRATEGY_REGIMES
from xlcore.context import StepContext, Variant, pairs_data
from xlcore.errors import ConfigError
from xlcore.objective import GradientProbe
from xlcore.readers import UPOS
from xlcore.taskmodel import TaskModel
from xlcore.train import FinetuneSettings, finetune

NUM_LABELS = {"pos": len(UPOS), "sib": len(xdata.SIB_LABELS)}


def run(
    ctx: StepContext, variant: Variant, deps: dict[str, runs.Run], base: str, run: runs.Run
) -> dict:
    c = ctx.config
    task, regime, seed = variant.task, variant.regime, variant.seed
    torch.manual_seed(seed)
    start_from = str(deps["align"].path / "encoder") if regime == "sequential" else base
    encoder, tok = ctx.encoder(start_from)
    model = TaskModel(encoder, task, NUM_LABELS[task], pooling=c.pooling)
    objective = None
    if regime in STRATEGY_REGIMES:
        objective = ctx.objective(encoder, tok, deps["wordpairs"], seed)
    train = ctx.encoded(tok, task, c.src_lang, "train", c.train_limit, c.max_seq_length)
    dev = ctx.encoded(tok, task, c.src_lang, "dev", c.dev_limit, c.eval_max_seq_length)
    probe = gradient_probe(ctx, variant, deps, encoder, tok, objective)
    metrics = finetune(
        run,
        model,
        train,
        dev,
        settings=_settings(ctx, task, seed),
        pad_id=tok.pad_token_id,
        device=ctx.device,
        objective=objective,
        strategy=regime if regime in STRATEGY_REGIMES else "joint",
        probe=probe,
        bf16=c.bf16,
        progress=ctx.progress,
    )
    runs.atomic_write_json(run.path / "encoder_source.json", {"encoder": start_from})
    context = variant.record()
    metrics["gradients"] = [{**context, **r} for r in metrics["gradients"]]
    metrics["records"] = [
        {
            **context,
            "lang": c.src_lang,
            "split": "dev",
            "accuracy": metrics["best_dev_accuracy"],
        }
    ]
    return metrics


def _settings(ctx: StepContext, task: str, seed: int) -> FinetuneSettings:
    c = ctx.config
    return FinetuneSettings(
        max_steps=c.max_steps(task),
        batch_size=c.per_device_train_batch_size,
        eval_batch_size=c.per_device_eval_batch_size,
        learning_rate=c.learning_rate,
        weight_decay=c.weight_decay,
        warmup_ratio=c.warmup_ratio,
        eval_steps=c.eval_steps,
        checkpoint_steps=c.checkpoint_steps,
        seed=seed,
        align_alpha=c.align_alpha,
        group_by_length=c.group_by_length,
        gradvac_beta=c.gradvac_beta,
        split_by_length=c.split_by_length,
        fused_optimizer=c.fused_optimizer,
    )


def gradient_probe(ctx, variant, deps, encoder, tok, objective):
    """The probe of one fine-tuning run: two English dev batches against each pair's held-out
    alignment batches. The loss module is the run's own (joint family), the aligned run's
    (sequential), or a fresh one initialised from the seed (baseline)."""
    c = ctx.config
    task, regime, seed = variant.task, variant.regime, variant.seed
    every = c.probe_interval(task)
    if not every:
        return None
    from xlcore.batching import collate
    from xlcore.gradients import probe_steps

    n = c.probe_batch_size
    dev = ctx.encoded(tok, task, c.src_lang, "dev", c.dev_limit, c.max_seq_length)
    if len(dev) < 2 * n:
        raise ConfigError(
            f"gradient probing needs {2 * n} English dev examples, the {task} dev set has "
            f"{len(dev)}; lower probe_batch_size or set probe_every=0"
        )
    batches = [collate(dev[k * n : (k + 1) * n], tok.pad_token_id, task) for k in range(2)]
    pairs = c.pairs if regime == "baseline" else (variant.pair,)
    if not pairs:
        return None
    objectives = {
        p: _probe_objective(ctx, regime, seed, deps, p, encoder, objective) for p in pairs
    }
    return GradientProbe(
        probe_steps(c.max_steps(task), every),
        batches,
        objectives,
        tokenizer=tok,
        layer=c.align_layer,
        max_length=c.max_seq_length,
        batch_size=n,
        device=ctx.device,
    )


def _probe_objective(ctx, regime, seed, deps, pair, encoder, objective) -> tuple:
    """(loss module, held-out data, frozen reference or None) for probing ``pair``."""
    from xlcore.losses import build_alignment_loss

    c = ctx.config
    n = c.probe_batch_size
    data = pairs_data(deps[f"heldout-{pair}"])
    if len(data) < 2 * n:
        raise ConfigError(
            f"gradient probing needs {2 * n} held-out sentence pairs with word pairs for "
            f"{pair}, found {len(data)}; lower probe_batch_size or set probe_every=0"
        )
    if objective is not None:
        return objective.loss, data, objective.reference
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        loss = build_alignment_loss(c.align_loss, encoder.config.hidden_size)
    if regime == "sequential":
        state = torch.load(
            runs.check_torch_file(deps["align"], "alignment_loss.pt"),
            map_location="cpu",
            weights_only=True,
        )
        loss.load_state_dict(state)
    reference = None
    if loss.needs_reference:
        reference = copy.deepcopy(encoder).eval().requires_grad_(False)
    return loss, data, reference


def load_task_model(finetune_run: runs.Run, device: torch.device | None = None) -> tuple:
    """The fine-tuned :class:`TaskModel` of a finished run, and its tokenizer."""
    spec = finetune_run.spec["spec"]
    source = json.loads((finetune_run.path / "encoder_source.json").read_text())["encoder"]
    encoder, tok = encoders.load(source)
    model = TaskModel(encoder, spec["task"], NUM_LABELS[spec["task"]], pooling=spec["pooling"])
    weights = runs.check_torch_file(finetune_run, "model.pt")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device or torch.device("cpu")).eval(), tok
