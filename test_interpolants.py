"""Conditioning of the interpolants (interpolants.py) against independent closed forms.

vp's v-prediction (Salimans & Ho 2022), ve's EDM preconditioning and training-time distribution (Karras et al.
2022, Table 1), the precondition() hook, the one-step generator's data prediction at t=1, and the converters
for teachers from outside (VE.from_denoiser, VP.from_eps), on networks built here. Paths, targets, weights and
samplers of every family (vp in all three predictions) are in test_losses.py, whose helpers are reused. All in
float64: identities of a few flops agree to ~1e-15 relative; tolerances say where a division loses more.
"""
import copy
import math

import pytest
import torch
from scipy import stats

from interpolants import VE, VP, make_interpolant
from conftest import ve_sigma, vp_alpha_sigma
from test_losses import DTYPE, N_CLASSES, TinyNet, _gen, assert_close, gaussian_function, make_case

pytestmark = pytest.mark.usefixtures('one_thread')

SHAPE = (3, 4, 4)


def bc(v):                                      # (B,) -> (B, 1, 1, 1) for SHAPE batches
    return v.view(-1, 1, 1, 1)


def random_batch(seed, batch=6):
    """t in [1e-3, 1] with both ends included, x0 ~ 0.5 + N(0, I), eps ~ N(0, I)."""
    g = _gen(seed)
    t = torch.cat([torch.tensor([1e-3, 1.0], dtype=DTYPE), 1e-3 + (1 - 1e-3) * torch.rand(batch - 2, generator=g,
                                                                                           dtype=DTYPE)])
    return t, 0.5 + torch.randn(batch, *SHAPE, generator=g, dtype=DTYPE), torch.randn(batch, *SHAPE, generator=g,
                                                                                      dtype=DTYPE)


class FeatureNet(TinyNet):
    """TinyNet with the features(t, x, y) method that train.py's GAN head calls (its hidden layer)."""

    def features(self, t, x, y=None):
        h = x.flatten(1)
        h = h / (1 + h.pow(2).mean(1, keepdim=True)).sqrt()
        onehot = torch.zeros(len(x), N_CLASSES, dtype=DTYPE) if y is None else torch.eye(N_CLASSES, dtype=DTYPE)[y]
        return torch.tanh(torch.cat([h, t[:, None], onehot], 1) @ self.w1 + self.b1)


# ------------------------------------------------------------------------------- 1. vp v-prediction

def test_vp_default_prediction_is_v_with_unit_weight():
    interp = make_interpolant('vp')
    assert interp.prediction == 'v'
    t = torch.linspace(1e-3, 1, 11, dtype=DTYPE)
    assert torch.equal(interp.weight(t), torch.ones_like(t))


def test_v_prediction_to_x0_and_drift_invert_the_rotation():
    """x_t = alpha x0 + sigma eps, v = alpha eps - sigma x0 (Salimans & Ho 2022): to_x0 = alpha x_t - sigma v is
    x0; the drift at the conditional v is the path's velocity alpha' x0 + sigma' eps (alpha', sigma' by
    autograd of the hand-written schedule), which for a rotation is also -(alpha'/sigma) v; and it equals the
    eps-prediction drift at eps = sigma x_t + alpha v. Largest factor: sigma' = 4.8 at t = 1e-3."""
    t, x0, eps = random_batch(0)
    t_req = t.clone().requires_grad_(True)
    a, s = vp_alpha_sigma(t_req)
    da, ds = (torch.autograd.grad(c.sum(), t_req, retain_graph=True)[0] for c in (a, s))
    a, s, da, ds = (bc(c.detach()) for c in (a, s, da, ds))
    xt, v = a * x0 + s * eps, a * eps - s * x0
    v_interp, eps_interp = VP(), VP(prediction='eps')
    assert_close(v_interp.to_x0(t, xt, v), x0, rtol=1e-14)
    drift = v_interp.drift(t, xt, v)
    assert_close(drift, da * x0 + ds * eps, rtol=1e-12)
    assert_close(drift, -da / s * v, rtol=1e-12)
    assert_close(drift, eps_interp.drift(t, xt, s * xt + a * v), rtol=1e-12)


def test_vp_one_step_generator_at_t1_is_finite_for_v_and_amplifies_eps_errors_by_one_over_alpha():
    """G(z) = to_x0(1, z, f(1, z)): alpha(1) z - sigma(1) v with v, whose error reaches x0 times sigma(1) ~ 1;
    with eps it is (z - sigma(1) eps) / alpha(1), whose error reaches x0 times sigma(1)/alpha(1) ~ 152."""
    g = _gen(1)
    z, out, err = torch.randn(3, 4, *SHAPE, generator=g, dtype=DTYPE)
    one = torch.ones(4, dtype=DTYPE)
    a1, s1 = (c.item() for c in vp_alpha_sigma(torch.tensor(1.0, dtype=DTYPE)))
    v_interp, eps_interp = VP(), VP(prediction='eps')
    assert_close(v_interp.to_x0(one, z, out), a1 * z - s1 * out, rtol=1e-15)
    gain_v = (v_interp.to_x0(one, z, out + err) - v_interp.to_x0(one, z, out)).norm() / err.norm()
    gain_eps = (eps_interp.to_x0(one, z, out + err) - eps_interp.to_x0(one, z, out)).norm() / err.norm()
    assert gain_v.item() == pytest.approx(s1, rel=1e-12)
    assert gain_eps.item() == pytest.approx(s1 / a1, rel=1e-12) and 150 < gain_eps.item() < 155


@pytest.mark.parametrize('case', ['fm', 'vp', 'vp-eps', 've', 'bridge', 'si'])
def test_one_step_generator_is_the_posterior_mean_at_t1(case):
    """For data N(m, v I), to_x0(1, z, f(1, z)) with the exact function is E[x0 | x_1 = z] = m + a1 v (z - a1 m)
    / Var(x_1), a1 the data coefficient at t=1: 0 for fm/si/bridge (the data mean), alpha(1) for vp, 1 for ve
    (Var = v + 80^2). Finite in every family; vp-eps divides by alpha(1) (rounding x150)."""
    m, v = 0.7, 0.25
    z = 3.0 * torch.randn(5, 2, generator=_gen(2), dtype=DTYPE)
    one = torch.ones(5, dtype=DTYPE)
    a1 = {'fm': 0.0, 'vp': vp_alpha_sigma(one)[0][0].item(), 'vp-eps': vp_alpha_sigma(one)[0][0].item(),
          've': 1.0, 'bridge': 0.0, 'si': 0.0}[case]
    var1 = {'ve': v + 80.0 ** 2}.get(case, a1 ** 2 * v + 1 - a1 ** 2)
    expected = m + a1 * v * (z - a1 * m) / var1
    interp = make_case(case)
    assert_close(interp.to_x0(one, z, gaussian_function(case, m, v)(one, z)), expected, rtol=1e-12)


# ----------------------------------------------------------------------------- 2. ve: EDM preconditioning

@pytest.mark.parametrize('name', ['fm', 'vp', 've', 'bridge', 'si'])
def test_raw_network_sees_unit_scale_input_at_t1_in_every_family(name):
    """The one-step generator's network input, precondition(F) at t=1 on z = prior(...): std 1 (ve: c_in z with
    z = 80 N(0, I), std 80 without preconditioning). 40000 draws: the std's standard error is 0.0035; 0.02 is
    ~6 SE."""
    seen = []
    recording = lambda t, x, y=None: seen.append(x) or torch.zeros_like(x)
    interp = make_interpolant(name)
    z = interp.prior((40_000, 1), generator=_gen(14)).to(DTYPE)
    interp.precondition(recording)(torch.ones(len(z), dtype=DTYPE), z)
    assert abs(seen[0].std().item() - 1) < 0.02, seen[0].std()



def test_edm_coefficients_are_karras_table1_and_give_unit_scale():
    """c_skip = sd^2/(s^2+sd^2), c_out = s sd/sqrt(s^2+sd^2), c_in = 1/sqrt(s^2+sd^2) (EDM Table 1). Then
    lambda c_out^2 = 1 (the loss on F has unit weight), and for data of std sd the input c_in x_t and the
    target (x0 - c_skip x_t)/c_out of F have unit variance (EDM App. B.6)."""
    interp, sd = VE(), 0.5
    t = torch.linspace(0, 1, 101, dtype=DTYPE)
    s = ve_sigma(t)
    c_skip, c_out, c_in = interp.precond_coeffs(t)
    assert_close(c_skip, sd ** 2 / (s ** 2 + sd ** 2), rtol=1e-14)
    assert_close(c_out, s * sd / (s ** 2 + sd ** 2).sqrt(), rtol=1e-14)
    assert_close(c_in, 1 / (s ** 2 + sd ** 2).sqrt(), rtol=1e-14)
    ones = torch.ones_like(t)
    assert_close(interp.weight(t) * c_out ** 2, ones, rtol=1e-13)
    assert_close(c_in ** 2 * (sd ** 2 + s ** 2), ones, rtol=1e-13)
    assert_close(((1 - c_skip) ** 2 * sd ** 2 + c_skip ** 2 * s ** 2) / c_out ** 2, ones, rtol=1e-12)


def test_edm_wrapper_is_c_skip_x_plus_c_out_F_of_c_in_x_and_its_loss_has_unit_weight():
    """D(t, x, y) = c_skip x + c_out F(t, c_in x, y); a zero F gives c_skip x. The ve UM loss of D,
    lambda ||D - x0||^2, is ||F(t, c_in x_t) - (x0 - c_skip x_t) / c_out||^2 with weight 1 (EDM eq. 8). lambda
    reaches 2.5e5 at t=0 and D - x0 is O(sigma) there: 1e-9 covers that cancellation."""
    interp = VE()
    t, x0, eps = random_batch(3)
    t[0] = 0.0
    y = torch.randint(0, N_CLASSES, (len(t),), generator=_gen(3))
    s = bc(ve_sigma(t))
    xt = x0 + s * eps
    norm = (s ** 2 + 0.25).sqrt()
    c_skip, c_out, c_in = 0.25 / norm ** 2, 0.5 * s / norm, 1 / norm
    raw = TinyNet(SHAPE, seed=4)
    denoiser = interp.precondition(raw)
    assert_close(denoiser(t, xt, y), c_skip * xt + c_out * raw(t, c_in * xt, y), rtol=1e-14)
    zero = lambda t, x, y=None: torch.zeros_like(x)
    assert_close(interp.precondition(zero)(t, xt), c_skip * xt, rtol=1e-15)
    from losses import um_loss
    effective = (raw(t, c_in * xt, y) - (x0 - c_skip * xt) / c_out).flatten(1).pow(2).sum(1).mean()
    assert_close(um_loss(denoiser, interp, x0, y, x1=eps, t=t), effective, rtol=1e-9)


def test_precondition_returns_the_net_except_for_ve_whose_wrapper_prefixes_state_dict_keys():
    """fm/vp/bridge/si: the network itself (state-dict keys unchanged, e.g. torchcfm U-Nets). ve: a module whose
    only submodule is `net` (keys 'net.*', loadable from the raw net's state dict), interpolant not in the state
    dict, features() at the preconditioned input, surviving deepcopy (EMA copies)."""
    raw = FeatureNet(SHAPE, seed=5)
    for name in ('fm', 'vp', 'bridge', 'si'):
        assert make_interpolant(name).precondition(raw) is raw, name
    interp = VE()
    wrapped = interp.precondition(raw)
    assert isinstance(wrapped, torch.nn.Module) and wrapped.net is raw
    assert list(wrapped.state_dict()) == ['net.' + k for k in raw.state_dict()]
    assert [n for n, _ in wrapped.named_children()] == ['net']
    fresh = interp.precondition(FeatureNet(SHAPE, seed=6))
    fresh.net.load_state_dict(raw.state_dict())
    t, x0, eps = random_batch(7)
    x = x0 + bc(ve_sigma(t)) * eps
    y = torch.randint(0, N_CLASSES, (len(t),), generator=_gen(7))
    assert torch.equal(fresh(t, x, y), wrapped(t, x, y))
    c_in = bc(1 / (ve_sigma(t) ** 2 + 0.25).sqrt())
    assert_close(wrapped.features(t, x, y), raw.features(t, c_in * x, y), rtol=1e-15)
    copied = copy.deepcopy(wrapped)
    assert copied.net is not raw and torch.equal(copied(t, x, y), wrapped(t, x, y))


def test_ve_sample_t_is_edm_truncated_lognormal():
    """ln sigma(t) ~ N(-1.2, 1.2^2) truncated to [ln 0.002, ln 80] (EDM's P_mean, P_std). Kolmogorov-Smirnov on
    20000 draws at level 1e-3 (fixed seed: deterministic; a correct sampler fails 0.1% of seeds). Power: the
    uniform t of the other families is rejected with p < 1e-10 by the same test."""
    interp = VE()
    t = interp.sample_t(20_000, generator=_gen(8))
    assert t.shape == (20_000,) and 0 <= t.min() and t.max() <= 1
    log_sigma = (math.log(0.002) + t.double() * math.log(80.0 / 0.002)).numpy()
    lo, hi = (math.log(0.002) + 1.2) / 1.2, (math.log(80.0) + 1.2) / 1.2
    reference = stats.truncnorm(lo, hi, loc=-1.2, scale=1.2).cdf
    assert stats.kstest(log_sigma, reference).pvalue > 1e-3
    uniform = math.log(0.002) + torch.rand(20_000, generator=_gen(8), dtype=DTYPE).numpy() * math.log(80.0 / 0.002)
    assert stats.kstest(uniform, reference).pvalue < 1e-10
    assert torch.equal(interp.sample_t(5, device='cpu', generator=_gen(9)), interp.sample_t(5, None, _gen(9)))


# ------------------------------------------------------------------------------ 3. teachers from outside

class EDMStyleDenoiser(torch.nn.Module):
    """NVlabs EDM's EDMPrecond call signature net(x, sigma, class_labels) with one-hot labels: the exact
    denoiser of data N(m, v I), m + v/(v + sigma^2) (x - m), plus a label-dependent offset."""

    def __init__(self, m, v, label_dim=N_CLASSES):
        super().__init__()
        self.m, self.v = m, v
        self.offset = torch.nn.Parameter(torch.randn(label_dim, *SHAPE, generator=_gen(10), dtype=DTYPE))

    def forward(self, x, sigma, class_labels=None):
        s = sigma.reshape(-1, 1, 1, 1)
        out = self.m + self.v / (self.v + s ** 2) * (x - self.m)
        return out if class_labels is None else out + torch.einsum('bl,l...->b...', class_labels, self.offset)


def test_ve_from_denoiser_evaluates_the_edm_denoiser_at_sigma_t_without_preconditioning():
    """f(t, x, y) = D(x, sigma(t), onehot(y)): for data N(m, v I) it is the exact ve function of test_losses
    (written in t), with no c_skip/c_out on top (an EDM checkpoint is already preconditioned)."""
    m, v = 0.7, 0.25
    t, x0, eps = random_batch(11)
    x = x0 + bc(ve_sigma(t)) * eps
    y = torch.randint(0, N_CLASSES, (len(t),), generator=_gen(11))
    edm = EDMStyleDenoiser(m, v)
    f = VE().from_denoiser(edm, label_dim=N_CLASSES)
    assert isinstance(f, torch.nn.Module) and list(f.parameters()) == list(edm.parameters())
    assert_close(f(t, x), gaussian_function('ve', m, v)(t, x), rtol=1e-13)
    assert_close(f(t, x, y), gaussian_function('ve', m, v)(t, x) + edm.offset[y], rtol=1e-13)


@pytest.mark.parametrize('prediction', ['v', 'eps', 'score'])
def test_vp_from_eps_gives_the_function_of_each_prediction(prediction):
    """The exact eps function of data N(m, v I), converted, is the exact function of that prediction written
    independently in test_losses (v = (eps - sigma x)/alpha divides by alpha(1) = 6.6e-3: 1e-11)."""
    m, v = 0.7, 0.25
    t, x0, eps = random_batch(12)
    a, s = (bc(c) for c in vp_alpha_sigma(t))
    x = a * x0 + s * eps
    f = VP(prediction=prediction).from_eps(gaussian_function('vp-eps', m, v))
    case = {'v': 'vp', 'eps': 'vp-eps', 'score': 'vp-score'}[prediction]
    assert_close(f(t, x), gaussian_function(case, m, v)(t, x), rtol=1e-11)


def test_vp_from_eps_maps_time_and_keeps_the_network_as_submodule():
    """time_fn maps our t to the network's time input (DDPM: 999 t); an nn.Module eps network is a submodule."""
    class EpsNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(0.5, dtype=DTYPE))

        def forward(self, t, x, y=None):
            self.seen_t = t
            return self.scale * x

    t, x, _ = random_batch(13)
    net = EpsNet()
    f = VP(prediction='eps').from_eps(net, time_fn=lambda t: 999 * t)
    assert torch.equal(f(t, x), 0.5 * x) and torch.equal(net.seen_t, 999 * t)
    assert list(f.parameters()) == [net.scale]
    VP(prediction='eps').from_eps(net)(t, x)
    assert torch.equal(net.seen_t, t)
