"""GPU fine-tuning throughput and model FLOPs utilisation (MFU): XLM-R base token classification.

One process builds XLM-R base (``XLMRobertaConfig`` base sizes with the hub model's vocabulary
of 250,002 pieces, 514 positions, one token type; random weights, nothing is downloaded) with a
17-label token-classification head, and times training steps (forward, backward, gradient
clipping at 1.0, optimiser step) on the same random batches in two set-ups, side by side:

* baseline, the ``Trainer``'s defaults: fp32 and the optimiser ``TrainingArguments`` picks by
  default (read from its ``optim`` field: ``adamw_torch_fused`` is fused AdamW, ``adamw_torch``
  the foreach one);
* ours: bf16 autocast, fused AdamW, and with ``--compile`` the model under ``torch.compile``.

MFU = achieved model FLOPs / peak bf16 dense FLOPs, with model FLOPs = 6·N·tokens per step
(forward + backward) and N = every parameter except the word, position and token-type embedding
matrices (the embedding LayerNorm and the head count). A second figure adds the attention
matmuls, 12·L·T·H per token. Peak: ``--peak-tflops``, else a table keyed by
``torch.cuda.get_device_name()`` (:data:`PEAK_BF16_TFLOPS`). Prints one ratio line and one MFU
line per set-up::

    python benchmarks/bench_gpu.py [--batch-size 32] [--seq-len 128] [--steps 20] [--compile]

Without a CUDA device it exits with a message; ``--dry-run`` instead runs one step of both
set-ups on a tiny model on the CPU, to check the code path.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from transformers import TrainingArguments, XLMRobertaConfig, XLMRobertaForTokenClassification

from xlcore.tiny import TINY_SHAPE

NUM_LABELS = 17
# Dense (no sparsity) bf16 tensor-core peak in TFLOP/s, from NVIDIA's data sheets; the first
# key contained in the device name wins, so specific names come first.
PEAK_BF16_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100": 989.0,  # SXM
    "H200 NVL": 835.0,
    "H200": 989.0,
    "A100": 312.0,
}
EMBEDDING_MATRICES = ("word_embeddings", "position_embeddings", "token_type_embeddings")


def base_config(tiny: bool) -> XLMRobertaConfig:
    """XLM-R base (or a tiny stand-in for ``--dry-run``) with a 17-label head."""
    if tiny:
        return XLMRobertaConfig(vocab_size=1000, num_labels=NUM_LABELS, **TINY_SHAPE)
    return XLMRobertaConfig(
        vocab_size=250002,
        max_position_embeddings=514,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        num_labels=NUM_LABELS,
    )


def counted_params(model: torch.nn.Module) -> int:
    """N for 6·N·tokens: all parameters but the embedding matrices."""
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if not any(f"{m}." in name for m in EMBEDDING_MATRICES)
    )


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def trainer_optimizer_is_fused() -> bool:
    """Whether ``TrainingArguments``' default optimiser is fused AdamW."""
    default = str(TrainingArguments.__dataclass_fields__["optim"].default)
    return "fused" in default.lower()


def make_step(model, *, bf16: bool, fused: bool, compile_model: bool, device: torch.device):
    """A closure running one training step on a batch (dict of tensors)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, fused=fused)
    forward = torch.compile(model) if compile_model else model

    def step(batch: dict) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = forward(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def time_steps(step, batches: list[dict], warmup: int, device: torch.device) -> float:
    """Median seconds per step after ``warmup`` untimed steps."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for batch in batches[:warmup]:
        step(batch)
    sync()
    times = []
    for batch in batches[warmup:]:
        start = time.perf_counter()
        step(batch)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per set-up")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per set-up")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak bf16 TFLOP/s")
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny model, one step each, on the CPU"
    )
    args = parser.parse_args(argv)
    if args.dry_run:
        device = torch.device("cpu")
        args.batch_size, args.seq_len, args.steps, args.warmup = 2, 16, 1, 0
    elif not torch.cuda.is_available():
        sys.exit(
            "bench_gpu: no CUDA device (torch.cuda.is_available() is False). Run it on a "
            "machine with an NVIDIA GPU and a CUDA build of torch, or pass --dry-run to check "
            "the code on the CPU with a tiny model."
        )
    else:
        device = torch.device("cuda")
    config = base_config(tiny=args.dry_run)
    n_batches = args.warmup + args.steps
    gen = torch.Generator().manual_seed(0)
    shape = (args.batch_size, args.seq_len)
    batches = [
        {
            "input_ids": torch.randint(5, config.vocab_size, shape, generator=gen).to(device),
            "attention_mask": torch.ones(shape, dtype=torch.long, device=device),
            "labels": torch.randint(0, NUM_LABELS, shape, generator=gen).to(device),
        }
        for _ in range(n_batches)
    ]
    tokens = args.batch_size * args.seq_len
    fused_default = trainer_optimizer_is_fused()
    setups = {
        f"Trainer defaults (fp32, {'fused' if fused_default else 'foreach'} AdamW)": dict(
            bf16=False, fused=fused_default, compile_model=False
        ),
        "xlalign (bf16 autocast, fused AdamW" + (", torch.compile)" if args.compile else ")"): dict(
            bf16=True, fused=True, compile_model=args.compile
        ),
    }
    seconds = {}
    n_params = layers = hidden = None
    for name, options in setups.items():
        torch.manual_seed(0)
        model = XLMRobertaForTokenClassification(config).to(device).train()
        n_params = counted_params(model)
        layers, hidden = config.num_hidden_layers, config.hidden_size
        step = make_step(model, device=device, **options)
        seconds[name] = time_steps(step, batches, args.warmup, device)
        del model, step
        if device.type == "cuda":
            torch.cuda.empty_cache()
    flops = 6 * n_params * tokens
    flops_attn = flops + 12 * layers * args.seq_len * hidden * tokens
    peak = peak_tflops(device, args.peak_tflops)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    print(
        f"{where}; batch {args.batch_size} x {args.seq_len} tokens; N = {n_params / 1e6:.1f}M "
        f"non-embedding parameters; {args.steps} timed steps after {args.warmup} warm-up; "
        f"peak {peak if peak else 'unknown'} bf16 TFLOP/s"
    )
    for name, s in seconds.items():
        mfu = (
            f"MFU {100 * flops / s / (peak * 1e12):.1f}% (with attention "
            f"{100 * flops_attn / s / (peak * 1e12):.1f}%)"
            if peak
            else "MFU n/a (pass --peak-tflops)"
        )
        print(
            f"{name}: {1000 * s:.1f} ms/step, {tokens / s:.0f} tokens/s, "
            f"{flops / s / 1e12:.1f} model TFLOP/s, {mfu}"
        )
    base, ours = seconds.values()
    print(
        f"gpu step speed-up: {base / ours:.2f}x (baseline {1000 * base:.1f} ms/step, ours "
        f"{1000 * ours:.1f} ms/step)"
    )


if __name__ == "__main__":
    main()
