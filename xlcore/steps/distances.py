"""Step ``distances``: cross-lingual distance measures of one encoder (base, aligned or
fine-tuned) on held-out word pairs, SIB-200 and Tatoeba sentences."""

from __future__ import annotations

from xlcore import data as xdata
from xlcore import runs
from xlcore.analysis import distances as xdist
from xlcore.config import pair_lang
from xlcore.context import StepContext, pairs_data
from xlcore.device import precision_name
from xlcore.steps.finetune import load_task_model

MAX_LENGTH = 128


def run(
    ctx: StepContext,
    record: dict,
    encoder: str | runs.Run,
    heldout_runs: dict[str, runs.Run],
    langs: list[str],
    run: runs.Run,
) -> dict:
    """``encoder``: an encoder's name or path, or the fine-tuning run whose encoder is measured."""
    c = ctx.config
    if isinstance(encoder, runs.Run):
        task_model, tok = load_task_model(encoder)
        model = task_model.encoder
    else:
        model, tok = ctx.encoder(encoder)
    model.to(ctx.device).eval()
    word_pairs = {}
    for pair, heldout in heldout_runs.items():
        data = pairs_data(heldout)
        word_pairs[pair_lang(pair, c.src_lang)] = xdist.WordPairSet(
            data.src_words, data.tgt_words, data.links
        ).limited(c.distance_word_pairs)
    parallel, tatoeba = _sentences(ctx, langs)
    records = xdist.measure(
        model,
        tok,
        word_pairs=word_pairs,
        parallel=parallel,
        tatoeba=tatoeba,
        max_length=MAX_LENGTH,
        bf16=c.bf16,
    )
    base = {"stage": None, "task": None, "regime": None, "pair": None, "seed": None}
    return {
        "records": [{**base, **record, **r} for r in records],
        "precision": precision_name(ctx.device, c.bf16),
    }


def _sentences(ctx: StepContext, langs: list[str]) -> tuple[dict, dict]:
    """SIB-200 test sentences shared with English, and Tatoeba rows, per language."""
    c = ctx.config
    parallel, tatoeba = {}, {}
    en_sib = {e.id: e.text for e in xdata.load_sib(c.src_lang, "test", source=ctx.source)}
    for lang in langs:
        x_sib = xdata.load_sib(lang, "test", source=ctx.source)
        shared = [e for e in x_sib if e.id in en_sib][: c.distance_limit]
        parallel[lang] = ([en_sib[e.id] for e in shared], [e.text for e in shared])
        if lang in xdata.available_languages("tatoeba", source=ctx.source):
            rows = xdata.load_tatoeba(lang, source=ctx.source)[: c.distance_limit]
            tatoeba[lang] = ([en for en, _ in rows], [x for _, x in rows])
    return parallel, tatoeba
