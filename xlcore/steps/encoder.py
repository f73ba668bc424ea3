"""Step ``encoder``: the base encoder with its vocabulary trimmed to the grid's texts."""

from __future__ import annotations

from dataclasses import dataclass, fields

from xlcore import encoders, runs
from xlcore.config import Config
from xlcore.context import StepContext
from xlcore.samples import SAMPLE_SEED
from xlcore.steps import Planned

KIND = "encoder"
VERSION = 2  # 2: the vocabulary also covers the distance analysis's sentences (Tatoeba, SIB-200)


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
    test_limit: int | None  # the source's and the pair languages'
    other_test_limit: int | None  # every other target language's
    align_train_limit: int | None
    distance_langs: tuple[str, ...]  # empty without the distance analysis
    distance_limit: int | None
    sample_seed: int


@dataclass(frozen=True)
class Inputs:
    """Trimming reads no other run."""


def planned(c: Config) -> Planned:
    """The trimmed encoder of ``c``'s grid (it reads every split and sentence the grid reads),
    or of the grid ``c`` is derived from."""
    c = c.vocabulary_grid
    d = c.data
    files = [(t, d.src_lang, s) for t in d.tasks for s in ("train", "dev")]
    files += [(t, lg, "test") for t in d.tasks for lg in d.test_langs]
    distance_langs = c.distance_langs if "distances" in c.analysis.analyses else ()
    files += [("parallel", lg, None) for lg in dict.fromkeys([*d.pair_langs, *distance_langs])]
    files += [("sib", lg, "test") for lg in (d.src_lang, *distance_langs)]
    files += [("tatoeba", lg, None) for lg in distance_langs]
    flat = {
        **c.flat(),
        "other_test_limit": d.others_test_limit,
        "distance_langs": distance_langs,
        "sample_seed": SAMPLE_SEED,
    }
    spec = Spec(**{f.name: flat[f.name] for f in fields(Spec)})
    name = c.model.model_name_or_path.replace(":", "-").replace("/", "-")
    return Planned(name, spec, Inputs(), tuple(files))


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
