"""P(A > B) over every source of variation: how often a run of A beats a run of B, with an interval.

When the runs of each variant vary every seed stream (init, order, augment, teacher) and the tuning
draw, P(A > B) = P(X_a > X_b) + 0.5 P(X_a = X_b) for one run of each is the common-language effect
size (the Mann-Whitney U / (n_a n_b), the AUC of the two samples). Bouthillier et al. 2021
("Accounting for Variance in Machine Learning Benchmarks", MLSys) recommend it, estimated over runs
that randomise every source of variation of the pipeline, as the statistic to decide a comparison:
the improvement is significant when the interval of P(A > B) lies above 0.5, and it is judged
meaningful against a threshold gamma on P(A > B), for which they propose 0.75. Their test compares
the interval with 0.5 and with gamma; here `significant` is low > 0.5, `meaningful` is significant
and estimate >= gamma, and `surely_meaningful` the strict reading, low >= gamma.

Intervals:
- "newcombe" (default): Newcombe 2006 (Stat Med 25:559-573), Method 5: a score-type interval that
  solves |p - theta| = z sqrt(V(theta)) for theta, with the Hanley-McNeil variance in which n_a - 1 and
  n_b - 1 are both replaced by N* - 1, N* = (n_a + n_b) / 2:
  V(theta) = theta (1 - theta) / (n_a n_b) [1 + (N* - 1) ((1 - theta) / (2 - theta) + theta / (1 + theta))].
  Chosen because it stays inside [0, 1] and is not degenerate when the samples do not overlap
  (P = 1 is common with 3-5 seeds a side; it gives [0.50, 1] from 3 runs a side, [0.64, 1] from 5,
  not [1, 1]), and because Newcombe found it the best of the asymptotic methods for small samples.
  Simulated coverage of the 95 % interval (normal runs, P from 0.5 to 0.92): 0.90-0.97 with 3 runs a
  side, 0.94-0.975 with 5 to 15, where Brunner-Munzel's falls to 0.39-0.75 at P = 0.92 with 3-8 runs.
  It ignores ties in its variance (the estimate counts them half).
- "brunner-munzel": P +- t_{df} sigma, with the Brunner-Munzel (2000) variance from the placements
  and Welch-Satterthwaite df; its t equals scipy.stats.brunnermunzel(b, a).statistic (scipy's
  statistic is oriented the other way: brunnermunzel(a, b) gives -t). It collapses to
  a point when the samples do not overlap (the placements then have no spread), so it is offered for
  larger samples and as a cross-check.
The percentile bootstrap of harness.report.compare collapses in the same way (every resample of
non-overlapping samples gives 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize
from scipy import stats as sps

from harness.errors import DataError
from harness.report.compare import probability_of_improvement

Method = Literal["newcombe", "brunner-munzel"]
DEFAULT_GAMMA = 0.75  # Bouthillier et al. 2021's threshold of a meaningful P(A > B)


@dataclass(frozen=True)
class Superiority:
    """P(A > B) with its interval and the decision of Bouthillier et al. 2021.

    Attributes:
        estimate: P(A > B), ties counted half, in [0, 1].
        low, high: its interval at `confidence`.
        n_a, n_b: runs of each variant.
        method: "newcombe" or "brunner-munzel".
        significant: low > 0.5 (A beats B more often than not, at this confidence).
        meaningful: significant and estimate >= gamma.
        surely_meaningful: low >= gamma (the interval excludes gains below the threshold).
    """

    estimate: float
    low: float
    high: float
    n_a: int
    n_b: int
    method: str
    confidence: float
    gamma: float
    significant: bool
    meaningful: bool
    surely_meaningful: bool


def _samples(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.size == 0 or b.size == 0:
        raise DataError(f"P(A > B) needs runs of both variants, got {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise DataError("P(A > B): a score is missing or non-finite; drop the failed runs first")
    return a, b


def newcombe_interval(p: float, n_a: int, n_b: int, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's Method 5 interval of P(A > B) (see the module docstring).

    Args:
        p: the estimate, in [0, 1]; n_a, n_b: sample sizes, >= 1.
    """
    z = float(sps.norm.ppf((1 + confidence) / 2))
    n_star = (n_a + n_b) / 2

    def excess(theta: float) -> float:  # (p - theta)^2 - z^2 V(theta): <= 0 exactly inside the interval
        v = theta * (1 - theta) / (n_a * n_b) * (1 + (n_star - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta)))
        return (p - theta) ** 2 - z * z * v

    # excess(p) = -z^2 V(p) < 0 unless p is 0 or 1; step just inside then (V > 0 on (0, 1)).
    inner = min(max(p, 1e-12), 1 - 1e-12)
    low = 0.0 if p == 0 else optimize.brentq(excess, 0.0, inner, xtol=1e-12)
    high = 1.0 if p == 1 else optimize.brentq(excess, inner, 1.0, xtol=1e-12)
    return float(low), float(high)


def _placements(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each run's share of the other sample it beats (ties half): shapes (n_a,), (n_b,)."""
    pa = (a[:, None] > b[None, :]).mean(axis=1) + 0.5 * (a[:, None] == b[None, :]).mean(axis=1)
    pb = (b[:, None] > a[None, :]).mean(axis=1) + 0.5 * (b[:, None] == a[None, :]).mean(axis=1)
    return pa, pb


def brunner_munzel(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Brunner-Munzel inference on P(A > B): (t, df, low, high).

    t = (P - 0.5) / sigma with sigma^2 = var(placements of a) / n_a + var(placements of b) / n_b (ddof 1),
    df by Welch-Satterthwaite; the interval is P +- t_{df, (1 + confidence) / 2} sigma, clipped to [0, 1].

    Args:
        a: shape (n_a,), b: shape (n_b,), each n >= 2.

    Raises:
        DataError: fewer than 2 runs a side.
    """
    a, b = _samples(a, b)
    if a.size < 2 or b.size < 2:
        raise DataError(f"Brunner-Munzel needs at least 2 runs a side, got {a.size} and {b.size}")
    p = probability_of_improvement(a, b)
    pa, pb = _placements(a, b)
    va, vb = pa.var(ddof=1) / a.size, pb.var(ddof=1) / b.size
    sigma = math.sqrt(va + vb)
    if sigma == 0:  # samples that do not overlap (or all equal): no spread of the placements
        return (math.copysign(math.inf, p - 0.5) if p != 0.5 else 0.0), math.nan, p, p
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)) if va + vb > 0 else math.nan
    half = float(sps.t.ppf((1 + confidence) / 2, df)) * sigma
    return (p - 0.5) / sigma, float(df), max(p - half, 0.0), min(p + half, 1.0)


def superiority(
    a: np.ndarray, b: np.ndarray, confidence: float = 0.95, gamma: float = DEFAULT_GAMMA,
    method: Method = "newcombe",
) -> Superiority:
    """P(A > B) between the runs of two variants, with its interval and the decision.

    Args:
        a: shape (n_a,), b: shape (n_b,): one score per run (runs vary every seed stream).
        confidence: level of the interval.
        gamma: the threshold of a meaningful P(A > B), in (0.5, 1].
        method: "newcombe" (any n >= 1) or "brunner-munzel" (n >= 2 a side).

    Raises:
        DataError: an empty side or non-finite scores (or < 2 runs a side for Brunner-Munzel).
    """
    a, b = _samples(a, b)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not 0.5 < gamma <= 1:
        raise ValueError(f"gamma must be in (0.5, 1], got {gamma}")
    p = probability_of_improvement(a, b)
    if method == "newcombe":
        low, high = newcombe_interval(p, a.size, b.size, confidence)
    elif method == "brunner-munzel":
        _, _, low, high = brunner_munzel(a, b, confidence)
    else:
        raise ValueError(f"method must be 'newcombe' or 'brunner-munzel', got {method!r}")
    significant = low > 0.5
    return Superiority(p, low, high, int(a.size), int(b.size), method, confidence, gamma, significant,
                       significant and p >= gamma, low >= gamma)


def superiority_reading(s: Superiority, name_a: str = "A", name_b: str = "B") -> str:
    """One sentence, e.g. "A beats B in 83 % of pairs of runs (95 % CI 62-94 %): significant, and above the 75 %
    of a meaningful gain."""
    level = f"{100 * s.confidence:.0f} % CI"
    text = (f"{name_a} beats {name_b} in {100 * s.estimate:.0f} % of pairs of runs "
            f"({level} {100 * s.low:.0f}-{100 * s.high:.0f} %)")
    if not s.significant:
        if s.high < 0.5:
            return text + f": {name_b} is the better one (the interval is below 50 %)."
        return text + ": not significant (the interval reaches 50 %)."
    if s.surely_meaningful:
        return text + f": significant, and meaningful (the whole interval is above {100 * s.gamma:.0f} %)."
    if s.meaningful:
        return text + f": significant, and above the {100 * s.gamma:.0f} % of a meaningful gain."
    return text + f": significant, but below the {100 * s.gamma:.0f} % of a meaningful gain."
