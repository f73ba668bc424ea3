"""Step ``distances``: cross-lingual distance measures of one encoder (base, aligned or
fine-tuned) on held-out word pairs, SIB-200 and Tatoeba sentences."""

from __future__ import annotations

from dataclasses import dataclass, field

from xlcore import runs
from xlcore.analysis import distances as xdist
from xlcore.config import Config, pair_lang
from xlcore.context import StepContext, pairs_data
from xlcore.device import precision_name
from xlcore.samples import SAMPLE_SEED, distance_sentences
from xlcore.steps import Planned, encoder_path
from xlcore.steps.finetune import load_task_model

KIND = "distances"
# 2: seeded samples of the sentences (SIB-200 stratified by topic, Tatoeba over the whole file)
# instead of the first rows, retrieval hits on any occurrence of a word pair, and random pairs
# drawn from other sentences instead of the neighbour (issue "Evidence", bugs 2-4).
# 3: per-item values at the last layer (``items``), for the intervals of alignment's effect.
VERSION = 3
MAX_LENGTH = 128


@dataclass(frozen=True)
class Spec:
    """What is measured (the encoder's ``stage`` and the fine-tuning cell it comes from, for
    the result rows) and on which sentences and word pairs."""

    model_name_or_path: str
    stage: str  # base, aligned or finetuned
    task: str | None
    regime: str | None
    pair: str | None
    seed: int | None
    src_lang: str
    langs: tuple[str, ...]
    item_langs: tuple[str, ...]  # per-item values kept (the pair languages: alignment's effect)
    distance_limit: int | None
    distance_word_pairs: int | None
    max_length: int
    bf16: bool
    sample_seed: int  # draws the sentences and the random pairs

    def record(self) -> dict:
        return {k: getattr(self, k) for k in ("stage", "task", "regime", "pair", "seed")}


@dataclass(frozen=True)
class Inputs:
    # The measured encoder: a fine-tuning run's, an alignment or trimmed-encoder run's, or
    # (None) the named base model.
    model: runs.Run | None
    heldout: dict[str, runs.Run] = field(default_factory=dict)  # word pairs per pair


def planned(c: Config, name: str, record: dict, bf16: bool, inputs: Inputs) -> Planned:
    """The distances of one encoder; ``record`` names its stage (and the fine-tuning cell of a
    fine-tuned one)."""
    d = c.data
    langs = c.distance_langs
    spec = Spec(
        model_name_or_path=c.model.model_name_or_path,
        **{"task": None, "regime": None, "pair": None, "seed": None, **record},
        src_lang=d.src_lang,
        langs=langs,
        item_langs=d.pair_langs,
        distance_limit=c.analysis.distance_limit,
        distance_word_pairs=c.analysis.distance_word_pairs,
        max_length=MAX_LENGTH,
        bf16=bf16,
        sample_seed=SAMPLE_SEED,
    )
    files = [("sib", lg, "test") for lg in (d.src_lang, *langs)]
    files += [("tatoeba", lg, None) for lg in langs]
    return Planned(name, spec, inputs, tuple(files))


def run(spec: Spec, inputs: Inputs, out: runs.Run, ctx: StepContext) -> dict:
    if inputs.model is not None and inputs.model.kind == "finetune":
        model, tok = load_task_model(inputs.model)
        model = model.encoder
    else:
        model, tok = ctx.encoder(encoder_path(spec.model_name_or_path, inputs.model))
    model.to(ctx.device).eval()
    word_pairs = {}
    for pair, heldout in inputs.heldout.items():
        data = pairs_data(heldout)
        word_pairs[pair_lang(pair, spec.src_lang)] = xdist.WordPairSet(
            data.src_words, data.tgt_words, data.links
        ).limited(spec.distance_word_pairs)
    parallel, tatoeba = distance_sentences(
        ctx.source, spec.src_lang, spec.langs, spec.distance_limit, spec.sample_seed
    )
    measured = xdist.measure(
        model,
        tok,
        word_pairs=word_pairs,
        parallel=parallel,
        tatoeba=tatoeba,
        max_length=spec.max_length,
        bf16=spec.bf16,
        seed=spec.sample_seed,
        item_langs=spec.item_langs,
    )
    return {
        "records": [{**spec.record(), **r} for r in measured.records],
        "items": [{**spec.record(), **r} for r in measured.items],
        "precision": precision_name(ctx.device, spec.bf16),
    }
