"""Equivalence of two sets of runs: two one-sided t-tests (TOST; Schuirmann 1987). Pure functions.

A t-test that finds no difference does not show that there is none; TOST does, within a stated margin:
it rejects both "a - b <= -margin" and "a - b >= margin" at level alpha, which is the same as the
(1 - 2 alpha) t interval of the difference lying inside (-margin, margin). Used to decide whether a
cheaper setting (e.g. train.precision = "bf16") gives the numbers of the reference one: run both on the
same seeds and test the paired differences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class Equivalence:
    """TOST of a - b against +-margin.

    Attributes:
        n: pairs (paired) or n_a + n_b (unpaired).
        diff: mean difference a - b (score units).
        se, df: its standard error and degrees of freedom.
        low, high: the (1 - 2 alpha) t interval of the difference.
        p_lower: p of H0 "diff <= -margin"; p_upper: p of H0 "diff >= margin".
        p: max(p_lower, p_upper), the TOST p-value.
        equivalent: p < alpha (the interval inside (-margin, margin)).
    """

    n: int
    diff: float
    se: float
    df: float
    low: float
    high: float
    p_lower: float
    p_upper: float
    p: float
    margin: float
    alpha: float
    equivalent: bool


def tost(a: np.ndarray, b: np.ndarray, margin: float, alpha: float = 0.05, paired: bool = True) -> Equivalence:
    """Two one-sided t-tests of a - b within +-margin.

    Args:
        a, b: scores, shape (n,) each when paired (a[i] and b[i] share seed i and variant), else (n_a,), (n_b,).
        margin: the equivalence margin, > 0, in score units (e.g. 1.0 F1 point).
        alpha: level of each one-sided test.
        paired: paired differences (df = n - 1) or Student's pooled two-sample t (df = n_a + n_b - 2).

    Raises:
        ValueError: a margin <= 0, too few runs, or paired arrays of different lengths.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}")
    if paired:
        if a.shape != b.shape:
            raise ValueError(f"paired scores differ in shape: {a.shape} vs {b.shape}")
        d = a - b
        if d.size < 2:
            raise ValueError("TOST needs at least 2 pairs")
        n, diff, df = int(d.size), float(d.mean()), float(d.size - 1)
        se = float(d.std(ddof=1) / math.sqrt(d.size))
    else:
        if a.size < 2 or b.size < 2:
            raise ValueError("TOST needs at least 2 runs a side")
        n, diff, df = int(a.size + b.size), float(a.mean() - b.mean()), float(a.size + b.size - 2)
        pooled = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / df
        se = float(math.sqrt(pooled * (1 / a.size + 1 / b.size)))
    if se == 0:
        inside = abs(diff) < margin
        p_lower = p_upper = 0.0 if inside else 1.0
        low = high = diff
    else:
        p_lower = float(sps.t.sf((diff + margin) / se, df))
        p_upper = float(sps.t.cdf((diff - margin) / se, df))
        half = float(sps.t.ppf(1 - alpha, df)) * se
        low, high = diff - half, diff + half
    p = max(p_lower, p_upper)
    return Equivalence(n, diff, se, df, low, high, p_lower, p_upper, p, float(margin), float(alpha), p < alpha)
