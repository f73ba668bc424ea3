"""The explicit alignment losses behind one interface, :class:`AlignmentLoss`, each fed an
:class:`AlignBatch`: strong and weak word-level InfoNCE (Wu & Dredze's ``jnt_cntrstv`` and
``cntrstv``), L2 with the English side anchored to the frozen original encoder (Cao et al., 2020),
and a sentence-level InfoNCE on mean-pooled states. :func:`alignment_forward` is the one call a
training step makes.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xlcore.align import MODEL_INPUTS, _check_layer, _hidden, encode_parallel
from xlcore.errors import ConfigError, DataError

DEFAULT_TEMPERATURE = 0.1  # Wu & Dredze (2020) and Gaschi et al. (2023)
DEFAULT_PROJ_DIM = 128  # Wu & Dredze's projector output size


# ----------------------------------------------------------------------------- loss inputs


@dataclass
class AlignBatch:
    """What every :class:`AlignmentLoss` reads: encoder states of a batch of parallel sentences.

    ``src_idx`` / ``tgt_idx`` index the flattened ``(B*S)`` / ``(B*T)`` token grids at the first
    sub-words of aligned words; ``pair_batch`` is each pair's sentence index.
    ``src_hidden_ref`` holds the source states of the frozen original encoder, and
    ``src_word_idx`` the first sub-words of every source word that truncation kept, aligned or
    not (the L2 anchor's positions).
    """

    src_hidden: torch.Tensor  # (B, S, H)
    tgt_hidden: torch.Tensor  # (B, T, H)
    src_mask: torch.Tensor  # (B, S) bool, True on real tokens
    tgt_mask: torch.Tensor  # (B, T)
    src_idx: torch.Tensor  # (P,) long
    tgt_idx: torch.Tensor  # (P,) long
    pair_batch: torch.Tensor  # (P,) long
    src_hidden_ref: torch.Tensor | None = None  # (B, S, H)
    src_word_idx: torch.Tensor | None = None  # (W,) long

    @property
    def num_pairs(self) -> int:
        return int(self.src_idx.numel())

    def aligned(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states of the aligned source and target words: (P, H) each."""
        h = self.src_hidden.shape[-1]
        return (
            self.src_hidden.reshape(-1, h)[self.src_idx],
            self.tgt_hidden.reshape(-1, h)[self.tgt_idx],
        )


def make_align_batch(
    src_hidden: torch.Tensor,
    tgt_hidden: torch.Tensor,
    src_mask: torch.Tensor,
    tgt_mask: torch.Tensor,
    word_pairs: Sequence[Sequence[tuple[int, int]]] | None,
    src_starts: Sequence[Sequence[int]],
    tgt_starts: Sequence[Sequence[int]],
    src_hidden_ref: torch.Tensor | None = None,
) -> AlignBatch:
    """Build an :class:`AlignBatch` from per-sentence word pairs and word-start positions.

    A pair whose source or target word was truncated away (start -1, or beyond the words the
    encoding kept) is skipped. ``word_pairs=None`` gives no pairs (sentence-level losses).
    """
    n_sent, s_len = src_hidden.shape[:2]
    t_len = tgt_hidden.shape[1]
    src_idx: list[int] = []
    tgt_idx: list[int] = []
    pair_batch: list[int] = []
    src_word_idx = [b * s_len + s for b, starts in enumerate(src_starts) for s in starts if s >= 0]
    if word_pairs is not None:
        if len(word_pairs) != n_sent:
            raise DataError(f"{len(word_pairs)} word-pair lists for {n_sent} sentence pairs")
        for b, links in enumerate(word_pairs):
            for i, j in links:
                s = src_starts[b][i] if i < len(src_starts[b]) else -1
                t = tgt_starts[b][j] if j < len(tgt_starts[b]) else -1
                if s >= 0 and t >= 0:
                    src_idx.append(b * s_len + s)
                    tgt_idx.append(b * t_len + t)
                    pair_batch.append(b)
    device = src_hidden.device

    def as_index(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    return AlignBatch(
        src_hidden=src_hidden,
        tgt_hidden=tgt_hidden,
        src_mask=src_mask.bool().to(device),
        tgt_mask=tgt_mask.bool().to(device),
        src_idx=as_index(src_idx),
        tgt_idx=as_index(tgt_idx),
        pair_batch=as_index(pair_batch),
        src_hidden_ref=src_hidden_ref,
        src_word_idx=as_index(src_word_idx),
    )


# ----------------------------------------------------------------------------- losses


def make_projector(hidden_size: int, proj_dim: int = DEFAULT_PROJ_DIM) -> nn.Sequential:
    """Wu & Dredze's projector g: Linear(H→H, no bias) → ReLU → Linear(H→proj_dim, no bias)."""
    return nn.Sequential(
        nn.Linear(hidden_size, hidden_size, bias=False),
        nn.ReLU(),
        nn.Linear(hidden_size, proj_dim, bias=False),
    )


class AlignmentLoss(nn.Module):
    """One alignment objective: ``loss(batch: AlignBatch) -> scalar``.

    ``level`` is ``"word"`` (reads the aligned pairs) or ``"sentence"`` (reads the masks only);
    ``needs_reference`` says whether ``batch.src_hidden_ref`` must be given. Any parameters
    (the projector) belong to the loss, not to the encoder.
    """

    name: str = ""
    level: str = "word"
    needs_reference: bool = False

    def forward(self, batch: AlignBatch) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


def _zero(batch: AlignBatch) -> torch.Tensor:
    # A batch without pairs contributes nothing, but stays on the autograd graph and device.
    return (batch.src_hidden.sum() + batch.tgt_hidden.sum()) * 0.0


def _check_positive(**values: float) -> None:
    for key, value in values.items():
        if not value > 0:
            raise ConfigError(f"{key} must be positive, got {value}")


class _ContrastiveLoss(AlignmentLoss):
    def __init__(
        self,
        hidden_size: int,
        *,
        temperature: float = DEFAULT_TEMPERATURE,
        projector: bool = True,
        proj_dim: int = DEFAULT_PROJ_DIM,
    ):
        super().__init__()
        _check_positive(temperature=temperature, proj_dim=proj_dim)
        self.temperature = float(temperature)
        self.projector = make_projector(hidden_size, proj_dim) if projector else nn.Identity()

    def embed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Unit vectors g(h)/‖g(h)‖, so that dot products are cosines."""
        return F.normalize(self.projector(hidden), dim=-1)


class StrongInfoNCE(_ContrastiveLoss):
    """Wu & Dredze's ``jnt_cntrstv``: z = [g h^s; g h^t] (2P vectors), logits cos(z_a, z_b)/τ
    with a = b masked out, target = a's translation. Words of the anchor's own language are
    negatives too. Mean over the 2P anchors."""

    name = "infonce_strong"

    def forward(self, batch: AlignBatch) -> torch.Tensor:
        p = batch.num_pairs
        if p == 0:
            return _zero(batch)
        h_src, h_tgt = batch.aligned()
        z = torch.cat([self.embed(h_src), self.embed(h_tgt)])  # (2P, D)
        logits = z @ z.T / self.temperature  # (2P, 2P)
        self_mask = torch.eye(2 * p, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        idx = torch.arange(p, device=z.device)
        return F.cross_entropy(logits, torch.cat([idx + p, idx]))


class WeakInfoNCE(_ContrastiveLoss):
    """Wu & Dredze's ``cntrstv``: s_ij = cos(g h^s_i, g h^t_j)/τ over the P aligned pairs;
    ½(CE over targets for each source + CE over sources for each target). Negatives come only
    from the other language."""

    name = "infonce_weak"

    def forward(self, batch: AlignBatch) -> torch.Tensor:
        if batch.num_pairs == 0:
            return _zero(batch)
        h_src, h_tgt = batch.aligned()
        logits = self.embed(h_src) @ self.embed(h_tgt).T / self.temperature  # (P, P)
        target = torch.arange(batch.num_pairs, device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class L2AnchorLoss(AlignmentLoss):
    """Cao et al. (2020): Σ over aligned pairs of ‖h^s − h^t‖² plus λ · Σ over source (English)
    words of ‖h^s − h^s_0‖², where ``h^s_0`` comes from the frozen original encoder (the English
    side is anchored so that alignment moves the other language towards it). No projector;
    ``needs_reference`` is True unless λ = 0. A word is its first sub-word, as everywhere here.

    Deviations kept on purpose, each documented:

    * Both sums are divided by the batch's number of aligned pairs P (the anchor sum alone when
      P = 0), so the alignment term is the mean over pairs and its scale against the task loss
      (the joint regime's α) does not grow with the batch; the ratio of the two terms is Cao's
      1 : λ. (Efimov et al.'s re-implementation takes two separate means, which shrinks λ by
      P / #English words.)
    * Cao's code also anchors ``[CLS]``/``[SEP]`` and counts them as aligned pairs; here neither
      term has special tokens, like the word pairs.
    * :func:`alignment_forward` runs the frozen encoder with the trained encoder's dropout masks,
      so both states are computed the same way; Efimov et al. run the frozen copy without
      dropout, so the anchor there also penalises the dropout noise.
    """

    name = "l2"

    def __init__(self, hidden_size: int, *, anchor_weight: float = 1.0):
        super().__init__()
        if not anchor_weight >= 0:
            raise ConfigError(f"anchor_weight must be ≥ 0, got {anchor_weight}")
        self.anchor_weight = float(anchor_weight)
        self.needs_reference = self.anchor_weight > 0

    def forward(self, batch: AlignBatch) -> torch.Tensor:
        if batch.num_pairs:
            h_src, h_tgt = batch.aligned()
            loss = (h_src - h_tgt).pow(2).sum()
        else:
            loss = _zero(batch)
        if self.needs_reference:
            loss = loss + self.anchor_weight * self._anchor(batch)
        return loss / max(batch.num_pairs, 1)

    def _anchor(self, batch: AlignBatch) -> torch.Tensor:
        """Σ over the source words of ‖h^s − h^s_0‖²."""
        ref = batch.src_hidden_ref
        if ref is None:
            raise ConfigError(
                "the 'l2' loss anchors the source side to the frozen original "
                "encoder: pass reference_model= (a frozen copy of the encoder) "
                "to alignment_forward, or set src_hidden_ref in the AlignBatch"
            )
        if ref.shape != batch.src_hidden.shape:
            raise ConfigError(
                f"src_hidden_ref has shape {tuple(ref.shape)}, "
                f"src_hidden {tuple(batch.src_hidden.shape)}; they must match"
            )
        if batch.src_word_idx is None:
            raise ConfigError(
                "the 'l2' anchor runs over the source words: build the AlignBatch with "
                "make_align_batch, or set its src_word_idx"
            )
        h = batch.src_hidden.shape[-1]
        words = batch.src_word_idx
        diff = batch.src_hidden.reshape(-1, h)[words] - ref.detach().reshape(-1, h)[words]
        return diff.pow(2).sum()


class SentenceInfoNCE(_ContrastiveLoss):
    """In-batch symmetric InfoNCE on mask-aware mean-pooled sentence vectors: sentence b's
    translation is the positive, the other B−1 translations are negatives; τ = 0.1 by default;
    the projector is off unless ``projector=True``."""

    name = "sentence_infonce"
    level = "sentence"

    def __init__(
        self,
        hidden_size: int,
        *,
        temperature: float = DEFAULT_TEMPERATURE,
        projector: bool = False,
        proj_dim: int = DEFAULT_PROJ_DIM,
    ):
        super().__init__(
            hidden_size, temperature=temperature, projector=projector, proj_dim=proj_dim
        )

    def forward(self, batch: AlignBatch) -> torch.Tensor:
        u = self.embed(mean_pool(batch.src_hidden, batch.src_mask))  # (B, D)
        v = self.embed(mean_pool(batch.tgt_hidden, batch.tgt_mask))
        logits = u @ v.T / self.temperature  # (B, B)
        target = torch.arange(logits.shape[0], device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, H) over the positions where ``mask`` (B, T) is true → (B, H)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


_LOSSES: MappingProxyType[str, type[AlignmentLoss]] = MappingProxyType(
    {cls.name: cls for cls in (StrongInfoNCE, WeakInfoNCE, L2AnchorLoss, SentenceInfoNCE)}
)
ALIGNMENT_LOSSES = tuple(_LOSSES)


def build_alignment_loss(name: str, hidden_size: int, **kwargs: Any) -> AlignmentLoss:
    """The alignment loss called ``name`` (one of :data:`ALIGNMENT_LOSSES`) for an encoder of
    width ``hidden_size``. Keyword options: ``temperature``, ``projector``, ``proj_dim``
    (contrastive losses), ``anchor_weight`` (``l2``)."""
    if name not in _LOSSES:
        raise ConfigError(
            f"unknown alignment loss {name!r}; choose from {', '.join(ALIGNMENT_LOSSES)}"
        )
    cls = _LOSSES[name]
    allowed = [
        p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "hidden_size")
    ]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(
            f"alignment loss {name!r} has no option {', '.join(unknown)}; "
            f"its options are: {', '.join(allowed) or 'none'}"
        )
    return cls(hidden_size, **kwargs)


def alignment_forward(
    model: nn.Module,
    loss: AlignmentLoss,
    tokenizer,
    src_words: Sequence[Sequence[str]],
    tgt_words: Sequence[Sequence[str]],
    word_pairs: Sequence[Sequence[tuple[int, int]]] | None,
    *,
    layer: int = -1,
    max_length: int = 128,
    reference_model: nn.Module | None = None,
    states: dict | None = None,
) -> torch.Tensor:
    """The alignment loss of one batch of parallel sentences (what a training step calls).

    Encodes both sides with :func:`encode_parallel`, runs ``model`` on each (and the frozen
    ``reference_model`` on the source side, without gradients, when ``loss.needs_reference``),
    takes ``hidden_states[layer]`` (default: last layer), builds the :class:`AlignBatch` and
    returns ``loss(batch)``. ``word_pairs`` may be None for sentence-level losses.

    The reference compares like with like (:func:`_reference_states`): when ``model`` runs with
    dropout, ``reference_model`` (a copy of it: same modules, same calls) runs with the very
    masks ``model`` drew on the source side, so before any update the anchor is exactly 0.

    ``states``, a dict the caller owns, shares source-side forward passes between calls: the
    source states of ``model`` are looked up there by the exact token ids and layer, and stored
    when missing. Losses built from a shared entry share its autograd graph, so every backward
    through it but the last needs ``retain_graph=True`` (the gradient probe shares the English
    side of multi-parallel held-out batches this way).
    """
    _check_layer(model, layer)
    if loss.level == "word" and word_pairs is None:
        raise DataError(f"the word-level loss {loss.name!r} needs word_pairs")
    if loss.needs_reference and reference_model is None:
        raise ConfigError(
            f"the {loss.name!r} loss needs reference_model=: a frozen copy of the "
            "original encoder (copy.deepcopy(model).eval(), requires_grad off)"
        )
    enc = encode_parallel(tokenizer, src_words, tgt_words, max_length)
    # The reference must replay the dropout masks of the source pass: keep its RNG state.
    if states is None:
        rng = _rng_state(model) if loss.needs_reference else None
        src_hidden = _hidden(model, enc.src, layer)
    else:
        key = (id(model), layer, *(_tensor_key(enc.src[k]) for k in MODEL_INPUTS if k in enc.src))
        if key not in states:
            rng = _rng_state(model)
            states[key] = (_hidden(model, enc.src, layer), rng)
        src_hidden, rng = states[key]
    tgt_hidden = _hidden(model, enc.tgt, layer)
    ref = None
    if loss.needs_reference:
        ref = _reference_states(reference_model, model, enc.src, layer, rng)
    batch = make_align_batch(
        src_hidden,
        tgt_hidden,
        enc.src["attention_mask"],
        enc.tgt["attention_mask"],
        word_pairs if loss.level == "word" else None,
        enc.src_starts,
        enc.tgt_starts,
        src_hidden_ref=ref,
    )
    return loss(batch)


def _rng_state(model: nn.Module) -> tuple:
    """The RNG state that ``model``'s next forward pass draws its dropout masks from."""
    device = next(model.parameters()).device
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _dropout_on(model: nn.Module) -> bool:
    return any(m.training for m in model.modules() if isinstance(m, nn.Dropout))


def _reference_states(
    reference: nn.Module, model: nn.Module, enc, layer: int, rng: tuple
) -> torch.Tensor:
    """``reference``'s source states, without gradients, computed as ``model``'s were.

    When ``model`` runs with dropout, ``reference`` runs in training mode from the RNG state
    ``rng`` that ``model``'s source pass started from, so it draws the same masks; the global
    RNG state and ``reference``'s mode are restored afterwards (the training stream goes on as
    if the reference pass had not happened). Without dropout it runs in eval mode.
    """
    train = _dropout_on(model)
    mode = reference.training
    cpu, cuda = rng
    device = next(reference.parameters()).device
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if cuda is not None else []):
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)
        reference.train(train)
        try:
            return _hidden(reference, enc, layer)
        finally:
            reference.train(mode)


def _tensor_key(t: torch.Tensor) -> tuple:
    return (tuple(t.shape), t.cpu().numpy().tobytes())
