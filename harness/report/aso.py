"""Almost Stochastic Order (Dror et al. 2019; del Barrio et al. 2018), as the deepsig package computes it.

`aso_epsilon(a, b, rng)` is the upper confidence bound eps_min of the violation ratio of "a is
stochastically larger than b": eps_min < 0.5 means a is better than b more often than not; the
deepsig authors recommend claiming "a better" only when eps_min < 0.2 (Ulmer et al. 2022).

Why not call deepsig.aso: it draws each bootstrap iteration with `np.random.seed(seed + i)`, i.e. it
resets numpy's *global* generator (changing every later global draw in the process) and cannot take
an `np.random.Generator`; it evaluates quantile functions through `np.vectorize` (about 4 s a call,
~2 minutes for the 24 rows of a report); and importing it imports torch and joblib's loky. This
module is the same algorithm, vectorised over bootstrap iterations, drawing from a Generator passed
in. `tests/test_report_aso.py` feeds both implementations the same uniforms and checks that they
agree to 1e-12, and checks the violation ratio by hand on tiny inputs.

The algorithm (deepsig 1.2.x, `aso` and `compute_violation_ratio`):
- quantile functions are the empirical ones, F^-1(t) = sorted(x)[ceil(n t) - 1];
- on the grid t = dt, 2 dt, ..., < 1: W2 = sum_t (G^-1 - F^-1)^2 dt (squared Wasserstein-2 distance)
  and the violation integral V = sum over t > dt with F^-1(t) < G^-1(t) of (G^-1 - F^-1)^2 dt
  (deepsig leaves the first grid point out of V, not of W2; kept for agreement);
  the violation ratio is eps = V / W2 (0.5 when W2 = 0: the samples have the same quantiles);
- the bootstrap redraws each sample from its empirical distribution (n_a and n_b draws),
  sigma = sd(sqrt(n_a n_b / (n_a + n_b)) (eps* - eps)) over iterations (ddof 0), and
  eps_min = clip(eps + sigma / sqrt(n_a n_b / (n_a + n_b)) * z_confidence, 0, 1).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

DEFAULT_DT = 0.005  # deepsig's default integration step
DEFAULT_ITERATIONS = 1000  # deepsig's default number of bootstrap iterations
RECOMMENDED_THRESHOLD = 0.2  # claim "a better than b" when eps_min < 0.2 (deepsig's recommendation)


def _grid(dt: float) -> np.ndarray:
    return np.arange(dt, 1, dt)  # as deepsig: the points t in (0, 1) the integral is taken over


def _quantiles(sorted_x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Empirical quantile function of each row at t.

    Args:
        sorted_x: shape (..., n), sorted along the last axis.
        t: shape (g,), in (0, 1).
    Returns:
        shape (..., g).
    """
    n = sorted_x.shape[-1]
    index = np.clip(np.ceil(n * t).astype(int) - 1, 0, n - 1)
    return sorted_x[..., index]


def violation_ratios(a: np.ndarray, b: np.ndarray, dt: float = DEFAULT_DT) -> np.ndarray:
    """Violation ratio of "a stochastically dominates b" for each row pair.

    Args:
        a: scores, shape (..., n_a).  b: shape (..., n_b), same leading shape as a.
    Returns:
        shape (...): V / W2 in [0, 1], 0.5 where the two empirical distributions coincide.
    """
    t = _grid(dt)
    f = _quantiles(np.sort(np.asarray(a, dtype=float), axis=-1), t)
    g = _quantiles(np.sort(np.asarray(b, dtype=float), axis=-1), t)
    diff = g - f
    w2 = np.sum(diff**2 * dt, axis=-1)
    violated = np.where(f >= g, 0.0, diff)
    v = np.sum(violated[..., 1:] ** 2 * dt, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(w2 == 0, 0.5, v / np.where(w2 == 0, 1.0, w2))


def _eps_min_from_uniforms(
    a: np.ndarray, b: np.ndarray, u_a: np.ndarray, u_b: np.ndarray, confidence: float, dt: float
) -> float:
    """eps_min from given bootstrap uniforms u_a (iterations, n_a) and u_b (iterations, n_b)."""
    sorted_a, sorted_b = np.sort(a), np.sort(b)
    eps = float(violation_ratios(a, b, dt))
    # Redraw each sample through its own quantile function (deepsig's bootstrap).
    boot = violation_ratios(_quantile_draws(sorted_a, u_a), _quantile_draws(sorted_b, u_b), dt)
    const = math.sqrt(a.size * b.size / (a.size + b.size))
    sigma = float(np.std(const * (boot - eps)))
    return float(np.clip(eps - sigma / const * sps.norm.ppf(1.0 - confidence), 0.0, 1.0))


def _quantile_draws(sorted_x: np.ndarray, u: np.ndarray) -> np.ndarray:
    n = sorted_x.size
    return sorted_x[np.clip(np.ceil(n * u).astype(int) - 1, 0, n - 1)]


def aso_epsilon(
    a: np.ndarray,
    b: np.ndarray,
    rng: np.random.Generator,
    confidence: float = 0.95,
    iterations: int = DEFAULT_ITERATIONS,
    dt: float = DEFAULT_DT,
) -> float:
    """eps_min of Almost Stochastic Order, "a is better than b" (higher scores better).

    Args:
        a: scores of configuration a, shape (n_a,), n_a >= 1.
        b: scores of configuration b, shape (n_b,), n_b >= 1.
        rng: the generator of the bootstrap draws (iterations x (n_a + n_b) uniforms).
        confidence: of the upper bound (deepsig's `confidence_level`; raise it to 1 - (1 - c) / m
            for a Bonferroni correction over m comparisons).
        iterations: bootstrap iterations.
        dt: integration step over t in (0, 1).

    Returns:
        eps_min in [0, 1]: < 0.5 a better than b more often than not, < 0.2 (recommended) a better;
        about 1 when b dominates a. eps_min(a, b) and eps_min(b, a) are both near 0.5 (both high) when
        neither dominates.
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError(f"ASO needs scores on both sides, got n_a={a.size}, n_b={b.size}")
    if iterations < 1:
        raise ValueError(f"iterations must be positive, got {iterations}")
    u_a = rng.uniform(0.0, 1.0, (iterations, a.size))
    u_b = rng.uniform(0.0, 1.0, (iterations, b.size))
    return _eps_min_from_uniforms(a, b, u_a, u_b, confidence, dt)
