"""Step ``finetune``: a task model trained on English in one regime (baseline, sequential, or an
alignment strategy during fine-tuning)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch

from xlcore import encoders, runs
from xlcore.config import STRATEGY_REGIMES, Config
from xlcore.context import StepContext, Variant
from xlcore.steps import Planned, encoder_path
from xlcore.taskmodel import TaskModel
from xlcore.train import FinetuneSettings, finetune

KIND = "finetune"
# 2: PCGrad and GradVac adjust both gradients, GradVac's EMA target is bias-corrected (issue
# "Evidence", bug 7); the L2 loss (joint regime, probes) is Cao's sums with the frozen encoder on
# the same dropout masks (bug 6).
VERSION = 2

# Settings a fine-tuning run reads from the config under their own names.
_CONFIG_KEYS = (
    "src_lang",
    "learning_rate",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "max_seq_length",
    "eval_max_seq_length",
    "warmup_ratio",
    "weight_decay",
    "eval_steps",
    "pooling",
    "train_limit",
    "dev_limit",
    "group_by_length",
)


@dataclass(frozen=True)
class Spec:
    """One fine-tuning run. Alignment settings are ``None`` where the regime has no alignment
    loss."""

    model_name_or_path: str
    task: str
    regime: str
    pair: str | None
    seed: int
    src_lang: str
    max_steps: int
    learning_rate: float
    per_device_train_batch_size: int
    per_device_eval_batch_size: int
    max_seq_length: int
    eval_max_seq_length: int
    warmup_ratio: float
    weight_decay: float
    eval_steps: int
    pooling: str
    train_limit: int | None
    dev_limit: int | None
    group_by_length: bool
    bf16: bool
    align_loss: str | None = None
    align_layer: int | None = None
    align_alpha: float | None = None
    align_batch_size: int | None = None
    gradvac_beta: float | None = None

    @property
    def variant(self) -> Variant:
        return Variant(self.task, self.regime, self.pair, self.seed)


@dataclass(frozen=True)
class Inputs:
    encoder: runs.Run | None  # the trimmed base encoder, when the grid trims
    align: runs.Run | None = None  # the aligned encoder (sequential)
    wordpairs: runs.Run | None = None  # the alignment word pairs (joint family)


def planned(c: Config, v: Variant, bf16: bool, inputs: Inputs) -> Planned:
    """The fine-tuning run of ``v``. ``inputs`` may offer more than the regime reads (the
    grid's aligned encoder and word pairs of ``v.pair``): only the runs it reads are kept, so
    only those are in its key."""
    flat, steps = c.flat(), c.max_steps(v.task)
    settings = {k: flat[k] for k in _CONFIG_KEYS}
    settings.update(model_name_or_path=c.model.model_name_or_path, max_steps=steps, bf16=bf16)
    if v.regime in STRATEGY_REGIMES:
        settings.update(
            align_alpha=c.align.alpha,
            align_batch_size=c.align.batch_size,
            align_loss=c.align.loss,
            align_layer=c.align.layer,
        )
    if v.regime == "gradvac":
        settings["gradvac_beta"] = c.align.gradvac_beta
    spec = Spec(**asdict(v), **settings)
    files = ((v.task, c.data.src_lang, "train"), (v.task, c.data.src_lang, "dev"))
    inputs = Inputs(
        inputs.encoder,
        align=inputs.align if v.regime == "sequential" else None,
        wordpairs=inputs.wordpairs if v.regime in STRATEGY_REGIMES else None,
    )
    return Planned(v.name, spec, inputs, files)


def run(spec: Spec, inputs: Inputs, out: runs.Run, ctx: StepContext) -> dict:
    torch.manual_seed(spec.seed)
    start_from = (
        str(inputs.align.path / "encoder")
        if spec.regime == "sequential"
        else encoder_path(spec.model_name_or_path, inputs.encoder)
    )
    encoder, tok = ctx.encoder(start_from)
    model = TaskModel(encoder, spec.task, pooling=spec.pooling)
    objective = None
    if spec.regime in STRATEGY_REGIMES:
        objective = _objective(spec, ctx, encoder, tok, inputs.wordpairs)
    train = ctx.encoded(
        tok, spec.task, spec.src_lang, "train", spec.train_limit, spec.max_seq_length
    )
    dev = ctx.encoded(
        tok, spec.task, spec.src_lang, "dev", spec.dev_limit, spec.eval_max_seq_length
    )
    metrics = finetune(
        out,
        model,
        train,
        dev,
        settings=_settings(spec, ctx),
        tokenizer=tok,
        device=ctx.device,
        objective=objective,
        strategy=spec.regime if spec.regime in STRATEGY_REGIMES else "joint",
        bf16=spec.bf16,
        progress=ctx.progress,
    )
    runs.atomic_write_json(out.path / "encoder_source.json", {"encoder": start_from})
    metrics["records"] = [
        {
            **spec.variant.record(),
            "lang": spec.src_lang,
            "split": "dev",
            "accuracy": metrics["best_dev_accuracy"],
        }
    ]
    return metrics


def _objective(spec: Spec, ctx: StepContext, encoder, tok, pairs_run: runs.Run):
    return ctx.objective(
        encoder,
        tok,
        pairs_run,
        loss=spec.align_loss,
        layer=spec.align_layer,
        batch_size=spec.align_batch_size,
        max_length=spec.max_seq_length,
        seed=spec.seed,
    )


def _settings(spec: Spec, ctx: StepContext) -> FinetuneSettings:
    return FinetuneSettings(
        max_steps=spec.max_steps,
        batch_size=spec.per_device_train_batch_size,
        eval_batch_size=spec.per_device_eval_batch_size,
        learning_rate=spec.learning_rate,
        weight_decay=spec.weight_decay,
        warmup_ratio=spec.warmup_ratio,
        eval_steps=spec.eval_steps,
        checkpoint_steps=ctx.checkpoint_steps,
        seed=spec.seed,
        align_alpha=spec.align_alpha or 0.0,
        group_by_length=spec.group_by_length,
        gradvac_beta=spec.gradvac_beta or 0.0,
    )


def load_task_model(finetune_run: runs.Run, device: torch.device | None = None) -> tuple:
    """The fine-tuned :class:`TaskModel` of a finished run, and its tokenizer."""
    spec = finetune_run.spec["spec"]
    source = json.loads((finetune_run.path / "encoder_source.json").read_text())["encoder"]
    encoder, tok = encoders.skeleton(source)  # every weight comes from model.pt
    model = TaskModel(encoder, spec["task"], pooling=spec["pooling"])
    weights = runs.check_torch_file(finetune_run, "model.pt")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device or torch.device("cpu")).eval(), tok
