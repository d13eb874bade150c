"""Conditional paths of matching models (RealUID, arXiv 2509.22459, Sec. 2.1-2.2 and App. C).

Convention: t in [0, 1], t=0 is the data side (x0 ~ data) and t=1 the source side (Gaussian noise, or the
coupled/corrupted sample x1 for bridges). Every family is a Gaussian conditional path

    x_t = a(t) x0 + b(t) x1 + c(t) eps,        eps ~ N(0, I),

with a conditional target f_t(x_t | x0, x1, eps) that the UM loss (Def. 1) regresses on and a per-time
weight w(t). The minimizer of E w(t) ||f(t, x_t) - target||^2 is f_t(x) = E[target | x_t = x]; the teacher
sampler integrates dx/dt = drift(t, x, f(t, x)) from t=1 to t=0. Imports only torch: copy it alone.
"""
import math

import torch


def _bc(v, x):
    """(B,) -> (B, 1, ..., 1) so that it broadcasts against x of shape (B, ...)."""
    return v.view(-1, *([1] * (x.dim() - 1)))


class Interpolant:
    name = 'base'
    sde = False     # the teacher sampler integrates an SDE (Euler-Maruyama) instead of the ODE (Euler)
    t_min = 0.0     # training times are drawn from U[t_min, 1]; the sampler stops at the last grid point > 0

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

    def prior(self, shape, device=None, generator=None):
        """Source sample at t=1 for the noise families: b(1) * N(0, I) (a(1) x0 is dropped; 0 for fm)."""
        b = float(self.coeffs(torch.ones(1))[1])
        return b * torch.randn(shape, device=device, generator=generator)

    def sample_t(self, n, device=None, generator=None):
        return self.t_min + (1.0 - self.t_min) * torch.rand(n, device=device, generator=generator)

    def sample(self, x0, x1=None, t=None, eps=None, generator=None):
        """Draw (t, x_t, target) for data x0; x1 defaults to N(0, I), t to U[t_min, 1], eps to N(0, I)."""
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
    """Rectified flow / CFM (Lipman et al. 2023; Liu et al. 2023): x_t = (1-t) x0 + t x1, target x1 - x0."""
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

    x_t = alpha(t) x0 + sigma(t) x1 with x1 ~ N(0, I). prediction='eps': target x1, weight 1;
    prediction='score': target -x1/sigma, weight sigma^2 (the DSM weighting of eq. 1, same minimizer up to
    scale). The sampler integrates the probability-flow ODE.
    """
    name = 'vp'
    t_min = 1e-3

    def __init__(self, beta_min=0.1, beta_max=20.0, prediction='eps'):
        if prediction not in ('eps', 'score'):
            raise ValueError(f"vp prediction must be 'eps' or 'score', got {prediction!r}")
        self.beta_min, self.beta_max, self.prediction = beta_min, beta_max, prediction

    def _log_alpha(self, t):
        return -0.25 * t ** 2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def coeffs(self, t):
        alpha = self._log_alpha(t).exp()
        return alpha, (1 - alpha ** 2).clamp_min(0).sqrt(), torch.zeros_like(t)

    def target(self, t, x0, x1, eps, xt):
        if self.prediction == 'eps':
            return x1
        return -x1 / _bc(self.coeffs(t)[1], x1)

    def weight(self, t):
        return torch.ones_like(t) if self.prediction == 'eps' else self.coeffs(t)[1] ** 2

    def _eps(self, t, x, out):                  # network value -> E[x1 | x_t]
        return out if self.prediction == 'eps' else -_bc(self.coeffs(t)[1], x) * out

    def to_x0(self, t, x, out):
        alpha, sigma, _ = self.coeffs(t)
        return (x - _bc(sigma, x) * self._eps(t, x, out)) / _bc(alpha, x)

    def drift(self, t, x, out):                 # d/dt E[x_t | x_t]: alpha' x0_hat + sigma' eps_hat
        alpha, sigma, _ = self.coeffs(t)
        dalpha = alpha * (-0.5 * t * (self.beta_max - self.beta_min) - 0.5 * self.beta_min)
        dsigma = -alpha * dalpha / sigma
        eps = self._eps(t, x, out)
        x0 = (x - _bc(sigma, x) * eps) / _bc(alpha, x)
        return _bc(dalpha, x) * x0 + _bc(dsigma, x) * eps


class VE(Interpolant):
    """Variance-exploding diffusion in EDM form (Karras et al. 2022), as SiD uses: x_t = x0 + sigma(t) x1.

    sigma(t) = sigma_min^(1-t) sigma_max^t; the function is the denoiser (target x0) with EDM's weight
    lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2. Sampler: probability-flow ODE.
    """
    name = 've'

    def __init__(self, sigma_min=0.002, sigma_max=80.0, sigma_data=0.5):
        self.sigma_min, self.sigma_max, self.sigma_data = sigma_min, sigma_max, sigma_data

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


class Bridge(Interpolant):
    """Bridge Matching with a Brownian bridge (App. C.1; Peluchetti 2023, Liu et al. 2022).

    (x0, x1) ~ pi a data coupling (x1 the corrupted sample); x_t = (1-t) x0 + t x1 + sigma sqrt(t(1-t)) eps.
    Target (x_t - x0)/t: the drift of the bridge pinned at x0, so the reverse SDE from t=1 is
    x <- x - h f(t, x) + sigma sqrt(h) xi (the Markovian projection keeps the marginals of the coupling).
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
