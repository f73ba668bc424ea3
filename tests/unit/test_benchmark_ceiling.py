"""The FLOP count and bound that the batched-encoder benchmarks print (benchmarks/ceiling.py)."""

import sys
from pathlib import Path

import pytest
from transformers import BertConfig, BertModel

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import ceiling  # noqa: E402
from ceiling import ceiling_line, matmul_rate, useful_flops  # noqa: E402

H, INNER, LAYERS = 32, 64, 2


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_useful_flops_counts_every_product_of_an_unpadded_pass(attention):
    config = BertConfig(
        vocab_size=16,
        hidden_size=H,
        intermediate_size=INNER,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        max_position_embeddings=32,
        attn_implementation=attention,
    )
    model = BertModel(config, add_pooling_layer=False).eval()
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
