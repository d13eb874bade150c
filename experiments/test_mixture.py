"""mixture.py, the closed form behind the missing-mode experiment: its fm field against Tweedie's formula (an
independent route), and two exact properties of eq. 25 integrated over t that any quadrature must keep."""
import numpy as np
import pytest

import mixture


@pytest.mark.parametrize('t', [0.05, 0.3, 0.7, 0.95])
def test_mixture_field_is_tweedies_posterior_mean(t):
    """fm: x_t = (1 - t) x0 + t x1, noise t x1 ~ N(0, t^2 I). Tweedie: E[(1 - t) x0 | x_t] = x + t^2 s(x) and
    E[t x1 | x_t] = -t^2 s(x), s = grad log p_t, so f = E[x1 - x0 | x_t] = -t s - (x + t^2 s) / (1 - t). s by
    central differences of mixture.components' log density (h = 1e-5: error ~h^2 |log p'''| ~ 1e-8 relative
    to |f| ~ 1); tolerance 1e-5 absolute."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2)) * 1.5
    w = mixture.weights(0.03)

    def log_p(points):
        log_density, _ = mixture.components(t, points)
        return np.log(np.exp(log_density) @ w)

    h = 1e-5
    score = np.stack([(log_p(x + h * e) - log_p(x - h * e)) / (2 * h) for e in np.eye(2)], 1)
    expected = -t * score - (x + t ** 2 * score) / (1 - t)
    log_density, f_k = mixture.components(t, x)
    assert np.abs(mixture.field(w, log_density, f_k) - expected).max() < 1e-5


@pytest.mark.parametrize('w_teacher', [0.0, 0.00875, 0.05])
def test_uid_optimum_is_the_teachers_mass(w_teacher):
    """alpha = beta = 1: eq. 25 is E_gen ||f^ - f^w||^2 >= 0, zero at w = w_teacher whatever the quadrature, so
    the coarse rule (spacing 0.1, 8 t points) must find it to Brent's xatol (1e-6; 1e-5 allowed)."""
    assert mixture.predicted_mass(w_teacher, 1.0, 1.0, spacing=0.1, t_points=8) == pytest.approx(w_teacher, abs=1e-5)


def test_at_the_data_the_distance_does_not_depend_on_alpha_beta():
    """p^w = p* (w = 1/8): P = p*, so eq. 25 is p* ||f^ - f*||^2 for every (alpha, beta): the teacher's own error."""
    values = [mixture.integrated_eq25(0.01, a, b, spacing=0.1, t_points=8)(1 / 8)
              for a, b in ((1.0, 1.0), (0.9, 0.9), (0.9, 0.99), (0.8, 0.72))]
    assert values[0] > 0.1 and np.ptp(values) < 1e-10 * values[0]


@pytest.mark.slow
def test_prediction_does_not_move_with_a_finer_rule():
    """The experiment's rule (spacing 0.05, 16 Gauss-Legendre points) against spacing 0.025 and 24 points, at
    the measured teacher mass: measured difference 5e-6 for (0.9, 0.99); 1e-4 allowed, 1% of the values."""
    coarse = mixture.predicted_mass(0.00875, 0.9, 0.99, spacing=0.05, t_points=16)
    fine = mixture.predicted_mass(0.00875, 0.9, 0.99, spacing=0.025, t_points=24)
    assert coarse == pytest.approx(fine, abs=1e-4) and coarse > 0.0125
