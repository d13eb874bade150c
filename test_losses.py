"""Tests of losses.py against independent closed forms (RealUID, arXiv 2509.22459).

Pattern (torchcfm tests): a grid of interpolant families x data shapes, each loss checked against a separate
re-implementation written here from the paper's equations, on fixed seeds and identical explicit draws
(t, x1, eps) for both sides. Everything runs in float64 on tiny random networks, so two sides that are the
same algebra summed in a different order agree to ~1e-13 relative; the tolerances below say why they are
what they are. Networks are callables f(t, x, y) in the t=0-is-data convention; a generator G_theta is a
linear map of z so that theta-gradients can be compared.
"""
import pytest
import torch

from conftest import DTYPE, FAMILIES, SHAPES, Setup, _gen, assert_close, dot, grad, reference_path, sqnorm
from losses import (general_realuid_loss, gan_discriminator_loss, gan_generator_loss, normalized_realuid_loss,
                    normalized_realuid_generator_loss, realuid_generator_loss, realuid_loss, realum_loss, um_loss)


pytestmark = pytest.mark.usefixtures('one_thread')


# ------------------------------------------------------------------------- hand-written paper objectives

def hand_realum(f, s, x_gen, x_real, alpha, beta, y_gen=None, y_real=None):
    """Def. 2 / eq. 16, separate forwards: alpha E_gen w||f - (b/a) T||^2 + (1-a) E_real w||f - (1-b)/(1-a) T||^2
    (alpha = beta = 1: the generated-data term alone)."""
    xt, target, w = reference_path(s.name, s.t, x_gen, s.x1, s.eps)
    loss = alpha * (w * sqnorm(f(s.t, xt, y_gen) - beta / alpha * target)).mean()
    if alpha == 1:
        return loss
    xt, target, w = reference_path(s.name, s.t, x_real, s.x1, s.eps)
    return loss + (1 - alpha) * (w * sqnorm(f(s.t, xt, y_real) - (1 - beta) / (1 - alpha) * target)).mean()


def hand_eq17_generator_terms(s, x_gen, alpha, beta):
    """theta-terms of eq. 17: E_gen w [alpha ||f* - (b/a) T||^2 - alpha ||f - (b/a) T||^2]."""
    xt, target, w = reference_path(s.name, s.t, x_gen, s.x1, s.eps)
    scaled = beta / alpha * target
    return (w * alpha * (sqnorm(s.teacher(s.t, xt) - scaled) - sqnorm(s.fake(s.t, xt) - scaled))).mean()


def hand_general_split(s, x_gen, x_real, alpha, beta, gamma, param):
    """Def. 3: E_gen w[-g||d||^2 + 2a<d, f*> - 2b<d, T>] + E_real w[-(1-g)||d||^2 + 2(1-a)<d, f*> - 2(1-b)<d, T>],
    d = f* - f ('standard') or beta (f* - f) ('beta'). Returns the (generated, real) terms."""
    terms = []
    for x0, quad, lin, lin_target in ((x_gen, gamma, alpha, beta), (x_real, 1 - gamma, 1 - alpha, 1 - beta)):
        xt, target, w = reference_path(s.name, s.t, x0, s.x1, s.eps)
        f_star, f = s.teacher(s.t, xt), s.fake(s.t, xt)
        d = (f_star - f) * (beta if param == 'beta' else 1.0)
        terms.append((w * (-quad * sqnorm(d) + 2 * lin * dot(d, f_star) - 2 * lin_target * dot(d, target))).mean())
    return terms


# ------------------------------------------------------------------- 1. Lemma 3 and the generator of eq. 17

COEFFS = [(0.9, 0.95), (0.6, 0.3), (1.0, 1.0)]


@pytest.mark.parametrize('shape', SHAPES, ids=str)
@pytest.mark.parametrize('name', FAMILIES)
@pytest.mark.parametrize('alpha,beta', COEFFS)
def test_lemma3_split_form_equals_inverse_form_eq17_value_and_gradients(name, shape, alpha, beta):
    s = Setup(name, shape)
    x_gen = s.x_gen()
    split = general_realuid_loss(s.teacher, s.fake, s.interp, x_gen, s.x_real, alpha, beta, **s.draws())
    inverse = realuid_loss(s.teacher, s.fake, s.interp, x_gen, s.x_real, alpha, beta, **s.draws())
    assert_close(split, inverse)
    assert_close(grad(split, s.phi), grad(inverse, s.phi))
    assert_close(grad(split, s.theta), grad(inverse, s.theta))
    # eq. 17 is RealUM(teacher) - RealUM(fake) (Def. 2), here with separate (non-fused) forwards.
    assert_close(inverse, hand_realum(s.teacher, s, x_gen, s.x_real, alpha, beta)
                 - hand_realum(s.fake, s, x_gen, s.x_real, alpha, beta))


@pytest.mark.parametrize('shape', SHAPES, ids=str)
@pytest.mark.parametrize('name', FAMILIES)
@pytest.mark.parametrize('alpha,beta', COEFFS)
def test_generator_loss_is_the_theta_terms_of_eq17(name, shape, alpha, beta):
    s = Setup(name, shape)
    x_gen = s.x_gen()
    ours = realuid_generator_loss(s.teacher, s.fake, s.interp, x_gen, alpha, beta, **s.gen_draws())
    hand = hand_eq17_generator_terms(s, x_gen, alpha, beta)
    assert_close(ours, hand)
    assert_close(grad(ours, s.theta), grad(hand, s.theta))
    # The real-data terms of eq. 17 do not depend on theta: same theta-gradient as the full loss.
    full = realuid_loss(s.teacher, s.fake, s.interp, x_gen, s.x_real, alpha, beta, **s.draws())
    assert_close(grad(ours, s.theta), grad(full, s.theta))


# --------------------------------------------------------------- 2. alpha = beta = 1 is UID = FGM = SiD(1/2)

@pytest.mark.parametrize('shape', SHAPES, ids=str)
@pytest.mark.parametrize('name', FAMILIES)
@pytest.mark.parametrize('sid_alpha', [0.5, 1.0, 1.2])
def test_alpha_beta_one_generator_loss_is_sid_eq5(name, shape, sid_alpha):
    s = Setup(name, shape)
    x_gen = s.x_gen()
    ours = realuid_generator_loss(s.teacher, s.fake, s.interp, x_gen, 1.0, 1.0, sid_alpha=sid_alpha, **s.gen_draws())
    xt, target, w = reference_path(name, s.t, x_gen, s.x1, s.eps)
    f_star, f = s.teacher(s.t, xt), s.fake(s.t, xt)
    d = f_star - f
    sid = (w * (-2 * sid_alpha * sqnorm(d) + 2 * dot(d, f_star - target))).mean()      # eq. 5
    assert_close(ours, sid)
    assert_close(grad(ours, s.theta), grad(sid, s.theta))
    if sid_alpha == 0.5:                                    # FGM eq. 7: ||f* - f||^2 + 2<f* - f, f - T>
        fgm = (w * (sqnorm(d) + 2 * dot(d, f - target))).mean()
        assert_close(ours, fgm)
        assert_close(grad(ours, s.theta), grad(fgm, s.theta))


@pytest.mark.parametrize('shape', SHAPES, ids=str)
@pytest.mark.parametrize('name', FAMILIES)
@pytest.mark.parametrize('with_real', [False, True])
def test_realum_with_alpha_beta_one_is_um_loss_on_generated_data(name, shape, with_real):
    s = Setup(name, shape)
    x_gen = s.x_gen().detach()
    ours = realum_loss(s.fake, s.interp, x_gen, s.x_real if with_real else None, 1.0, 1.0, **s.draws())
    um = um_loss(s.fake, s.interp, x_gen, x1=s.x1, t=s.t, eps=s.eps)
    xt, target, w = reference_path(name, s.t, x_gen, s.x1, s.eps)
    assert_close(ours, um)
    assert_close(ours, (w * sqnorm(s.fake(s.t, xt) - target)).mean())


# -------------------------------------------------------------- 3. General RealUID (Def. 3), param='beta'

GENERAL = [(0.9, 0.95, None), (0.8, 0.9, 0.7), (0.6, 0.3, 0.95), (1.0, 1.0, 0.5), (1.0, 1.0, None)]


@pytest.mark.parametrize('shape', SHAPES, ids=str)
@pytest.mark.parametrize('name', FAMILIES)
@pytest.mark.parametrize('param', ['standard', 'beta'])
@pytest.mark.parametrize('alpha,beta,gamma', GENERAL)
def test_general_realuid_def3_matches_hand_split_form(name, shape, param, alpha, beta, gamma):
    s = Setup(name, shape)
    x_gen = s.x_gen()
    g = alpha if gamma is None else gamma
    ours = general_realuid_loss(s.teacher, s.fake, s.interp, x_gen, s.x_real, alpha, beta, gamma, param,
                                **s.draws())
    hand_gen, hand_real = hand_general_split(s, x_gen, s.x_real, alpha, beta, g, param)
    assert_close(ours, hand_gen + hand_real)
    assert_close(grad(ours, s.phi), grad(hand_gen + hand_real, s.phi))
    # The generator loss is the generated-data terms; the real-data terms do not depend on theta, so it has
    # the theta-gradient of the whole Def. 3 loss.
    gen_loss = realuid_generator_loss(s.teacher, s.fake, s.interp, x_gen, alpha, beta, gamma=gamma, param=param,
                                      **s.gen_draws())
    assert_close(gen_loss, hand_gen)
    assert_close(grad(gen_loss, s.theta), grad(ours, s.theta))


# ----------------------------------------------------------------- 3b. Normalized RealUID (Def. 4, App. A.4)

def hand_normalized_terms(s, x_gen, x_real, alpha, beta):
    """Def. 4 with separate forwards and an exact norm: E_gen w <n, alpha f* - beta T> and
    E_real w <n, (1-alpha) f* - (1-beta) T>, n = (f* - f) / ||f* - f||. Returns the (generated, real) terms."""
    terms = []
    for x0, a, b in ((x_gen, alpha, beta), (x_real, 1 - alpha, 1 - beta)):
        xt, target, w = reference_path(s.name, s.t, x0, s.x1, s.eps)
        f_star, f = s.teacher(s.t, xt), s.fake(s.t, xt)
        n = (f_star - f) / sqnorm(f_star - f).sqrt().view(-1, *[1] * (xt.dim() - 1))
        terms.append((w * dot(n, a * f_star - b * target)).mean())
    return terms


# alpha != beta (beta/alpha < 1 and > 1): swapping alpha and beta anywhere changes every term; (1, 1) is eq. 36
NORMALIZED = [(0.9, 0.8), (0.6, 0.95), (1.0, 1.0)]


@pytest.mark.parametrize('shape', SHAPES, ids=str)
@pytest.mark.parametrize('name', FAMILIES)
@pytest.mark.parametrize('alpha,beta', NORMALIZED)
def test_normalized_realuid_def4_and_its_generator_loss_are_the_hand_written_terms(name, shape, alpha, beta):
    # _unit's eps 1e-12 under the root changes ||f* - f|| (O(1) here) by ~1e-12 relative: within RTOL
    s = Setup(name, shape)
    x_gen = s.x_gen()
    ours = normalized_realuid_loss(s.teacher, s.fake, s.interp, x_gen, s.x_real, alpha, beta, **s.draws())
    hand_gen, hand_real = hand_normalized_terms(s, x_gen, s.x_real, alpha, beta)
    assert_close(ours, hand_gen + hand_real)
    assert_close(grad(ours, s.phi), grad(hand_gen + hand_real, s.phi))
    gen_loss = normalized_realuid_generator_loss(s.teacher, s.fake, s.interp, x_gen, alpha, beta, **s.gen_draws())
    assert_close(gen_loss, hand_gen)
    # the generated-data terms are all of Def. 4 that depends on theta: the same theta-gradient as the whole loss
    assert_close(grad(gen_loss, s.theta), grad(ours, s.theta))
    assert_close(grad(gen_loss, s.theta), grad(hand_gen, s.theta))


# ---------------------------------------------- 4. fm equals the official RealUID code up to sign and time flip

def official_fake_objective(u, s_time, x_noise, x_gen, x_data, alpha, beta):
    """Official convention (s=1 data): x_s = s x_data + (1-s) x_noise, v = x_data - x_noise; maximized by u:
    -alpha ||u(x_s^g) - (b/a) v^g||^2 - (1-alpha) ||u(x_s^d) - (1-b)/(1-a) v^d||^2, summed, / batch."""
    sb = s_time.view(-1, *[1] * (x_gen.dim() - 1))
    xs_gen, xs_data = sb * x_gen + (1 - sb) * x_noise, sb * x_data + (1 - sb) * x_noise
    obj = -alpha * ((u(s_time, xs_gen) - beta / alpha * (x_gen - x_noise)) ** 2).sum()
    obj = obj - (1 - alpha) * ((u(s_time, xs_data) - (1 - beta) / (1 - alpha) * (x_data - x_noise)) ** 2).sum()
    return obj / len(x_gen)


def official_generator_loss(u, u_star, s_time, x_noise, x_gen, alpha, beta):
    """Official generator loss (minimized): alpha ||u* - (b/a) v||^2 - alpha ||u - (b/a) v||^2, v = x_gen - x_noise."""
    sb = s_time.view(-1, *[1] * (x_gen.dim() - 1))
    xs, v = sb * x_gen + (1 - sb) * x_noise, x_gen - x_noise
    loss = alpha * ((u_star(s_time, xs) - beta / alpha * v) ** 2).sum()
    loss = loss - alpha * ((u(s_time, xs) - beta / alpha * v) ** 2).sum()
    return loss / len(x_gen)


def official_general_loss(u, u_star, s_time, x_noise, x_gen, x_data, alpha, beta, param, generator_turn):
    """Official general loss (its gamma is unused: quadratic coefficient alpha), delta = u - u* or beta (u - u*):
    -a||delta||^2 + 2b<delta, v> - 2a<delta, u*> on generated data (+ the (1-a), (1-b) real-data terms)."""
    sb = s_time.view(-1, *[1] * (x_gen.dim() - 1))
    loss = 0.0
    parts = [(x_gen, alpha, beta)] + ([] if generator_turn else [(x_data, 1 - alpha, 1 - beta)])
    for x, a, b in parts:
        xs = sb * x + (1 - sb) * x_noise
        u_star_xs = u_star(s_time, xs)
        delta = (u(s_time, xs) - u_star_xs) * (beta if param == 'beta' else 1.0)
        loss = loss - a * (delta ** 2).sum() + 2 * b * (delta * (x - x_noise)).sum() - 2 * a * (delta * u_star_xs).sum()
    return loss / len(x_gen)


@pytest.mark.parametrize('shape', SHAPES, ids=str)
@pytest.mark.parametrize('alpha,beta', [(0.9, 0.95), (0.75, 0.6)])
def test_fm_losses_equal_official_realuid_up_to_sign_and_time_flip(shape, alpha, beta):
    s = Setup('fm', shape)
    u, u_star = s.fake, s.teacher                           # official-convention velocity nets u(s, x, y)
    fake = lambda t, x, y=None: -u(1 - t, x, y)             # ours: f(t, x) = -u(1 - t, x), since T = -v
    teacher = lambda t, x, y=None: -u_star(1 - t, x, y)
    s_time, x_noise = 1 - s.t, s.x1
    x_gen = s.x_gen()

    ours = realum_loss(fake, s.interp, x_gen, s.x_real, alpha, beta, **s.draws())
    official = official_fake_objective(u, s_time, x_noise, x_gen, s.x_real, alpha, beta)
    assert_close(ours, -official)
    assert_close(grad(ours, s.phi), [-g for g in grad(official, s.phi)])

    ours = realuid_generator_loss(teacher, fake, s.interp, x_gen, alpha, beta, **s.gen_draws())
    official = official_generator_loss(u, u_star, s_time, x_noise, x_gen, alpha, beta)
    assert_close(ours, official)
    assert_close(grad(ours, s.theta), grad(official, s.theta))

    for param in ('standard', 'beta'):                      # official general loss, at gamma = alpha
        ours = general_realuid_loss(teacher, fake, s.interp, x_gen, s.x_real, alpha, beta, None, param, **s.draws())
        official = official_general_loss(u, u_star, s_time, x_noise, x_gen, s.x_real, alpha, beta, param, False)
        assert_close(ours, official)
        assert_close(grad(ours, s.phi), grad(official, s.phi))
        ours = realuid_generator_loss(teacher, fake, s.interp, x_gen, alpha, beta, param=param, **s.gen_draws())
        official = official_general_loss(u, u_star, s_time, x_noise, x_gen, None, alpha, beta, param, True)
        assert_close(ours, official)
        assert_close(grad(ours, s.theta), grad(official, s.theta))


# --------------------------------------------------------------------------------- 5. coefficient checks

def _all_losses(s, alpha, beta, gamma=None, drop_real=False, reduction='mean', param='standard', draws=False):
    """{name: loss()} of every loss on s; draws: with s's explicit (t, x1, eps), else drawn inside."""
    x_gen, x_real = s.x_gen().detach(), (None if drop_real else s.x_real)
    two, one = (s.draws(), s.gen_draws()) if draws else ({}, {})
    return {
        'realum': lambda: realum_loss(s.fake, s.interp, x_gen, x_real, alpha, beta, reduction=reduction, **two),
        'realuid': lambda: realuid_loss(s.teacher, s.fake, s.interp, x_gen, x_real, alpha, beta, reduction=reduction,
                                        **two),
        'general': lambda: general_realuid_loss(s.teacher, s.fake, s.interp, x_gen, x_real, alpha, beta, gamma, param,
                                                reduction=reduction, **two),
        'generator': lambda: realuid_generator_loss(s.teacher, s.fake, s.interp, x_gen, alpha, beta, gamma=gamma,
                                                    param=param, reduction=reduction, **one),
        'normalized': lambda: normalized_realuid_loss(s.teacher, s.fake, s.interp, x_gen, x_real, alpha, beta,
                                                      reduction=reduction, **two),
        'normalized_generator': lambda: normalized_realuid_generator_loss(s.teacher, s.fake, s.interp, x_gen, alpha,
                                                                          beta, reduction=reduction, **one),
    }


INVALID = [  # (alpha, beta, gamma, message fragment), rejected by every loss that takes these coefficients
    (0.0, 0.5, None, 'alpha must be in'), (-0.1, 0.5, None, 'alpha must be in'), (1.2, 1.0, None, 'alpha must be in'),
    (0.5, 0.0, None, 'beta must be in'), (0.5, 1.5, None, 'beta must be in'),
    (1.0, 0.9, None, 'alpha=1 requires beta=1'),
]
INVALID_GAMMA = [(0.9, 0.95, 0.0, 'gamma must be in'), (0.9, 0.95, 1.1, 'gamma must be in'),
                 (0.9, 0.95, 1.0, 'gamma=1 requires alpha=beta=1'), (1.0, 1.0, -0.5, 'gamma must be in')]


@pytest.mark.parametrize('alpha,beta,gamma,message', INVALID)
def test_invalid_alpha_beta_raise_value_error_with_clear_message(alpha, beta, gamma, message):
    s = Setup('fm', (2,))
    for which, loss in _all_losses(s, alpha, beta, gamma).items():
        with pytest.raises(ValueError, match=message):
            loss()


@pytest.mark.parametrize('alpha,beta,gamma,message', INVALID_GAMMA)
def test_invalid_gamma_raises_value_error_with_clear_message(alpha, beta, gamma, message):
    s = Setup('fm', (2,))
    losses = _all_losses(s, alpha, beta, gamma)
    for which in ('general', 'generator'):
        with pytest.raises(ValueError, match=message):
            losses[which]()


def test_real_data_required_when_alpha_below_one_or_gamma_below_one():
    s = Setup('fm', (2,))
    losses = _all_losses(s, 0.9, 0.95, drop_real=True)
    for which in ('realum', 'realuid', 'general', 'normalized'):
        with pytest.raises(ValueError, match='needs a real-data batch x_real'):
            losses[which]()
    with pytest.raises(ValueError, match='needs a real-data batch x_real'):   # Def. 3: -(1-gamma)||d||^2 on real data
        _all_losses(s, 1.0, 1.0, gamma=0.5, drop_real=True)['general']()


def test_bad_reduction_and_param_strings_raise_value_error():
    s = Setup('fm', (2,))
    for which, loss in _all_losses(s, 0.9, 0.95, reduction='sum').items():
        with pytest.raises(ValueError, match="reduction must be 'mean' or 'none'"):
            loss()
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'none'"):
        um_loss(s.fake, s.interp, s.x_real, reduction='sum')
    for which in ('general', 'generator'):
        with pytest.raises(ValueError, match="param must be 'standard' or 'beta'"):
            _all_losses(s, 0.9, 0.95, param='alpha')[which]()


@pytest.mark.parametrize('alpha,beta,gamma', [(1.0, 1.0, None), (1.0, 1.0, 1.0), (0.5, 1.0, None), (1e-3, 1e-3, 1e-3)])
def test_valid_edge_coefficients_are_accepted_and_give_the_hand_written_values(alpha, beta, gamma):
    s = Setup('fm', (2,))
    data_free = (alpha, beta) == (1.0, 1.0) and gamma in (None, 1.0)     # UID needs no x_real
    x_gen = s.x_gen().detach()
    # the hand forms see x_real always: at these coefficients its terms have weight 0 exactly when data_free
    general = hand_general_split(s, x_gen, s.x_real, alpha, beta, alpha if gamma is None else gamma, 'standard')
    normalized = hand_normalized_terms(s, x_gen, s.x_real, alpha, beta)
    expected = dict(realum=hand_realum(s.fake, s, x_gen, s.x_real, alpha, beta),
                    realuid=hand_realum(s.teacher, s, x_gen, s.x_real, alpha, beta)
                    - hand_realum(s.fake, s, x_gen, s.x_real, alpha, beta),
                    general=sum(general), generator=general[0], normalized=sum(normalized),
                    normalized_generator=normalized[0])
    for which, loss in _all_losses(s, alpha, beta, gamma, drop_real=data_free, draws=True).items():
        assert_close(loss(), expected[which])


# ---------------------------------------------------------------------------------- 6. reduction='none'

@pytest.mark.parametrize('name', FAMILIES)
@pytest.mark.parametrize('batch_real', [6, 4])
@pytest.mark.parametrize('alpha,beta', [(0.8, 0.9), (1.0, 1.0)])
def test_reduction_none_is_per_sample_and_averages_to_mean(name, batch_real, alpha, beta):
    s = Setup(name, (3, 8, 8), batch=6, batch_real=batch_real)
    gamma = 0.7 if alpha < 1 else None
    mean_losses = _all_losses(s, alpha, beta, gamma)
    none_losses = _all_losses(s, alpha, beta, gamma, reduction='none')
    for which in mean_losses:
        torch.manual_seed(0)                                # unequal batches draw the real path inside the loss
        mean = mean_losses[which]()
        torch.manual_seed(0)
        per_sample = none_losses[which]()
        two_batches = alpha < 1 and which in ('realum', 'realuid', 'general', 'normalized')
        assert per_sample.shape == (6 + batch_real if two_batches else 6,), which
        assert_close(per_sample.mean(), mean)
    torch.manual_seed(0)
    mean = um_loss(s.fake, s.interp, s.x_real)
    torch.manual_seed(0)
    assert_close(um_loss(s.fake, s.interp, s.x_real, reduction='none').mean(), mean)


def test_reduction_none_entries_are_each_samples_term_rescaled_by_its_batch_share():
    """Entry i of the generated part is alpha (n / B_gen) w ||f(x_t^i) - (b/a) T^i||^2, n = B_gen + B_real."""
    s = Setup('bridge', (2,))
    x_gen, alpha, beta, n = s.x_gen().detach(), 0.8, 0.9, 2 * len(s.z)
    per_sample = realum_loss(s.fake, s.interp, x_gen, s.x_real, alpha, beta, reduction='none', **s.draws())
    parts = []
    for x0, coef, scale in ((x_gen, alpha, beta / alpha), (s.x_real, 1 - alpha, (1 - beta) / (1 - alpha))):
        xt, target, w = reference_path('bridge', s.t, x0, s.x1, s.eps)
        parts.append(coef * n / len(x0) * w * sqnorm(s.fake(s.t, xt) - scale * target))
    assert_close(per_sample, torch.cat(parts))


# ------------------------------------------------------------- 7. shared draws, one fused forward, labels

class CountingNet(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.calls, self.batch_sizes = net, 0, []

    def forward(self, t, x, y=None):
        self.calls += 1
        self.batch_sizes.append(len(x))
        return self.net(t, x, y)


@pytest.mark.parametrize('shape', SHAPES, ids=str)
@pytest.mark.parametrize('name', FAMILIES)
def test_realum_shares_draws_and_uses_one_fused_forward_with_concatenated_labels(name, shape):
    s = Setup(name, shape)
    x_gen, alpha, beta = s.x_gen().detach(), 0.8, 0.9
    fake = CountingNet(s.fake)
    ours = realum_loss(fake, s.interp, x_gen, s.x_real, alpha, beta, y_gen=s.y_gen, y_real=s.y_real, **s.draws())
    assert fake.calls == 1 and fake.batch_sizes == [2 * len(x_gen)]
    # Same (t, x1, eps) for both batches and each batch with its own labels, separate forwards.
    assert_close(ours, hand_realum(s.fake, s, x_gen, s.x_real, alpha, beta, s.y_gen, s.y_real))
    # The net depends on labels, so swapped labels would be caught.
    swapped = hand_realum(s.fake, s, x_gen, s.x_real, alpha, beta, s.y_real, s.y_gen)
    assert (swapped - ours).abs() > 1e-6 * ours.abs()

    teacher, fake = CountingNet(s.teacher), CountingNet(s.fake)
    for loss in (realuid_loss, general_realuid_loss, normalized_realuid_loss):
        teacher.calls = fake.calls = 0
        loss(teacher, fake, s.interp, x_gen, s.x_real, alpha, beta, y_gen=s.y_gen, y_real=s.y_real, **s.draws())
        assert (teacher.calls, fake.calls) == (1, 1), loss.__name__


def test_unequal_batches_still_use_one_fused_forward():
    s = Setup('fm', (2,), batch=6, batch_real=4)
    fake = CountingNet(s.fake)
    realum_loss(fake, s.interp, s.x_gen().detach(), s.x_real, 0.8, 0.9, y_gen=s.y_gen, y_real=s.y_real)
    assert fake.calls == 1 and fake.batch_sizes == [10]


def test_labels_for_only_one_batch_are_rejected():
    s = Setup('fm', (2,))
    with pytest.raises(ValueError, match='labels for both'):
        realum_loss(s.fake, s.interp, s.x_gen().detach(), s.x_real, 0.8, 0.9, y_gen=s.y_gen)


# ------------------------------------------------------------------------------------ 8. GAN baseline

def test_gan_losses_equal_eq8_written_with_sigmoid_and_log():
    g = _gen(0)
    logits_real, logits_gen = 3 * torch.randn(2, 16, generator=g, dtype=DTYPE)
    disc = -(torch.log(torch.sigmoid(logits_real)).mean() + torch.log(1 - torch.sigmoid(logits_gen)).mean())
    gen = -torch.log(torch.sigmoid(logits_gen)).mean()
    # softplus vs log(sigmoid): equal in exact arithmetic; |logits| < ~12 keeps 1 - sigmoid well conditioned.
    assert_close(gan_discriminator_loss(logits_real, logits_gen), disc, rtol=1e-12)
    assert_close(gan_generator_loss(logits_gen), gen, rtol=1e-12)
