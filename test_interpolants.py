"""Conditioning of the interpolants (interpolants.py) against independent closed forms.

vp's v-prediction (Salimans & Ho 2022), ve's EDM preconditioning and training-time distribution (Karras et al.
2022, Table 1), the precondition() hook, the one-step generator's data prediction at t=1, and the converters
for teachers from outside (VE.from_denoiser, VP.from_eps), on networks built here; and the paths, targets, weights
and samplers of every family (vp in all three predictions) against hand-written ones (conftest.reference_path). All in
float64: identities of a few flops agree to ~1e-15 relative; tolerances say where a division loses more.
"""
import copy
import math

import pytest
import torch
from scipy import stats

from interpolants import VE, VP, make_interpolant
from losses import um_loss
from conftest import (CASES, DTYPE, N_CLASSES, SHAPES, Setup, TinyNet, _gen, assert_close, make_case, reference_path,
                      ve_sigma, vp_alpha_sigma)

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


@pytest.mark.parametrize('name', ['fm', 'vp', 've', 'bridge', 'si'])
def test_t_power_feeds_every_familys_time_map_u_to_the_p(name):
    """train.py --t-power: each family's sample_t maps u^p, not u (ve: its truncated log-normal's CDF at u^p), drawn
    from the same stream; p = 1 is the plain U[0, 1] draw, and p = 0.5 moves the times to the source side."""
    plain, powered, reference = make_interpolant(name), make_interpolant(name), make_interpolant(name)
    powered.t_power = 0.5
    reference.uniform = lambda n, device=None, generator=None: torch.rand(n, generator=generator).sqrt()
    assert torch.equal(plain.uniform(1000, generator=_gen(3)), torch.rand(1000, generator=_gen(3)))
    t_plain, t_powered = plain.sample_t(1000, generator=_gen(3)), powered.sample_t(1000, generator=_gen(3))
    assert torch.equal(t_powered, reference.sample_t(1000, generator=_gen(3)))
    assert (t_powered >= t_plain).all() and t_powered.mean() > t_plain.mean() + 0.05


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


# ----------------------------------------------------------------- paths, targets, weights and samplers of every family

@pytest.mark.parametrize('shape', SHAPES, ids=str)
@pytest.mark.parametrize('name', CASES)
def test_sample_returns_the_hand_written_path_and_target(name, shape):
    s = Setup(name, shape)
    x0 = s.x_real
    t, xt, target = s.interp.sample(x0, s.x1, s.t, s.eps)
    ref_xt, ref_target, ref_w = reference_path(name, s.t, x0, s.x1, s.eps)
    assert torch.equal(t, s.t)
    assert_close(xt, ref_xt, rtol=1e-14)                    # a few flops per entry: agreement to rounding
    assert_close(target, ref_target, rtol=1e-12)            # bridge divides by t >= 1e-3, vp-score by sigma >= 0.01
    assert_close(s.interp.weight(s.t), ref_w, rtol=1e-14)


@pytest.mark.parametrize('shape', SHAPES, ids=str)
@pytest.mark.parametrize('name', CASES)
def test_to_x0_inverts_the_path(name, shape):
    """fm/bridge: x_t - t T = x0 exactly for the conditional target; vp: alpha x_t - sigma v, or
    (x_t - sigma eps)/alpha; ve: out = x0; si: x_t - t T = x0 + t^2 eps (the Euler data estimate keeps the
    gamma(t) eps part; exact where E[T|x_t] is taken at t=1, gamma(1)=0)."""
    s = Setup(name, shape)
    x0 = s.x_real
    t, xt, target = s.interp.sample(x0, s.x1, s.t, s.eps)
    expected = x0 + s.t.view(-1, *[1] * len(shape)) ** 2 * s.eps if name == 'si' else x0
    # vp-eps/score divide by alpha(t) >= 6.6e-3, which amplifies the rounding of x_t by 1/alpha.
    assert_close(s.interp.to_x0(t, xt, target), expected, rtol=1e-11)


def test_vp_score_prediction_is_the_eps_loss_rescaled():
    """vp 'score': target -x1/sigma, weight sigma^2, so sigma^2 ||s + x1/sigma||^2 = ||-sigma s - x1||^2."""
    eps_interp, score_interp = make_interpolant('vp', prediction='eps'), make_interpolant('vp', prediction='score')
    s = Setup('vp-eps', (3, 8, 8))
    sigma = lambda t: eps_interp.coeffs(t)[1].view(-1, 1, 1, 1)
    score_net = lambda t, x, y=None: -s.fake(t, x, y) / sigma(t)
    assert_close(um_loss(score_net, score_interp, s.x_real, x1=s.x1, t=s.t, eps=s.eps),
                 um_loss(s.fake, eps_interp, s.x_real, x1=s.x1, t=s.t, eps=s.eps))
    _, xt, target = score_interp.sample(s.x_real, s.x1, s.t, s.eps)
    assert_close(score_interp.to_x0(s.t, xt, target), s.x_real, rtol=1e-11)
    with pytest.raises(ValueError, match="'v', 'eps' or 'score'"):
        make_interpolant('vp', prediction='x0')


def test_vp_v_prediction_loss_is_the_eps_loss_over_alpha_squared():
    """v - v* = alpha (eps - eps*) - sigma (x0_hat - x0) = (eps - eps*) / alpha, since x0_hat - x0 =
    -(sigma / alpha)(eps - eps*): per sample, ||v - v*||^2 = ||eps - eps*||^2 / alpha^2 at equal data predictions."""
    s = Setup('vp', (3, 8, 8))
    v_interp, eps_interp = make_interpolant('vp'), make_interpolant('vp', prediction='eps')
    a, sig = vp_alpha_sigma(s.t.view(-1, 1, 1, 1))
    v_net = lambda t, x, y=None: (s.fake(t, x, y) - sig * x) / a     # the v of the same data prediction
    per_v = um_loss(v_net, v_interp, s.x_real, x1=s.x1, t=s.t, eps=s.eps, reduction='none')
    per_eps = um_loss(s.fake, eps_interp, s.x_real, x1=s.x1, t=s.t, eps=s.eps, reduction='none')
    assert_close(per_v * a.flatten() ** 2, per_eps, rtol=1e-10)      # division by alpha >= 6.6e-3


def point_mass_function(name, x_star):
    """f(t, x) = E[T | x_t = x] when the data is the single point x_star (hand-written per family)."""
    def f(t, x, y=None):
        tb = t.view(-1, *[1] * (x.dim() - 1))
        if name in ('fm', 'bridge'):                        # x_t - x_star = t (x1 - x_star) (+ bridge noise)
            return (x - x_star) / tb
        if name.startswith('vp'):                           # eps = (x - alpha x_star) / sigma
            a, s = vp_alpha_sigma(tb)
            eps = (x - a * x_star) / s
            return {'vp': a * eps - s * x_star, 'vp-eps': eps, 'vp-score': -eps / s}[name]
        if name == 've':                                    # the denoiser is the point itself
            return x_star.expand_as(x)
        raise KeyError(name)
    return f


@pytest.mark.parametrize('steps', [1, 3, 20])
@pytest.mark.parametrize('name', ['fm', 'vp', 'vp-eps', 'vp-score', 've', 'bridge'])
def test_sampler_with_exact_point_mass_function_returns_the_point(name, steps):
    """fm: straight lines, Euler is exact for any N; vp/ve/bridge: the last step's data prediction of the
    exact function is the point (bridge: the last step adds no noise)."""
    g = _gen(1)
    x_star = torch.randn(1, 3, 8, 8, generator=g, dtype=DTYPE)
    interp = make_case(name)
    x1 = interp.prior((5, 3, 8, 8), generator=g).to(DTYPE)
    out = interp.generate(point_mass_function(name, x_star), x1, steps=steps, generator=g)
    # Rounding only; vp-eps/score's last-step division by alpha(1) = 6.6e-3 (steps=1) amplifies it ~150x.
    assert_close(out, x_star.expand_as(out), rtol=1e-12)


def gaussian_moments(name, t, m, v):
    """Per-coordinate (E[x_t], Var(x_t), Cov(T, x_t), E[T]) for data N(m, v I) and x1, eps ~ N(0, I)."""
    if name == 'fm':                                        # x_t = (1-t) x0 + t x1, T = x1 - x0
        return (1 - t) * m, (1 - t) ** 2 * v + t ** 2, t - (1 - t) * v, -m
    if name == 'si':                                        # + g eps, g = t(1-t); T += g' eps, g' = 1 - 2t
        g, dg = t * (1 - t), 1 - 2 * t
        return (1 - t) * m, (1 - t) ** 2 * v + t ** 2 + g ** 2, t - (1 - t) * v + g * dg, -m
    if name.startswith('vp'):                               # x_t = a x0 + s x1
        a, s = vp_alpha_sigma(t)
        mean, var = a * m, a ** 2 * v + s ** 2
        if name == 'vp':                                    # T = a x1 - s x0
            return mean, var, a * s * (1 - v), -s * m
        if name == 'vp-eps':                                # T = x1
            return mean, var, s, 0.0
        if name == 'vp-score':                              # T = -x1 / s
            return mean, var, -torch.ones_like(t), 0.0
    if name == 've':                                        # x_t = x0 + s x1, T = x0
        s = ve_sigma(t)
        return m, v + s ** 2, v, m
    if name == 'bridge':                                    # + sqrt(t(1-t)) eps; T = x1 - x0 + sqrt((1-t)/t) eps
        return (1 - t) * m, (1 - t) ** 2 * v + t ** 2 + t * (1 - t), 1 - (1 - t) * v, -m
    raise KeyError(name)


def gaussian_function(name, m, v):
    """f(t, x) = E[T | x_t = x]: T and x_t are jointly Gaussian, E[T | x] = E[T] + Cov / Var (x - E[x_t])."""
    def f(t, x, y=None):
        mean, var, cov, mean_target = gaussian_moments(name, t.view(-1, *[1] * (x.dim() - 1)), m, v)
        return mean_target + cov / var * (x - mean)
    return f


@pytest.mark.parametrize('name', ['fm', 'vp', 'vp-eps', 'vp-score', 've', 'si'])
def test_ode_sampler_transports_gaussian_prior_to_gaussian_data(name):
    """For data N(m, v I) the probability-flow ODE is linear, x_t = E[x_t] + std(x_t) xi, and ends at
    m + sqrt(v) xi with xi = (x(1) - E[x_1]) / std(x_1). Unlike the point-mass test (where the last-step data
    prediction hides the drift) this checks the sign and scale of every drift: Euler is first order, so the
    error must halve when the step count doubles (observed ratios 1.96-2.0; a wrong drift does not converge).
    Observed max errors at 400 steps: 3e-3 (vp) to 0.12 (ve, whose log-sigma time makes the ODE stiff).
    The three vp predictions are the same ODE (same data predictions), so they agree to rounding."""
    g = _gen(2)
    m, v = 0.7, 0.25
    interp = make_case(name)
    x1 = interp.prior((256, 2), generator=g).to(DTYPE)
    mean1, var1, _, _ = gaussian_moments(name, torch.ones(1, dtype=DTYPE), m, v)
    expected = m + math.sqrt(v) * (x1 - mean1) / var1.sqrt()
    errors = [(interp.generate(gaussian_function(name, m, v), x1, steps=n) - expected).abs().max().item()
              for n in (200, 400)]
    assert errors[1] < 0.5 * math.sqrt(v) and 1.8 < errors[0] / errors[1] < 2.2, errors


def test_bridge_sde_sampler_recovers_gaussian_data_statistics():
    """Reverse bridge SDE (Euler-Maruyama) with the exact drift for data N(m, v) and x1 ~ N(0, 1) independent:
    the final samples have mean m and variance v. 40000 draws give standard errors 0.0025 (mean) and 0.0018
    (variance); the Euler bias of the variance at 200 steps is ~-0.001 (-0.012 at 50): tolerances are ~4 SE
    plus bias. Dropping the noise term would give variance 0.034, so the noise scale is checked too."""
    g = _gen(4)
    m, v = 0.7, 0.25
    x1 = torch.randn(20000, 2, generator=g, dtype=DTYPE)
    out = make_interpolant('bridge').generate(gaussian_function('bridge', m, v), x1, steps=200, generator=g)
    assert abs(out.mean().item() - m) < 0.01 and abs(out.var().item() - v) < 0.01, (out.mean(), out.var())


def test_bridge_sde_with_exact_point_mass_drift_returns_the_point_despite_noise():
    g = _gen(3)
    x_star = torch.randn(1, 2, generator=g, dtype=DTYPE)
    interp = make_interpolant('bridge')
    x1 = torch.randn(64, 2, generator=g, dtype=DTYPE)       # a coupled corrupted sample
    out = interp.generate(point_mass_function('bridge', x_star), x1, steps=50, generator=g)
    assert_close(out, x_star.expand_as(out), rtol=1e-12)


def test_make_interpolant_rejects_unknown_names_listing_the_choices():
    with pytest.raises(ValueError, match='fm, vp, ve, bridge, si'):
        make_interpolant('nope')
