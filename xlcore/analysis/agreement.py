"""Where a build stands on the paper's claims: one row per claim with what the paper says, what
these runs show, and a verdict (agrees, disagrees, cannot tell) read from intervals only.

Two thresholds name what "no strong relation" and "close to orthogonal" mean, so a verdict can be
checked against them: a Spearman |ρ| of 0.5 (Cohen's "large" correlation) and a cosine of 0.1
(an angle of 84°).
"""

from __future__ import annotations

import pandas as pd

from xlcore.analysis import transfer
from xlcore.analysis.stats import GAIN

AGREES, DISAGREES, CANNOT_TELL = "agrees", "disagrees", "cannot tell"
STRONG_RHO = 0.5
ORTHOGONAL_COS = 0.1
MIN_SEEDS = 2  # below it, an interval carries no seed noise
COLUMNS = ["claim", "paper", "this build", "verdict"]


def transfer_claim(intervals: pd.DataFrame, src_lang: str = "en") -> dict:
    """Sequential alignment often fails to improve transfer to the aligned language."""
    v = transfer.own_language_verdict(intervals, "sequential", src_lang)
    paper = "aligning first often fails to improve zero-shot transfer to the aligned language"
    if not v["cases"] or v["seeds"] < MIN_SEEDS:
        seeds = f"{v['seeds']} seed" if v["cases"] else "no sequential run"
        return _row("transfer", paper, f"{seeds}: seed noise is not in the intervals", CANNOT_TELL)
    shown = (
        f"a detectable gain in {v['gains']} of {v['cases']} task–pair cases, a loss in "
        f"{v['losses']} (changes of ±{v['mde']:.1f} points detectable; {v['seeds']} seeds)"
    )
    return _row("transfer", paper, shown, DISAGREES if 2 * v["gains"] > v["cases"] else AGREES)


def distance_claim(primary: pd.DataFrame) -> dict:
    """Finding 1, from :func:`xlcore.analysis.predictors.primary_correlations`."""
    paper = "how far alignment moves embedding distances does not predict the accuracy change"
    if not len(primary):
        return _row("distances", paper, "no primary correlation computable", CANNOT_TELL)
    found = primary[primary["detected"]]
    if len(found):
        r = found.loc[found["rho"].abs().idxmax()]
        shown = (
            f"{len(found)} of {len(primary)} primary correlations detected after Holm's "
            f"correction, e.g. {r['task'].upper()} {r['measure']}: ρ = {r['rho']:+.2f} "
            f"({r['low']:+.2f} to {r['high']:+.2f})"
        )
        return _row("distances", paper, shown, DISAGREES)
    bound = float(primary["excluded"].max())
    low, high = int(primary["n"].min()), int(primary["n"].max())
    points = f"{low} points" if low == high else f"{low}–{high} points"
    shown = (
        f"none of {len(primary)} primary correlations detected ({points} each); every "
        f"interval excludes |ρ| above {bound:.2f}"
    )
    return _row("distances", paper, shown, AGREES if bound <= STRONG_RHO else CANNOT_TELL)


def gradient_claim(gradients: pd.DataFrame, group: str = "all_but_embeddings") -> dict:
    """Finding 2: the corrected task–alignment cosine of the baseline model, per pair, at every
    probe point; close to orthogonal where every interval lies within ±0.1, not where one lies
    beyond it. An interval that cannot be formed (a reliability near zero) leaves it open."""
    paper = "task and alignment gradients are close to orthogonal"
    g = gradients[(gradients["group"] == group) & (gradients["regime"] == "baseline")]
    if g.empty:
        return _row("gradients", paper, "no probe ran", CANNOT_TELL)
    unread = int(g["cos_low"].isna().sum())
    formed = g.dropna(subset=["cos_low", "cos_high"])
    inside = formed["cos_low"].ge(-ORTHOGONAL_COS) & formed["cos_high"].le(ORTHOGONAL_COS)
    beyond = formed["cos_low"].gt(ORTHOGONAL_COS) | formed["cos_high"].lt(-ORTHOGONAL_COS)
    parts = [f"{len(g)} pair × probe-point intervals"]
    if unread:
        parts.append(f"{unread} cannot be formed (a reliability near zero)")
    if len(formed):
        c = formed["disattenuated"]
        parts.append(
            f"{int(inside.sum())} lie within ±{ORTHOGONAL_COS}, {int(beyond.sum())} beyond it "
            f"(corrected cosines {c.min():+.2f} to {c.max():+.2f})"
        )
    agrees = inside.all() and not unread
    verdict = DISAGREES if beyond.any() else AGREES if agrees else CANNOT_TELL
    return _row("gradients", paper, "; ".join(parts), verdict)


def loss_claim(contrasts: pd.DataFrame) -> dict:
    """The choice of alignment loss matters: some seed-paired contrast excludes zero."""
    paper = "the choice of the alignment loss matters"
    if not len(contrasts) or int(contrasts["seeds"].min()) < MIN_SEEDS:
        return _row("loss", paper, "fewer than 2 seed-paired runs per loss", CANNOT_TELL)
    found = contrasts[contrasts["verdict"] == GAIN]
    if len(found):
        r = found.iloc[0]
        shown = (
            f"{r['better']} over {r['worse']} by {r['delta']:+.1f} points "
            f"({r['low']:+.1f} to {r['high']:+.1f}) on {r['pair']}"
        )
        return _row("loss", paper, shown, AGREES)
    shown = (
        f"no loss differs detectably from another (changes of ±{contrasts['mde'].median():.1f} "
        f"points detectable; {int(contrasts['seeds'].min())} seeds)"
    )
    return _row("loss", paper, shown, CANNOT_TELL)


def paper_agreement(
    intervals: pd.DataFrame,
    primary: pd.DataFrame,
    gradients: pd.DataFrame,
    contrasts: pd.DataFrame,
    src_lang: str = "en",
) -> pd.DataFrame:
    """The four claims' rows: transfer, distances (finding 1), gradients (finding 2), loss."""
    return pd.DataFrame(
        [
            transfer_claim(intervals, src_lang),
            distance_claim(primary),
            gradient_claim(gradients),
            loss_claim(contrasts),
        ],
        columns=COLUMNS,
    )


def chapter_primary(ch) -> pd.DataFrame:
    """The primary distance–transfer correlations of an opened chapter's grid
    (:func:`xlcore.analysis.predictors.primary_correlations` at the last and word-pair layers)."""
    from xlcore.analysis import predictors, relations

    distances = predictors.with_margins(ch.distances)
    points, _ = relations.distance_vs_transfer(distances, ch.evaluations)
    layers = {"last": int(ch.distances["layer"].max()), "wordpair": ch.config.align.wordpair_layer}
    return predictors.primary_correlations(points, layers)


def chapter_agreement(
    ch, primary: pd.DataFrame | None = None, intervals: pd.DataFrame | None = None
) -> pd.DataFrame:
    """:func:`paper_agreement` of an opened chapter (:func:`xlcore.chapter.open`) whose grid
    has distances, gradient probes and a loss comparison, as the combining chapter's (pass the
    ``primary`` correlations and the ``intervals`` of the sequential regime if computed)."""
    primary = chapter_primary(ch) if primary is None else primary
    intervals = transfer.delta_intervals(ch.sentences) if intervals is None else intervals
    src = ch.config.data.src_lang
    return paper_agreement(intervals, primary, ch.gradients, ch.loss_contrasts, src)


def _row(claim: str, paper: str, shown: str, verdict: str) -> dict:
    return dict(zip(COLUMNS, (claim, paper, shown, verdict), strict=True))


__all__ = [
    "AGREES", "CANNOT_TELL", "DISAGREES", "ORTHOGONAL_COS", "STRONG_RHO",
    "chapter_agreement", "chapter_primary", "distance_claim", "gradient_claim", "loss_claim",
    "paper_agreement", "transfer_claim",
]  # fmt: skip
