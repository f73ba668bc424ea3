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
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from xlcore import checkpoint
from xlcore.align import AlignmentLoss, alignment_forward, build_alignment_loss
from xlcore.analysis.gradients import (
    GradientSpace,
    ProbeObjective,
)
from xlcore.analysis.gradients import probe as gradient_probe
from xlcore.device import autocast, precision_name
from xlcore.errors import TrainingError
from xlcore.evaluate import collate, evaluate, length_pieces
from xlcore.runs import Run, atomic_torch_save
from xlcore.strategies import Strategy, make_strategy
from xlcore.tokens import IGNORE_INDEX


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


GROUP_SIZE = 50  # batches per length-sorted chunk (as transformers' LengthGroupedSampler)


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, lengths: Sequence[int] | None = None
) -> list[np.ndarray]:
    """The shuffled batches of one epoch, a pure function of (seed, epoch).

    With ``lengths``, batches are grouped by length: the shuffled order is cut into chunks of
    ``GROUP_SIZE`` batches, each chunk is sorted by length, and the batches are shuffled again,
    so padding shrinks while every batch still mixes examples from the whole epoch's chunk.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    if lengths is None:
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    lengths = np.asarray(lengths)
    chunk = GROUP_SIZE * batch_size
    batches = []
    for start in range(0, n, chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def batch_at(
    step: int, n: int, batch_size: int, seed: int, lengths: Sequence[int] | None = None
) -> np.ndarray:
    """Indices of the examples in training step ``step`` (epochs follow each other)."""
    per_epoch = math.ceil(n / batch_size)
    epoch, within = divmod(step, per_epoch)
    return epoch_batches(n, batch_size, seed, epoch, lengths)[within]


def _check_finite(loss: torch.Tensor, step: int, what: str) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(
            f"{what} loss became {loss.item()} at step {step}; lower the learning rate "
            f"or check the input data"
        )


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
    modules: Sequence[nn.Module], lr: float, weight_decay: float, fused: bool = True
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
        fused=_fused(decay + no_decay, fused),
    )


def _fused(params: Sequence[torch.Tensor], wanted: bool = True) -> bool | None:
    """Whether to use the fused Adam(W) kernels: when ``wanted``, on CPU and CUDA, where torch
    has them (the ``transformers.Trainer`` default, ``adamw_torch_fused``). On this project's
    CPU one e5-small AdamW step takes about a third of the per-parameter loop's time; results
    agree to float rounding, not bit for bit. ``None`` leaves the choice to torch (its
    per-parameter ``for-loop`` or ``foreach`` implementation, as before fused was used)."""
    if wanted and params and all(p.device.type in ("cpu", "cuda") for p in params):
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
    fused_optimizer: bool = True,
    checkpoint_steps: int = 25,
    progress: bool = True,
) -> dict:
    """Align ``encoder`` for ``steps`` steps (Adam, constant lr); resumable; returns metrics.

    The aligned encoder stays in ``encoder`` (the caller saves it). ``fused_optimizer``: torch's
    fused Adam where it has one (:func:`_fused`); False: torch's default implementation. A
    checkpoint is written every ``checkpoint_steps`` steps (not after the last).
    """
    encoder.to(device).train()
    objective.to(device)
    params = [p for p in encoder.parameters() if p.requires_grad]
    params += list(objective.loss.parameters())
    optimizer = torch.optim.Adam(params, lr=learning_rate, fused=_fused(params, fused_optimizer))
    parts = {"encoder": encoder, "loss": objective.loss, "optimizer": optimizer}
    saved = checkpoint.resume(run, device, parts)
    start, losses = saved.get("step", 0), saved.get("losses", [])
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
        if (step + 1) % checkpoint_steps == 0 and step + 1 < steps:
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
    up to float rounding and dropout draws), so no work is spent on most of the padding.
    ``fused_optimizer`` uses torch's fused AdamW where it has one (:func:`_fused`).
    """

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
    group_by_length: bool = False
    gradvac_beta: float = 0.01
    split_by_length: bool = False
    fused_optimizer: bool = True


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
    strategy: str = "joint",
    probe: GradientProbe | None = None,
    bf16: bool = False,
    progress: bool = True,
) -> dict:
    """Fine-tune ``model`` on encoded English ``train``; select on ``dev``; resumable.

    With ``objective``, the alignment loss (weighted by ``align_alpha``) is combined with the
    task loss by ``strategy`` (:mod:`xlcore.strategies`): ``joint`` (one backward of the weighted
    sum), ``alternating`` (after every task update, a separate alignment update), ``pcgrad`` or
    ``gradvac`` (per-objective gradients on the shared encoder, combined by :mod:`xlcore.combine`).
    ``probe`` records task/alignment gradient statistics at its steps without changing the
    course of training. The best dev state is written to ``run.path/'model.pt'``.
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
    state = {"step": 0, "log": [], "best": {"dev": -1.0, "step": -1}, "gradients": []}
    state.update(checkpoint.resume(run, device, parts))
    task_loss_of = _task_loss(model, device, s.split_by_length)
    lengths = [len(e["input_ids"]) for e in train] if s.group_by_length else None
    bar = _progress_bar(f"{model.task} {run.path.name[:40]}", state["step"], s.max_steps, progress)
    for step in bar:
        if probe is not None and step in probe.steps:
            state["gradients"].extend(probe(model, step))
        batch = collate(
            [train[i] for i in batch_at(step, len(train), s.batch_size, s.seed, lengths)],
            pad_id,
            model.task,
        )
        entry = _train_step(
            step, batch, task_loss_of, model, objective, update, mixed, optimizer_step
        )
        scheduler.step()
        last = step + 1 == s.max_steps
        if (step + 1) % s.eval_steps == 0 or last:
            entry["dev_accuracy"] = _select(model, dev, pad_id, s, device, bf16, state, step, run)
        state["log"].append(entry)
        bar.set_postfix(loss=f"{entry['task_loss']:.3f}")
        if last and probe is not None and s.max_steps in probe.steps:
            state["gradients"].extend(probe(model, s.max_steps))
        if (step + 1) % s.checkpoint_steps == 0 and not last:
            checkpoint.save(run, parts, **{**state, "step": step + 1})
    return {
        "best_dev_accuracy": state["best"]["dev"],
        "best_step": state["best"]["step"],
        "log": state["log"],
        "gradients": state["gradients"],
        "max_steps": s.max_steps,
        "precision": precision_name(device, bf16),
        "optimizer": _optimizer_name(optimizer),
    }


def _progress_bar(desc: str, start: int, total: int, show: bool) -> tqdm:
    """The steps from ``start`` (after a resume) to ``total``, with a bar when ``show``."""
    return tqdm(
        range(start, total), desc=desc, initial=start, total=total, disable=not show, leave=False
    )


def _optimization(
    model: TaskModel, objective: AlignmentObjective | None, s: FinetuneSettings
) -> tuple[torch.optim.Optimizer, object, Callable[[], None]]:
    """The optimizer over the model (and a trainable alignment loss), its linear schedule, and
    the clipped step that every strategy calls."""
    modules = [model] + ([objective.loss] if objective is not None else [])
    optimizer = _optimizer(modules, s.learning_rate, s.weight_decay, s.fused_optimizer)
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
        return lambda batch: _split_task_loss(model, batch, device)
    loss_fn = nn.CrossEntropyLoss()

    def loss(batch: dict) -> torch.Tensor:
        logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        return loss_fn(
            logits.reshape(-1, logits.shape[-1]).float(), batch["labels"].to(device).reshape(-1)
        )

    return loss


def _select(model, dev, pad_id, s, device, bf16, state: dict, step: int, run: Run) -> float:
    """Dev accuracy after ``step``; a new best is kept in ``state`` and saved as ``model.pt``."""
    accuracy = evaluate(model, dev, model.task, pad_id, s.eval_batch_size, device, bf16)["accuracy"]
    if accuracy > state["best"]["dev"]:
        state["best"] = {"dev": accuracy, "step": step + 1}
        atomic_torch_save(model.state_dict(), run.path / "model.pt")
    return accuracy


def _split_task_loss(model: TaskModel, batch: dict, device: torch.device) -> torch.Tensor:
    """The cross-entropy of a collated batch, computed piece by piece (:func:`length_pieces`):
    summed over the pieces and divided by the batch's count, it is the padded batch's mean."""
    mask = batch["attention_mask"]
    lengths = mask.sum(1).tolist()
    labels = batch["labels"]
    count = (labels != IGNORE_INDEX).sum() if model.task == "pos" else len(lengths)
    total = None
    for piece in length_pieces(lengths):
        rows = torch.tensor(piece)
        width = max(lengths[i] for i in piece)
        logits = model(batch["input_ids"][rows, :width].to(device), mask[rows, :width].to(device))
        target = labels[rows, :width] if model.task == "pos" else labels[rows]
        part = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            target.to(device).reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        total = part if total is None else total + part
    return total / count


class _PieceEncoder(nn.Module):
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


class GradientProbe:
    """Fixed held-out probe batches and the alignment objectives to compare the task against.

    ``task_batches`` are two collated English batches (dev data, never trained on);
    ``objectives`` maps a pair name to ``(AlignmentLoss, AlignmentData, reference)`` whose
    first two batches are the held-out probe batches for that pair. Called by :func:`finetune`
    at ``steps``; returns :func:`xlcore.analysis.gradients.probe` records.

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
        encoder = _PieceEncoder(model.encoder)

        def task_loss_on(k: int) -> torch.Tensor:
            return _split_task_loss(model, self.task_batches[k], self.device)

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
