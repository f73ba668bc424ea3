"""Step ``wordpairs``: word links of a pair's parallel sentences (training or held-out part),
extracted with the base encoder."""

from __future__ import annotations

from xlcore import runs
from xlcore.align import extract_word_pairs
from xlcore.context import StepContext


def run(ctx: StepContext, base: str, lang: str, part: str, run: runs.Run) -> dict:
    c = ctx.config
    model, tok = ctx.encoder(base)
    model.to(ctx.device)
    train, heldout = ctx.bitext(lang)
    sentences = train if part == "train" else heldout
    links = extract_word_pairs(
        model, tok, sentences, layer=c.wordpair_layer, method=c.wordpair_method
    )
    runs.atomic_write_json(
        run.path / "pairs.json",
        {"src": [s for s, _ in sentences], "tgt": [t for _, t in sentences], "links": links},
    )
    n_links = sum(len(x) for x in links)
    record = {"pair": f"en-{lang}", "part": part, "sentences": len(sentences), "links": n_links}
    return {"records": [record], "sentences": len(sentences), "links": n_links}
