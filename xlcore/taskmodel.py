"""The task model (shared encoder plus a token or sentence head) and the length-piece execution
that trains and probes it without computing on most of the padding."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from xlcore.batching import length_pieces
from xlcore.tasks import Task, get_task
from xlcore.tokens import IGNORE_INDEX


class TaskModel(nn.Module):
    """Encoder + linear head over the task's labels: per-token logits for a token-level task
    (POS), pooled-sentence logits otherwise (SIB)."""

    def __init__(
        self,
        encoder: nn.Module,
        task: str | Task,
        pooling: str = "mean",
        dropout: float = 0.1,
    ):
        super().__init__()
        task = get_task(task)
        self.encoder = encoder
        self.task = task.name
        self.token_level = task.token_level
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, task.num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.token_level:
            return self.head(self.dropout(hidden))  # (B, T, C)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))  # (B, C)


def split_task_loss(model: TaskModel, batch: dict, device: torch.device) -> torch.Tensor:
    """The cross-entropy of a collated batch, computed piece by piece (:func:`length_pieces`):
    summed over the pieces and divided by the batch's count, it is the padded batch's mean."""
    mask = batch["attention_mask"]
    lengths = mask.sum(1).tolist()
    labels = batch["labels"]
    count = (labels != IGNORE_INDEX).sum() if model.token_level else len(lengths)
    total = None
    for piece in length_pieces(lengths):
        rows = torch.tensor(piece)
        width = max(lengths[i] for i in piece)
        logits = model(batch["input_ids"][rows, :width].to(device), mask[rows, :width].to(device))
        target = labels[rows, :width] if model.token_level else labels[rows]
        part = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            target.to(device).reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        total = part if total is None else total + part
    return total / count


class PieceEncoder(nn.Module):
    """An encoder run on the :func:`length_pieces` of each batch, every piece cut to its own
    longest example; all hidden states come back padded to the batch width (zeros on padding)
    in batch order: what one padded pass gives on the real tokens, up to float rounding."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config

    def forward(self, input_ids, attention_mask, token_type_ids=None, **_) -> SimpleNamespace:
        lengths = attention_mask.sum(1).tolist()
        width = input_ids.shape[1]
        positions = torch.arange(width, device=attention_mask.device)
        right_padded = torch.equal(
            attention_mask.bool(), positions < attention_mask.sum(1, keepdim=True)
        )
        if not right_padded:  # pieces cut at the end of each row: only right padding allows it
            return self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                output_hidden_states=True,
            )
        pieces = length_pieces(lengths)
        outputs = []
        for piece in pieces:
            rows = torch.tensor(piece, device=input_ids.device)
            cut = max(lengths[i] for i in piece)
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids[rows, :cut]}
            out = self.encoder(
                input_ids=input_ids[rows, :cut],
                attention_mask=attention_mask[rows, :cut],
                output_hidden_states=True,
                **extra,
            )
            outputs.append(out.hidden_states)
        back = torch.argsort(torch.tensor([i for p in pieces for i in p], device=input_ids.device))

        def repad(k: int) -> torch.Tensor:  # layer k of every piece, batch width, batch order
            pad = [nn.functional.pad(h[k], (0, 0, 0, width - h[k].shape[1])) for h in outputs]
            return torch.cat(pad)[back]  # (B, T, H)

        states = tuple(repad(k) for k in range(len(outputs[0])))
        return SimpleNamespace(hidden_states=states, last_hidden_state=states[-1])
