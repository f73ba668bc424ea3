"""Step ``encoder``: the base encoder with its vocabulary trimmed to the grid's texts."""

from __future__ import annotations

from dataclasses import dataclass

from xlcore import encoders, runs
from xlcore.context import StepContext

KIND = "encoder"
VERSION = 1


@dataclass(frozen=True)
class Spec:
    """The encoder, and the settings that decide which texts the trimmed vocabulary covers."""

    model_name_or_path: str
    src_lang: str
    tasks: tuple[str, ...]
    tgt_langs: tuple[str, ...]
    pairs: tuple[str, ...]
    train_limit: int | None
    dev_limit: int | None
    test_limit: int | None
    align_train_limit: int | None


@dataclass(frozen=True)
class Inputs:
    """Trimming reads no other run."""


def run(spec: Spec, inputs: Inputs, out: runs.Run, ctx: StepContext) -> dict:
    model, tok = ctx.encoder(spec.model_name_or_path)
    full = model.config.vocab_size
    model, tok, kept = encoders.trim_vocabulary(model, tok, ctx.vocab_texts(spec))
    encoders.save(model, tok, out.path / "encoder")
    return {
        "records": [{"step": "trim_vocab", "vocab_full": full, "vocab_kept": len(kept)}],
        "vocab_full": full,
        "vocab_kept": len(kept),
    }
