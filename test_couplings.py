"""couplings.py: each corruption on hand-made inputs, the exact toy posteriors against sampling (importance-weighted
samples of data.toy_data's mixture, and pairs drawn by corrupt), and the restoration metrics on cases with known
answers, down to the floor that exact posterior samples score on the toy."""
import functools
import inspect
import math

import pytest
import torch
import torch.nn.functional as F

import couplings
import data
import fid
from couplings import COUPLINGS, make_coupling

pytestmark = pytest.mark.usefixtures('one_thread')
DTYPE = torch.float64


def randn(shape, seed):                             # the draw a coupling makes from a generator of this seed
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def one_line_error(call, *needles):
    with pytest.raises(ValueError) as error:
        call()
    message = str(error.value)
    assert '\n' not in message and all(needle in message for needle in needles), message


# ---------------------------------------------------------------------------------------------------- registry

def test_the_couplings_and_families_of_the_design():
    assert set(COUPLINGS) == {'sr2', 'sr4', 'inpaint-center', 'noise0.5', 'toy-noise0.5', 'toy-proj0.1'}
    assert couplings.FAMILIES == ('fm', 'bridge', 'si')
    assert {name for name, c in COUPLINGS.items() if c.toy} == {'toy-noise0.5', 'toy-proj0.1'}
    assert all(make_coupling(name).name == name for name in COUPLINGS)
    one_line_error(lambda: make_coupling('sr3'), "'sr3'", *COUPLINGS)
    # the source noise s of each coupling (train.py's default), measured on the toy (README): 1 on toy-proj0.1
    assert {name: c.source_noise for name, c in COUPLINGS.items()} == dict.fromkeys(COUPLINGS, 0.5) | {'toy-proj0.1': 1}


def test_toy_constants_are_data_toy_data_mixture():
    defaults = inspect.signature(data.toy_data).parameters
    assert (couplings.TOY_MODES, couplings.TOY_RADIUS, couplings.TOY_STD) == tuple(
        defaults[name].default for name in ('modes', 'radius', 'std'))
    means, labels = data.toy_data(8, seed=0, std=0.0, balanced=True)        # label k in turn, at its mode's mean
    assert labels.tolist() == list(range(8))
    torch.testing.assert_close(couplings.toy_means(), means, rtol=0, atol=1e-6)   # toy_data's float32 cos and sin


# ---------------------------------------------------------------------------------------------------- corruptions

def test_super_resolution_is_block_means_nearest_upsampled():
    x0 = torch.arange(16, dtype=DTYPE).view(1, 1, 4, 4)     # rows 0 1 2 3 / 4 5 6 7 / 8 9 10 11 / 12 13 14 15
    sr2 = torch.tensor([[2.5, 2.5, 4.5, 4.5], [2.5, 2.5, 4.5, 4.5], [10.5, 10.5, 12.5, 12.5], [10.5, 10.5, 12.5, 12.5]],
                       dtype=DTYPE)
    assert torch.equal(make_coupling('sr2').corrupt(x0, gen(0))[0, 0], sr2)
    assert torch.equal(make_coupling('sr4').corrupt(x0, gen(0)), torch.full_like(x0, 7.5))


@pytest.mark.parametrize('name', ['sr2', 'sr4'])
def test_super_resolution_is_a_projection_that_the_clean_image_satisfies(name):
    coupling, x0 = make_coupling(name), randn((2, 3, 8, 8), 0)
    c = coupling.corrupt(x0, gen(1))
    assert torch.equal(coupling.corrupt(x0, gen(2)), c)                      # no noise
    # A(A(x)) = A(x), up to float64 rounding of a mean of equal numbers (1 ulp observed for sr4)
    torch.testing.assert_close(coupling.degrade(c), c, rtol=0, atol=1e-15)
    assert couplings.consistency(coupling, x0, c).max() < 1e-15          # the clean image explains c
    assert couplings.consistency(coupling, c + 0.1, c).tolist() == pytest.approx([0.1, 0.1], rel=1e-12)


@pytest.mark.parametrize('name, factor', [('sr2', 2), ('sr4', 4)])
def test_lift_of_the_low_resolution_image_is_the_corruption(name, factor):
    coupling, x0 = make_coupling(name), randn((2, 3, 16, 8), 0)
    assert coupling.input_shape((3, 16, 8)) == (3, 16 // factor, 8 // factor)
    assert torch.equal(coupling.lift(F.avg_pool2d(x0, factor), (3, 16, 8)), coupling.corrupt(x0))
    one_line_error(lambda: coupling.lift(x0, (3, 16, 8)), f'(N, 3, {16 // factor}, {8 // factor})', '(2, 3, 16, 8)')
    one_line_error(lambda: coupling.input_shape((3, 15, 15)), f'divisible by {factor}', '15x15')


def test_lift_refuses_wrong_shapes_and_types_in_one_line():
    toy, proj = make_coupling('toy-noise0.5'), make_coupling('toy-proj0.1')
    one_line_error(lambda: toy.lift(torch.zeros(5, 3), (2,)), '(N, 2)', '(5, 3)')
    one_line_error(lambda: toy.lift(torch.zeros(2), (2,)), '(N, 2)', '(2,)')
    one_line_error(lambda: make_coupling('inpaint-center').lift(torch.zeros(4, 1, 8, 8), (3, 8, 8)),
                   '(N, 3, 8, 8)', '(4, 1, 8, 8)')
    one_line_error(lambda: toy.lift(torch.zeros(5, 2, dtype=torch.int64), (2,)), 'torch.int64')
    one_line_error(lambda: proj.lift(torch.tensor([[0.5, 0.0], [0.5, 1.0]]), (2,)), '[1]')
    c = torch.tensor([[0.5, -1.0], [2.0, 0.3]])
    assert torch.equal(toy.lift(c, (2,)), c) and torch.equal(proj.lift(proj.degrade(c), (2,)), proj.degrade(c))


def test_inpaint_center_keeps_the_outside_and_fills_the_half_box_with_unit_noise():
    coupling = make_coupling('inpaint-center')
    x0 = randn((2, 3, 8, 12), 0)
    hole = torch.zeros(8, 12, dtype=torch.bool)
    hole[2:6, 3:9] = True                                   # rows H/4 .. 3H/4, columns W/4 .. 3W/4 (I2SB's box)
    c = coupling.corrupt(x0, gen(1))
    assert torch.equal(c[..., ~hole], x0[..., ~hole])
    assert torch.equal(c[..., hole], randn(x0.shape, 1)[..., hole])    # N(0, 1), not scaled, not x0
    assert torch.equal(coupling.degrade(c), coupling.degrade(x0))        # the hole is all the operator drops
    assert torch.equal(coupling.degrade(coupling.degrade(c)), coupling.degrade(c))
    assert torch.equal(couplings.consistency(coupling, x0, c), torch.zeros(2))
    # a wrong value everywhere is seen on the 3/4 of the pixels outside the box, rms sqrt(3/4)
    assert couplings.consistency(coupling, x0 + 1, c).tolist() == pytest.approx([0.75 ** 0.5] * 2, rel=1e-12)
    assert torch.equal(couplings.consistency(coupling, torch.where(hole, x0 + 5, x0), c), torch.zeros(2))


@pytest.mark.parametrize('name, shape', [('noise0.5', (2, 3, 4, 4)), ('toy-noise0.5', (5, 2))])
def test_noise_couplings_add_half_unit_noise(name, shape):
    coupling, x0 = make_coupling(name), randn(shape, 0)
    assert torch.equal(coupling.corrupt(x0, gen(1)), x0 + 0.5 * randn(shape, 1))
    assert torch.equal(coupling.degrade(x0), x0)
    assert coupling.input_shape(shape[1:]) == shape[1:]


def test_toy_proj_sees_only_the_first_coordinate_with_noise_of_std_0_1():
    coupling, x0 = make_coupling('toy-proj0.1'), randn((5, 2), 0)
    c = coupling.corrupt(x0, gen(1))
    assert torch.equal(c[:, 0], x0[:, 0] + 0.1 * randn((5, 2), 1)[:, 0])
    assert torch.equal(c[:, 1], torch.zeros(5))
    assert torch.equal(coupling.degrade(x0), torch.stack([x0[:, 0], torch.zeros(5)], 1))
    assert torch.equal(coupling.degrade(c), c)


def test_corruptions_refuse_the_other_kind_of_data():
    for name in ['sr2', 'inpaint-center', 'noise0.5']:
        one_line_error(lambda: make_coupling(name).corrupt(torch.zeros(4, 2)), 'images (C, H, W)', '(2,)')
        one_line_error(lambda: make_coupling(name).input_shape((2,)), 'images (C, H, W)', '(2,)')
    for name in ['toy-noise0.5', 'toy-proj0.1']:
        one_line_error(lambda: make_coupling(name).corrupt(torch.zeros(4, 3, 8, 8)), 'toy points (2,)', '(3, 8, 8)')
        one_line_error(lambda: make_coupling(name).lift(torch.zeros(4, 3, 8, 8), (3, 8, 8)), 'toy', '(3, 8, 8)')


def test_source_is_c_plus_s_times_fresh_unit_noise():
    c = randn((3, 2), 0)
    assert torch.equal(couplings.source(c, 0.3, gen(1)), c + 0.3 * randn((3, 2), 1))


@pytest.mark.parametrize('chunk', [500, 4, 3])
def test_restore_draws_k_sources_per_input_in_rows_i_k_chunk_by_chunk_from_one_stream(chunk):
    c, done, g = randn((5, 2), 0), [], gen(1)
    x = couplings.restore(lambda x1, cc: torch.cat([x1, cc], 1), c, 3, 0.3, gen(1), chunk=chunk, progress=done.append)
    assert x.shape == (5, 3, 4) and done == [min(i, 15) for i in range(chunk, 15 + chunk, chunk)]
    assert torch.equal(x[..., 2:], c[:, None].expand(5, 3, 2).float())   # [i, j] restores input i
    cs = c.repeat_interleave(3, 0)
    expected = torch.cat([couplings.source(cs[i:i + chunk], 0.3, g) for i in range(0, 15, chunk)])
    assert torch.equal(x[..., :2].flatten(0, 1), expected.float())


# ---------------------------------------------------------------------------------------------------- toy posterior

INFLATE = 2.0


@functools.cache
def proposal(per_mode=200_000, seed=7):
    """data.toy_data's mixture with the std of each mode inflated -> (x0, mode, log prior / proposal + const)."""
    x, y = data.toy_data(8 * per_mode, seed, std=couplings.TOY_STD * INFLATE, balanced=True)
    means = data.toy_data(8, 0, std=0.0, balanced=True)[0].to(DTYPE)
    x = x.to(DTYPE)
    return x, y, -0.5 * (x - means[y]).square().sum(1) * (1 - 1 / INFLATE ** 2) / couplings.TOY_STD ** 2


def importance_posterior(coupling, c):
    """p(x0 | c) for one c (2,) from data.toy_data's own samples, without the closed form: x0 drawn per mode with
    its std inflated (so that c in a mode's tail still gets samples), weighted by prior / proposal times the
    likelihood N(c_d; x0_d, std^2) of the seen coordinates -> (weights (K,), means (K, 2), stds (K, 2), ess (K,))."""
    x, y, log_ratio = proposal()
    seen = torch.tensor(coupling.seen, dtype=DTYPE)
    log_w = log_ratio - 0.5 * (seen * (c - x).square()).sum(1) / coupling.std ** 2   # constants: the same for all
    w = (log_w - log_w.max()).exp()
    mass = torch.zeros(8, dtype=DTYPE).index_add_(0, y, w)
    mean = torch.zeros(8, 2, dtype=DTYPE).index_add_(0, y, w[:, None] * x) / mass[:, None]
    var = torch.zeros(8, 2, dtype=DTYPE).index_add_(0, y, w[:, None] * (x - mean[y]).square()) / mass[:, None]
    ess = mass ** 2 / torch.zeros(8, dtype=DTYPE).index_add_(0, y, w ** 2)
    return mass / mass.sum(), mean, var.sqrt(), ess


TOY_CASES = [('toy-noise0.5', (0.0, 0.0)),                 # all 8 modes, 1/8 each
             ('toy-noise0.5', (1.8478, 0.7654)),           # between modes 0 and 1: 1/2 each
             ('toy-noise0.5', (1.2, -0.5)),                # mostly modes 7 and 0, a little 1 and 6
             ('toy-noise0.5', (3.0, 0.3)),                 # outside the circle: mode 0, a little 1
             ('toy-proj0.1', (0.0, 0.0)),                  # modes 2 and 6, mirror images
             ('toy-proj0.1', (0.7, 0.0)),                  # modes 1, 2, 6, 7: 0.21, 0.29, 0.29, 0.21
             ('toy-proj0.1', (1.0, 0.0)),                  # modes 1 and 7
             ('toy-proj0.1', (-2.1, 0.0))]                 # mode 4, a little 3 and 5


@pytest.mark.parametrize('name, point', TOY_CASES)
def test_toy_posterior_matches_importance_weighted_samples_of_the_prior(name, point):
    # Tolerance: 1.6M weighted samples leave each component >= 12 000 effective samples (asserted), so a component
    # mean or std is off by about 0.15 / sqrt(12 000) = 0.0014 at most (measured <= 0.0012 over these cases) and a
    # weight by <= 0.0032 (measured); 0.005 and 0.01 are ~4 and ~3 of those. A wrong gain, std, mean or weight
    # variance (e.g. 0.15^2 for 0.15^2 + std^2) fails at least 3 of these cases (tried by breaking each line).
    coupling, c = make_coupling(name), torch.tensor(point, dtype=DTYPE)
    log_weights, means, stds = coupling.posterior(c[None])
    weights, is_means, is_stds, ess = importance_posterior(coupling, c)
    assert log_weights.exp().sum().item() == pytest.approx(1, abs=1e-12)
    assert (log_weights[0].exp() - weights).abs().max() < 0.01, (log_weights[0].exp(), weights)
    used = weights > 0.05                                   # components with enough mass to estimate
    assert ess[used].min() > 12_000
    assert (means[0, used] - is_means[used]).abs().max() < 0.005, (means[0, used], is_means[used])
    assert (stds[0, used] - is_stds[used]).abs().max() < 0.005, (stds[0, used], is_stds[used])


@pytest.mark.parametrize('name', ['toy-noise0.5', 'toy-proj0.1'])
def test_toy_posterior_is_calibrated_on_pairs_drawn_by_corrupt(name):
    # Pairs (x0 with its mode y, c = corrupt(x0)) from the joint: given c, y ~ w(c), so E[w_y(c)] = E[|w(c)|^2];
    # given c and y, x0 ~ N(means_y(c), stds_y(c)^2), so z = (x0 - means_y) / stds_y has mean 0 and variance 1 on
    # each coordinate. 200 000 pairs: standard errors 0.001 (w_y in [0, 1]), 0.0022 (mean z), 0.0032 (var z), so
    # the tolerances are 5 of those. Half the noise in corrupt moves var z by 0.06 (toy-noise0.5) and 0.5
    # (toy-proj0.1); too sharp weights (0.15^2 for 0.15^2 + std^2) move E[w_y] - E[|w|^2] by 0.13 and 0.009.
    coupling = make_coupling(name)
    x0, y = data.toy_data(200_000, seed=11)
    x0 = x0.to(DTYPE)
    log_weights, means, stds = coupling.posterior(coupling.corrupt(x0, gen(12)))
    weights = log_weights.exp()
    assert weights.gather(1, y[:, None]).mean() - weights.square().sum(1).mean() == pytest.approx(0, abs=0.005)
    index = y[:, None, None].expand(-1, 1, 2)
    z = (x0 - means.gather(1, index)[:, 0]) / stds.gather(1, index)[:, 0]
    assert z.mean(0).tolist() == pytest.approx([0, 0], abs=0.011)
    assert z.var(0).tolist() == pytest.approx([1, 1], abs=0.016)


@pytest.mark.parametrize('name, point', TOY_CASES)
def test_posterior_samples_have_the_mixture_moments(name, point):
    # mixture mean sum_k w_k mu_k and covariance sum_k w_k (diag s_k^2 + mu_k mu_k^T) - mean mean^T against 40 000
    # samples, within 5 standard errors estimated from the samples themselves (a mean: std / 200; a covariance
    # entry: the std of the products of centred coordinates / 200). Drawing the most likely mode only, the next
    # mode, or variances for stds misses by many more.
    coupling, c = make_coupling(name), torch.tensor([point], dtype=DTYPE)
    log_weights, means, stds = coupling.posterior(c)
    w = log_weights.exp()[0, :, None]
    mean = (w * means[0]).sum(0)
    cov = (w[:, :, None] * (torch.diag_embed(stds[0] ** 2) + means[0, :, :, None] * means[0, :, None])).sum(0)
    cov = cov - mean[:, None] * mean
    samples = coupling.posterior_sample(c, 40_000, gen(3))[0]
    assert samples.shape == (40_000, 2) and samples.dtype == DTYPE
    centred = samples - samples.mean(0)
    products = centred[:, :, None] * centred[:, None]                    # (n, 2, 2)
    assert ((samples.mean(0) - mean).abs() < 5 * centred.std(0) / 200).all(), (samples.mean(0), mean)
    assert ((products.mean(0) - cov).abs() < 5 * products.std(0) / 200).all(), (products.mean(0), cov)
    assert torch.equal(coupling.posterior_sample(c, 5, gen(4)), coupling.posterior_sample(c, 5, gen(4)))


# ---------------------------------------------------------------------------------------------------- metrics

def test_psnr_of_known_errors():
    ref = randn((2, 3, 4, 4), 0)
    x = ref + torch.tensor([0.1, 0.2], dtype=DTYPE).view(2, 1, 1, 1)    # mse 0.01 and 0.04, peak-to-peak 2
    assert couplings.psnr(x, ref).tolist() == pytest.approx([10 * math.log10(400), 20.0], rel=1e-12)


def test_diversity_is_the_unbiased_per_pixel_std():
    a = randn((3, 1, 2, 4, 4), 0)
    samples = torch.cat([a, a + 0.4], 1)                    # K = 2: std |0.4| / sqrt(2) at every pixel
    assert couplings.diversity(samples) == pytest.approx(0.4 / 2 ** 0.5, rel=1e-12)
    one_line_error(lambda: couplings.diversity(a), 'at least 2', 'got 1')


def test_cswd_is_the_per_input_sliced_w2_of_fid():
    x = randn((4, 50, 2), 0)
    y = randn((4, 50, 2), 1) + 1
    per_input = [fid.sliced_wasserstein(x[i], y[i], 64, seed=3) for i in range(4)]
    assert couplings.cswd(x, y, 64, seed=3) == pytest.approx(sum(per_input) / 4, rel=1e-12)
    assert couplings.cswd(x, x) == 0
    one_line_error(lambda: couplings.cswd(x, y[:, :49]), '(4, 50, 2)', '(4, 49, 2)')


def test_cswd_of_shifted_copies():
    # A shift d moves every projection on theta by d.theta without changing the sorted order, so the per-input
    # distance is sqrt(mean (d.theta)^2): |d| in 1-D, and in 2-D the squares for d = a e1 and d = a e2 add to a^2
    # (|theta| = 1) whatever the fixed directions. The inputs are averaged as distances, not pooled.
    x = randn((2, 30, 1), 0)
    shifted = x + torch.tensor([0.3, -1.1], dtype=DTYPE).view(2, 1, 1)
    assert couplings.cswd(x, shifted) == pytest.approx((0.3 + 1.1) / 2, rel=1e-12)
    x = randn((1, 30, 2), 1)
    along = [couplings.cswd(x, x + 0.7 * torch.eye(2, dtype=DTYPE)[d]) for d in range(2)]
    assert along[0] ** 2 + along[1] ** 2 == pytest.approx(0.49, rel=1e-12)
    assert min(along) > 0.3                                 # 256 directions: near 0.7 / sqrt(2) = 0.49 each


def test_mode_tv_hand_values():
    coupling = make_coupling('toy-noise0.5')
    c = torch.zeros(1, 2, dtype=DTYPE)                      # at the centre every mode has weight 1/8
    angle = 2 * math.pi * torch.arange(8, dtype=DTYPE) / 8
    near = lambda k, r, da=0.0: r * torch.stack([(angle[k] + da).cos(), (angle[k] + da).sin()], -1)
    balanced = near(torch.arange(16) % 8, 1.5, 0.35)[None]  # 0.35 < pi/8: still nearest to their own modes
    assert couplings.mode_tv(coupling, c, balanced) == pytest.approx(0, abs=1e-12)
    assert couplings.mode_tv(coupling, c, near(torch.zeros(16, dtype=torch.long), 2.0)[None]) == pytest.approx(7 / 8)
    half = near(torch.arange(16) % 2, 2.5, -0.3)[None]     # modes 0 and 1, half each: 0.5 (2 * 3/8 + 6 * 1/8)
    assert couplings.mode_tv(coupling, c, half) == pytest.approx(0.75)
    far = torch.tensor([[3.0, 0.3]], dtype=DTYPE)         # mode 0 has most of the weight, mode 1 the rest
    w = coupling.posterior(far)[0].exp()[0]
    assert w[0] > 0.99
    inside = near(torch.zeros(16, dtype=torch.long), 2.0, 0.38)[None]  # 0.38 < pi/8 = 0.393: nearest to mode 0
    past = near(torch.zeros(16, dtype=torch.long), 2.0, 0.41)[None]    # nearest to mode 1
    assert couplings.mode_tv(coupling, far, inside) == pytest.approx(1 - w[0].item(), rel=1e-9)
    assert couplings.mode_tv(coupling, far, past) == pytest.approx(1 - w[1].item(), rel=1e-9)
    two = couplings.mode_tv(coupling, torch.zeros(2, 2, dtype=DTYPE), torch.cat([balanced, half]))
    assert two == pytest.approx(0.75 / 2)                   # mean over inputs
    one_line_error(lambda: couplings.mode_tv(make_coupling('sr2'), c, balanced), 'toy', 'sr2')
    one_line_error(lambda: couplings.mode_tv(coupling, c, balanced[0]), '(N, K, 2)', '(16, 2)')


@pytest.mark.parametrize('name', ['toy-noise0.5', 'toy-proj0.1'])
def test_off_mode_of_exact_samples_is_one_minus_level_plus_the_light_components_mass(name):
    coupling = make_coupling(name)
    c = coupling.corrupt(data.toy_data(32, seed=4321)[0], gen(0))        # the floor's inputs (below)
    exact = coupling.posterior_sample(c, 5000, gen(1))                  # 160 000 samples: binomial std <= 1e-4
    weights, means, stds = coupling.posterior(c)
    weights = weights.exp()
    light = float((weights * (weights < 1e-3)).sum(1).mean())          # a component below weight 1e-3 is no mode
    for level in (0.999, 0.99):
        expected = (1 - level) * (1 - light) + light                    # the components do not overlap at 3.7 sigma
        tolerance = 3 * (expected / 160e3) ** 0.5
        assert couplings.off_mode(coupling, c, exact, level) == pytest.approx(expected, abs=tolerance)
    first = means[torch.arange(32), weights.argmax(1)]                  # on the heaviest component: on a mode;
    sd = stds[torch.arange(32), weights.argmax(1)]                      # 4 sigma off it on the seen coordinate
    assert couplings.off_mode(coupling, c, first[:, None]) == 0        # (16 > 13.8, and nearer no other): off
    assert couplings.off_mode(coupling, c, (first + 4 * sd * torch.tensor([1.0, 0], dtype=DTYPE))[:, None]) == 1
    lightest = means[torch.arange(32), weights.argmin(1)][:, None]      # on a component of weight < 1e-3: off
    assert (weights.min(1).values < 1e-3).all() and couplings.off_mode(coupling, c, lightest) == 1
    one_line_error(lambda: couplings.off_mode(make_coupling('sr2'), c, exact), 'toy', 'sr2')


def test_off_mode_counts_a_sample_between_two_equally_likely_modes():
    coupling, m = make_coupling('toy-noise0.5'), couplings.toy_means(DTYPE)
    c = ((m[0] + m[1]) / 2)[None]                                       # modes 0 and 1 equally likely
    weights, means, _ = coupling.posterior(c)
    assert weights.exp()[0, 0] == pytest.approx(weights.exp()[0, 1], rel=1e-12)
    between = ((means[0, 0] + means[0, 1]) / 2)[None, None]             # 0.7 from each, stds 0.14: 5 sigma
    assert couplings.off_mode(coupling, c, torch.cat([between, means[:, :2]], 1)) == pytest.approx(1 / 3)


def test_restoration_metrics_of_images_hand_values():
    coupling, x0 = make_coupling('sr2'), randn((3, 3, 4, 4), 0)
    c = coupling.corrupt(x0)
    samples = torch.stack([x0 + 0.1, x0 - 0.3], 1)          # mse 0.01 and 0.09; their mean x0 - 0.1: mse 0.01
    metrics = couplings.restoration_metrics(coupling, x0, c, samples)
    # consistency: the mean over samples of 0.1 and 0.3 (that of their mean would be 0.1); diversity: 0.4 / sqrt(2)
    assert metrics == pytest.approx(dict(psnr=(10 * math.log10(400) + 10 * math.log10(4 / 0.09)) / 2,
                                         psnr_mean=10 * math.log10(400), consistency=0.2, diversity=0.4 / 2 ** 0.5),
                                    rel=1e-12)
    assert all(type(v) is float for v in metrics.values())
    assert math.isnan(couplings.restoration_metrics(coupling, x0, c, samples[:, :1])['diversity'])
    one_line_error(lambda: couplings.restoration_metrics(coupling, x0, c, samples[:2]), 'samples (2, 2, 3, 4, 4)')


# ---------------------------------------------------------------------------------------------------- the floor

def floor(name, inputs=32, per_input=500):
    """The numbers a perfect one-step restorer and the posterior mean score: c of held-out pairs (train.py's
    evaluation seed of the toy data), 500 samples per input, as the acceptance of the coupled quickstart."""
    coupling = make_coupling(name)
    x0 = data.toy_data(inputs, seed=4321)[0]
    c = coupling.corrupt(x0, gen(0))
    exact = coupling.posterior_sample(c, per_input, gen(1))
    metrics = couplings.restoration_metrics(coupling, x0, c, exact, gen(2))
    log_weights, means, _ = coupling.posterior(c)
    mean = (log_weights.exp()[..., None] * means).sum(1)[:, None].expand(-1, per_input, -1)
    mean_metrics = couplings.restoration_metrics(coupling, x0, c, mean, gen(2))
    return dict(exact_cswd=metrics['cswd'], exact_mode_tv=metrics['mode_tv'],
                mean_cswd=mean_metrics['cswd'], mean_mode_tv=mean_metrics['mode_tv'])


def test_floor_of_exact_posterior_samples_on_toy_noise():
    # These inputs: exact 0.0727 (cswd), 0.0116 (mode_tv); posterior mean 0.3243, 0.1232 (planning: 0.072, 0.32,
    # 0.12). Over 8 other seeds of the inputs: 0.070 +- 0.006, 0.012 +- 0.002; 0.335 +- 0.021, 0.141 +- 0.022. The
    # windows (about +-10%) catch a metric on one pooled cloud (0.025), a sampler twice as wide (0.056) and
    # restoration_metrics scoring the wrong samples. mode_tv of exact samples is multinomial noise, ~0.012 at 500.
    numbers = floor('toy-noise0.5')
    print('toy-noise0.5 floor:', {k: round(v, 4) for k, v in numbers.items()})
    assert 0.065 < numbers['exact_cswd'] < 0.08 and 0.005 < numbers['exact_mode_tv'] < 0.02
    assert 0.30 < numbers['mean_cswd'] < 0.35 and 0.11 < numbers['mean_mode_tv'] < 0.14


def test_floor_of_exact_posterior_samples_on_toy_proj():
    # These inputs: exact 0.182, 0.019; posterior mean 0.990, 0.826 (the mean of two mirror modes sits between
    # them, nearest to neither). Over 8 other seeds: 0.19 +- 0.03, 0.017 +- 0.002; 0.95 +- 0.08, 0.77 +- 0.07.
    numbers = floor('toy-proj0.1')
    print('toy-proj0.1 floor:', {k: round(v, 4) for k, v in numbers.items()})
    assert 0.16 < numbers['exact_cswd'] < 0.20 and 0.005 < numbers['exact_mode_tv'] < 0.025
    assert 0.90 < numbers['mean_cswd'] < 1.08 and 0.77 < numbers['mean_mode_tv'] < 0.88
