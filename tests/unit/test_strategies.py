"""The gradient-surgery strategies write the combined gradient the optimizer sees: by hand."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from xlcore.strategies import make_strategy


def linear_losses():
    """A two-group encoder (embeddings, layer.0; 4 weights each) and two losses linear in its
    weights, so that each loss's gradient is its coefficient vector."""
    encoder = nn.Module()
    encoder.embeddings = nn.Linear(2, 2, bias=False)
    encoder.encoder = nn.Module()
    encoder.encoder.layer = nn.ModuleList([nn.Linear(2, 2, bias=False)])
    model = SimpleNamespace(encoder=encoder, head=nn.Identity())
    objective = SimpleNamespace(loss=nn.Identity())
    weights = [encoder.embeddings.weight, encoder.encoder.layer[0].weight]

    def loss_of(coefficients):
        flat = torch.cat([w.reshape(-1) for w in weights])
        return torch.dot(torch.tensor(coefficients), flat)

    return model, objective, weights, loss_of


def grads_after(name, coefficients_task, coefficients_align, alpha):
    model, objective, weights, loss_of = linear_losses()
    strategy = make_strategy(
        name, model, objective, alpha=alpha, beta=0.01, mixed=None, check=lambda *_: None
    )
    seen = []
    strategy.update(
        0,
        loss_of(coefficients_task),
        loss_of(coefficients_align),
        lambda: seen.append(torch.cat([w.grad.reshape(-1) for w in weights])),
    )
    (grad,) = seen
    return grad.tolist()


def test_pcgrad_strategy_projects_both_objectives():
    # g_task = [1, 1, 0…], g_align = α·[-1, 0, 0…] = [-2, 0, 0…]: dot -2, ‖t‖² 2, ‖a‖² 4.
    # task' = [1, 1] + (2/4)·[-2, 0] = [0, 1]; align' = [-2, 0] + (2/2)·[1, 1] = [-1, 1].
    task = [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    align = [-1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    got = grads_after("pcgrad", task, align, alpha=2.0)
    assert got == pytest.approx([-1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], abs=1e-7)


def test_gradvac_strategy_first_step_is_pcgrad_in_each_layer():
    # Wang et al.'s target starts at 0: on the first step GradVac is PCGrad group by group.
    # Embeddings: g_task [1, 1, 0, 0], g_align [-1, 0, 0, 0] conflict (cos -1/√2): both are
    # projected, [0, 1] + [-0.5, 0.5]. layer.0: [1, 0, 0, 0] and [1, 0, 0, 0] agree: summed.
    task = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    align = [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    got = grads_after("gradvac", task, align, alpha=1.0)
    assert got == pytest.approx([-0.5, 1.5, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0], abs=1e-7)
