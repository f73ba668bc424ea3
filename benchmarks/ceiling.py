"""The most batching can gain on this machine: an encoder's FLOPs against its matmul rate.

A batched forward pass cannot run its matrix products much faster than one large product of
the model's own feed-forward shape runs on the same threads at the same precision (on the
AVX2-only EPYC the model's other product shapes, from 256 to 16,384 rows, reached at most
4–6 % more in two scans). So the time the work would take at that rate bounds any batched path
from below, up to those few per cent, and the baseline's time divided by it bounds the speed-up
batching alone can give here. The benchmarks of batched encoder work (``bench_distances.py``,
``bench_wordpairs.py``) print this bound next to their ratio, so a target out of reach on a
machine shows as such. :func:`linear_split` tells where a batched pass's time goes: its linear
layers' products, timed by a clock around each (no profiler: ``torch.profiler``'s own cost falls
on the small operations and inflates them), against everything else.

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` on one unpadded
sentence per distinct token length (the useful work: padding is left out); its registry has no
formula for the CPU kernel of scaled-dot-product attention, which is added from
:func:`torch.utils.flop_counter.sdpa_flop_count`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


COUNT_ALSO = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


@torch.no_grad()
def useful_flops(forward: Callable[[dict], object], lengths: Iterable[int]) -> int:
    """FLOPs of ``forward`` over one sentence per entry of ``lengths`` (token counts), unpadded.

    ``forward`` takes model inputs (``input_ids``, ``attention_mask``) of one sentence; each
    distinct length is counted once. Every product counts 2 FLOPs per multiply-add.
    """
    counts = Counter(int(n) for n in lengths)
    total = 0
    for n, times in counts.items():
        # any in-vocabulary id: the FLOPs depend on the shape only
        inputs = {
            "input_ids": torch.full((1, n), 5, dtype=torch.long),
            "attention_mask": torch.ones(1, n, dtype=torch.long),
        }
        with FlopCounterMode(display=False, custom_mapping=COUNT_ALSO) as counter:
            forward(inputs)
        total += counter.get_total_flops() * times
    return total


def matmul_rate(
    hidden: int, inner: int, *, bf16: bool = False, rows: int = 4096, repeat: int = 50
) -> float:
    """FLOP/s of a (rows × hidden) @ (hidden × inner) product on torch's current threads, best
    of ``repeat`` after two warm-up products; under CPU bf16 autocast with ``bf16``.

    On two vCPUs the best of 10 varied from 118 to 152 GFLOP/s between calls, the best of 50
    from 149 to 151."""
    a, b = torch.randn(rows, hidden), torch.randn(hidden, inner)
    best = float("inf")
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for k in range(repeat + 2):
            start = time.perf_counter()
            a @ b
            elapsed = time.perf_counter() - start
            if k >= 2:
                best = min(best, elapsed)
    return 2 * rows * hidden * inner / best


@torch.no_grad()
def linear_split(model: torch.nn.Module, run: Callable[[], object]) -> tuple[float, float, int]:
    """``run()``'s wall time, the part of it spent in ``model``'s ``nn.Linear`` layers, and
    those layers' FLOPs (2 per multiply-add, over every row they were given, padding included).

    Each linear layer's forward is timed by a clock started in a pre-hook and read in a hook;
    the hooks are removed afterwards.
    """
    spent, flops, started = [0.0], [0], {}

    def before(module, args):
        started[module] = time.perf_counter()

    def after(module, args, output):
        spent[0] += time.perf_counter() - started.pop(module)
        rows = args[0].numel() // module.in_features
        flops[0] += 2 * rows * module.in_features * module.out_features

    handles = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            handles += [
                module.register_forward_pre_hook(before),
                module.register_forward_hook(after),
            ]
    try:
        start = time.perf_counter()
        run()
        total = time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()
    return total, spent[0], flops[0]


def split_line(total: float, linear: float, flops: int, rate: float, *, what: str = "") -> str:
    """One line: the linear layers' share of a pass and their rate against the machine's."""
    label = f" ({what})" if what else ""
    linear_rate = flops / linear
    return (
        f"split{label}: linear layers {linear:.2f} s of {total:.2f} s ({linear / total:.0%}) at "
        f"{linear_rate / 1e9:.0f} GFLOP/s ({linear_rate / rate:.0%} of the matmul); the rest "
        f"(attention, activations, norms, pooling, tokenisation) {total - linear:.2f} s"
    )


def ceiling_line(
    flops: int, rate: float, t_batched: float, t_baseline: float, *, what: str = ""
) -> str:
    """One line: the work, the batched path's FLOP rate, the machine's rate and the bound."""
    floor = flops / rate
    label = f" ({what})" if what else ""
    n = torch.get_num_threads()
    threads = f"{n} thread" + ("s" if n != 1 else "")
    return (
        f"ceiling{label}: {flops / 1e12:.2f} TFLOP of useful work, batched at "
        f"{flops / t_batched / 1e9:.0f} GFLOP/s ({floor / t_batched:.0%} of this machine's "
        f"matmul, {rate / 1e9:.0f} GFLOP/s on {threads}): batching can give at most "
        f"{t_baseline / floor:.1f}x here, measured {t_baseline / t_batched:.1f}x"
    )
