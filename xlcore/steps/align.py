"""Step ``align``: the base encoder aligned on a pair's word pairs (the sequential regime's
first stage)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xlcore import encoders, runs
from xlcore.config import Config
from xlcore.context import StepContext
from xlcore.steps import Planned, encoder_path
from xlcore.train import align_encoder

KIND = "align"
# 2: the L2 loss is Cao's sums (λ relative to the pair term, anchored on English words) with the
# frozen encoder on the same dropout masks (issue "Evidence", bug 6).
VERSION = 2


@dataclass(frozen=True)
class Spec:
    model_name_or_path: str
    pair: str
    loss: str
    layer: int
    steps: int
    batch_size: int
    seed: int
    learning_rate: float
    max_seq_length: int
    bf16: bool  # bf16 autocast as used: requested and native on the device


@dataclass(frozen=True)
class Inputs:
    encoder: runs.Run | None  # the trimmed base encoder, when the grid trims
    wordpairs: runs.Run


def planned(c: Config, pair: str, seed: int, steps: int, bf16: bool, inputs: Inputs) -> Planned:
    """The encoder aligned on ``pair``'s word pairs for ``steps`` steps."""
    spec = Spec(
        model_name_or_path=c.model.model_name_or_path,
        pair=pair,
        loss=c.align.loss,
        layer=c.align.layer,
        steps=steps,
        batch_size=c.align.batch_size,
        seed=seed,
        learning_rate=c.align.learning_rate or c.finetune.learning_rate,
        max_seq_length=c.finetune.max_seq_length,
        bf16=bf16,
    )
    return Planned(f"{pair}-{c.align.loss}-s{seed}", spec, inputs)


def run(spec: Spec, inputs: Inputs, out: runs.Run, ctx: StepContext) -> dict:
    torch.manual_seed(spec.seed)
    model, tok = ctx.encoder(encoder_path(spec.model_name_or_path, inputs.encoder))
    objective = ctx.objective(
        model,
        tok,
        inputs.wordpairs,
        loss=spec.loss,
        layer=spec.layer,
        batch_size=spec.batch_size,
        max_length=spec.max_seq_length,
        seed=spec.seed,
    )
    metrics = align_encoder(
        out,
        model,
        objective,
        steps=spec.steps,
        learning_rate=spec.learning_rate,
        device=ctx.device,
        bf16=spec.bf16,
        checkpoint_steps=ctx.checkpoint_steps,
        progress=ctx.progress,
    )
    encoders.save(model.cpu(), tok, out.path / "encoder")
    runs.atomic_torch_save(objective.loss.cpu().state_dict(), out.path / "alignment_loss.pt")
    metrics["records"] = [
        {
            "pair": spec.pair,
            "seed": spec.seed,
            "align_loss": spec.loss,
            "align_loss_first": metrics["align_loss_first"],
            "align_loss_last": metrics["align_loss_last"],
        }
    ]
    return metrics
