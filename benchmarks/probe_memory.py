"""Peak memory of one gradient probe on a randomly initialised XLM-R base (CPU or GPU).

The probe keeps one flat fp32 buffer per objective (task, alignment) plus one for the noise
floor's second batch. This script builds XLM-R base (``XLMRobertaConfig()`` defaults, random
weights; nothing is downloaded), runs one probe with the task loss of a POS head and the strong
InfoNCE alignment loss, and prints the peak memory above the model's own footprint next to the
size of one flat buffer.

    python benchmarks/probe_memory.py [--device cuda] [--batch 8] [--length 64]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from transformers import XLMRobertaConfig, XLMRobertaModel

from xlcore.gradients import GradientSpace, ProbeObjective, probe
from xlcore.losses import alignment_forward, build_alignment_loss
from xlcore.taskmodel import TaskModel


class _Tokenizer:
    """Just enough of a fast tokenizer for alignment_forward: one piece per word."""

    is_fast = True

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def __call__(self, words_list, **_):
        from transformers import BatchEncoding

        width = max(len(w) for w in words_list) + 2
        ids = torch.ones(len(words_list), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        word_ids = []
        for b, words in enumerate(words_list):
            n = len(words)
            ids[b, : n + 2] = torch.randint(5, self.vocab_size, (n + 2,))
            mask[b, : n + 2] = 1
            word_ids.append([None, *range(n), None] + [None] * (width - n - 2))
        enc = BatchEncoding({"input_ids": ids, "attention_mask": mask})
        enc._word_ids = word_ids
        enc.word_ids = lambda b: word_ids[b]
        enc.tokens = lambda b: ["x"] * width
        return enc


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=64)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    # XLM-R base: 12 layers, 768 hidden, 250,002 pieces (the values of its hub config)
    config = XLMRobertaConfig(
        vocab_size=250002, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5
    )
    encoder = XLMRobertaModel(config, add_pooling_layer=False)
    model = TaskModel(encoder, "pos").to(device)
    loss = build_alignment_loss("infonce_strong", config.hidden_size).to(device)
    tok = _Tokenizer(config.vocab_size)
    space = GradientSpace.of(encoder)
    buffer_gib = space.size * 4 / 2**30
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**30
    else:
        base = peak_rss_gib()
    ids = [torch.randint(5, config.vocab_size, (args.batch, args.length)) for _ in range(2)]
    labels = [torch.randint(0, 17, (args.batch, args.length)) for _ in range(2)]
    words = [[[f"w{i}" for i in range(args.length // 2)]] * args.batch for _ in range(2)]
    links = [[(i, i) for i in range(args.length // 2)]] * args.batch

    def task_loss(k):
        logits = model(ids[k].to(device), torch.ones_like(ids[k]).to(device))
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, 17).float(), labels[k].to(device).reshape(-1)
        )

    def align_loss(k):
        return alignment_forward(encoder, loss, tok, words[k], words[k], links, max_length=512)

    start = time.perf_counter()
    records = probe(space, [model, loss], task_loss, [ProbeObjective("en-xx", align_loss)], step=0)
    elapsed = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
        what = "peak CUDA memory allocated"
    else:
        peak = peak_rss_gib()
        what = "peak RSS"
    n_params = sum(p.numel() for p in encoder.parameters())
    allc = next(r for r in records if r["group"] == "all")
    print(
        f"probe memory: XLM-R base random init, {n_params / 1e6:.0f}M encoder parameters, "
        f"batch {args.batch}x{args.length}, {device.type}: {what} {peak:.2f} GiB "
        f"(model and inputs alone {base:.2f} GiB; +{peak - base:.2f} GiB for the probe; "
        f"one flat fp32 buffer = {buffer_gib:.2f} GiB); probe took {elapsed:.1f} s; "
        f"cos(all) = {allc['cos']:.4f}, floor_task(all) = {allc['floor_task']:.4f}"
    )


if __name__ == "__main__":
    main()
