"""Step ``align``: the base encoder aligned on a pair's word pairs (the sequential regime's
first stage)."""

from __future__ import annotations

import torch

from xlcore import encoders, runs
from xlcore.context import StepContext
from xlcore.train import align_encoder


def run(
    ctx: StepContext,
    base: str,
    pairs_run: runs.Run,
    pair: str,
    seed: int,
    steps: int,
    run: runs.Run,
) -> dict:
    c = ctx.config
    torch.manual_seed(seed)
    model, tok = ctx.encoder(base)
    objective = ctx.objective(model, tok, pairs_run, seed)
    metrics = align_encoder(
        run,
        model,
        objective,
        steps=steps,
        learning_rate=c.align_learning_rate or c.learning_rate,
        device=ctx.device,
        bf16=c.bf16,
        fused_optimizer=c.fused_optimizer,
        checkpoint_steps=c.checkpoint_steps,
        progress=ctx.progress,
    )
    encoders.save(model.cpu(), tok, run.path / "encoder")
    runs.atomic_torch_save(objective.loss.cpu().state_dict(), run.path / "alignment_loss.pt")
    metrics["records"] = [
        {
            "pair": pair,
            "seed": seed,
            "align_loss": c.align_loss,
            "align_loss_first": metrics["align_loss_first"],
            "align_loss_last": metrics["align_loss_last"],
        }
    ]
    return metrics
