"""Gradients of the task and alignment losses on the shared encoder, flattened, and their Gram
matrices per parameter group.

The paper's second explanation (chapter *Gradients*): the gradient of the task loss and the
gradient of the alignment loss with respect to the shared encoder are close to orthogonal, and
their magnitudes tell which objective dominates where. What is computed here:

* gradients with respect to the encoder parameters only (not the task head, not the alignment
  projector), via :func:`torch.autograd.grad`, in fp32 with dropout off (bf16 autocast moves
  the cosines: ``benchmarks/README.md``);
* per parameter group: the embeddings, each layer, ``all`` and ``all_but_embeddings`` (the
  word-embedding matrix dominates a whole-model cosine);
* the Gram matrix of K gradients per objective on K independent batches (a *stream*), from
  which :mod:`xlcore.analysis.probes` reads each objective's reliability (the cosine of one
  loss on two batches) and the cross cosines corrected for it.

:class:`GradientSpace` owns the flat layout; the combination strategies (:mod:`xlcore.combine`)
use the same buffers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

ALL = "all"
ALL_BUT_EMBEDDINGS = "all_but_embeddings"
EMBEDDINGS = "embeddings"


def group_of(name: str) -> str | None:
    """The group of an encoder parameter name: ``embeddings``, ``layer.<i>`` or None (pooler)."""
    parts = name.split(".")
    if "embeddings" in parts:
        return EMBEDDINGS
    if "layer" in parts:
        i = parts.index("layer")
        if i + 1 < len(parts) and parts[i + 1].isdigit():
            return f"layer.{parts[i + 1]}"
    return None


@dataclass
class GradientSpace:
    """The shared parameters of an encoder, flattened: a fixed order, offsets and groups.

    Parameters outside the embeddings and the transformer layers (a pooler the task never uses)
    are left out. ``groups`` maps a group name to its ``(start, end)`` slice of the flat vector;
    embeddings come first, so ``all_but_embeddings`` is one contiguous slice too.
    """

    names: list[str]
    params: list[nn.Parameter]
    groups: dict[str, tuple[int, int]]
    size: int

    @classmethod
    def of(cls, encoder: nn.Module) -> GradientSpace:
        named = [(n, p) for n, p in encoder.named_parameters() if p.requires_grad and group_of(n)]
        if not named:
            raise ValueError("the encoder has no trainable embedding or layer parameters")

        def key(item):
            g = group_of(item[0])
            return (-1, 0) if g == EMBEDDINGS else (int(g.split(".")[1]), 0)

        named.sort(key=key)  # stable: keeps the module order within a group
        groups: dict[str, tuple[int, int]] = {}
        offset = 0
        for n, p in named:
            g = group_of(n)
            start, _ = groups.get(g, (offset, offset))
            offset += p.numel()
            groups[g] = (start, offset)
        emb_end = groups.get(EMBEDDINGS, (0, 0))[1]
        groups[ALL] = (0, offset)
        groups[ALL_BUT_EMBEDDINGS] = (emb_end, offset)
        return cls([n for n, _ in named], [p for _, p in named], groups, offset)

    @property
    def layer_groups(self) -> list[str]:
        """Embeddings and each layer, in depth order (no aggregates)."""
        return [g for g in self.groups if g not in (ALL, ALL_BUT_EMBEDDINGS)]

    def flat_grad(
        self, loss: torch.Tensor, retain_graph: bool = False, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """∇loss with respect to the shared parameters as one fp32 vector (zeros where unused),
        written into ``out`` when given (see :meth:`flatten`)."""
        grads = torch.autograd.grad(loss, self.params, retain_graph=retain_graph, allow_unused=True)
        return self.flatten(grads, out=out)

    def buffer(self) -> torch.Tensor:
        """An uninitialised fp32 vector of this space's size, for ``out=``."""
        return torch.empty(self.size, dtype=torch.float32, device=self.params[0].device)

    def flatten(
        self, grads: Sequence[torch.Tensor | None], out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-parameter gradients (None for unused) → one fp32 vector in this space's order.

        ``out`` (from :meth:`buffer`) is overwritten and returned: reusing a buffer spares the
        fresh pages of a new one, which cost about five times the copy itself on a CPU.
        """
        if out is None:
            out = self.buffer()
        elif out.shape != (self.size,) or out.dtype != torch.float32:
            raise ValueError(f"out must be an fp32 vector of {self.size} elements")
        offset = 0
        for p, g in zip(self.params, grads, strict=True):
            n = p.numel()
            if g is None:
                out[offset : offset + n].zero_()
            else:
                out[offset : offset + n].copy_(g.reshape(-1))
            offset += n
        return out

    def unflatten_into_grad(self, flat: torch.Tensor, share: bool = False) -> None:
        """Write ``flat`` into the parameters' ``.grad`` (replacing what is there).

        With ``share`` each ``.grad`` of ``flat``'s dtype is a view of ``flat`` instead of a
        copy: ``flat`` must then stay unchanged until the gradients are used and released
        (``zero_grad(set_to_none=True)``), as a reused buffer is within one training step.
        """
        offset = 0
        for p in self.params:
            n = p.numel()
            g = flat[offset : offset + n].view_as(p)
            p.grad = g if share and g.dtype == p.dtype else g.to(p.dtype).clone()
            offset += n

    def view(self, flat: torch.Tensor, group: str) -> torch.Tensor:
        start, end = self.groups[group]
        return flat[start:end]


_CHUNK = 1 << 22  # elements per float64 chunk on a GPU: bounded extra memory for any model size
# On a CPU, chunks small enough to stay in cache: converting 4M-element chunks to float64 cost
# about 8x more per element (fresh pages for every chunk) than these. On a GPU kernel launches
# cost more than memory traffic, so chunks are large there.
_CACHE_CHUNK = 1 << 16


def gram64(vectors: Sequence[torch.Tensor], start: int = 0, end: int | None = None) -> torch.Tensor:
    """The float64 Gram matrix ``G[i, j] = vectors[i][start:end] · vectors[j][start:end]``,
    (V, V) on CPU, in one pass over the vectors, chunk by chunk (no full-size float64 copies)."""
    device = vectors[0].device
    end = vectors[0].numel() if end is None else end
    chunk = _CACHE_CHUNK if device.type == "cpu" else _CHUNK
    n = len(vectors)
    acc = torch.zeros(n, n, dtype=torch.float64, device=device)
    for lo in range(start, end, chunk):
        x = torch.stack([v[lo : min(lo + chunk, end)] for v in vectors]).double()  # (V, c)
        acc += x @ x.T
    return acc.cpu()


def dot64(a: torch.Tensor, b: torch.Tensor) -> float:
    """``a · b`` accumulated in float64, chunk by chunk (no full-size float64 copies)."""
    return float(gram64([a] if b is a else [a, b])[0, -1])


def cos_norms(gram: torch.Tensor, i: int = 0, j: int = 1) -> tuple[float, float, float]:
    """``(cos(v_i, v_j), ‖v_i‖, ‖v_j‖)`` from a Gram matrix; NaN cosine at a zero norm."""
    na, nb = float(gram[i, i]) ** 0.5, float(gram[j, j]) ** 0.5
    return (float(gram[i, j]) / (na * nb) if na > 0 and nb > 0 else float("nan"), na, nb)


def group_gram(space: GradientSpace, vectors: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per group: the float64 Gram matrix ``G[i, j] = vectors[i] · vectors[j]``, (V, V) on CPU.

    One pass over the vectors (:func:`gram64` per layer group). An aggregate group that the
    layer groups tile (``all``, ``all_but_embeddings``) is the sum of their matrices, so each
    element is read once.
    """
    n = len(vectors)
    grams = {g: gram64(vectors, *space.groups[g]) for g in space.layer_groups}
    for g, (start, end) in space.groups.items():
        if g in grams:
            continue
        parts = sorted(
            (space.groups[p], p)
            for p in space.layer_groups
            if start <= space.groups[p][0] and space.groups[p][1] <= end
        )
        bounds = [start] + [x for (lo, hi), _ in parts for x in (lo, hi)] + [end]
        if all(bounds[i] == bounds[i + 1] for i in range(0, len(bounds), 2)):
            grams[g] = sum((grams[p] for _, p in parts), torch.zeros(n, n, dtype=torch.float64))
        else:  # the layer groups leave a gap: read the slice itself
            grams[g] = gram64(vectors, start, end)
    return grams


def _gram_stats(grams: dict[str, torch.Tensor], i: int, j: int) -> dict:
    """Per group ``(cos(v_i, v_j), ‖v_i‖, ‖v_j‖)`` from Gram matrices; NaN cosine at a zero norm."""
    return {g: cos_norms(m, i, j) for g, m in grams.items()}


def group_stats(
    space: GradientSpace, a: torch.Tensor, b: torch.Tensor
) -> dict[str, tuple[float, float, float]]:
    """Per group: ``(cos(a, b), ‖a‖, ‖b‖)``; the cosine is NaN when either norm is zero."""
    return _gram_stats(group_gram(space, [a, b]), 0, 1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of two flat vectors in float64 (NaN when either is zero)."""
    return cos_norms(gram64([a, b]))[0]


@contextlib.contextmanager
def probing(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Eval mode (dropout off), grad enabled, fp32 (no autocast), RNG state restored afterwards,
    so a probe never changes the state of the model it observes."""
    modes = [m.training for m in modules]
    cpu_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        for m in modules:
            m.eval()
        with torch.enable_grad(), torch.autocast("cpu", enabled=False):
            if torch.cuda.is_available():
                with torch.autocast("cuda", enabled=False):
                    yield
            else:
                yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)


@dataclass
class Stream:
    """One objective on K independent probe batches: ``loss_on(k)`` is its loss on batch k."""

    name: str
    loss_on: Callable[[int], torch.Tensor]


def stream_gradients(space: GradientSpace, stream: Stream, batches: int) -> list[torch.Tensor]:
    """The stream's ``batches`` flat gradients, each kept in bf16: half the memory of fp32, and
    the rounding averages out in the float64 products (a test bounds its effect on cosines)."""
    buf = space.buffer()
    out = []
    for k in range(batches):
        space.flat_grad(stream.loss_on(k), out=buf)
        out.append(buf.to(torch.bfloat16))
    return out


def stream_grams(
    space: GradientSpace, shared: Sequence[torch.Tensor], streams: Sequence[Stream], batches: int
) -> dict[str, torch.Tensor]:
    """Per group, the float64 Gram matrix of ``shared`` (gradients already computed, such as
    the task's, reused across pairs) followed by every stream's ``batches`` gradients."""
    vectors = list(shared)
    for stream in streams:
        vectors += stream_gradients(space, stream, batches)
    return group_gram(space, vectors)


__all__ = [
    "ALL",
    "ALL_BUT_EMBEDDINGS",
    "EMBEDDINGS",
    "GradientSpace",
    "Stream",
    "cos_norms",
    "cosine",
    "dot64",
    "gram64",
    "group_gram",
    "group_of",
    "group_stats",
    "probing",
    "stream_gradients",
    "stream_grams",
]
