"""Simulated error rates of the convergence rule (harness.report.convergence), and the measured noise behind them.

Used by benchmarks/calibrate_convergence.py (the calibration table, RESULTS-convergence.md) and by the tests;
the report itself states the analytic rates (convergence.error_rates), which these simulations check.

- `residual_sd(slope, p, k)`: a tail's residual sd around its OLS line, recovered from the slope and its
  one-sided p-value (what convergence_runs.csv of the previous rule recorded): t = slope / se,
  se = sd / sqrt(Sxx), Sxx = k (k^2 - 1) / 12, k - 2 df.
- `lag1_autocorrelation(...)`: the lag-1 autocorrelation of detrended curves, and its bias under AR(1)
  noise after the same detrending (to correct the estimate by simulation).
- `simulate(...)`: validation curves = a shape (flat; rising then a plateau from an epoch on; rising
  linearly) + Gaussian AR(1) noise of a given sd and correlation.
- `old_rule_flags`, `new_rule_flags`: the previous rule (gain > 0.5 or OLS p < 0.05) and the current one on
  many curves at once; `flag_rate`: the share flagged.

Every random draw comes from the numpy Generator passed in. Shapes: curves are (m, n_epochs), F1 in %.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import stats as sps

from harness.report import convergence as conv

# The previous rule's constants (before issue 28): gain tolerance (points) and trend level.
OLD_GAIN_TOLERANCE = 0.5
OLD_TREND_ALPHA = 0.05

Shape = Literal["flat", "plateau", "rising"]


def residual_sd(slope: np.ndarray, p_one_sided: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Residual sd (points) around an OLS line on k consecutive epochs, from its slope and one-sided p-value
    (P(T >= t), T ~ Student(k - 2)): sd = slope / t * sqrt(k (k^2 - 1) / 12). Shapes broadcast."""
    slope, p, k = (np.asarray(a, dtype=float) for a in (slope, p_one_sided, k))
    t = sps.t.isf(p, k - 2)
    return slope / t * np.sqrt(k * (k ** 2 - 1) / 12)


def ar1_noise(rng: np.random.Generator, m: int, n: int, sd: float, rho: float) -> np.ndarray:
    """m stationary Gaussian AR(1) series of n epochs, marginal sd `sd`, lag-1 correlation rho: (m, n)."""
    e = rng.standard_normal((m, n))
    u = np.empty_like(e)
    u[:, 0] = e[:, 0]
    scale = np.sqrt(1.0 - rho ** 2)
    for t in range(1, n):
        u[:, t] = rho * u[:, t - 1] + scale * e[:, t]
    return sd * u


def detrend(y: np.ndarray, degree: int = 1) -> np.ndarray:
    """Residuals of each row of y (m, n) around its least-squares polynomial of `degree` in the epoch."""
    x = np.arange(y.shape[-1], dtype=float)
    design = np.vander(x - x.mean(), degree + 1)
    return y - y @ (design @ np.linalg.pinv(design)).T


def lag1_autocorrelation(y: np.ndarray, degree: int = 1) -> np.ndarray:
    """Lag-1 autocorrelation of each row's residuals after `detrend` (shape (m,) for y (m, n))."""
    r = detrend(np.atleast_2d(y), degree)
    r = r - r.mean(axis=1, keepdims=True)
    return (r[:, 1:] * r[:, :-1]).sum(axis=1) / (r * r).sum(axis=1)


def rho_from_lag1(observed_mean_r1: float, n: int, degree: int, rng: np.random.Generator, m: int = 4000,
                  grid: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """The AR(1) correlation whose detrended series of n epochs have mean lag-1 autocorrelation equal to the
    observed one (detrending biases r1 down, by ~1/n and more): (rho, grid, expected r1 on it)."""
    grid = np.linspace(-0.3, 0.9, 49) if grid is None else grid
    expected = np.array([lag1_autocorrelation(ar1_noise(rng, m, n, 1.0, r), degree).mean() for r in grid])
    return float(np.interp(observed_mean_r1, expected, grid)), grid, expected


def simulate(rng: np.random.Generator, m: int, n_epochs: int, shape: Shape, *, sd: float = conv.NOISE_SD,
             rho: float = 0.0, rise: float = 0.0, plateau_from: int | None = None, level: float = 40.0,
             climb: float = 1.0) -> np.ndarray:
    """m validation curves of n_epochs (m, n_epochs): a shape plus AR(1) noise (sd, rho).

    Shapes: "flat" (level throughout); "plateau" (rising `climb` points/epoch up to epoch plateau_from, level
    from there on); "rising" (rising `rise` points/epoch throughout, reaching level at the last epoch).
    """
    e = np.arange(1, n_epochs + 1, dtype=float)
    if shape == "flat":
        mean = np.full(n_epochs, level)
    elif shape == "plateau":
        if plateau_from is None:
            raise ValueError("a plateau needs plateau_from")
        mean = level - climb * np.clip(plateau_from - e, 0.0, None)
    elif shape == "rising":
        mean = level - rise * (n_epochs - e)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return mean + ar1_noise(rng, m, n_epochs, sd, rho)


def _tail(n_epochs: int) -> int:
    return conv.tail_length(n_epochs)


def old_rule_flags(curves: np.ndarray) -> np.ndarray:
    """The previous rule on each row: flagged iff gain > 0.5 points or OLS one-sided p < 0.05. (m,) bool."""
    n = curves.shape[1]
    k = _tail(n)
    gain = curves[:, n - k:].max(axis=1) - curves[:, : n - k].max(axis=1)
    _, p = conv.trend_test(np.arange(n - k + 1, n + 1), curves[:, n - k:], rho=0.0)
    return (gain > OLD_GAIN_TOLERANCE) | (p < OLD_TREND_ALPHA)


def new_rule_flags(curves: np.ndarray, rho: float = conv.NOISE_RHO, alpha: float = conv.TREND_ALPHA) -> np.ndarray:
    """The current rule on each row: flagged iff the GLS slope over the tail is significantly positive. (m,) bool."""
    n = curves.shape[1]
    k = _tail(n)
    _, p = conv.trend_test(np.arange(n - k + 1, n + 1), curves[:, n - k:], rho=rho)
    return p < alpha


def flag_rate(flags: np.ndarray) -> tuple[float, float]:
    """(share flagged, its Monte Carlo standard error)."""
    f = float(np.mean(flags))
    return f, float(np.sqrt(f * (1 - f) / flags.size))
