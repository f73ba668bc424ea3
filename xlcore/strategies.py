"""How a fine-tuning step combines the task loss with the alignment loss: one strategy object
per regime, behind one small interface.

A strategy says whether the step's alignment loss is computed with the task loss
(``aligns_with_task``), turns the step's losses into parameter updates (:meth:`Strategy.update`,
which calls the loop's ``optimizer_step`` once or twice), and names the state it keeps across
steps for the checkpoint (:meth:`Strategy.parts`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from xlcore.combine import GradVac, pcgrad
from xlcore.gradients import ALL, GradientSpace, cos_norms, group_gram

STRATEGIES = ("joint", "alternating", "pcgrad", "gradvac")

OptimizerStep = Callable[[], None]  # clip, step and zero the gradients


class Strategy:
    """Task loss only (the baseline and sequential regimes)."""

    aligns_with_task = False

    def update(self, step: int, task_loss, align_loss, optimizer_step: OptimizerStep) -> dict:
        """Back-propagate the step's losses and update; returns entries for the step's log."""
        task_loss.backward()
        optimizer_step()
        return {}

    def parts(self) -> dict:
        """State kept across steps, by checkpoint name."""
        return {}


class Joint(Strategy):
    """One backward of ``L_task + α·L_align`` (the paper's joint regime)."""

    aligns_with_task = True

    def __init__(self, objective, alpha: float):
        self.objective, self.alpha = objective, alpha

    def update(self, step, task_loss, align_loss, optimizer_step) -> dict:
        (task_loss + self.alpha * align_loss).backward()
        optimizer_step()
        return {}

    def parts(self) -> dict:
        return {"align_loss": self.objective.loss}


class Alternating(Joint):
    """A task update, then a separate update on ``α·L_align`` of a fresh alignment batch."""

    aligns_with_task = False

    def __init__(self, objective, alpha: float, encoder: nn.Module, mixed, check: Callable):
        super().__init__(objective, alpha)
        self.encoder, self.mixed, self.check = encoder, mixed, check

    def update(self, step, task_loss, align_loss, optimizer_step) -> dict:
        task_loss.backward()
        optimizer_step()
        with self.mixed:
            align_loss = self.objective(self.encoder, step)
        self.check(align_loss, step, "alignment")
        (self.alpha * align_loss).backward()
        optimizer_step()
        return {"align_loss": align_loss.item()}


class Surgery(Joint):
    """Per-objective gradients on the shared encoder, combined by PCGrad, or by GradVac when
    ``beta`` is given (:mod:`xlcore.combine`)."""

    def __init__(self, objective, alpha: float, model: nn.Module, beta: float | None = None):
        super().__init__(objective, alpha)
        self.model = model
        self.space = GradientSpace.of(model.encoder)
        self.vaccine = GradVac(self.space, beta) if beta is not None else None
        # two flat buffers reused from step to step (the encoder's .grad are views of the first)
        self.buffers = (self.space.buffer(), self.space.buffer())

    def update(self, step, task_loss, align_loss, optimizer_step) -> dict:
        info = self._combine(task_loss, align_loss)
        optimizer_step()
        return info

    def parts(self) -> dict:
        parts = super().parts()
        if self.vaccine is not None:
            parts["gradvac"] = self.vaccine
        return parts

    def _combine(self, task_loss, align_loss) -> dict:
        """Per-objective gradients → PCGrad or GradVac on the encoder → ``.grad``; log entries.

        The combined gradient overwrites the task gradient's buffer, and the encoder's ``.grad``
        are views of it until the optimizer step releases them. All products come from one
        float64 pass over both gradients (:func:`group_gram`).
        """
        space = self.space
        head = [p for p in self.model.head.parameters() if p.requires_grad]
        proj = [p for p in self.objective.loss.parameters() if p.requires_grad]
        n = len(space.params)
        gt = torch.autograd.grad(task_loss, space.params + head, allow_unused=True)
        ga = torch.autograd.grad(self.alpha * align_loss, space.params + proj, allow_unused=True)
        g_task = space.flatten(list(gt[:n]), out=self.buffers[0])
        g_align = space.flatten(list(ga[:n]), out=self.buffers[1])
        grams = group_gram(space, [g_task, g_align])
        info = {"grad_cos": cos_norms(grams[ALL])[0]}
        if self.vaccine is None:
            combined, conflicted = pcgrad(g_task, g_align, gram=grams[ALL], out=g_task)
            info["conflict"] = conflicted
        else:
            combined, _ = self.vaccine(g_task, g_align, grams=grams, out=g_task)
        space.unflatten_into_grad(combined, share=True)
        for p, g in zip(head + proj, [*gt[n:], *ga[n:]], strict=True):
            p.grad = None if g is None else g.detach()
        return info


def make_strategy(
    name: str, model: nn.Module, objective, *, alpha: float, beta: float, mixed, check: Callable
) -> Strategy:
    """The strategy ``name`` (one of :data:`STRATEGIES`); without an alignment ``objective``,
    the task loss alone."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    if objective is None:
        return Strategy()
    if name == "joint":
        return Joint(objective, alpha)
    if name == "alternating":
        return Alternating(objective, alpha, model.encoder, mixed, check)
    return Surgery(objective, alpha, model, beta if name == "gradvac" else None)
