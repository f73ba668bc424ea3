"""Gradient combination of the task and alignment objectives on the shared encoder.

Beyond the paper's sequential and joint regimes (chapter *Combining alignment with
fine-tuning*), two gradient-surgery rules act on what the gradient analysis reveals. Both take
the per-objective flat gradients of :class:`xlcore.gradients.GradientSpace` (computed
with :func:`torch.autograd.grad`, one fp32 buffer each) and return the combined gradient:

* :func:`pcgrad` (Yu et al., 2020): when the two gradients conflict (negative dot product),
  each is projected onto the normal plane of the *other's original* gradient; the update is the
  sum of the two projected gradients (LibMTL's and Yu et al.'s rule for two objectives).
* :class:`GradVac` (Wang et al., 2021), with layer-wise groups: per group, an exponential moving
  average of cos(g_task, g_align) is the target similarity; whenever the current cosine falls
  below it, *each* gradient is moved toward the other (original) one until their cosine equals
  the target (:func:`gradvac_adjust`), and the update is the sum of the two.

With two objectives every product needed is in their 2×2 Gram matrix, and each combined
gradient is ``c_task·g_task + c_align·g_align`` with two scalars from it.
"""

from __future__ import annotations

import math

import torch

from xlcore.gradients import GradientSpace, gram64


def _weighted_sum(
    g_task: torch.Tensor,
    g_align: torch.Tensor,
    c_task: float,
    c_align: float,
    out: torch.Tensor | None,
) -> torch.Tensor:
    """``c_task·g_task + c_align·g_align``, into ``out`` (which may be ``g_task`` itself)."""
    if out is None:
        out = g_task.clone()
    elif out is not g_task:
        out.copy_(g_task)
    if c_task != 1.0:
        out.mul_(c_task)
    return out.add_(g_align, alpha=c_align)


def pcgrad(
    g_task: torch.Tensor,
    g_align: torch.Tensor,
    gram: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, bool]:
    """``(combined gradient, conflicted)`` for one task and one alignment gradient.

    On a conflict (t·a < 0) ``t' = t − (t·a/‖a‖²)·a`` and ``a' = a − (t·a/‖t‖²)·t``, both from
    the original gradients, and the combined gradient is ``t' + a'``; otherwise ``t + a``.
    ``gram`` is their float64 Gram matrix ``[[t·t, t·a], [a·t, a·a]]`` when the caller already
    has it (:func:`xlcore.gradients.group_gram`); otherwise it is computed here.
    ``out`` receives the combined gradient (it may be ``g_task`` itself).
    """
    gram = gram64([g_task, g_align]) if gram is None else gram
    tt, dot, aa = float(gram[0, 0]), float(gram[0, 1]), float(gram[1, 1])
    conflicted = dot < 0 and tt > 0 and aa > 0
    # t' + a' = (1 − t·a/‖t‖²)·t + (1 − t·a/‖a‖²)·a
    c_task, c_align = (1 - dot / tt, 1 - dot / aa) if conflicted else (1.0, 1.0)
    return _weighted_sum(g_task, g_align, c_task, c_align, out), conflicted


def gradvac_adjust(
    g_task: torch.Tensor,
    g_align: torch.Tensor,
    target: float,
    gram: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    """Wang et al.'s rule for two gradients: when their cosine φ is below ``target`` (φ̂), each
    is moved toward the other (original) gradient until their cosine is φ̂:

        t' = t + ‖t‖·k/‖a‖ · a,   a' = a + ‖a‖·k/‖t‖ · t,   k = (φ̂√(1−φ²) − φ√(1−φ̂²)) / √(1−φ̂²)

    Returns the combined gradient ``t' + a'`` (``t + a`` when φ ≥ φ̂ or a norm is 0) and φ
    before adjustment (NaN if a norm is 0). With φ̂ = 0 this is :func:`pcgrad`.
    ``gram`` and ``out`` as in :func:`pcgrad`.
    """
    gram = gram64([g_task, g_align]) if gram is None else gram
    nt, na = float(gram[0, 0]) ** 0.5, float(gram[1, 1]) ** 0.5
    if nt == 0 or na == 0:
        return _weighted_sum(g_task, g_align, 1.0, 1.0, out), float("nan")
    phi = float(gram[0, 1]) / (nt * na)
    if phi >= target:
        return _weighted_sum(g_task, g_align, 1.0, 1.0, out), phi
    phi_c = max(min(phi, 1.0), -1.0)
    target = min(target, 1.0 - 1e-8)
    k = (target * math.sqrt(1 - phi_c**2) - phi_c * math.sqrt(1 - target**2)) / math.sqrt(
        1 - target**2
    )
    # t' + a' = (1 + k‖a‖/‖t‖)·t + (1 + k‖t‖/‖a‖)·a
    return _weighted_sum(g_task, g_align, 1 + k * na / nt, 1 + k * nt / na, out), phi


class GradVac:
    """Gradient vaccine with one EMA target similarity per parameter group (layer-wise).

    ``beta`` is the EMA rate (the GradVac paper uses about 1e-2; LibMTL defaults to 0.5). As in
    Wang et al. the EMA starts at 0, but it is read bias-corrected (as Adam reads its moments):
    the target is ``ema / (1 − (1 − β)^n)`` after n observed cosines, i.e. the weighted mean of
    the cosines seen so far. Deviation kept on purpose: the paper trains for hundreds of
    thousands of steps, where the correction factor is 1 after a few hundred; over this
    project's ~60 steps at β = 0.01 an uncorrected target stays below 0.45× the mean cosine,
    close to 0, where GradVac reduces to PCGrad. Before the first cosine of a group is observed
    the target is the paper's starting value 0 (the first step is PCGrad's, group by group).
    With two objectives the targets of (task, align) and (align, task) are equal (same cosine,
    same start), so one per group is kept. ``state_dict``/``load_state_dict`` let a resumed run
    continue exactly.
    """

    def __init__(self, space: GradientSpace, beta: float = 0.01):
        if not 0 < beta <= 1:
            raise ValueError(f"GradVac beta must be in (0, 1], got {beta}")
        self.space = space
        self.beta = beta
        # the bias-corrected target (0 before any cosine) and the EMA's weight 1 − (1 − β)^n
        self.targets = {g: 0.0 for g in space.layer_groups}
        self.weights = {g: 0.0 for g in space.layer_groups}

    def __call__(
        self,
        g_task: torch.Tensor,
        g_align: torch.Tensor,
        grams: dict | None = None,
        out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """The combined gradient (both adjusted, summed) and the per-group cosines before.

        ``grams``: the per-group Gram matrices of ``[g_task, g_align]``
        (:func:`xlcore.gradients.group_gram`) when the caller already has them.
        ``out`` receives the combined gradient (it may be ``g_task`` itself: each group is
        read before it is overwritten). The layer groups tile the space, so every element is
        written.
        """
        combined = torch.empty_like(g_task) if out is None else out
        before = {}
        for group in self.space.layer_groups:
            start, end = self.space.groups[group]
            task = g_task[start:end]
            _, phi = gradvac_adjust(
                task,
                g_align[start:end],
                self.targets[group],
                gram=None if grams is None else grams[group],
                out=task if combined is g_task else combined[start:end],
            )
            before[group] = phi
            if not math.isnan(phi):
                self._observe(group, phi)
        return combined, before

    def _observe(self, group: str, phi: float) -> None:
        """EMA ← (1 − β)·EMA + β·φ, kept as the bias-corrected target and the EMA's weight."""
        weight = self.weights[group]
        ema = (1 - self.beta) * weight * self.targets[group]  # 0 at first: the paper's start
        self.weights[group] = (1 - self.beta) * weight + self.beta
        self.targets[group] = (ema + self.beta * phi) / self.weights[group]

    def state_dict(self) -> dict:
        return {"beta": self.beta, "targets": dict(self.targets), "weights": dict(self.weights)}

    def load_state_dict(self, state: dict) -> None:
        self.beta = state["beta"]
        self.targets = dict(state["targets"])
        self.weights = dict(state["weights"])


__all__ = ["pcgrad", "gradvac_adjust", "GradVac"]
