"""PCGrad and GradVac on hand-made gradients."""

import math

import pytest
import torch
from torch import nn

from xlcore.combine import GradVac, gradvac_adjust, pcgrad
from xlcore.gradients import GradientSpace, cosine, gram64, group_gram


def test_pcgrad_removes_exactly_the_conflicting_component():
    g_task = torch.tensor([1.0, 1.0])
    g_align = torch.tensor([-1.0, 0.0])  # dot = -1: conflict
    combined, conflicted = pcgrad(g_task, g_align)
    assert conflicted
    # projected task gradient: [1, 1] - (-1 / 1) * [-1, 0] = [0, 1]; plus g_align
    assert torch.allclose(combined, torch.tensor([-1.0, 1.0]))
    projected = combined - g_align
    assert torch.dot(projected, g_align).item() == pytest.approx(0.0)


def test_pcgrad_leaves_agreeing_gradients_alone():
    g_task = torch.tensor([1.0, 2.0, 0.0])
    g_align = torch.tensor([0.5, 0.0, 1.0])
    combined, conflicted = pcgrad(g_task, g_align)
    assert not conflicted
    assert torch.allclose(combined, g_task + g_align)


@pytest.mark.parametrize("target", [0.0, 0.3, 0.8])
def test_gradvac_moves_cosine_to_its_target(target):
    torch.manual_seed(0)
    g_align = torch.randn(50)
    g_task = -0.5 * g_align + torch.randn(50)  # negative cosine, below every target
    assert cosine(g_task, g_align) < target
    adjusted, before = gradvac_adjust(g_task, g_align, target)
    assert before == pytest.approx(cosine(g_task, g_align))
    assert cosine(adjusted, g_align) == pytest.approx(target, abs=1e-6)


def test_gradvac_keeps_gradients_above_target():
    g = torch.tensor([1.0, 0.0])
    adjusted, before = gradvac_adjust(g, torch.tensor([1.0, 0.1]), target=0.5)
    assert before > 0.5 and torch.equal(adjusted, g)


def test_gradvac_layerwise_ema_targets():
    model = nn.Module()
    model.embeddings = nn.Linear(2, 2)
    model.encoder = nn.Module()
    model.encoder.layer = nn.ModuleList([nn.Linear(2, 2)])
    space = GradientSpace.of(model)
    vac = GradVac(space, beta=0.5)
    torch.manual_seed(1)
    g_task, g_align = torch.randn(space.size), torch.randn(space.size)
    combined, before = vac(g_task, g_align)
    for group in space.layer_groups:
        assert vac.targets[group] == pytest.approx(0.5 * before[group])
        start, end = space.groups[group]
        new_task = (combined - g_align)[start:end]
        expected = max(before[group], 0.0)  # target 0 at first: raised to 0 if below
        assert cosine(new_task, g_align[start:end]) == pytest.approx(expected, abs=1e-6)
    state = vac.state_dict()
    other = GradVac(space)
    other.load_state_dict(state)
    assert other.targets == vac.targets and other.beta == 0.5
    with pytest.raises(ValueError):
        GradVac(space, beta=0)
    assert not math.isnan(sum(vac.targets.values()))


def _two_layer_model() -> tuple[nn.Module, GradientSpace]:
    model = nn.Module()
    model.embeddings = nn.Linear(3, 3)
    model.encoder = nn.Module()
    model.encoder.layer = nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 3)])
    return model, GradientSpace.of(model)


def test_surgery_with_a_precomputed_gram_equals_computing_it():
    _, space = _two_layer_model()
    torch.manual_seed(2)
    g_align = torch.randn(space.size)
    g_task = -0.7 * g_align + torch.randn(space.size)
    grams = group_gram(space, [g_task, g_align])
    assert torch.allclose(grams["all"], gram64([g_task, g_align]), rtol=1e-12)
    plain, conflicted = pcgrad(g_task, g_align)
    given, conflicted_given = pcgrad(g_task, g_align, gram=grams["all"])
    assert conflicted and conflicted_given
    assert torch.allclose(plain, given, rtol=1e-6, atol=1e-7)
    vac_plain, vac_given = GradVac(space, beta=0.5), GradVac(space, beta=0.5)
    a, before_a = vac_plain(g_task, g_align)
    b, before_b = vac_given(g_task, g_align, grams=grams)
    assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
    assert before_a == pytest.approx(before_b, rel=1e-12)
    assert vac_plain.targets == pytest.approx(vac_given.targets, rel=1e-12)


def test_surgery_in_place_equals_out_of_place():
    model, space = _two_layer_model()
    torch.manual_seed(4)
    g_align = torch.randn(space.size)
    for g_task in (-0.7 * g_align + torch.randn(space.size), g_align + torch.randn(space.size)):
        want, conflicted = pcgrad(g_task, g_align)
        buf = g_task.clone()
        got, conflicted_got = pcgrad(buf, g_align, out=buf)
        assert got is buf and conflicted_got == conflicted
        assert torch.equal(got, want)
        want, before = GradVac(space, beta=0.5)(g_task, g_align)
        buf = g_task.clone()
        got, before_got = GradVac(space, beta=0.5)(buf, g_align, out=buf)
        assert got is buf and before_got == before
        assert torch.equal(got, want)
    space.unflatten_into_grad(got, share=True)
    assert model.embeddings.weight.grad.data_ptr() == got.data_ptr()  # a view, no copy
    space.unflatten_into_grad(got)
    assert model.embeddings.weight.grad.data_ptr() != got.data_ptr()
    assert torch.equal(
        model.embeddings.weight.grad.reshape(-1), got[: model.embeddings.weight.numel()]
    )
