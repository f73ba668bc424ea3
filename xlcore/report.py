"""What every chapter starts with: its config from the parameters cell, and a provenance note.

A chapter's ``parameters`` cell holds plain literals; empty values mean "the profile's".
:func:`chapter_config` turns them into one validated :class:`xlcore.config.Config`, and
:func:`provenance` states, prominently, which profile, model and data the chapter's numbers
come from (and says plainly when that is the built-in sample corpus, not the real experiment).
"""

from __future__ import annotations

from xlcore.config import Config, make_config


def chapter_config(profile: str, **parameters) -> Config:
    """The config of a chapter: ``profile`` plus every non-empty parameter as an override."""
    overrides = {k: v for k, v in parameters.items() if v not in (None, "", [], ())}
    return make_config(profile, overrides)


def provenance_text(grid) -> str:
    """A MyST admonition naming the profile, model, data source and runs directory."""
    c = grid.config
    sample = grid.source.kind == "sample"
    kind = "warning" if sample or c.profile == "smoke" else "note"
    lines = [
        f"```{{{kind}}} Where these results come from",
        f"Profile **{c.profile}**, encoder `{c.model_name_or_path}`, "
        f"data: {grid.source.describe()}; seeds {', '.join(map(str, c.seeds))}; "
        f"{len(grid.steps)} runs in `{grid.root}`.",
    ]
    if sample:
        lines.append(
            "\n**These numbers come from the tiny built-in sample corpus, not from the real "
            "experiment.** Set `XLCORE_DATA` to a data root (or run `xlcore data fetch`) and "
            "rebuild to get real results."
        )
    if c.profile == "smoke":
        lines.append(
            "\nThe `smoke` profile uses a tiny randomly initialised encoder: it tests the "
            "pipeline, its numbers mean nothing."
        )
    lines.append("```")
    return "\n".join(lines)


def provenance(grid):
    """:func:`provenance_text` as displayable Markdown (for a notebook cell)."""
    from IPython.display import Markdown

    return Markdown(provenance_text(grid))


__all__ = ["chapter_config", "provenance", "provenance_text"]
