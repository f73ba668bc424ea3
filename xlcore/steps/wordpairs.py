"""Step ``wordpairs``: word links of a pair's parallel sentences (training or held-out part),
extracted with the base encoder."""

from __future__ import annotations

from dataclasses import dataclass

from xlcore import runs
from xlcore.align import extract_word_pairs
from xlcore.config import Config, pair_lang
from xlcore.context import StepContext
from xlcore.steps import Planned, encoder_path

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


def planned(c: Config, pair: str, part: str, encoder: runs.Run | None) -> Planned:
    """The word pairs of ``pair``'s training or held-out part (held out: split off before
    the training part is limited)."""
    spec = Spec(
        model_name_or_path=c.model.model_name_or_path,
        src_lang=c.data.src_lang,
        pair=pair,
        part=part,
        layer=c.align.wordpair_layer,
        method=c.align.wordpair_method,
        align_train_limit=c.align.train_limit if part == "train" else None,
    )
    name = pair if part == "train" else f"{pair}-{part}"
    return Planned(
        name, spec, Inputs(encoder), (("parallel", pair_lang(pair, c.data.src_lang), None),)
    )


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
