"""The alignment objective as training sees it: tokenised parallel data with word pairs and the
loss on one step's batch."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from xlcore.batching import batch_at
from xlcore.errors import TrainingError
from xlcore.losses import AlignmentLoss, alignment_forward, build_alignment_loss


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
