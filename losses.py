"""RealUID losses (Universal Inverse Distillation with real data, arXiv 2509.22459) as pure functions.

Functions are callables f(t, x, y) in the t=0-is-data convention; `interp` is an interpolants.Interpolant
(anything with sample(x0, x1, t, eps) -> (t, x_t, target), sample_t and weight). T = f_t(x_t | x0) denotes
the conditional target. Reduction: per sample, the squared l2 norm summed over non-batch dimensions times
w(t); reduction='mean' averages over the batch, 'none' returns per-sample contributions whose mean is the
loss (for two-batch losses: the generated then the real samples, rescaled so that their joint mean is the
loss). Sign: every function returns the quantity its docstring names; who minimizes or maximizes it is
stated there. Within one call, teacher and fake see the same draws, and the generated and real batches share
one draw of (t, x1, eps) when their sizes match, as in Algorithm 1. Imports only torch: copy it alone.
"""
import torch
import torch.nn.functional as F


def _sqnorm(v):                                 # (B, ...) -> (B,)
    return v.flatten(1).pow(2).sum(1)


def _dot(u, v):                                 # (B, ...), (B, ...) -> (B,)
    return (u * v).flatten(1).sum(1)


def check_coefficients(alpha, beta, gamma=None):
    """alpha, beta (and gamma) in (0, 1]; alpha = 1 only with beta = 1 (Def. 2); gamma = 1 only with
    alpha = beta = 1 (Def. 3: otherwise the real-data term is linear in delta and unbounded)."""
    for name, v in (('alpha', alpha), ('beta', beta), ('gamma', gamma)):
        if v is not None and not 0 < v <= 1:
            raise ValueError(f'{name} must be in (0, 1], got {v}')
    if alpha == 1 and beta != 1:
        raise ValueError(f'alpha=1 requires beta=1 (the real-data term vanishes), got beta={beta}')
    if gamma == 1 and (alpha != 1 or beta != 1):
        raise ValueError(f'gamma=1 requires alpha=beta=1, got alpha={alpha}, beta={beta}')


def _reduce(parts, weights, reduction):
    """parts: per-sample terms of each batch; weights: each batch's coefficient in the loss."""
    if reduction == 'mean':
        return sum(w * p.mean() for p, w in zip(parts, weights))
    if reduction == 'none':
        n = sum(len(p) for p in parts)
        return torch.cat([w * n / len(p) * p for p, w in zip(parts, weights)])
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _paths(interp, x_gen, x_real, t=None, x1_gen=None, x1_real=None, eps=None):
    """(t, x_t, T) for the generated batch and, if given, the real batch (one shared draw, Algorithm 1)."""
    explicit = t is not None or eps is not None
    if t is None:
        t = interp.sample_t(x_gen.shape[0], x_gen.device)
    if x1_gen is None:
        x1_gen = torch.randn_like(x_gen)
    if eps is None:
        eps = torch.randn_like(x_gen)
    gen = interp.sample(x_gen, x1_gen, t, eps)
    if x_real is None:
        return gen, None
    if x_real.shape[0] == x_gen.shape[0]:
        return gen, interp.sample(x_real, x1_gen if x1_real is None else x1_real, t, eps)
    if explicit:
        raise ValueError('explicit t / eps are shared by both batches: give x_gen and x_real the same batch size')
    return gen, interp.sample(x_real, x1_real)


def _cat_labels(y_gen, y_real):
    if (y_gen is None) != (y_real is None):
        raise ValueError('give labels for both the generated and the real batch, or for neither')
    return None if y_gen is None else torch.cat([y_gen, y_real])


def _forward_both(f, gen, y_gen, real, y_real):
    """One forward of f on the generated and real x_t together (a single batch for BatchNorm-free nets)."""
    (tg, xg, _), (tr, xr, _) = gen, real
    out = f(torch.cat([tg, tr]), torch.cat([xg, xr]), _cat_labels(y_gen, y_real))
    return out[:len(xg)], out[len(xg):]


def _use_real(alpha, x_real):
    if alpha == 1:
        return None
    if x_real is None:
        raise ValueError(f'alpha={alpha} < 1 needs a real-data batch x_real')
    return x_real


def um_loss(f, interp, x0, y=None, x1=None, t=None, eps=None, reduction='mean'):
    """Universal Matching loss, Def. 1 / eq. 3: E_t w(t) ||f(t, x_t) - T||^2. Minimized by the teacher."""
    t, xt, target = interp.sample(x0, x1, t, eps)
    return _reduce([interp.weight(t) * _sqnorm(f(t, xt, y) - target)], [1.0], reduction)


def realum_loss(f, interp, x_gen, x_real, alpha, beta, y_gen=None, y_real=None, t=None, x1_gen=None,
                x1_real=None, eps=None, reduction='mean'):
    """RealUM loss, Def. 2 / eq. 16. Minimized by the fake model:

    alpha E_gen ||f(x_t) - (beta/alpha) T||^2 + (1-alpha) E_real ||f(x_t) - ((1-beta)/(1-alpha)) T||^2.
    alpha = beta = 1 is the UM loss on generated data (x_real is ignored).
    """
    check_coefficients(alpha, beta)
    x_real = _use_real(alpha, x_real)
    gen, real = _paths(interp, x_gen, x_real, t, x1_gen, x1_real, eps)
    if real is None:
        out_gen = f(gen[0], gen[1], y_gen)
        return _reduce([interp.weight(gen[0]) * _sqnorm(out_gen - gen[2])], [1.0], reduction)
    out_gen, out_real = _forward_both(f, gen, y_gen, real, y_real)
    term_gen = interp.weight(gen[0]) * _sqnorm(out_gen - beta / alpha * gen[2])
    term_real = interp.weight(real[0]) * _sqnorm(out_real - (1 - beta) / (1 - alpha) * real[2])
    return _reduce([term_gen, term_real], [alpha, 1 - alpha], reduction)


def realuid_loss(teacher, fake, interp, x_gen, x_real, alpha, beta, y_gen=None, y_real=None, t=None,
                 x1_gen=None, x1_real=None, eps=None, reduction='mean'):
    """RealUID loss, eq. 17 (inverse form): RealUM(teacher) - RealUM(fake) on the same draws.

    The fake maximizes it, the generator minimizes it; its maximum over the fake is the distance of
    Lemma 2 / eq. 18 (Lemma 1 / eq. 14 for alpha = beta = 1). For monitoring and tests.
    """
    check_coefficients(alpha, beta)
    x_real = _use_real(alpha, x_real)
    gen, real = _paths(interp, x_gen, x_real, t, x1_gen, x1_real, eps)

    def diff(out_teacher, out_fake, path, scale):   # ||f* - s T||^2 - ||f - s T||^2, times w(t)
        target = scale * path[2]
        return interp.weight(path[0]) * (_sqnorm(out_teacher - target) - _sqnorm(out_fake - target))

    if real is None:
        term = diff(teacher(gen[0], gen[1], y_gen), fake(gen[0], gen[1], y_gen), gen, 1.0)
        return _reduce([term], [1.0], reduction)
    (teacher_gen, teacher_real), (fake_gen, fake_real) = (_forward_both(g, gen, y_gen, real, y_real)
                                                          for g in (teacher, fake))
    return _reduce([diff(teacher_gen, fake_gen, gen, beta / alpha),
                    diff(teacher_real, fake_real, real, (1 - beta) / (1 - alpha))],
                   [alpha, 1 - alpha], reduction)


def _delta(out_teacher, out_fake, beta, param):
    """delta = f* - f (param='standard') or beta (f* - f) (param='beta'), App. A.2."""
    if param not in ('standard', 'beta'):
        raise ValueError(f"param must be 'standard' or 'beta', got {param!r}")
    return (out_teacher - out_fake) * (beta if param == 'beta' else 1.0)


def general_realuid_loss(teacher, fake, interp, x_gen, x_real, alpha, beta, gamma=None, param='standard',
                         y_gen=None, y_real=None, t=None, x1_gen=None, x1_real=None, eps=None,
                         reduction='mean'):
    """General RealUID loss, Def. 3 (split form; Lemma 3 for gamma = alpha). Maximized by the fake:

    E_gen[-gamma ||d||^2 + 2 alpha <d, f*> - 2 beta <d, T>]
      + E_real[-(1-gamma) ||d||^2 + 2 (1-alpha) <d, f*> - 2 (1-beta) <d, T>],   d = f* - f or beta (f* - f).
    gamma defaults to alpha; then with param='standard' it equals realuid_loss (eq. 17). Its maximum over
    the fake is the distance of Lemma 4 / eq. 28.
    """
    gamma = alpha if gamma is None else gamma
    check_coefficients(alpha, beta, gamma)
    if (alpha, beta, gamma) == (1, 1, 1):
        x_real = None
    elif x_real is None:
        raise ValueError(f'alpha={alpha}, beta={beta}, gamma={gamma} needs a real-data batch x_real')
    gen, real = _paths(interp, x_gen, x_real, t, x1_gen, x1_real, eps)

    def split(out_teacher, out_fake, path, quad, lin_teacher, lin_target):
        d = _delta(out_teacher, out_fake, beta, param)
        return interp.weight(path[0]) * (-quad * _sqnorm(d) + 2 * lin_teacher * _dot(d, out_teacher)
                                         - 2 * lin_target * _dot(d, path[2]))

    if real is None:
        term = split(teacher(gen[0], gen[1], y_gen), fake(gen[0], gen[1], y_gen), gen, 1, 1, 1)
        return _reduce([term], [1.0], reduction)
    (teacher_gen, teacher_real), (fake_gen, fake_real) = (_forward_both(g, gen, y_gen, real, y_real)
                                                          for g in (teacher, fake))
    return _reduce([split(teacher_gen, fake_gen, gen, gamma, alpha, beta),
                    split(teacher_real, fake_real, real, 1 - gamma, 1 - alpha, 1 - beta)],
                   [1.0, 1.0], reduction)


def realuid_generator_loss(teacher, fake, interp, x_gen, alpha, beta, y=None, t=None, x1=None, eps=None,
                           sid_alpha=0.5, gamma=None, param='standard', reduction='mean'):
    """The generator's loss: the theta-dependent (generated-data) terms, minimized by the generator.

    E_gen w(t) [-2 sid_alpha gamma ||d||^2 + 2 alpha <d, f*(x_t)> - 2 beta <d, T>],  d = f* - f.
    Defaults (sid_alpha = 1/2, gamma = alpha, param='standard'): the theta-terms of eq. 17,
    alpha ||f* - (beta/alpha) T||^2 - alpha ||f - (beta/alpha) T||^2 (= the FGM / SiD loss for alpha=beta=1);
    sid_alpha != 1/2: RealSiD, eq. 34; gamma != alpha or param='beta': the generator terms of Def. 3.
    The fake is under stop-gradient in the paper's sense: gradients flow through x_t = x_t(G(z)) into both
    networks' inputs, but the caller must keep its parameters out of the update (train.py freezes them).
    """
    gamma = alpha if gamma is None else gamma
    check_coefficients(alpha, beta, gamma)
    t, xt, target = interp.sample(x_gen, x1, t, eps)
    out_teacher, out_fake = teacher(t, xt, y), fake(t, xt, y)
    d = _delta(out_teacher, out_fake, beta, param)
    term = -2 * sid_alpha * gamma * _sqnorm(d) + 2 * alpha * _dot(d, out_teacher) - 2 * beta * _dot(d, target)
    return _reduce([interp.weight(t) * term], [1.0], reduction)


def _unit(v, eps=1e-12):                        # per-sample v / ||v||
    return v / _sqnorm(v).add(eps).sqrt().view(-1, *([1] * (v.dim() - 1)))


def normalized_realuid_loss(teacher, fake, interp, x_gen, x_real, alpha, beta, y_gen=None, y_real=None,
                            t=None, x1_gen=None, x1_real=None, eps=None, reduction='mean'):
    """Normalized RealUID loss, Def. 4 (App. A.4), maximized by the fake; with n = (f* - f)/||f* - f||:

    E_gen <n, alpha f* - beta T> + E_real <n, (1-alpha) f* - (1-beta) T>.
    Its maximum over the fake is the non-squared distance E_real ||(beta-alpha) f* + r (alpha f* - beta f^theta)||,
    r = p^theta / p*; for alpha = beta = 1 the Normalized UID loss (eq. 36), max = E_gen ||f* - f^theta||.
    """
    check_coefficients(alpha, beta)
    x_real = _use_real(alpha, x_real)
    gen, real = _paths(interp, x_gen, x_real, t, x1_gen, x1_real, eps)

    def term(out_teacher, out_fake, path, a, b):
        return interp.weight(path[0]) * _dot(_unit(out_teacher - out_fake), a * out_teacher - b * path[2])

    if real is None:
        return _reduce([term(teacher(gen[0], gen[1], y_gen), fake(gen[0], gen[1], y_gen), gen, 1, 1)],
                       [1.0], reduction)
    (teacher_gen, teacher_real), (fake_gen, fake_real) = (_forward_both(g, gen, y_gen, real, y_real)
                                                          for g in (teacher, fake))
    return _reduce([term(teacher_gen, fake_gen, gen, alpha, beta),
                    term(teacher_real, fake_real, real, 1 - alpha, 1 - beta)], [1.0, 1.0], reduction)


def normalized_realuid_generator_loss(teacher, fake, interp, x_gen, alpha, beta, y=None, t=None, x1=None,
                                      eps=None, reduction='mean'):
    """Generated-data terms of Def. 4, minimized by the generator: E_gen <n(x_t), alpha f*(x_t) - beta T>."""
    check_coefficients(alpha, beta)
    t, xt, target = interp.sample(x_gen, x1, t, eps)
    out_teacher = teacher(t, xt, y)
    term = _dot(_unit(out_teacher - fake(t, xt, y)), alpha * out_teacher - beta * target)
    return _reduce([interp.weight(t) * term], [1.0], reduction)


def gan_discriminator_loss(logits_real, logits_gen):
    """UID+GAN baseline, eq. 8: -L_adv for D = sigmoid(logits); minimized by the discriminator (fake) head.

    Logits come from the caller (a head on the fake network fed noised real / generated samples).
    """
    return F.softplus(-logits_real).mean() + F.softplus(logits_gen).mean()


def gan_generator_loss(logits_gen):
    """UID+GAN baseline: the generator's side of eq. 8 in non-saturating form, -E log D(x_t^theta)."""
    return F.softplus(-logits_gen).mean()
