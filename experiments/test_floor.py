"""floor.py's exact teacher (section 5's "the teacher is not the floor") against an independent route: the fm
field is E[x1 - x0 | x_t] = -t s - (x + t^2 s) / (1 - t) with s = grad log p_t (Tweedie), s by autograd of the
closed-form density of x_t; and the exact field's one-step map at t = 1 is the class mean (the initialisation)."""
import math

import pytest
import torch

import floor


def log_p(t, x, y):
    """log density of x_t = (1 - t) x0 + t x1 for the toy's class y (or the equal mixture when y is None)."""
    mu, v = floor.ExactField().mu.double(), (1 - t) ** 2 * 0.15 ** 2 + t ** 2
    logs = -(x[:, None, :] - (1 - t) * mu[None]).square().sum(-1) / (2 * v) - math.log(2 * math.pi * v)
    return logs.gather(1, y[:, None])[:, 0] if y is not None else torch.logsumexp(logs, 1) - math.log(8)


@pytest.mark.parametrize('cond', [True, False])
@pytest.mark.parametrize('t', [0.05, 0.4, 0.9])
def test_exact_field_is_tweedies_posterior_mean(t, cond):
    g = torch.Generator().manual_seed(0)
    x = (2 * torch.randn(64, 2, generator=g, dtype=torch.float64)).requires_grad_(True)
    y = torch.randint(8, (64,), generator=g) if cond else None
    s = torch.autograd.grad(log_p(t, x, y).sum(), x)[0]
    tt = torch.full((64,), t, dtype=torch.float64)
    expected = -t * s - (x + t ** 2 * s) / (1 - t)
    assert torch.allclose(floor.ExactField()(tt, x.detach(), y), expected, atol=1e-9)


def test_exact_one_step_map_at_t1_is_the_class_mean():
    z, y = torch.randn(16, 2, dtype=torch.float64), torch.arange(16) % 8
    f = floor.ExactField()(torch.ones(16, dtype=torch.float64), z, y)
    assert torch.allclose(z - f, floor.ExactField().mu.double()[y], atol=1e-12)
