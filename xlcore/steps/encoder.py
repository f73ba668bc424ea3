"""Step ``encoder``: the base encoder with its vocabulary trimmed to the grid's texts."""

from __future__ import annotations

from xlcore import encoders, runs
from xlcore.context import StepContext


def run(ctx: StepContext, run: runs.Run) -> dict:
    model, tok = ctx.encoder(ctx.config.model_name_or_path)
    full = model.config.vocab_size
    model, tok, kept = encoders.trim_vocabulary(model, tok, ctx.vocab_texts())
    encoders.save(model, tok, run.path / "encoder")
    return {
        "records": [{"step": "trim_vocab", "vocab_full": full, "vocab_kept": len(kept)}],
        "vocab_full": full,
        "vocab_kept": len(kept),
    }
