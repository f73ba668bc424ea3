"""What a gradient probe's Gram matrices say: per parameter group, the cosine of the task and
alignment gradients corrected for attenuation with a jackknife interval, its empirical nulls,
the cosine with the target-language task gradient, the norms and the joint update's direction.

A probe (:mod:`xlcore.steps.probe`) computes K gradients per *stream* (one objective on K
independent batches) and stores their Gram matrix per group; the streams are ``task``
(English), ``task_null`` (the same batches with shuffled labels), ``align`` (held-out word
pairs), ``align_null`` (the same sentences with shuffled word pairs) and, where the pair's
language has data kept out of evaluation, ``target`` (its task loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xlcore.analysis.stats import cosines, random_cosine, reliability, stream_cosine

STREAMS = ("task", "task_null", "align", "align_null", "target")

# (column prefix, stream a, stream b): the cosines reported, each corrected for attenuation
CONTRASTS = (
    ("", "task", "align"),
    ("null_labels", "task_null", "align"),
    ("null_pairs", "task", "align_null"),
    ("target", "target", "align"),
)


def _indices(streams: Sequence[str], batches: int) -> dict[str, np.ndarray]:
    """Stream name → its rows in the Gram matrix (streams laid out one after another)."""
    return {s: np.arange(i * batches, (i + 1) * batches) for i, s in enumerate(streams)}


def _contrast(gram: np.ndarray, a: np.ndarray, b: np.ndarray, name: str) -> dict:
    """Raw and corrected cosine of two streams with its interval; the main contrast (``name``
    empty) is ``cos``, ``disattenuated``, ``cos_low``, ``cos_high``."""
    sc = stream_cosine(gram, a, b)
    d = sc.disattenuated
    if not name:
        return {"cos": sc.raw, "disattenuated": d.estimate, "cos_low": d.low, "cos_high": d.high}
    return {f"{name}_raw": sc.raw, name: d.estimate, f"{name}_low": d.low, f"{name}_high": d.high}


def _norms(gram: np.ndarray, rows: np.ndarray) -> float:
    """Mean norm of one stream's batch gradients."""
    return float(np.sqrt(np.diag(gram)[rows]).mean())


def _update_cos(gram: np.ndarray, t: np.ndarray, a: np.ndarray, alpha: float) -> float:
    """Mean over batches k of cos(g_task,k + α·g_align,k, g_task,k): how far the joint regime's
    update turns from the task-only update."""
    tt, ta, aa = gram[t, t], gram[t, a], gram[a, a]
    joint = np.sqrt(tt + 2 * alpha * ta + alpha**2 * aa)
    return float(np.mean((tt + alpha * ta) / (joint * np.sqrt(tt))))


def group_record(
    gram: np.ndarray, streams: Sequence[str], batches: int, *, alpha: float, size: int
) -> dict:
    """One group's statistics from the Gram matrix of ``streams`` × ``batches`` gradients."""
    gram = np.asarray(gram, float)
    idx = _indices(streams, batches)
    cos = cosines(gram)
    out: dict = {"size": size, "batches": batches}
    for s in STREAMS:
        out[f"reliability_{s}"] = reliability(cos, idx[s]) if s in idx else np.nan
    for prefix, a, b in CONTRASTS:
        if a in idx and b in idx:
            out.update(_contrast(gram, idx[a], idx[b], prefix))
    for s in ("task", "align", "target"):
        out[f"norm_{s}"] = _norms(gram, idx[s]) if s in idx else np.nan
    out["norm_ratio"] = out["norm_align"] / out["norm_task"]
    out["alpha"] = alpha
    out["weighted_ratio"] = alpha * out["norm_ratio"]
    out["update_cos"] = _update_cos(gram, idx["task"], idx["align"], alpha)
    out["random_cos"] = random_cosine(size)
    return out


__all__ = ["CONTRASTS", "STREAMS", "group_record"]
