"""Training loops: alignment of an encoder on a language pair, and task fine-tuning.

Fine-tuning runs in one of three regimes (chapter *Combining alignment with fine-tuning*):
``baseline`` (task loss only), ``sequential`` (the encoder was aligned first; task loss only) and
``joint`` (``L_task + α·L_align`` with one alignment batch per step). Every loop is resumable: a
checkpoint holds model, optimiser, scheduler, RNG states and the step, and the batch order is a
pure function of (seed, step), so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from xlcore.align import AlignmentLoss, alignment_forward, build_alignment_loss
from xlcore.device import autocast, precision_name
from xlcore.errors import TrainingError
from xlcore.evaluate import collate, evaluate
from xlcore.runs import Run, atomic_torch_save


class TaskModel(nn.Module):
    """Encoder + linear head: per-token logits (POS) or pooled-sentence logits (SIB)."""

    def __init__(
        self,
        encoder: nn.Module,
        task: str,
        num_labels: int,
        pooling: str = "mean",
        dropout: float = 0.1,
    ):
        super().__init__()
        self.encoder = encoder
        self.task = task
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.task == "pos":
            return self.head(self.dropout(hidden))  # (B, T, C)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))  # (B, C)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The shuffled batches of one epoch, a pure function of (seed, epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def batch_at(step: int, n: int, batch_size: int, seed: int) -> np.ndarray:
    """Indices of the examples in training step ``step`` (epochs follow each other)."""
    per_epoch = math.ceil(n / batch_size)
    epoch, within = divmod(step, per_epoch)
    return epoch_batches(n, batch_size, seed, epoch)[within]


def _check_finite(loss: torch.Tensor, step: int, what: str) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(
            f"{what} loss became {loss.item()} at step {step}; lower the learning rate "
            f"or check the input data"
        )


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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


def _optimizer(
    modules: Sequence[nn.Module], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "bias" in name else decay).append(p)
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
    )


def align_encoder(
    run: Run,
    encoder: nn.Module,
    objective: AlignmentObjective,
    *,
    steps: int,
    learning_rate: float,
    device: torch.device,
    bf16: bool = False,
    progress: bool = True,
) -> dict:
    """Align ``encoder`` for ``steps`` steps (Adam, constant lr); resumable; returns metrics.

    The aligned encoder stays in ``encoder`` (the caller saves it).
    """
    encoder.to(device).train()
    objective.to(device)
    optimizer = torch.optim.Adam(
        [p for p in encoder.parameters() if p.requires_grad] + list(objective.loss.parameters()),
        lr=learning_rate,
    )
    start, losses = 0, []
    if run.checkpoint.exists():
        ckpt = torch.load(run.checkpoint, map_location=device, weights_only=False)
        encoder.load_state_dict(ckpt["encoder"])
        objective.loss.load_state_dict(ckpt["loss"])
        optimizer.load_state_dict(ckpt["optimizer"])
        _set_rng_state(ckpt["rng"])
        start, losses = ckpt["step"], ckpt["losses"]
    bar = tqdm(
        range(start, steps),
        desc=f"align {run.path.name[:40]}",
        disable=not progress,
        initial=start,
        total=steps,
        leave=False,
    )
    for step in bar:
        with autocast(device, bf16):
            loss = objective(encoder, step)
        _check_finite(loss, step, "alignment")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if (step + 1) % 25 == 0 and step + 1 < steps:
            atomic_torch_save(
                {
                    "encoder": encoder.state_dict(),
                    "loss": objective.loss.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": _rng_state(),
                    "step": step + 1,
                    "losses": losses,
                },
                run.checkpoint,
            )
    k = max(1, min(10, len(losses) // 4))
    return {
        "align_loss_first": float(np.mean(losses[:k])),
        "align_loss_last": float(np.mean(losses[-k:])),
        "align_losses": losses,
        "steps": steps,
        "precision": precision_name(device, bf16),
    }


@dataclass
class FinetuneSettings:
    """The hyper-parameters a fine-tuning loop needs (taken from :class:`xlcore.config.Config`)."""

    max_steps: int
    batch_size: int
    eval_batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    eval_steps: int
    checkpoint_steps: int
    seed: int
    align_alpha: float = 0.1


def finetune(
    run: Run,
    model: TaskModel,
    train: Sequence[dict],
    dev: Sequence[dict],
    *,
    settings: FinetuneSettings,
    pad_id: int,
    device: torch.device,
    objective: AlignmentObjective | None = None,
    bf16: bool = False,
    progress: bool = True,
) -> dict:
    """Fine-tune ``model`` on encoded English ``train``; select on ``dev``; resumable.

    With ``objective`` (joint regime) each step adds ``align_alpha`` times one alignment batch's
    loss. The best dev state is written to ``run.path/'model.pt'``; returns metrics.
    """
    s = settings
    model.to(device).train()
    modules: list[nn.Module] = [model]
    if objective is not None:
        objective.to(device)
        modules.append(objective.loss)
    optimizer = _optimizer(modules, s.learning_rate, s.weight_decay)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(s.warmup_ratio * s.max_steps), s.max_steps
    )
    task = model.task
    best_path = run.path / "model.pt"
    start, log, best = 0, [], {"dev": -1.0, "step": -1}
    if run.checkpoint.exists():
        ckpt = torch.load(run.checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        if objective is not None:
            objective.loss.load_state_dict(ckpt["align_loss"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"])
        start, log, best = ckpt["step"], ckpt["log"], ckpt["best"]
    mixed = autocast(device, bf16)
    bar = tqdm(
        range(start, s.max_steps),
        desc=f"{task} {run.path.name[:40]}",
        initial=start,
        total=s.max_steps,
        disable=not progress,
        leave=False,
    )
    loss_fn = nn.CrossEntropyLoss()
    for step in bar:
        batch = collate(
            [train[i] for i in batch_at(step, len(train), s.batch_size, s.seed)], pad_id, task
        )
        with mixed:
            logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            task_loss = loss_fn(
                logits.reshape(-1, logits.shape[-1]).float(), batch["labels"].to(device).reshape(-1)
            )
            _check_finite(task_loss, step, "task")
            loss = task_loss
            entry = {"step": step + 1, "task_loss": task_loss.item()}
            if objective is not None:
                align_loss = objective(model.encoder, step)
                _check_finite(align_loss, step, "alignment")
                loss = task_loss + s.align_alpha * align_loss
                entry["align_loss"] = align_loss.item()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        last = step + 1 == s.max_steps
        if (step + 1) % s.eval_steps == 0 or last:
            dev_scores = evaluate(model, dev, task, pad_id, s.eval_batch_size, device, bf16)
            entry["dev_accuracy"] = dev_scores["accuracy"]
            if dev_scores["accuracy"] > best["dev"]:
                best = {"dev": dev_scores["accuracy"], "step": step + 1}
                atomic_torch_save(model.state_dict(), best_path)
        log.append(entry)
        bar.set_postfix(loss=f"{entry['task_loss']:.3f}")
        if (step + 1) % s.checkpoint_steps == 0 and not last:
            ckpt = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _rng_state(),
                "step": step + 1,
                "log": log,
                "best": best,
            }
            if objective is not None:
                ckpt["align_loss"] = objective.loss.state_dict()
            atomic_torch_save(ckpt, run.checkpoint)
    return {
        "best_dev_accuracy": best["dev"],
        "best_step": best["step"],
        "log": log,
        "max_steps": s.max_steps,
        "precision": precision_name(device, bf16),
    }
