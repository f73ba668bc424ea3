"""What a chapter shows besides its results: a provenance note, the data inventory, the runs.

:func:`provenance` states, prominently, which profile, model and data the chapter's numbers
come from (and says plainly when that is the built-in sample corpus, not the real experiment).
A chapter's config comes from :func:`xlcore.chapter.open`.
"""

from __future__ import annotations

from xlcore.config import Config


def provenance_text(grid) -> str:
    """A MyST admonition naming the profile, model, data source and runs (and the results
    archive they were read from, if any)."""
    c = grid.config
    sample = grid.source.kind == "sample"
    kind = "warning" if sample or c.profile == "smoke" else "note"
    origin = getattr(grid, "origin", "")
    lines = [
        f"```{{{kind}}} Where these results come from",
        f"Profile **{c.profile}**, encoder `{c.model.model_name_or_path}`, "
        f"data: {grid.source.label()}; seeds {', '.join(map(str, c.finetune.seeds))}; "
        f"{len(grid.steps)} runs (listed in the reproducibility appendix)"
        + (f"; read from the {origin}." if origin else "."),
    ]
    if sample:
        lines.append(
            "\n**These numbers come from the tiny built-in sample corpus, not from the real "
            "experiment.** Build without `DATA=sample` (the build fetches the real data, or "
            "reads `XLCORE_DATA`) to get real results."
        )
    if c.profile == "smoke":
        lines.append(
            "\nThe `smoke` profile uses a tiny randomly initialised encoder: it tests the "
            "pipeline, its numbers mean nothing."
        )
    lines.append("```")
    return "\n".join(lines)


def data_inventory(config: Config):
    """Per language of the config's data source: UD test sentences, SIB-200 test rows, Tatoeba
    and parallel pairs (0 where missing), and whether the config uses the language."""
    import pandas as pd

    from xlcore import data as xdata
    from xlcore.config import pair_lang
    from xlcore.sources import data_source

    source = data_source(config)
    langs = sorted(
        set(xdata.available_languages("pos", split="test", source=source))
        | set(xdata.available_languages("sib", split="test", source=source))
    )
    tatoeba = set(xdata.available_languages("tatoeba", source=source))
    parallel = set(xdata.available_languages("parallel", source=source))
    pos = set(xdata.available_languages("pos", split="test", source=source))
    sib = set(xdata.available_languages("sib", split="test", source=source))
    aligned = {pair_lang(p, config.data.src_lang) for p in config.data.pairs}
    rows = []
    for lang in langs:
        rows.append(
            {
                "lang": lang,
                "ud_test_sentences": len(xdata.load_pos(lang, "test", source=source))
                if lang in pos
                else 0,
                "sib_test_rows": len(xdata.load_sib(lang, "test", source=source))
                if lang in sib
                else 0,
                "tatoeba_pairs": len(xdata.load_tatoeba(lang, source=source))
                if lang in tatoeba
                else 0,
                "parallel_pairs": len(xdata.load_parallel(lang, source=source))
                if lang in parallel
                else 0,
                "zero_shot_target": lang in config.data.tgt_langs,
                "aligned_pair": lang in aligned,
            }
        )
    return pd.DataFrame(rows)


def runs_table(grid):
    """Every run of ``grid``: kind, name, precision, seed, wall time, commit, device and finish
    time (from each run's ``provenance.json``); incomplete runs are listed as such.

    ``precision`` is what the run's key records (``bf16-autocast`` or ``fp32``: a bf16 request
    where bf16 is not native is keyed as fp32); empty for the kinds without a precision setting
    (word pairs compute in fp32, the encoder conversion computes nothing)."""
    import pandas as pd

    from xlcore.device import precision_label

    rows = []
    for step in grid.steps:
        run = step.run
        bf16 = run.spec.get("spec", {}).get("bf16")
        row = {
            "kind": run.kind,
            "run": run.path.name,
            "complete": run.complete,
            "precision": None if bf16 is None else precision_label(bf16),
        }
        if run.complete:
            prov = run.provenance()
            device = prov.get("device", {})
            row.update(
                seed=prov.get("seed"),
                wall_time_s=prov.get("wall_time_s"),
                commit=(prov.get("commit") or "")[:10] + ("+dirty" if prov.get("dirty") else ""),
                device=device.get("gpu") or device.get("cpu") or device.get("platform"),
                finished_at=prov.get("finished_at"),
            )
        rows.append(row)
    return pd.DataFrame(rows)


def provenance(grid):
    """:func:`provenance_text` as displayable Markdown (for a notebook cell)."""
    from IPython.display import Markdown

    return Markdown(provenance_text(grid))


__all__ = ["data_inventory", "provenance", "provenance_text", "runs_table"]
