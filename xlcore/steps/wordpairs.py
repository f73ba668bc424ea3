"""Step ``wordpairs``: word links of a pair's parallel sentences (training or held-out part),
extracted with the base encoder."""

from __future__ import annotations

from dataclasses import dataclass

from xlcore import runs
from xlcore.align import extract_word_pairs
from xlcore.config import pair_lang
from xlcore.context import StepContext
from xlcore.steps import encoder_path

KIND = "wordpairs"
VERSION = 1


@dataclass(frozen=True)
class Spec:
    model_name_or_path: str
    src_lang: str
    pair: str
    part: str  # "train" (alignment) or "heldout" (the analyses)
    layer: int
    method: str
    align_train_limit: int | None


@dataclass(frozen=True)
class Inputs:
    encoder: runs.Run | None  # the trimmed base encoder, when the grid trims


def run(spec: Spec, inputs: Inputs, out: runs.Run, ctx: StepContext) -> dict:
    model, tok = ctx.encoder(encoder_path(spec.model_name_or_path, inputs.encoder))
    model.to(ctx.device)
    lang = pair_lang(spec.pair, spec.src_lang)
    train, heldout = ctx.bitext(lang, spec.align_train_limit)
    sentences = train if spec.part == "train" else heldout
    links = extract_word_pairs(model, tok, sentences, layer=spec.layer, method=spec.method)
    runs.atomic_write_json(
        out.path / "pairs.json",
        {"src": [s for s, _ in sentences], "tgt": [t for _, t in sentences], "links": links},
    )
    n_links = sum(len(x) for x in links)
    record = {"pair": spec.pair, "part": spec.part, "sentences": len(sentences), "links": n_links}
    return {"records": [record], "sentences": len(sentences), "links": n_links}
