"""The FLOP count and bound that the batched-encoder benchmarks print (benchmarks/ceiling.py)."""

import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import ceiling  # noqa: E402
from ceiling import ceiling_line, matmul_rate, useful_flops  # noqa: E402

H, INNER, LAYERS = 32, 64, 2


def small_bert(attention: str = "sdpa") -> BertModel:
    config = BertConfig(
        vocab_size=16,
        hidden_size=H,
        intermediate_size=INNER,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        max_position_embeddings=32,
        attn_implementation=attention,
    )
    return BertModel(config, add_pooling_layer=False).eval()


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_useful_flops_counts_every_product_of_an_unpadded_pass(attention):
    model = small_bert(attention)
    lengths = [3, 7, 7]
    # per token and layer: Q, K, V, output (H×H each) and the two feed-forward products; per
    # layer and sentence: scores and weighted values (T×T×H each); 2 FLOPs per multiply-add
    expected = sum(2 * LAYERS * (t * (4 * H * H + 2 * H * INNER) + 2 * t * t * H) for t in lengths)
    assert useful_flops(lambda inputs: model(**inputs), lengths) == expected


def test_the_bound_is_the_baseline_time_over_the_work_at_the_matmul_rate():
    # 1 TFLOP at 100 GFLOP/s is 10 s at best; a 30 s baseline allows at most 3x, a 15 s
    # batched path measures 2x at 67 % of the rate
    line = ceiling_line(10**12, 1e11, t_batched=15.0, t_baseline=30.0, what="fp32")
    assert "at most 3.0x" in line and "measured 2.0x" in line and "(67% of" in line
    assert "batched at 67 GFLOP/s" in line


def test_matmul_rate_is_the_best_timed_product_after_the_warm_ups(monkeypatch):
    # five products: two warm-ups (0.5 s each, not counted), then 2 s, 1 s and 3 s
    durations = [0.5, 0.5, 2.0, 1.0, 3.0]
    clock = iter(t for k, d in enumerate(durations) for t in (10.0 * k, 10.0 * k + d))
    monkeypatch.setattr(ceiling.time, "perf_counter", lambda: next(clock))
    rate = matmul_rate(32, 64, rows=64, repeat=3)
    assert rate == 2 * 64 * 32 * 64 / 1.0


def test_linear_split_times_and_counts_every_linear_layer_and_removes_its_hooks():
    model = small_bert()
    batch, length = 3, 5
    inputs = {
        "input_ids": torch.full((batch, length), 5, dtype=torch.long),
        "attention_mask": torch.ones(batch, length, dtype=torch.long),
    }
    total, linear, flops = ceiling.linear_split(model, lambda: model(**inputs))
    # every row of every linear layer: Q, K, V, output and the two feed-forward products
    assert flops == 2 * LAYERS * batch * length * (4 * H * H + 2 * H * INNER)
    assert 0 < linear <= total
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_split_line_reports_the_share_and_the_rate_against_the_matmul():
    # 4 s of 5 s in products of 4e11 FLOPs: 100 GFLOP/s, half of a 200 GFLOP/s matmul
    line = ceiling.split_line(5.0, 4.0, 4 * 10**11, 2e11, what="fp32 batched")
    assert "4.00 s of 5.00 s (80%)" in line and "at 100 GFLOP/s (50% of the matmul)" in line
    assert "1.00 s" in line
