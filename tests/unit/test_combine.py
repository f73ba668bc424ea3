"""PCGrad and GradVac on hand-made gradients."""

import math

import pytest
import torch
from torch import nn

from xlcore.combine import GradVac, gradvac_adjust, pcgrad
from xlcore.gradients import GradientSpace, cosine, gram64, group_gram


def test_pcgrad_projects_both_gradients_onto_each_others_normal_plane():
    g_task = torch.tensor([1.0, 1.0])
    g_align = torch.tensor([-1.0, 0.0])  # dot = -1: conflict
    combined, conflicted = pcgrad(g_task, g_align)
    assert conflicted
    # task:  [1, 1] - (-1 / ‖a‖² = 1) * [-1, 0] = [0, 1]
    # align: [-1, 0] - (-1 / ‖t‖² = 2) * [1, 1] = [-0.5, 0.5]
    # (both from the original gradients), summed: [-0.5, 1.5]
    assert torch.allclose(combined, torch.tensor([-0.5, 1.5]))


def test_pcgrad_projections_are_orthogonal_to_the_other_original_gradient():
    torch.manual_seed(0)
    g_align = torch.randn(20, dtype=torch.float64)
    g_task = -2.0 * g_align + torch.randn(20, dtype=torch.float64)
    dot = float(g_task @ g_align)
    assert dot < 0
    task = g_task - dot / float(g_align @ g_align) * g_align
    align = g_align - dot / float(g_task @ g_task) * g_task
    assert float(task @ g_align) == pytest.approx(0.0, abs=1e-12)
    assert float(align @ g_task) == pytest.approx(0.0, abs=1e-12)
    combined, conflicted = pcgrad(g_task, g_align)
    assert conflicted and torch.allclose(combined, task + align, rtol=1e-12)


def test_pcgrad_leaves_agreeing_gradients_alone():
    g_task = torch.tensor([1.0, 2.0, 0.0])
    g_align = torch.tensor([0.5, 0.0, 1.0])
    combined, conflicted = pcgrad(g_task, g_align)
    assert not conflicted
    assert torch.allclose(combined, g_task + g_align)


def vaccinated(g_task, g_align, target):
    """Wang et al.'s rule by hand, both ways: each gradient moved toward the other (original)
    gradient until their cosine is ``target``; returns (task', align')."""
    nt, na = float(g_task.norm()), float(g_align.norm())
    phi = float(g_task @ g_align) / (nt * na)
    k = (target * math.sqrt(1 - phi**2) - phi * math.sqrt(1 - target**2)) / math.sqrt(1 - target**2)
    return g_task + nt * k / na * g_align, g_align + na * k / nt * g_task


def test_gradvac_moves_both_gradients_to_the_target_by_hand():
    g_task = torch.tensor([2.0, 0.0], dtype=torch.float64)
    g_align = torch.tensor([-0.6, 0.8], dtype=torch.float64)  # cos = -0.6
    # target 0.5: k = (0.5·0.8 + 0.6·√0.75) / √0.75; task += (2/1)·k·g_align,
    # align += (1/2)·k·g_task
    k = (0.4 + 0.6 * math.sqrt(0.75)) / math.sqrt(0.75)
    task = torch.tensor([2 - 1.2 * k, 1.6 * k], dtype=torch.float64)
    align = torch.tensor([-0.6 + k, 0.8], dtype=torch.float64)
    assert cosine(task, g_align) == pytest.approx(0.5, abs=1e-12)
    assert cosine(align, g_task) == pytest.approx(0.5, abs=1e-12)
    combined, before = gradvac_adjust(g_task, g_align, 0.5)
    assert before == pytest.approx(-0.6)
    assert torch.allclose(combined, task + align, rtol=1e-12)


@pytest.mark.parametrize("target", [0.0, 0.3, 0.8])
def test_gradvac_combines_both_adjusted_gradients(target):
    torch.manual_seed(0)
    g_align = torch.randn(50, dtype=torch.float64)
    g_task = -0.5 * g_align + torch.randn(50, dtype=torch.float64)  # below every target
    assert cosine(g_task, g_align) < target
    task, align = vaccinated(g_task, g_align, target)
    assert cosine(task, g_align) == pytest.approx(target, abs=1e-9)
    assert cosine(align, g_task) == pytest.approx(target, abs=1e-9)
    combined, before = gradvac_adjust(g_task, g_align, target)
    assert before == pytest.approx(cosine(g_task, g_align))
    assert torch.allclose(combined, task + align, rtol=1e-9)


def test_gradvac_with_target_zero_is_pcgrad():
    torch.manual_seed(3)
    g_align = torch.randn(30, dtype=torch.float64)
    g_task = -0.5 * g_align + torch.randn(30, dtype=torch.float64)
    assert torch.allclose(gradvac_adjust(g_task, g_align, 0.0)[0], pcgrad(g_task, g_align)[0])


def test_gradvac_keeps_gradients_above_target():
    g_task, g_align = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.1])
    combined, before = gradvac_adjust(g_task, g_align, target=0.5)
    assert before > 0.5 and torch.equal(combined, g_task + g_align)


def _layered_space(width: int = 2) -> tuple[nn.Module, GradientSpace]:
    model = nn.Module()
    model.embeddings = nn.Linear(width, width)
    model.encoder = nn.Module()
    model.encoder.layer = nn.ModuleList([nn.Linear(width, width)])
    return model, GradientSpace.of(model)


def with_cosines(space, cosines, generator):
    """A task and an alignment gradient whose cosine in each layer group is ``cosines[group]``
    (random directions and norms)."""
    g_task, g_align = torch.empty(space.size), torch.empty(space.size)
    for group in space.layer_groups:
        start, end = space.groups[group]
        basis, _ = torch.linalg.qr(torch.randn(end - start, 2, generator=generator))
        u, v = basis[:, 0], basis[:, 1]
        c = cosines[group]
        scale_t, scale_a = 0.5 + torch.rand(2, generator=generator).tolist()[0], 2.0
        g_align[start:end] = scale_a * u
        g_task[start:end] = scale_t * (c * u + math.sqrt(1 - c**2) * v)
    return g_task, g_align


def test_gradvac_targets_are_bias_corrected_emas_of_the_cosines():
    _, space = _layered_space()
    vac = GradVac(space, beta=0.5)
    gen = torch.Generator().manual_seed(1)
    first = {"embeddings": -0.4, "layer.0": 0.2}
    g_task, g_align = with_cosines(space, first, gen)
    combined, before = vac(g_task, g_align)
    # Nothing observed yet: Wang et al.'s starting target 0, which is PCGrad group by group (the
    # conflicting embeddings are both projected, layer.0 is left alone); then the target is the
    # first cosine itself (the zero-started EMA divided by its weight 1 - (1 - β)^1).
    for group in space.layer_groups:
        start, end = space.groups[group]
        want, _ = pcgrad(g_task[start:end], g_align[start:end])
        assert torch.allclose(combined[start:end], want, atol=1e-6)
        assert before[group] == pytest.approx(first[group], abs=1e-6)
        assert vac.targets[group] == pytest.approx(first[group], abs=1e-6)
    assert not torch.allclose(combined, g_task + g_align)
    second = {"embeddings": -0.8, "layer.0": 0.6}
    g_task, g_align = with_cosines(space, second, gen)
    combined, before = vac(g_task, g_align)
    for group in space.layer_groups:
        start, end = space.groups[group]
        t, a = g_task[start:end].double(), g_align[start:end].double()
        if second[group] < first[group]:  # below the target: both moved to it
            task, align = vaccinated(t, a, first[group])
            assert torch.allclose(combined[start:end].double(), task + align, atol=1e-5)
        else:
            assert torch.allclose(combined[start:end], g_task[start:end] + g_align[start:end])
        # EMA (0.5·(0.5·c1) + 0.5·c2) over its weight 1 - 0.5²
        ema = 0.5 * 0.5 * first[group] + 0.5 * second[group]
        assert vac.targets[group] == pytest.approx(ema / 0.75, abs=1e-6)
    other = GradVac(space)
    other.load_state_dict(vac.state_dict())
    assert other.targets == vac.targets and other.beta == 0.5
    assert other.state_dict() == vac.state_dict()
    with pytest.raises(ValueError):
        GradVac(space, beta=0)


def test_gradvac_is_not_pcgrad_after_a_60_step_run():
    # The regime's setting: β = 0.01, 60 steps, a steady cosine of 0.4 in every layer.
    _, space = _layered_space(width=4)
    vac = GradVac(space, beta=0.01)
    gen = torch.Generator().manual_seed(2)
    steady = dict.fromkeys(space.layer_groups, 0.4)
    for _ in range(60):
        vac(*with_cosines(space, steady, gen))
    # The bias-corrected EMA of a constant is that constant (a zero start without the
    # correction would give 0.4·(1 − 0.99^60) ≈ 0.18).
    assert all(vac.targets[g] == pytest.approx(0.4, abs=1e-5) for g in space.layer_groups)
    # Step 61: cosine 0.1, no conflict. PCGrad leaves the sum alone; GradVac moves both to 0.4.
    g_task, g_align = with_cosines(space, dict.fromkeys(space.layer_groups, 0.1), gen)
    surgery, conflicted = pcgrad(g_task, g_align)
    assert not conflicted and torch.equal(surgery, g_task + g_align)
    combined, _ = vac(g_task, g_align)
    for group in space.layer_groups:
        start, end = space.groups[group]
        task, align = vaccinated(g_task[start:end].double(), g_align[start:end].double(), 0.4)
        assert torch.allclose(combined[start:end].double(), task + align, atol=1e-5)
        assert cosine(task, g_align[start:end].double()) == pytest.approx(0.4, abs=1e-6)
    assert not torch.allclose(combined, surgery, atol=1e-2)


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
