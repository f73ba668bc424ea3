"""The alignment objective as training sees it: tokenised parallel data with word pairs, the
loss on one step's batch, and the gradient probe that compares it with the task loss."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from xlcore.batching import batch_at
from xlcore.errors import TrainingError
from xlcore.gradients import GradientSpace, ProbeObjective
from xlcore.gradients import probe as gradient_probe
from xlcore.losses import AlignmentLoss, alignment_forward, build_alignment_loss
from xlcore.taskmodel import PieceEncoder, TaskModel, split_task_loss


@dataclass
class AlignmentData:
    """Tokenised parallel sentences with their word pairs, for alignment batches."""

    src_words: list[list[str]]
    tgt_words: list[list[str]]
    links: list[list[tuple[int, int]]]

    def __post_init__(self) -> None:
        keep = [i for i, pairs in enumerate(self.links) if pairs]
        if not keep:
            raise TrainingError(
                "no aligned word pairs were found in the parallel data; "
                "check the bitext or use a larger align_train_limit"
            )
        self.src_words = [self.src_words[i] for i in keep]
        self.tgt_words = [self.tgt_words[i] for i in keep]
        self.links = [self.links[i] for i in keep]

    def __len__(self) -> int:
        return len(self.links)

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[list, list, list]:
        """The alignment batch of ``step`` (a pure function of seed and step)."""
        idx = batch_at(step, len(self), batch_size, seed + 7919)
        return (
            [self.src_words[i] for i in idx],
            [self.tgt_words[i] for i in idx],
            [self.links[i] for i in idx],
        )


class AlignmentObjective:
    """Alignment loss on batches of word pairs, for the alignment loop and the joint regime."""

    def __init__(
        self,
        encoder: nn.Module,
        tokenizer,
        data: AlignmentData,
        *,
        loss_name: str,
        layer: int,
        batch_size: int,
        max_length: int,
        seed: int,
    ):
        self.tokenizer = tokenizer
        self.data = data
        self.layer = layer
        self.batch_size = batch_size
        self.max_length = max_length
        self.seed = seed
        self.loss: AlignmentLoss = build_alignment_loss(loss_name, encoder.config.hidden_size)
        self.reference = None
        if self.loss.needs_reference:
            self.reference = copy.deepcopy(encoder).eval()
            for p in self.reference.parameters():
                p.requires_grad_(False)

    def to(self, device: torch.device) -> AlignmentObjective:
        self.loss.to(device)
        if self.reference is not None:
            self.reference.to(device)
        return self

    def __call__(self, encoder: nn.Module, step: int) -> torch.Tensor:
        src, tgt, links = self.data.batch(step, self.batch_size, self.seed)
        return alignment_forward(
            encoder,
            self.loss,
            self.tokenizer,
            src,
            tgt,
            links,
            layer=self.layer,
            max_length=self.max_length,
            reference_model=self.reference,
        )


class GradientProbe:
    """Fixed held-out probe batches and the alignment objectives to compare the task against.

    ``task_batches`` are two collated English batches (dev data, never trained on);
    ``objectives`` maps a pair name to ``(AlignmentLoss, AlignmentData, reference)`` whose
    first two batches are the held-out probe batches for that pair. Called by :func:`finetune`
    at ``steps``; returns :func:`xlcore.gradients.probe` records.

    Cost: every batch runs in :func:`length_pieces` (no compute on most of the padding), and an
    English batch that several pairs share (multi-parallel bitext) runs forward once.
    """

    def __init__(
        self,
        steps: Sequence[int],
        task_batches: Sequence[dict],
        objectives: dict,
        *,
        tokenizer,
        layer: int,
        max_length: int,
        batch_size: int,
        device: torch.device,
    ):
        if len(task_batches) != 2:
            raise ValueError("a gradient probe needs exactly two task batches")
        self.steps = set(steps)
        self.task_batches = task_batches
        self.objectives = objectives
        self.tokenizer = tokenizer
        self.layer = layer
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device

    def __call__(self, model: TaskModel, step: int) -> list[dict]:
        space = GradientSpace.of(model.encoder)
        # Probe batches are fixed, not length-grouped: each runs in length pieces, so the
        # padding costs no compute (the same losses up to float rounding).
        encoder = PieceEncoder(model.encoder)

        def task_loss_on(k: int) -> torch.Tensor:
            return split_task_loss(model, self.task_batches[k], self.device)

        # Held-out bitexts are multi-parallel (NTREX), so several pairs may probe the same
        # English batch: its forward pass is then run once and shared (same numbers).
        sources = Counter(
            (k, self._source_key(data, k))
            for _, data, _ in self.objectives.values()
            for k in (0, 1)
        )
        states: dict = {}
        probes = []
        for pair, (loss, data, reference) in self.objectives.items():
            loss.to(self.device)
            if reference is not None:
                reference.to(self.device)
            shared = any(sources[(k, self._source_key(data, k))] > 1 for k in (0, 1))

            def loss_on(k: int, loss=loss, data=data, reference=reference, shared=shared):
                lo = k * self.batch_size
                src = data.src_words[lo : lo + self.batch_size]
                tgt = data.tgt_words[lo : lo + self.batch_size]
                links = data.links[lo : lo + self.batch_size]
                return alignment_forward(
                    encoder,
                    loss,
                    self.tokenizer,
                    src,
                    tgt,
                    links,
                    layer=self.layer,
                    max_length=self.max_length,
                    reference_model=reference,
                    states=states if shared else None,
                )

            probes.append(ProbeObjective(pair, loss_on, retain_graph=shared))
        modules = [model] + [loss for loss, _, _ in self.objectives.values()]
        return gradient_probe(space, modules, task_loss_on, probes, step=step)

    def _source_key(self, data: AlignmentData, k: int) -> tuple:
        lo = k * self.batch_size
        return tuple(tuple(words) for words in data.src_words[lo : lo + self.batch_size])
