"""Training loops: alignment of an encoder on a language pair, and task fine-tuning.

Fine-tuning runs in one of three regimes (chapter *Combining alignment with fine-tuning*):
``baseline`` (task loss only), ``sequential`` (the encoder was aligned first; task loss only) and
``joint`` (``L_task + α·L_align`` with one alignment batch per step). Every loop is resumable: a
checkpoint holds model, optimiser, scheduler, RNG states and the step, and the batch order is a
pure function of (seed, step), so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from xlcore import checkpoint
from xlcore.batching import batch_at, collate
from xlcore.device import autocast, precision_name
from xlcore.errors import TrainingError
from xlcore.evaluate import evaluate
from xlcore.objective import AlignmentObjective
from xlcore.progress import steps as progress_steps
from xlcore.runs import Run, atomic_torch_save
from xlcore.strategies import Strategy, make_strategy
from xlcore.taskmodel import TaskModel, split_task_loss


def _check_finite(loss: torch.Tensor, step: int, what: str) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(
            f"{what} loss became {loss.item()} at step {step}; lower the learning rate "
            f"or check the input data"
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
        fused=_fused(decay + no_decay),
    )


def _fused(params: Sequence[torch.Tensor]) -> bool | None:
    """The fused Adam(W) kernels on CPU and CUDA, where torch has them (the
    ``transformers.Trainer`` default, ``adamw_torch_fused``); ``None`` leaves the choice to torch
    elsewhere (its ``for-loop`` or ``foreach`` implementation)."""
    if params and all(p.device.type in ("cpu", "cuda") for p in params):
        return True
    return None


def _optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    """``"fused"``, or ``"default"`` for torch's own choice (``for-loop`` or ``foreach``)."""
    return "fused" if optimizer.defaults.get("fused") else "default"


def align_encoder(
    run: Run,
    encoder: nn.Module,
    objective: AlignmentObjective,
    *,
    steps: int,
    learning_rate: float,
    device: torch.device,
    bf16: bool = False,
    checkpoint_steps: int | None = 25,
    progress: bool = True,
) -> dict:
    """Align ``encoder`` for ``steps`` steps (Adam, constant lr); resumable; returns metrics.

    The aligned encoder stays in ``encoder`` (the caller saves it); Adam is fused where torch
    has it (:func:`_fused`). A checkpoint is written every ``checkpoint_steps`` steps
    (:func:`xlcore.checkpoint.due`).
    """
    encoder.to(device).train()
    objective.to(device)
    params = [p for p in encoder.parameters() if p.requires_grad]
    params += list(objective.loss.parameters())
    optimizer = torch.optim.Adam(params, lr=learning_rate, fused=_fused(params))
    parts = {"encoder": encoder, "loss": objective.loss, "optimizer": optimizer}
    saved = checkpoint.resume(run, device, parts)
    start, losses = saved.get("step", 0), saved.get("losses", [])
    bar = progress_steps(f"align {run.path.name[:40]}", start, steps, progress)
    for step in bar:
        with autocast(device, bf16):
            loss = objective(encoder, step)
        _check_finite(loss, step, "alignment")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if checkpoint.due(step + 1, steps, checkpoint_steps):
            checkpoint.save(run, parts, step=step + 1, losses=losses)
    k = max(1, min(10, len(losses) // 4))
    return {
        "align_loss_first": float(np.mean(losses[:k])),
        "align_loss_last": float(np.mean(losses[-k:])),
        "align_losses": losses,
        "steps": steps,
        "precision": precision_name(device, bf16),
        "optimizer": _optimizer_name(optimizer),
    }


@dataclass
class FinetuneSettings:
    """The hyper-parameters a fine-tuning loop needs (taken from :class:`xlcore.config.Config`).

    ``group_by_length`` draws batches of similar length (less padding, a different batch mix);
    ``split_by_length`` keeps the batches and runs each in :func:`length_pieces`, every piece
    padded only to its own longest example, with the loss of the whole padded batch (the same
    up to float rounding and dropout draws), so no work is spent on most of the padding. AdamW
    is fused where torch has it (:func:`_fused`).
    """

    max_steps: int
    batch_size: int
    eval_batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    eval_steps: int
    checkpoint_steps: int | None  # None: no resume point
    seed: int
    align_alpha: float = 0.1
    group_by_length: bool = False
    gradvac_beta: float = 0.01
    split_by_length: bool = False


def finetune(
    run: Run,
    model: TaskModel,
    train: Sequence[dict],
    dev: Sequence[dict],
    *,
    settings: FinetuneSettings,
    tokenizer,
    device: torch.device,
    objective: AlignmentObjective | None = None,
    strategy: str = "joint",
    bf16: bool = False,
    progress: bool = True,
) -> dict:
    """Fine-tune ``model`` on encoded English ``train``; select on ``dev``; resumable.

    With ``objective``, the alignment loss (weighted by ``align_alpha``) is combined with the
    task loss by ``strategy`` (:mod:`xlcore.strategies`): ``joint`` (one backward of the weighted
    sum), ``alternating`` (after every task update, a separate alignment update), ``pcgrad`` or
    ``gradvac`` (per-objective gradients on the shared encoder, combined by :mod:`xlcore.combine`).
    The best dev state is written to ``run.path/'model.pt'``.
    """
    s = settings
    model.to(device).train()
    if objective is not None:
        objective.to(device)
    mixed = autocast(device, bf16)
    update = make_strategy(
        strategy,
        model,
        objective,
        alpha=s.align_alpha,
        beta=s.gradvac_beta,
        mixed=mixed,
        check=_check_finite,
    )
    optimizer, scheduler, optimizer_step = _optimization(model, objective, s)
    parts = {"model": model, **update.parts(), "optimizer": optimizer, "scheduler": scheduler}
    state = {"step": 0, "log": [], "best": {"dev": -1.0, "step": -1}}
    state.update(checkpoint.resume(run, device, parts))
    task_loss_of = _task_loss(model, device, s.split_by_length)
    lengths = [len(e["input_ids"]) for e in train] if s.group_by_length else None
    bar = progress_steps(f"{model.task} {run.path.name[:40]}", state["step"], s.max_steps, progress)
    for step in bar:
        batch = collate(
            [train[i] for i in batch_at(step, len(train), s.batch_size, s.seed, lengths)],
            tokenizer,
            model.task,
        )
        entry = _train_step(
            step, batch, task_loss_of, model, objective, update, mixed, optimizer_step
        )
        scheduler.step()
        last = step + 1 == s.max_steps
        if (step + 1) % s.eval_steps == 0 or last:
            entry["dev_accuracy"] = _select(
                model, dev, tokenizer, s, device, bf16, state, step, run
            )
        state["log"].append(entry)
        bar.set_postfix(loss=f"{entry['task_loss']:.3f}")
        if checkpoint.due(step + 1, s.max_steps, s.checkpoint_steps):
            checkpoint.save(run, parts, **{**state, "step": step + 1})
    return {
        "best_dev_accuracy": state["best"]["dev"],
        "best_step": state["best"]["step"],
        "log": state["log"],
        "max_steps": s.max_steps,
        "precision": precision_name(device, bf16),
        "optimizer": _optimizer_name(optimizer),
    }


def _optimization(
    model: TaskModel, objective: AlignmentObjective | None, s: FinetuneSettings
) -> tuple[torch.optim.Optimizer, object, Callable[[], None]]:
    """The optimizer over the model (and a trainable alignment loss), its linear schedule, and
    the clipped step that every strategy calls."""
    modules = [model] + ([objective.loss] if objective is not None else [])
    optimizer = _optimizer(modules, s.learning_rate, s.weight_decay)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(s.warmup_ratio * s.max_steps), s.max_steps
    )

    def optimizer_step() -> None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return optimizer, scheduler, optimizer_step


def _train_step(
    step: int,
    batch: dict,
    task_loss_of: Callable,
    model: TaskModel,
    objective: AlignmentObjective | None,
    update: Strategy,
    mixed,
    optimizer_step: Callable[[], None],
) -> dict:
    """One training step: the losses under autocast, then the strategy's update; its log entry."""
    with mixed:
        task_loss = task_loss_of(batch)
        _check_finite(task_loss, step, "task")
        entry = {"step": step + 1, "task_loss": task_loss.item()}
        align_loss = None
        if update.aligns_with_task:
            align_loss = objective(model.encoder, step)
            _check_finite(align_loss, step, "alignment")
            entry["align_loss"] = align_loss.item()
    entry.update(update.update(step, task_loss, align_loss, optimizer_step))
    return entry


def _task_loss(model: TaskModel, device: torch.device, split_by_length: bool) -> Callable:
    """The task loss of a collated batch: one padded forward, or length pieces."""
    if split_by_length:
        return lambda batch: split_task_loss(model, batch, device)
    loss_fn = nn.CrossEntropyLoss()

    def loss(batch: dict) -> torch.Tensor:
        logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        return loss_fn(
            logits.reshape(-1, logits.shape[-1]).float(), batch["labels"].to(device).reshape(-1)
        )

    return loss


def _select(model, dev, tokenizer, s, device, bf16, state: dict, step: int, run: Run) -> float:
    """Dev accuracy after ``step``; a new best is kept in ``state`` and saved as ``model.pt``."""
    accuracy = evaluate(model, dev, model.task, tokenizer, s.eval_batch_size, device, bf16)[
        "accuracy"
    ]
    if accuracy > state["best"]["dev"]:
        state["best"] = {"dev": accuracy, "step": step + 1}
        atomic_torch_save(model.state_dict(), run.path / "model.pt")
    return accuracy
