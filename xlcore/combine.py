"""Gradient combination of the task and alignment objectives on the shared encoder.

Beyond the paper's sequential and joint regimes (chapter *Combining alignment with
fine-tuning*), two gradient-surgery rules act on what the gradient analysis reveals. Both take
the per-objective flat gradients of :class:`xlcore.gradients.GradientSpace` (computed
with :func:`torch.autograd.grad`, one fp32 buffer each) and return the combined gradient:

* :func:`pcgrad` (Yu et al., 2020): when the task gradient conflicts with the alignment gradient
  (negative dot product), project the task gradient onto the normal plane of the alignment
  gradient; the update is the sum of the (projected) task gradient and the alignment gradient.
* :class:`GradVac` (Wang et al., 2021), with layer-wise groups: per group, an exponential moving
  average of cos(g_task, g_align) is the target similarity; whenever the current cosine falls
  below it, the task gradient is moved toward the alignment gradient until the cosine equals
  the target. Only the task gradient is changed, as in PCGrad above.
"""

from __future__ import annotations

import math

import torch

from xlcore.gradients import GradientSpace, gram64


def pcgrad(
    g_task: torch.Tensor,
    g_align: torch.Tensor,
    gram: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, bool]:
    """``(combined gradient, conflicted)`` for one task and one alignment gradient.

    ``gram`` is their float64 Gram matrix ``[[t·t, t·a], [a·t, a·a]]`` when the caller already
    has it (:func:`xlcore.gradients.group_gram`); otherwise it is computed here.
    ``out`` receives the combined gradient (it may be ``g_task`` itself).
    """
    gram = gram64([g_task, g_align]) if gram is None else gram
    dot, norm2 = float(gram[0, 1]), float(gram[1, 1])
    conflicted = dot < 0 and norm2 > 0
    alpha = 1 - dot / norm2 if conflicted else 1.0
    return torch.add(g_task, g_align, alpha=alpha, out=out), conflicted


def gradvac_adjust(
    g_task: torch.Tensor, g_align: torch.Tensor, target: float, gram: torch.Tensor | None = None
) -> tuple[torch.Tensor, float]:
    """Move ``g_task`` so that its cosine with ``g_align`` becomes ``target`` when it is lower.

    Returns the adjusted task gradient and the cosine before adjustment (NaN if a norm is 0).
    ``gram`` as in :func:`pcgrad`.
    """
    gram = gram64([g_task, g_align]) if gram is None else gram
    nt, na = float(gram[0, 0]) ** 0.5, float(gram[1, 1]) ** 0.5
    if nt == 0 or na == 0:
        return g_task, float("nan")
    phi = float(gram[0, 1]) / (nt * na)
    if phi >= target:
        return g_task, phi
    phi = max(min(phi, 1.0), -1.0)
    target = min(target, 1.0 - 1e-8)
    coef = (
        nt
        * (target * math.sqrt(1 - phi**2) - phi * math.sqrt(1 - target**2))
        / (na * math.sqrt(1 - target**2))
    )
    return g_task.add(g_align, alpha=coef), phi


class GradVac:
    """Gradient vaccine with one EMA target similarity per parameter group (layer-wise).

    ``beta`` is the EMA rate (the GradVac paper uses about 1e-2; LibMTL defaults to 0.5);
    targets start at 0. ``state_dict``/``load_state_dict`` let a resumed run continue exactly.
    """

    def __init__(self, space: GradientSpace, beta: float = 0.01):
        if not 0 < beta <= 1:
            raise ValueError(f"GradVac beta must be in (0, 1], got {beta}")
        self.space = space
        self.beta = beta
        self.targets = {g: 0.0 for g in space.layer_groups}

    def __call__(
        self,
        g_task: torch.Tensor,
        g_align: torch.Tensor,
        grams: dict | None = None,
        out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """The combined gradient (adjusted task + alignment) and the per-group cosines before.

        ``grams``: the per-group Gram matrices of ``[g_task, g_align]``
        (:func:`xlcore.gradients.group_gram`) when the caller already has them.
        ``out`` receives the combined gradient (it may be ``g_task`` itself: each group is
        read before it is overwritten).
        """
        if out is None:
            adjusted = g_task.clone()
        else:
            adjusted = out if out is g_task else out.copy_(g_task)
        before = {}
        for group in self.space.layer_groups:
            start, end = self.space.groups[group]
            new, phi = gradvac_adjust(
                g_task[start:end],
                g_align[start:end],
                self.targets[group],
                gram=None if grams is None else grams[group],
            )
            adjusted[start:end] = new
            before[group] = phi
            if not math.isnan(phi):
                self.targets[group] = (1 - self.beta) * self.targets[group] + self.beta * phi
        return adjusted.add_(g_align), before

    def state_dict(self) -> dict:
        return {"beta": self.beta, "targets": dict(self.targets)}

    def load_state_dict(self, state: dict) -> None:
        self.beta = state["beta"]
        self.targets = dict(state["targets"])


__all__ = ["pcgrad", "gradvac_adjust", "GradVac"]
