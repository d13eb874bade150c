"""Closed-form prediction for the missing-mode experiment: where RealUID puts a one-step generator's mass when
the teacher under-weights one mode of the 8-Gaussian toy (arXiv 2509.22459, App. A.1.3 / A.1.4).

The generator minimizes eq. 25 integrated over t ~ U[0, 1] (flow matching, w = 1): the maximum over the fake of
eq. 17 with a teacher f^ (Lemma 2's argument), as in test_theory.py's integrated tests, here for 2-D mixtures:

    D(w) = int dt int dx ||f^ P - (1 - beta) p* f* - beta p^w f^w||^2 / P,   P = (1 - alpha) p* + alpha p^w,

p* = the data (8 modes, weight 1/8 each), f^ = the exact fm field of the teacher's mixture (weight w_T on mode
7), p^w = the generator's mixture (weight w on mode 7, (1 - w) / 7 on each other), every mode N(c_k, 0.15^2 I).
The prediction is argmin_w D(w). numpy and scipy only; fm: x_t = (1 - t) x0 + t x1, target x1 - x0.
"""
import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp, roots_legendre

MODES, RADIUS, STD, MISSING = 8, 2.0, 0.15, 7                   # train.py's toy_data; mode 7 is the one left out
CENTERS = RADIUS * np.stack([np.cos(2 * np.pi * np.arange(MODES) / MODES),
                             np.sin(2 * np.pi * np.arange(MODES) / MODES)], 1)   # (8, 2)


def weights(w_missing):
    """Mixture weights (8,): w_missing on mode 7, the rest shared equally by the other seven."""
    return np.r_[np.full(MODES - 1, (1 - w_missing) / (MODES - 1)), w_missing]


def components(t, x):
    """Each mode k seen at time t: log density of x_t (G, 8) and its fm field E[x1 - x0 | x_t = x, k] (G, 8, 2).

    x_t | k ~ N((1 - t) c_k, v I), v = (1 - t)^2 s^2 + t^2; Cov(x1 - x0, x_t) = (t - (1 - t) s^2) I, so
    f_k(x) = -c_k + K (x - (1 - t) c_k) with K = (t - (1 - t) s^2) / v.
    """
    var = (1 - t) ** 2 * STD ** 2 + t ** 2
    gain = (t - (1 - t) * STD ** 2) / var
    means = (1 - t) * CENTERS                                   # (8, 2)
    log_density = -((x[:, None] - means) ** 2).sum(-1) / (2 * var) - np.log(2 * np.pi * var)
    return log_density, -CENTERS + gain * (x[:, None] - means)


def field(w, log_density, f_k):
    """fm field of the mixture with weights w: posterior-weighted f_k (stable in the tails) -> (G, 2)."""
    with np.errstate(divide='ignore'):
        log_joint = np.log(w) + log_density
    r = np.exp(log_joint - logsumexp(log_joint, 1, keepdims=True))
    return (r[..., None] * f_k).sum(1)


def grid(spacing, half_width=3.6):
    """Square grid (G, 2) and its cell area; the data sits within radius 2 + 5 std = 2.75."""
    g = np.arange(-half_width, half_width + spacing / 2, spacing)
    xx, yy = np.meshgrid(g, g)
    return np.stack([xx.ravel(), yy.ravel()], 1), spacing ** 2


def integrated_eq25(w_teacher, alpha, beta, t_points=24, spacing=0.025):
    """w -> D(w) above: Gauss-Legendre in t (an open rule: t = 0 and 1 are not evaluated), a grid sum in x.

    p^w and p^w f^w are linear in the weights, so each t node keeps the per-mode densities and fluxes and D(w)
    costs one small matrix product per node.
    """
    x, area = grid(spacing)
    nodes, t_weights = roots_legendre(t_points)
    precomputed = []
    for t, t_weight in zip((nodes + 1) / 2, t_weights / 2):
        log_density, f_k = components(t, x)
        density = np.exp(log_density)                          # (G, 8); underflows to 0 only far from every mode
        flux = density[..., None] * f_k                        # (G, 8, 2): p_k f_k
        real = weights(1 / MODES)
        precomputed.append((t_weight, density, flux, density @ real, np.einsum('gkd,k->gd', flux, real),
                            field(weights(w_teacher), log_density, f_k)))

    def distance(w):
        gen, total = weights(w), 0.0
        for t_weight, density, flux, p_real, flux_real, f_teacher in precomputed:
            p_gen, flux_gen = density @ gen, np.einsum('gkd,k->gd', flux, gen)
            mix = (1 - alpha) * p_real + alpha * p_gen
            u = f_teacher * mix[:, None] - (1 - beta) * flux_real - beta * flux_gen
            total += t_weight * area * ((u ** 2).sum(1) / np.maximum(mix, 1e-300)).sum()
        return total
    return distance


def predicted_mass(w_teacher, alpha, beta, **kw):
    """argmin over w in [0, 1/2] of D(w) (bounded Brent, xatol 1e-6); D is increasing from 0 when the
    optimum is at the boundary, reported as 0."""
    result = minimize_scalar(integrated_eq25(w_teacher, alpha, beta, **kw), bounds=(0.0, 0.5), method='bounded',
                             options=dict(xatol=1e-6))
    return float(result.x) if result.x > 1e-5 else 0.0
