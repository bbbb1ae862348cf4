"""Comparisons of two trained configurations beyond the t-test (pure functions, numpy in, floats out).

- `probability_of_improvement(a, b)`: P(A > B), the chance that a run of a scores higher than a run
  of b (ties count half); Bouthillier et al. 2021, rliable's `probability_of_improvement`.
- `bootstrap_interval(...)`: percentile bootstrap interval of any two-sample statistic
  (scipy.stats.bootstrap), used for P(A > B) and for the difference of means.
- `rope_probabilities(...)`: the Bayesian comparison with a region of practical equivalence
  (Benavoli et al. 2017): P(A better), P(equivalent), P(B better) for the difference of means, from
  its Student posterior, computed by baycomp's `Posterior`.
- `paired_t`, `pearson_r`, `wilcoxon_p`: the paired analysis when variants share seeds.

Shapes: a sample is a 1-D array of per-seed scores, shape (n,), F1 in %. Paired samples are aligned
by seed (a[i] and b[i] share seed i). Every random draw comes from the np.random.Generator passed in.

Posteriors of the difference of means mu_a - mu_b (flat prior on the means, p(sigma) ~ 1/sigma,
normal scores): with a common sd (the paper's pooled t) it is exactly Student with n_a + n_b - 2 df,
centred on mean_a - mean_b, scale = the pooled t's standard error; with unequal sds ("welch") the
exact posterior is Behrens-Fisher, taken here as Student with Welch's df and scale (its usual
approximation); for paired runs it is Student with n - 1 df on the per-seed differences. baycomp's
own `CorrelatedTTest` inflates the variance by the Nadeau-Bengio factor for overlapping
cross-validation folds, which independent seeds do not have, so its `Posterior` is used directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats as sps

from harness.report import stats

DEFAULT_ROPE = 0.5  # F1 points: differences within +-0.5 points are "practically equivalent"
DEFAULT_RESAMPLES = 10_000


@dataclass(frozen=True)
class RopeProbabilities:
    """Posterior probabilities that mu_a - mu_b lies right of, within, or left of [-rope, +rope]."""

    p_a_better: float  # P(mu_a - mu_b > rope)
    p_equivalent: float  # P(|mu_a - mu_b| <= rope)
    p_b_better: float  # P(mu_a - mu_b < -rope)
    rope: float  # half-width, in the units of the scores (F1 points)
    mean: float  # posterior location of mu_a - mu_b
    scale: float  # posterior scale (the t-test's standard error)
    df: float


def probability_of_improvement(a: np.ndarray, b: np.ndarray) -> float:
    """P(A > B) = mean over all pairs (i, j) of [a_i > b_j] + 0.5 [a_i = b_j] (= U_a / (n_a n_b)).

    Args:
        a: shape (n_a,), b: shape (n_b,), both non-empty.
    """
    return float(_poi(np.asarray(a, dtype=float), np.asarray(b, dtype=float), axis=-1))


def _poi(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Vectorised P(A > B) over leading axes (scipy.stats.bootstrap's `vectorized` statistic)."""
    a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
    greater = (a[..., :, None] > b[..., None, :]).mean(axis=(-2, -1))
    ties = (a[..., :, None] == b[..., None, :]).mean(axis=(-2, -1))
    return greater + 0.5 * ties


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def bootstrap_interval(
    a: np.ndarray,
    b: np.ndarray,
    statistic: Callable[..., np.ndarray],
    rng: np.random.Generator,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    paired: bool = False,
) -> tuple[float, float]:
    """Percentile bootstrap interval of statistic(a, b) (scipy.stats.bootstrap, method "percentile").

    Unpaired: a and b are resampled independently (each arm keeps its size). Paired: seeds are
    resampled, each draw keeping a[i] with b[i].

    Args:
        a: shape (n_a,), b: shape (n_b,) (n_b = n_a when paired), each n >= 2.
        statistic: vectorised statistic(a, b, axis) -> array.
        rng: the generator of the resamples.

    Returns:
        (low, high). The percentile interval is used rather than BCa: with 3-10 seeds a side BCa's
        jackknife acceleration is itself noisy and fails (NaN) on tied resamples.
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if paired and a.size != b.size:
        raise ValueError(f"paired samples need equal sizes, got {a.size} and {b.size}")
    res = sps.bootstrap((a, b), statistic, n_resamples=n_resamples, vectorized=True, paired=paired,
                        confidence_level=confidence, method="percentile", rng=rng)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def probability_of_improvement_ci(
    a: np.ndarray, b: np.ndarray, rng: np.random.Generator, confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES, paired: bool = False,
) -> tuple[float, float, float]:
    """P(A > B) with its percentile bootstrap interval: (point, low, high), all in [0, 1]."""
    low, high = bootstrap_interval(a, b, _poi, rng, confidence, n_resamples, paired)
    return probability_of_improvement(a, b), low, high


def mean_difference_bootstrap_ci(
    a: np.ndarray, b: np.ndarray, rng: np.random.Generator, confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES, paired: bool = False,
) -> tuple[float, float, float]:
    """mean(a) - mean(b) with its percentile bootstrap interval: (diff, low, high), in score units."""
    low, high = bootstrap_interval(a, b, _mean_difference, rng, confidence, n_resamples, paired)
    return float(np.mean(a) - np.mean(b)), low, high


def _posterior_probabilities(mean: float, scale: float, df: float, rope: float) -> RopeProbabilities:
    from baycomp.single import Posterior

    if rope < 0 or not math.isfinite(rope):
        raise ValueError(f"rope must be a finite half-width >= 0, got {rope}")
    # baycomp's probs() are (left, rope, right) of the posterior of the difference it is given.
    probs = Posterior(mean, scale**2, df, rope).probs()
    if rope == 0:
        p_b, p_a = probs
        p_eq = 0.0
    else:
        p_b, p_eq, p_a = probs
    return RopeProbabilities(p_a_better=float(p_a), p_equivalent=float(p_eq), p_b_better=float(p_b),
                             rope=float(rope), mean=float(mean), scale=float(scale), df=float(df))


def rope_probabilities_from_summary(
    sa: stats.Summary, sb: stats.Summary, rope: float = DEFAULT_ROPE, test: stats.TestKind = "student"
) -> RopeProbabilities:
    """Bayesian comparison of two independent configurations from mean, sd and n alone.

    Args:
        sa, sb: summaries (sd with ddof 1), n >= 2 each, not both sds 0.
        rope: half-width of the region of practical equivalence, in score units (F1 points).
        test: "student" (common sd: exact posterior) or "welch" (Welch approximation).
    """
    se, df = stats._standard_error(sa.sd, sa.n, sb.sd, sb.n, test)
    return _posterior_probabilities(sa.mean - sb.mean, se, df, rope)


def rope_probabilities(
    a: np.ndarray, b: np.ndarray, rope: float = DEFAULT_ROPE, test: stats.TestKind = "student",
    paired: bool = False,
) -> RopeProbabilities:
    """Bayesian comparison with a ROPE from the runs (see the module docstring for the posteriors).

    Args:
        a: shape (n_a,), b: shape (n_b,); aligned by seed and of equal size when paired.
        rope: half-width of the region of practical equivalence (F1 points).
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if paired:
        d = _paired_differences(a, b)
        return _posterior_probabilities(float(d.mean()), float(d.std(ddof=1)) / math.sqrt(d.size), d.size - 1, rope)
    return rope_probabilities_from_summary(stats.summarize(a), stats.summarize(b), rope, test)


def _paired_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.size != b.size:
        raise ValueError(f"paired samples need equal sizes, got {a.size} and {b.size}")
    if a.size < 2:
        raise ValueError(f"a paired comparison needs at least 2 pairs, got {a.size}")
    return a - b


def paired_t(a: np.ndarray, b: np.ndarray) -> stats.TTest:
    """Paired t-test of a - b (as scipy.stats.ttest_rel): t, df = n - 1, two-sided p.

    Args:
        a, b: shape (n,), aligned by seed, n >= 2; the differences must not all be equal.
    """
    d = _paired_differences(np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel())
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        raise ValueError("the paired differences have zero variance: t is undefined")
    t = float(d.mean()) / (sd / math.sqrt(d.size))
    df = float(d.size - 1)
    return stats.TTest(t=t, df=df, p=float(2.0 * sps.t.sf(abs(t), df)))


def paired_mean_difference_ci(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of the paired differences with its t interval: (diff, low, high)."""
    d = _paired_differences(np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel())
    se = float(d.std(ddof=1)) / math.sqrt(d.size)
    half = float(sps.t.ppf(0.5 + confidence / 2.0, d.size - 1)) * se
    return float(d.mean()), float(d.mean()) - half, float(d.mean()) + half


def paired_effect_size(a: np.ndarray, b: np.ndarray) -> float:
    """d_z = mean(a - b) / sd(a - b) (ddof 1): the effect size that sets a paired t-test's power."""
    d = _paired_differences(np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel())
    return float(d.mean() / d.std(ddof=1))


def pearson_r(a: np.ndarray, b: np.ndarray) -> float | None:
    """Correlation of paired runs (a[i], b[i]); None when a side has no variance or n < 3.

    Positive r is what pairing buys: var(a - b) = var(a) + var(b) - 2 r sd(a) sd(b).
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.size != b.size or a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p of the paired differences (the paired rank test); None when
    all differences are 0."""
    d = _paired_differences(np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel())
    if np.all(d == 0):
        return None
    return float(sps.wilcoxon(d, alternative="two-sided").pvalue)
