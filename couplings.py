"""Data couplings pi*(x0, c) of clean and corrupted data, their exact toy posteriors, and restoration metrics.
Imports only torch.

A coupling (App. C of the paper, Def. 5) pairs a clean sample x0 with a corrupted one c = corrupt(x0): a
low-resolution image, an image with a hole, a noisy point. Data-to-data RealUID learns p(x0 | c). Convention: t=0
is the data side; the source at t=1 of every family with a coupling (fm, bridge, si) is x1 = c + s * zeta,
zeta ~ N(0, I), s the source noise (I2SB's noisy source; Albergo et al.'s data-dependent couplings), and every
network sees c in its y slot: f(t, x, y=c), the one-step generator G(c + s z, c). So the losses are unchanged,
called with y=c and the source draw x1 = source(c, s) passed explicitly (never left to default to N(0, I)).

    coupling = make_coupling('sr2')
    c = coupling.corrupt(x0)                            # (B, 3, H, W), same shape as x0
    x1 = source(c, 0.5)                                 # the source draw at t = 1
    restoration_metrics(coupling, x0, c, samples)       # samples (B, K, 3, H, W): K restorations per input

Images are in [-1, 1], (B, C, H, W); the toy is the 8-Gaussian mixture of data.toy_data, (B, 2), where the exact
posterior p(x0 | c) is a Gaussian mixture in closed form (ToyCoupling.posterior), the yardstick of `cswd` and
`mode_tv`.
"""
import math

import torch
import torch.nn.functional as F

TOY_MODES, TOY_RADIUS, TOY_STD = 8, 2.0, 0.15   # data.toy_data's mixture: mode k at radius (cos, sin)(2 pi k / 8)
FAMILIES = ('fm', 'bridge', 'si')               # interpolants with a coupled source; vp/ve: Gaussian source only
SOURCE_NOISE = 0.5                              # s of x1 = c + s zeta unless a coupling sets its own: measured (README)


def _noise(shape, like, generator=None, uniform=False):
    """N(0, 1) (or U[0, 1)) of `shape` in like's dtype on like's device, drawn on the generator's device."""
    device = like.device if generator is None else generator.device
    draw = torch.rand if uniform else torch.randn
    return draw(shape, generator=generator, dtype=like.dtype, device=device).to(like.device)


class Coupling:
    """pi*(x0, c) with c = corrupt(x0); degrade is its noiseless operator A (consistency compares A(x) to A(c))."""
    toy = False
    eval_pairs = (128, 8)       # train.py evaluates K = 8 samples of 128 held-out inputs: psnr_mean of 8, diversity

    def __init__(self, name, source_noise=SOURCE_NOISE):
        self.name, self.source_noise = name, source_noise      # the default of train.py --source-noise

    def __repr__(self):
        return f'{type(self).__name__}({self.name!r})'

    def corrupt(self, x0, generator=None):             # c, same shape as x0, fresh noise from `generator`
        raise NotImplementedError

    def degrade(self, x):                               # A(x), the noiseless part of the corruption
        raise NotImplementedError

    def input_shape(self, shape):
        """What a user gives sample.py --inputs, per item, for data of `shape` (a low-resolution image for sr);
        ValueError in one line for data of the other kind (a toy coupling on images, an image one on the toy)."""
        if (tuple(shape) != (2,)) if self.toy else (len(shape) != 3):
            raise ValueError(f'{self.name} works on {"2-D toy points (2,)" if self.toy else "images (C, H, W)"}, got '
                             f'data of shape {tuple(shape)}')
        return tuple(shape)

    def _check(self, x):                                # x (B, *shape) of the right kind
        self.input_shape(x.shape[1:])

    def lift(self, inputs, shape):
        """User inputs (N, *input_shape(shape)) -> c (N, *shape); ValueError in one line on a wrong shape."""
        inputs = torch.as_tensor(inputs)
        expected = self.input_shape(shape)
        if tuple(inputs.shape[1:]) != expected or inputs.dim() != len(expected) + 1:
            raise ValueError(f'{self.name} inputs must be (N, {", ".join(map(str, expected))}) for data of shape '
                             f'{tuple(shape)}, got {tuple(inputs.shape)}')
        if not inputs.is_floating_point():
            raise ValueError(f'{self.name} inputs must be floats in the data\'s units, got {inputs.dtype}')
        return self._lift(inputs)

    def _lift(self, inputs):                            # inputs of the right shape -> c
        return inputs


class SuperResolution(Coupling):
    """c = nearest-upsampled block means of x0: the low-resolution image at the output size, no noise.
    I2SB's sr4x with sr_filter='pool' (corruption/superresolution.py, from DDRM): pool down, nearest up."""

    def __init__(self, name, factor):
        super().__init__(name)
        self.factor = factor

    def corrupt(self, x0, generator=None):
        return self.degrade(x0)

    def degrade(self, x):                               # a projection: degrade(degrade(x)) = degrade(x)
        self._check(x)
        return self._lift(F.avg_pool2d(x, self.factor))

    def input_shape(self, shape):
        channels, height, width = super().input_shape(shape)
        if height % self.factor or width % self.factor:
            raise ValueError(f'{self.name} needs a height and width divisible by {self.factor}, got {height}x{width}')
        return channels, height // self.factor, width // self.factor

    def _lift(self, inputs):
        return F.interpolate(inputs, scale_factor=self.factor, mode='nearest')


class InpaintCenter(Coupling):
    """c = x0 outside the centre box (rows H/4 .. H/4 + H/2, same for columns), N(0, 1) noise inside: I2SB's
    centre mask (corruption/inpaint.py, get_center_mask) with the hole filled with noise (i2sb/runner.py)."""

    @staticmethod
    def mask(x):                                        # (1, 1, H, W), 1 in the hole
        height, width = x.shape[-2:]
        mask = torch.zeros(1, 1, height, width, dtype=x.dtype, device=x.device)
        mask[..., height // 4: height // 4 + height // 2, width // 4: width // 4 + width // 2] = 1
        return mask

    def corrupt(self, x0, generator=None):
        self._check(x0)
        mask = self.mask(x0)
        return x0 * (1 - mask) + mask * _noise(x0.shape, x0, generator)

    def degrade(self, x):
        self._check(x)
        return x * (1 - self.mask(x))


class AdditiveNoise(Coupling):
    """c = x0 + std * xi (denoising; std in the data's units, [-1, 1] for images): the operator is the identity."""

    def __init__(self, name, std):
        super().__init__(name)
        self.std = std

    def corrupt(self, x0, generator=None):
        self._check(x0)
        return x0 + self.std * _noise(x0.shape, x0, generator)

    def degrade(self, x):
        self._check(x)
        return x


def toy_means(dtype=torch.float32, device=None):
    """(TOY_MODES, 2) means of data.toy_data's mixture, computed in float64."""
    angle = 2 * math.pi * torch.arange(TOY_MODES, dtype=torch.float64) / TOY_MODES
    return (TOY_RADIUS * torch.stack([angle.cos(), angle.sin()], 1)).to(dtype=dtype, device=device)


class ToyCoupling(Coupling):
    """On the 8-Gaussian toy: c = (x0 + std * xi) on the `seen` coordinates, 0 on the others. Both the prior
    components and the noise are isotropic, so p(x0 | c) is a Gaussian mixture, coordinate by coordinate:
    on a seen coordinate d, component k is conditioned on its noisy observation (gain g = TOY_STD^2 /
    (TOY_STD^2 + std^2): mean m_kd + g (c_d - m_kd), variance TOY_STD^2 (1 - g)); an unseen coordinate keeps the
    prior's N(m_kd, TOY_STD^2); the weight of k is prop. to its prior 1/8 times prod over the seen d of
    N(c_d; m_kd, TOY_STD^2 + std^2)."""
    toy = True
    eval_pairs = (32, 500)      # cswd and mode_tv over 32 held-out inputs x 500 samples (floor: exact vs exact)

    def __init__(self, name, std, seen, source_noise=SOURCE_NOISE):
        super().__init__(name, source_noise)
        self.std, self.seen = std, tuple(seen)

    def _seen(self, x):
        return torch.tensor(self.seen, dtype=x.dtype, device=x.device)

    def corrupt(self, x0, generator=None):
        self._check(x0)
        return self.degrade(x0 + self.std * _noise(x0.shape, x0, generator))

    def degrade(self, x):
        self._check(x)
        return torch.where(self._seen(x) > 0, x, 0)                   # unseen coordinates +0, not -0

    def _lift(self, inputs):
        unseen = [d for d, seen in enumerate(self.seen) if not seen]
        if (inputs[:, unseen] != 0).any():
            raise ValueError(f'{self.name} inputs are 0 in coordinate(s) {unseen} (c is never seen there), got other '
                             f'values')
        return inputs

    def posterior(self, c):
        """Exact p(x0 | c) -> (log_weights (B, K) normalised, means (B, K, 2), stds (B, K, 2))."""
        self._check(c)
        m, seen, prior_var = toy_means(c.dtype, c.device), self._seen(c), TOY_STD ** 2
        gain = seen * prior_var / (prior_var + self.std ** 2)          # 0 on unseen coordinates
        diff = c[:, None] - m                                          # (B, K, 2)
        means = m + gain * diff
        stds = (prior_var * (1 - gain)).sqrt().expand(means.shape).contiguous()
        log_likelihood = -0.5 * (seen * diff.square()).sum(-1) / (prior_var + self.std ** 2)   # same norm. for all k
        return log_likelihood.log_softmax(-1), means, stds             # equal prior weights cancel

    def posterior_sample(self, c, n, generator=None):
        """n exact samples of p(x0 | c) for each c -> (B, n, 2): a component by inverse CDF, then its Gaussian."""
        log_weights, means, stds = self.posterior(c)
        cdf = log_weights.exp().cumsum(-1)
        k = torch.searchsorted(cdf, _noise((len(c), n), c, generator, uniform=True)).clamp(max=TOY_MODES - 1)
        index = k[..., None].expand(-1, -1, 2)
        return means.gather(1, index) + stds.gather(1, index) * _noise((len(c), n, 2), c, generator)


COUPLINGS = {coupling.name: coupling for coupling in [
    SuperResolution('sr2', 2),                          # I2SB's sr4x pool filter, also at factor 2
    SuperResolution('sr4', 4),                          # I2SB's sr4x (pool)
    InpaintCenter('inpaint-center'),                    # I2SB's centre mask, hole filled with N(0, 1)
    AdditiveNoise('noise0.5', 0.5),                     # denoising at std 0.5 in [-1, 1] units: chosen here
    ToyCoupling('toy-noise0.5', 0.5, (1, 1)),           # chosen here: neighbouring modes 1.53 apart, often 2 per c
    ToyCoupling('toy-proj0.1', 0.1, (1, 0), 1.0),       # chosen here: modes k, 8 - k share x0_1: bimodal posterior
]}                                                      # (source noise 1: measured, README; the others' 0.5 too)


def make_coupling(name):
    if name not in COUPLINGS:
        raise ValueError(f'unknown coupling {name!r}: choose one of {", ".join(COUPLINGS)}')
    return COUPLINGS[name]


def unfit(name, toy, family):
    """Why coupling `name` cannot run on the toy (toy=True) or image data with interpolant `family`, else None."""
    coupling = make_coupling(name)
    if coupling.toy != toy:
        return f'corrupts {"2-D toy points" if coupling.toy else "images"}, not {"the toy" if toy else "images"}'
    if family not in FAMILIES:                          # vp: alpha(1) ~ 0; ve: sigma_max = 80: x_1 is noise
        return (f'needs a family whose source can be data ({", ".join(FAMILIES)}): {family} starts from Gaussian '
                'noise at t=1 by construction')
    return None


def evaluation_pairs(coupling, held_out, device='cpu'):
    """(x0, c) that train.py evaluates a coupled run on: the held-out items (x0, label) stacked, and their corruption
    drawn from a fixed seed, the same at every evaluation; experiments/ score the same pairs through this."""
    x0 = torch.stack([held_out[i][0] for i in range(len(held_out))]).to(device)
    return x0, coupling.corrupt(x0, torch.Generator(device).manual_seed(5))


def source(c, s, generator=None):
    """x1 = c + s * zeta, zeta ~ N(0, I): the source at t = 1 of every family with a coupling."""
    return c + s * _noise(c.shape, c, generator)


def restore(sample_fn, c, k, s, generator=None, chunk=500, progress=None):
    """k restorations of each input: sample_fn(x1, c) on x1 = source(c, s) for c (N, ...) repeated k times, in chunks
    of `chunk` rows -> (N, k, ...) float on the CPU, [i, j] the j-th of input i; progress(rows done) after each."""
    cs, out = c.repeat_interleave(k, 0), []
    for i in range(0, len(cs), chunk):
        out.append(sample_fn(source(cs[i:i + chunk], s, generator), cs[i:i + chunk]).float().cpu())
        if progress:
            progress(min(len(cs), i + chunk))
    out = torch.cat(out)
    return out.view(len(c), k, *out.shape[1:])


# ---------------------------------------------------------------------------------------------------- metrics
# samples (N, K, ...): K samples for each of N inputs; images in [-1, 1]

def psnr(x, ref):
    """(B,) PSNR in dB of each image against its reference, peak-to-peak 2: 10 log10(4 / mse)."""
    return 10 * torch.log10(4 / (x - ref).flatten(1).square().mean(1))


def consistency(coupling, x, c):
    """(B,) rms over all elements of degrade(x) - degrade(c): 0 when x explains its input exactly (sr, inpaint)."""
    return (coupling.degrade(x) - coupling.degrade(c)).flatten(1).square().mean(1).sqrt()


def diversity(samples):
    """Per-pixel std over the K samples of each input (unbiased, K >= 2), averaged over pixels and inputs."""
    if samples.shape[1] < 2:
        raise ValueError(f'diversity needs at least 2 samples per input, got {samples.shape[1]}')
    return float(samples.std(1).mean())


def cswd(samples, exact, projections=256, seed=0):
    """Conditional sliced W2: mean over inputs i of the sliced W2 between samples[i] and exact[i] (both (N, K, ...)),
    as fid.sliced_wasserstein: sqrt of the mean over fixed unit directions of the 1-D W2^2 of sorted projections."""
    x, y = torch.as_tensor(samples).flatten(2), torch.as_tensor(exact).flatten(2)
    if x.shape != y.shape:
        raise ValueError(f'cswd needs samples and exact samples of one shape (N, K, ...), got {tuple(x.shape)} and '
                         f'{tuple(y.shape)}')
    theta = torch.randn(x.shape[2], projections, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    theta = (theta / theta.norm(dim=0)).to(x.device)   # (D, projections), unit columns, the same for every input
    x_proj, y_proj = (theta.T @ x.mT).sort(-1).values, (theta.T @ y.to(x).mT).sort(-1).values   # (N, projections, K)
    return float((x_proj - y_proj).square().mean((1, 2)).sqrt().mean())


def _check_toy_samples(metric, coupling, c, samples):
    if not coupling.toy:
        raise ValueError(f'{metric} needs a toy coupling, got {coupling.name}')
    if samples.dim() != 3 or samples.shape[2] != 2 or len(samples) != len(c):
        raise ValueError(f'{metric} needs samples (N, K, 2) for c {tuple(c.shape)}, got {tuple(samples.shape)}')


def nearest_mode(samples):
    """Index of the nearest of the toy's 8 modes for each point of samples (..., 2): mode_tv's histogram."""
    return (samples[..., None, :] - toy_means(samples.dtype, samples.device)).norm(dim=-1).argmin(-1)


def mode_tv(coupling, c, samples):
    """Mean over inputs of the total variation 0.5 sum_k |hist_k - w_k| between the nearest-mode histogram of
    samples[i] (K, 2) and the exact posterior's mode weights w = softmax(log_weights) of c[i] (toy couplings)."""
    _check_toy_samples('mode_tv', coupling, c, samples)
    weights = coupling.posterior(c)[0].exp()                                             # (N, modes)
    hist = F.one_hot(nearest_mode(samples), TOY_MODES).to(weights.dtype).mean(1)         # (N, modes)
    return float(0.5 * (hist - weights).abs().sum(-1).mean())


def outside(coupling, c, samples, level=0.999):
    """(N, K) bool: samples[i] (K, 2) outside every component of the exact posterior of c[i] that has weight >= 1e-3:
    its squared Mahalanobis distance to each is above the chi-square(2) `level` quantile, -2 log(1 - level) (13.8)."""
    _check_toy_samples('outside', coupling, c, samples)
    log_weights, means, stds = coupling.posterior(c.to(samples.dtype))
    d2 = ((samples[:, :, None] - means[:, None]) / stds[:, None]).square().sum(-1)       # (N, K, modes)
    d2 = d2.masked_fill(log_weights[:, None] < math.log(1e-3), math.inf)
    return d2.min(-1).values > -2 * math.log1p(-level)


def off_mode(coupling, c, samples, level=0.999):
    """Fraction of samples outside every posterior component (`outside`). Exact samples: about 1 - level; a one-step
    map from the Gaussian source puts its trails between modes here."""
    _check_toy_samples('off_mode', coupling, c, samples)
    return float(outside(coupling, c, samples, level).to(samples.dtype).mean())


def toy_metrics(coupling, c, samples, generator=None):
    """cswd of samples (N, K, 2) restoring c (N, 2) against K exact posterior samples per input (drawn from
    `generator`), mode_tv and off_mode: the toy's restoration metrics."""
    exact = coupling.posterior_sample(c, samples.shape[1], generator)
    return dict(cswd=cswd(samples, exact), mode_tv=mode_tv(coupling, c, samples),
                off_mode=off_mode(coupling, c, samples))


def restoration_metrics(coupling, x0, c, samples, generator=None):
    """Metrics of samples (N, K, ...) restoring inputs c (N, ...) of ground truth x0 (N, ...) -> dict of floats.
    toy: toy_metrics. images: psnr (mean over single samples), psnr_mean (of the mean of the K samples), consistency
    (mean), diversity (nan if K = 1)."""
    n, k = samples.shape[:2]
    if samples.shape[2:] != x0.shape[1:] or n != len(x0) or c.shape != x0.shape:
        raise ValueError(f'restoration_metrics needs samples (N, K, ...) and c of x0\'s shape {tuple(x0.shape)}, got '
                         f'samples {tuple(samples.shape)} and c {tuple(c.shape)}')
    if coupling.toy:
        return toy_metrics(coupling, c, samples, generator)
    single = samples.flatten(0, 1)
    return dict(psnr=float(psnr(single, x0.repeat_interleave(k, 0)).mean()),
                psnr_mean=float(psnr(samples.mean(1), x0).mean()),
                consistency=float(consistency(coupling, single, c.repeat_interleave(k, 0)).mean()),
                diversity=diversity(samples) if k > 1 else math.nan)
