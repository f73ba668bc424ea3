"""Gradients: cosines and norms against hand computations, Gram matrices of gradient streams,
probe hygiene."""

import math

import pytest
import torch
from torch import nn

from xlcore.encoders import load
from xlcore.gradients import (
    ALL,
    ALL_BUT_EMBEDDINGS,
    GradientSpace,
    Stream,
    dot64,
    group_gram,
    group_of,
    group_stats,
    probing,
    stream_gradients,
    stream_grams,
)


class TinyEncoder(nn.Module):
    """Named like a BERT encoder: embeddings, encoder.layer.0, encoder.layer.1, pooler."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embeddings = nn.Module()
        self.embeddings.word = nn.Linear(3, 4)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 2)])
        self.pooler = nn.Linear(2, 2)

    def forward(self, x):
        h = self.embeddings.word(x)
        for layer in self.encoder.layer:
            h = torch.tanh(layer(h))
        return h


def test_group_names():
    assert group_of("embeddings.word_embeddings.weight") == "embeddings"
    assert group_of("encoder.layer.11.attention.self.query.weight") == "layer.11"
    assert group_of("pooler.dense.weight") is None


def test_space_layout_and_aggregates():
    model = TinyEncoder()
    space = GradientSpace.of(model)
    assert space.layer_groups == ["embeddings", "layer.0", "layer.1"]
    assert space.size == (3 * 4 + 4) + (4 * 4 + 4) + (4 * 2 + 2)  # pooler left out
    assert space.groups[ALL] == (0, space.size)
    assert space.groups[ALL_BUT_EMBEDDINGS] == (16, space.size)


def test_cosine_and_norms_equal_hand_computation():
    model = TinyEncoder()
    space = GradientSpace.of(model)
    x = torch.randn(5, 3)
    loss_a = model(x).pow(2).sum()
    loss_b = model(x).sum()
    ga, gb = space.flat_grad(loss_a), space.flat_grad(loss_b)
    # by hand: backward into .grad, flatten the layer-0 parameters in module order
    model.zero_grad()
    model(x).pow(2).sum().backward()
    hand_a = torch.cat([p.grad.reshape(-1) for p in model.encoder.layer[0].parameters()])
    model.zero_grad()
    model(x).sum().backward()
    hand_b = torch.cat([p.grad.reshape(-1) for p in model.encoder.layer[0].parameters()])
    stats = group_stats(space, ga, gb)
    cos, na, nb = stats["layer.0"]
    assert na == pytest.approx(hand_a.norm().item(), rel=1e-6)
    assert nb == pytest.approx(hand_b.norm().item(), rel=1e-6)
    expected = (hand_a @ hand_b / (hand_a.norm() * hand_b.norm())).item()
    assert cos == pytest.approx(expected, rel=1e-5)
    # "all" is the cosine of the whole flattened vectors
    whole = torch.cat([p.grad.reshape(-1) for n, p in model.named_parameters() if group_of(n)])
    assert stats[ALL][2] == pytest.approx(whole.norm().item(), rel=1e-6)


def test_group_gram_equals_float64_dots_and_sums_layer_groups_into_aggregates():
    space = GradientSpace.of(TinyEncoder())
    gen = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(space.size, generator=gen) for _ in range(3))
    grams = group_gram(space, [a, b, c])
    for group, (start, end) in space.groups.items():
        for i, x in enumerate((a, b, c)):
            for j, y in enumerate((a, b, c)):
                want = float(torch.dot(x[start:end].double(), y[start:end].double()))
                assert float(grams[group][i, j]) == pytest.approx(want, rel=1e-12, abs=1e-12)
                assert float(grams[group][i, j]) == pytest.approx(dot64(x[start:end], y[start:end]))
    layers = sum(grams[g] for g in space.layer_groups)
    assert torch.equal(grams[ALL], layers)


def test_gram64_crosses_chunk_boundaries(monkeypatch):
    import xlcore.gradients as gradients

    monkeypatch.setattr(gradients, "_CACHE_CHUNK", 7)  # many chunks, a ragged last one
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(100, generator=gen), torch.randn(100, generator=gen)
    want = torch.stack([a, b]).double() @ torch.stack([a, b]).double().T
    assert torch.allclose(gradients.gram64([a, b]), want, rtol=1e-12, atol=1e-12)
    assert gradients.gram64([a, b], 10, 55)[0, 1].item() == pytest.approx(
        float(torch.dot(a[10:55].double(), b[10:55].double())), rel=1e-12
    )
    assert dot64(a, a) == pytest.approx(float(want[0, 0]), rel=1e-12)


def test_flatten_into_a_reused_buffer_equals_a_fresh_one():
    model = TinyEncoder()
    space = GradientSpace.of(model)
    x = torch.randn(5, 3)
    buf = space.buffer()
    buf.fill_(float("nan"))  # stale contents must be overwritten everywhere
    out = space.flat_grad(model(x).pow(2).sum(), out=buf)
    assert out is buf
    assert torch.equal(out, space.flat_grad(model(x).pow(2).sum()))
    with pytest.raises(ValueError, match="fp32 vector"):
        space.flatten([p.grad for p in space.params], out=torch.empty(space.size + 1))


def test_orthogonal_and_identical_losses():
    # One parameter vector w; loss1 depends on w[:2], loss2 on w[2:]: orthogonal gradients.
    model = TinyEncoder()
    space = GradientSpace.of(model)
    w = model.encoder.layer[1].bias  # 2 entries
    v = model.encoder.layer[0].bias  # 4 entries
    loss1 = (w[0] * 3.0) ** 2 + v[:2].sum() ** 2
    loss2 = (w[1] * 2.0) ** 2 + v[2:].sum() ** 2
    g1, g2 = space.flat_grad(loss1), space.flat_grad(loss2)
    stats = group_stats(space, g1, g2)
    assert stats[ALL][0] == pytest.approx(0.0, abs=1e-12)
    same = group_stats(space, g1, g1.clone())
    assert same[ALL][0] == pytest.approx(1.0)
    assert math.isnan(same["embeddings"][0])  # no gradient there at all


def test_stream_grams_keep_the_model_state_and_match_fp32_products():
    """Stream gradients are kept in bf16: the Gram matrix must match float64 products of the
    fp32 gradients to the bf16 rounding, and probing leaves RNG, mode and .grad untouched."""
    model, _ = load("tiny-xlmr")
    model.train()
    space = GradientSpace.of(model)
    torch.manual_seed(0)
    batches = [torch.randint(5, 100, (4, 7)) for _ in range(3)]

    def task(k):
        return model(input_ids=batches[k]).last_hidden_state.pow(2).mean()

    def other(k):
        return model(input_ids=batches[k]).last_hidden_state[:, 0].pow(3).mean()

    before = torch.get_rng_state()
    with probing([model]):
        fp32 = [space.flat_grad(task(k)) for k in range(3)] + [
            space.flat_grad(other(k)) for k in range(3)
        ]
        shared = stream_gradients(space, Stream("task", task), 3)
        grams = stream_grams(space, shared, [Stream("other", other)], 3)
    assert torch.equal(before, torch.get_rng_state()) and model.training
    assert all(p.grad is None for p in model.parameters())
    exact = group_gram(space, fp32)
    for group, gram in grams.items():
        assert gram.shape == (6, 6)
        norms = exact[group].diagonal().sqrt()
        scale = torch.outer(norms, norms)
        assert (scale > 0).all(), group
        # bf16 rounding averages out over many entries; the tiny model's groups have few
        assert (gram / scale - exact[group] / scale).abs().max() < 2e-3, group
    g = exact[ALL_BUT_EMBEDDINGS]
    assert g[0, 1] / (g[0, 0] * g[1, 1]).sqrt() < 0.999  # one loss on two batches: below one
