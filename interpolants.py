"""Conditional paths of matching models (RealUID, arXiv 2509.22459, Sec. 2.1-2.2 and App. C).

Convention: t in [0, 1], t=0 is the data side (x0 ~ data) and t=1 the source side (Gaussian noise, or the
coupled/corrupted sample x1 for bridges). Every family is a Gaussian conditional path

    x_t = a(t) x0 + b(t) x1 + c(t) eps,        eps ~ N(0, I),

with a conditional target f_t(x_t | x0, x1, eps) that the UM loss (Def. 1) regresses on and a per-time
weight w(t). The minimizer of E w(t) ||f(t, x_t) - target||^2 is f_t(x) = E[target | x_t = x]; the teacher
sampler integrates dx/dt = drift(t, x, f(t, x)) from t=1 to t=0. Imports only torch: copy it alone.

Conditioning: a raw network sees unit-scale inputs and produces unit-scale outputs in every family. fm, si,
bridge and vp (v-prediction) are unit-scale by construction and their function is the network itself; ve
wraps it in EDM's preconditioning. Build every trained function as `interp.precondition(net)` (the identity
except for ve, so state-dict keys of the other families do not change).

One-step generator (all families): G(z) = to_x0(1, z, f(1, z, y)) with z = prior(...), the data prediction
at t=1; each class docstring says what it is there. SiD (Zhou et al. 2024) evaluates EDM teachers at a fixed
sigma_init = 2.5 instead; t=1 works here because the data prediction at t=1 is well defined and finite in
every family (no 1/alpha(1) for vp with v, unit-scale network input for ve), and for fm it is exactly the
paper's generator and initialisation (App. D.1, G(z) = z + g(0, z) in its flipped time). At t=1 the
teacher's data prediction is E[x0 | x_1] ~ E[x0 | y] for the noise families: the generator starts from the
(class) mean, as in the paper.
"""
import math

import torch
from torch import nn


def _bc(v, x):
    """(B,) -> (B, 1, ..., 1) so that it broadcasts against x of shape (B, ...)."""
    return v.view(-1, *([1] * (x.dim() - 1)))


class Interpolant:
    name = 'base'
    sde = False     # the teacher sampler integrates an SDE (Euler-Maruyama) instead of the ODE (Euler)
    t_min = 0.0     # training times in [t_min, 1] (sample_t); the sampler stops at the last grid point > 0
    t_power = 1.0   # the uniform u behind a training time is drawn as u^t_power: < 1 moves weight to the source side

    def coeffs(self, t):                        # -> a, b, c, each of shape (B,)
        raise NotImplementedError

    def target(self, t, x0, x1, eps, xt):       # conditional target f_t(x_t | x0, x1, eps)
        raise NotImplementedError

    def weight(self, t):                        # loss weight w(t), shape (B,)
        return torch.ones_like(t)

    def to_x0(self, t, x, out):                 # data prediction from the function value out = f(t, x)
        raise NotImplementedError

    def drift(self, t, x, out):                 # dx/dt of the sampler at (t, x), given out = f(t, x)
        raise NotImplementedError

    def noise_scale(self, t):                   # diffusion coefficient of the reverse SDE (sde=True only)
        return torch.zeros_like(t)

    def precondition(self, net):
        """The function f(t, x, y) this family trains, built from a raw network: net itself (ve: EDM wrapper)."""
        return net

    def prior(self, shape, device=None, generator=None):
        """Source sample at t=1 for the noise families: b(1) * N(0, I) (a(1) x0 is dropped; 0 for fm)."""
        b = float(self.coeffs(torch.ones(1))[1])
        return b * torch.randn(shape, device=device, generator=generator)

    def uniform(self, n, device=None, generator=None):
        """u ~ U[0, 1], raised to t_power (density u^(1/p - 1) / p): what sample_t maps to a training time."""
        u = torch.rand(n, device=device, generator=generator)
        return u if self.t_power == 1 else u.pow(self.t_power)

    def sample_t(self, n, device=None, generator=None):
        return self.t_min + (1.0 - self.t_min) * self.uniform(n, device, generator)

    def sample(self, x0, x1=None, t=None, eps=None, generator=None):
        """Draw (t, x_t, target) for data x0; x1 defaults to N(0, I), t to sample_t (U[t_min, 1] at t_power 1),
        eps to N(0, I)."""
        if t is None:
            t = self.sample_t(x0.shape[0], x0.device, generator)
        t = t.to(x0.dtype).expand(x0.shape[0]) if t.dim() == 0 else t.to(x0.dtype)
        if x1 is None:
            x1 = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        if eps is None:
            eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        a, b, c = self.coeffs(t)
        xt = _bc(a, x0) * x0 + _bc(b, x0) * x1 + _bc(c, x0) * eps
        return t, xt, self.target(t, x0, x1, eps, xt)

    @torch.no_grad()
    def generate(self, f, x1, y=None, steps=100, generator=None):
        """Multi-step teacher sampler with `steps` NFE on a uniform grid from t=1 to t=0.

        Euler (ODE) or Euler-Maruyama (sde=True) steps; the last step jumps to the data prediction to_x0,
        which for fm/bridge/si is exactly the Euler step to t=0.
        """
        x = x1
        grid = torch.linspace(1.0, 0.0, steps + 1, device=x.device, dtype=x.dtype)
        for i in range(steps):
            t = grid[i].expand(x.shape[0])
            out = f(t, x, y)
            if i == steps - 1:
                return self.to_x0(t, x, out)
            h = (grid[i] - grid[i + 1]).item()                   # step size > 0, time runs backwards
            x = x - h * self.drift(t, x, out)
            if self.sde:
                noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
                x = x + math.sqrt(h) * _bc(self.noise_scale(t), x) * noise
        return x


class FlowMatching(Interpolant):
    """Rectified flow / CFM (Lipman et al. 2023; Liu et al. 2023): x_t = (1-t) x0 + t x1, target x1 - x0.

    One-step generator: G(z) = z - f(1, z, y), one Euler step 1 -> 0 (the paper's, App. D.1).
    """
    name = 'fm'

    def coeffs(self, t):
        return 1 - t, t, torch.zeros_like(t)

    def target(self, t, x0, x1, eps, xt):
        return x1 - x0

    def to_x0(self, t, x, out):
        return x - _bc(t, x) * out

    def drift(self, t, x, out):
        return out


class VP(Interpolant):
    """Variance-preserving diffusion (Song et al. 2021), linear beta schedule, alpha^2 + sigma^2 = 1.

    x_t = alpha(t) x0 + sigma(t) x1 with x1 ~ N(0, I). The function is, by `prediction`:
      'v' (default; Salimans & Ho 2022, progressive distillation): target v = alpha x1 - sigma x0, weight 1.
          A rotation of (x0, x1): x0 = alpha x_t - sigma v, eps = sigma x_t + alpha v, so input and target
          are unit-scale at every t and no prediction divides by alpha or sigma. Its loss is the eps loss
          times 1/alpha^2 (the x0 loss times 1/sigma^2).
      'eps': target x1, weight 1; x0 = (x_t - sigma eps) / alpha.
      'score': target -x1/sigma, weight sigma^2 (the DSM weighting of eq. 1, same minimizer up to scale).
    The sampler integrates the probability-flow ODE dx/dt = alpha' x0_hat + sigma' eps_hat.

    One-step generator: G(z) = alpha(1) z - sigma(1) v(1, z) with 'v', finite; with 'eps' it is
    (z - sigma(1) eps(1, z)) / alpha(1), alpha(1) = 6.6e-3: errors of the network are amplified ~150x.

    t_min = 1e-3 for every prediction: 'score' needs t > 0 (its target -x1/sigma diverges at sigma(0) = 0);
    for 'v' the target is bounded at t = 0 but carries no signal there (x_0 = x0 is independent of x1), and
    sigma(1e-3) = 0.01 is below any useful noise level. The sampler's last function evaluation is at t = 1/steps
    (>= t_min for steps <= 1000) and is a data prediction; the drift (sigma' ~ t^-1/2) is never taken at t = 0.
    """
    name = 'vp'
    t_min = 1e-3

    def __init__(self, beta_min=0.1, beta_max=20.0, prediction='v'):
        if prediction not in ('v', 'eps', 'score'):
            raise ValueError(f"vp prediction must be 'v', 'eps' or 'score', got {prediction!r}")
        self.beta_min, self.beta_max, self.prediction = beta_min, beta_max, prediction

    def _log_alpha(self, t):
        return -0.25 * t ** 2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def coeffs(self, t):
        alpha = self._log_alpha(t).exp()
        return alpha, (1 - alpha ** 2).clamp_min(0).sqrt(), torch.zeros_like(t)

    def target(self, t, x0, x1, eps, xt):
        alpha, sigma, _ = (_bc(c, x1) for c in self.coeffs(t))
        if self.prediction == 'v':
            return alpha * x1 - sigma * x0
        return x1 if self.prediction == 'eps' else -x1 / sigma

    def weight(self, t):
        return self.coeffs(t)[1] ** 2 if self.prediction == 'score' else torch.ones_like(t)

    def _x0_eps(self, t, x, out):               # network value -> (E[x0 | x_t], E[x1 | x_t])
        alpha, sigma, _ = (_bc(c, x) for c in self.coeffs(t))
        if self.prediction == 'v':
            return alpha * x - sigma * out, sigma * x + alpha * out
        eps = out if self.prediction == 'eps' else -sigma * out
        return (x - sigma * eps) / alpha, eps

    def to_x0(self, t, x, out):
        return self._x0_eps(t, x, out)[0]

    def drift(self, t, x, out):                 # d/dt E[x_t | x_t]: alpha' x0_hat + sigma' eps_hat
        alpha, sigma, _ = self.coeffs(t)
        dalpha = alpha * (-0.5 * t * (self.beta_max - self.beta_min) - 0.5 * self.beta_min)
        dsigma = -alpha * dalpha / sigma
        x0, eps = self._x0_eps(t, x, out)
        return _bc(dalpha, x) * x0 + _bc(dsigma, x) * eps

    def from_eps(self, eps_net, time_fn=None):
        """An eps-prediction network eps_net(time_fn(t), x, y) in our time convention (t=0 data; time_fn maps t
        to the network's own time input, e.g. DDPM's 999 t; default identity) as this instance's function.

        For 'v' that is v = (eps - sigma x) / alpha, ill-conditioned at t=1 (1/alpha(1) ~ 150): prefer
        VP(prediction='eps') for such a teacher, whose one-step generator at t=1 then amplifies errors by
        1/alpha(1) instead.
        """
        def f(net, t, x, y):
            eps = net(t if time_fn is None else time_fn(t), x, y)
            alpha, sigma, _ = (_bc(c, x) for c in self.coeffs(t))
            return {'v': (eps - sigma * x) / alpha, 'eps': eps, 'score': -eps / sigma}[self.prediction]
        return Adapter(eps_net, f)


class VE(Interpolant):
    """Variance-exploding diffusion in EDM form (Karras et al. 2022), as SiD uses: x_t = x0 + sigma(t) x1.

    sigma(t) = sigma_min^(1-t) sigma_max^t; the function is the denoiser D (target x0) with EDM's weight
    lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2. Sampler: probability-flow ODE.

    precondition(net) is EDM's (Table 1): D(t, x, y) = c_skip x + c_out F(t, c_in x, y), F the raw network,
    so F sees unit-variance inputs and lambda c_out^2 = 1 gives its regression target unit weight. EDM feeds F
    c_noise = ln(sigma)/4; t = ln(sigma/sigma_min) / ln(sigma_max/sigma_min) is affine in ln(sigma), so F gets
    t itself (same information, in [0, 1] like every family). Training times (sample_t): EDM's
    ln(sigma) ~ N(p_mean, p_std^2), truncated to [sigma_min, sigma_max].

    One-step generator: G(z) = D(1, z) for z = sigma_max N(0, I), the preconditioned denoiser at sigma_max;
    c_in scales z to unit variance (SiD uses sigma_init = 2.5 instead: see the module docstring).
    """
    name = 've'

    def __init__(self, sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, p_mean=-1.2, p_std=1.2):
        self.sigma_min, self.sigma_max, self.sigma_data = sigma_min, sigma_max, sigma_data
        self.p_mean, self.p_std = p_mean, p_std             # EDM's training distribution of ln(sigma)

    def sigma(self, t):
        return self.sigma_min ** (1 - t) * self.sigma_max ** t

    def coeffs(self, t):
        return torch.ones_like(t), self.sigma(t), torch.zeros_like(t)

    def target(self, t, x0, x1, eps, xt):
        return x0

    def weight(self, t):
        sigma = self.sigma(t)
        return (sigma ** 2 + self.sigma_data ** 2) / (sigma * self.sigma_data) ** 2

    def to_x0(self, t, x, out):
        return out

    def drift(self, t, x, out):                 # sigma' (x - D(x)) / sigma, sigma'/sigma = log(max/min)
        return math.log(self.sigma_max / self.sigma_min) * (x - out)

    def sample_t(self, n, device=None, generator=None):
        """EDM's ln(sigma) ~ N(p_mean, p_std^2) truncated to [sigma_min, sigma_max] (inverse normal CDF of a
        uniform on the truncated range), as t = ln(sigma/sigma_min) / ln(sigma_max/sigma_min)."""
        cdf = lambda s: 0.5 * math.erfc(-(math.log(s) - self.p_mean) / (self.p_std * math.sqrt(2)))
        lo, hi = cdf(self.sigma_min), cdf(self.sigma_max)
        u = lo + (hi - lo) * self.uniform(n, device, generator)
        log_sigma = self.p_mean + self.p_std * torch.special.ndtri(u)
        return ((log_sigma - math.log(self.sigma_min)) / math.log(self.sigma_max / self.sigma_min)).clamp(0, 1)

    def precond_coeffs(self, t):                # EDM Table 1 -> c_skip, c_out, c_in, each of shape (B,)
        sigma, sd = self.sigma(t), self.sigma_data
        norm = (sigma ** 2 + sd ** 2).sqrt()
        return sd ** 2 / norm ** 2, sigma * sd / norm, 1 / norm

    def precondition(self, net):
        return EDMPreconditioned(net, self)

    def from_denoiser(self, denoiser, label_dim=None):
        """An EDM denoiser D(x, sigma, class_labels) (NVlabs EDM's EDMPrecond signature) as this family's
        function f(t, x, y) = D(x, sigma(t), y). Use it as is: an EDM checkpoint is already preconditioned.
        EDM takes one-hot labels: label_dim converts integer labels y."""
        def f(net, t, x, y):
            if y is not None and label_dim is not None:
                y = nn.functional.one_hot(y, label_dim).to(x.dtype)
            return net(x, self.sigma(t).to(x.dtype), y)
        return Adapter(denoiser, f)


class EDMPreconditioned(nn.Module):
    """EDM preconditioning (Karras et al. 2022, Table 1) of a raw network for VE: D = c_skip x + c_out F(c_in x).

    `net` is the only submodule (state-dict keys 'net.*'); the interpolant is a plain attribute.
    """

    def __init__(self, net, interp):
        super().__init__()
        self.net = net
        object.__setattr__(self, 'interp', interp)

    def forward(self, t, x, y=None):
        c_skip, c_out, c_in = (_bc(c, x) for c in self.interp.precond_coeffs(t))
        return c_skip * x + c_out * self.net(t, c_in * x, y)

    def features(self, t, x, y=None):           # the raw network's features at its own (unit-scale) input
        return self.net.features(t, _bc(self.interp.precond_coeffs(t)[2], x) * x, y)


class Adapter(nn.Module):
    """f(t, x, y) = fn(net, t, x, y) for a network from outside (VE.from_denoiser, VP.from_eps); net is a
    submodule when it is an nn.Module, so .to(), .eval() and parameters() reach it."""

    def __init__(self, net, fn):
        super().__init__()
        self.net = net
        object.__setattr__(self, 'fn', fn)

    def forward(self, t, x, y=None):
        return self.fn(self.net, t, x, y)


class Bridge(Interpolant):
    """Bridge Matching with a Brownian bridge (App. C.1; Peluchetti 2023, Liu et al. 2022).

    (x0, x1) ~ pi a data coupling (x1 the corrupted sample); x_t = (1-t) x0 + t x1 + sigma sqrt(t(1-t)) eps.
    Target (x_t - x0)/t: the drift of the bridge pinned at x0, so the reverse SDE from t=1 is
    x <- x - h f(t, x) + sigma sqrt(h) xi (the Markovian projection keeps the marginals of the coupling).

    One-step generator: G(x1) = x1 - f(1, x1, y) = E[x0 | x1] for the corrupted sample x1 (one Euler step).
    """
    name = 'bridge'
    sde = True
    t_min = 1e-3

    def __init__(self, sigma=1.0):
        self.sigma = sigma

    def coeffs(self, t):
        return 1 - t, t, self.sigma * (t * (1 - t)).clamp_min(0).sqrt()

    def target(self, t, x0, x1, eps, xt):
        return (xt - x0) / _bc(t, xt)

    def to_x0(self, t, x, out):
        return x - _bc(t, x) * out

    def drift(self, t, x, out):
        return out

    def noise_scale(self, t):
        return torch.full_like(t, self.sigma)


class StochasticInterpolant(Interpolant):
    """Stochastic Interpolant (App. C.2; Albergo et al. 2023): x_t = (1-t) x0 + t x1 + gamma(t) z.

    gamma(t) = sigma t (1 - t) (zero at both ends, smooth); target dI/dt + gamma'(t) z = x1 - x0 +
    sigma (1 - 2t) z; the sampler integrates the ODE dx/dt = f. The data prediction x - t f is exact at t=1
    (gamma(1) = 0) and is the one-step Euler estimate elsewhere.

    One-step generator: G(z) = z - f(1, z, y) = E[x0 | x_1 = z], one Euler step as for fm.
    """
    name = 'si'

    def __init__(self, sigma=1.0):
        self.sigma = sigma

    def coeffs(self, t):
        return 1 - t, t, self.sigma * t * (1 - t)

    def target(self, t, x0, x1, eps, xt):
        return x1 - x0 + _bc(self.sigma * (1 - 2 * t), eps) * eps

    def to_x0(self, t, x, out):
        return x - _bc(t, x) * out

    def drift(self, t, x, out):
        return out


INTERPOLANTS = {'fm': FlowMatching, 'vp': VP, 've': VE, 'bridge': Bridge, 'si': StochasticInterpolant}


def make_interpolant(name, **kwargs):
    if name not in INTERPOLANTS:
        raise ValueError(f"unknown interpolant {name!r}; choose one of {', '.join(INTERPOLANTS)}")
    return INTERPOLANTS[name](**kwargs)
