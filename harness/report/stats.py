"""Statistics for Table 4: two-sample tests, effect sizes, multiplicity, power, rounding intervals.

Pure functions over numpy arrays or summary statistics (mean, sd, n): no pandas, no printing, no
plotting. Every sample is a 1-D array of per-seed scores (shape (n,), F1 in %); every sd is the
sample standard deviation (ddof = 1), as papers report it.

Conventions
- `test="student"`: pooled-variance two-sample t, df = n_a + n_b - 2 (the paper's test).
  `test="welch"`: unequal variances, Welch-Satterthwaite df.
- Differences are always a - b, so t > 0 means a scored higher than b.
- `paired=True` (variants share seeds, runs aligned by seed): the paired t on the per-seed
  differences, df = n - 1, and the correlation of the pairs; see `compare`.
- A comparison is *not testable* when a side has fewer than 2 runs, or when both sides have zero
  variance (t is 0/0 or x/0), or (paired) when the differences have zero variance. `compare` then
  returns a row with `testable=False`, a `reason`, and None in every statistic: it never raises and
  never lets a NaN through.
- The statistics beyond the t-test live in `harness.report.compare` (P(A > B), bootstrap, Bayesian
  ROPE, paired tests) and `harness.report.aso`; `compare` gathers them into one row.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from scipy import stats as sps

TestKind = Literal["student", "welch"]
TESTS: tuple[str, ...] = ("student", "welch")
DEFAULT_ALPHAS: tuple[float, ...] = (0.2, 0.05, 0.01)


@dataclass(frozen=True)
class TTest:
    """Result of a two-sample t-test."""

    t: float  # statistic of a - b
    df: float  # degrees of freedom (integer-valued for Student)
    p: float  # two-sided p-value


@dataclass(frozen=True)
class Summary:
    """Summary statistics of one sample."""

    mean: float
    sd: float  # sample sd, ddof = 1 (0.0 when n < 2)
    n: int


@dataclass(frozen=True)
class Comparison:
    """Everything a Table 4 row shows. Statistics are None when the comparison is not testable."""

    label: str
    a: str  # name of configuration a
    b: str
    summary_a: Summary
    summary_b: Summary
    test: str  # "student" or "welch"
    testable: bool
    reason: str  # why not testable; "" when testable
    alphas: tuple[float, ...]
    t: float | None = None
    df: float | None = None
    p: float | None = None
    significant: tuple[bool, ...] | None = None  # p < alpha, one per entry of `alphas`
    diff: float | None = None  # mean_a - mean_b
    ci_low: float | None = None  # 95 % CI of the difference (same t distribution as the test)
    ci_high: float | None = None
    hedges_g: float | None = None
    p_holm: float | None = None  # Holm-adjusted p over the table's family (set by compare_family)
    mann_whitney_p: float | None = None  # None from summary statistics (needs the runs)
    seeds_for_power: int | None = None  # per arm, 80 % power at alpha 0.05 for |hedges_g| (|d_z| paired)
    # Beyond the paper (harness.report.compare, harness.report.aso). None where not computed: the
    # resampling statistics need the runs and a generator; the Bayesian ones need only summaries.
    seeds_for_power_by_alpha: tuple[int | None, ...] | None = None  # per arm, 80 % power, one per alpha
    paired: bool = False  # runs matched by seed; t, df, p, CI and power are then the paired ones
    correlation: float | None = None  # Pearson r between paired runs (paired only)
    wilcoxon_p: float | None = None  # paired rank test (paired only; Mann-Whitney is the unpaired one)
    prob_improvement: float | None = None  # P(A > B) over pairs of runs
    pi_low: float | None = None  # its 95 % percentile bootstrap interval
    pi_high: float | None = None
    boot_low: float | None = None  # 95 % percentile bootstrap interval of the difference of means
    boot_high: float | None = None
    aso_a: float | None = None  # Almost Stochastic Order eps_min of "a better than b" (< 0.2: a better)
    aso_b: float | None = None  # eps_min of "b better than a"
    rope: float | None = None  # half-width of the region of practical equivalence (score units)
    p_a_better: float | None = None  # posterior P(mu_a - mu_b > rope)
    p_equivalent: float | None = None  # posterior P(|mu_a - mu_b| <= rope)
    p_b_better: float | None = None  # posterior P(mu_a - mu_b < -rope)


def _check_test(test: str) -> None:
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")


def summarize(x: np.ndarray) -> Summary:
    """Mean, sample sd (ddof 1) and n of a sample.

    Args:
        x: scores, shape (n,).
    """
    x = np.asarray(x, dtype=float).ravel()
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    sd = float(x.std(ddof=1)) if n >= 2 else 0.0
    return Summary(mean=mean, sd=sd, n=n)


def mean_ci(x: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The t interval of a sample's mean, (low, high); (mean, mean) for fewer than 2 values."""
    s = summarize(x)
    if s.n < 2:
        return s.mean, s.mean
    half = float(sps.t.ppf(0.5 + confidence / 2, s.n - 1)) * s.sd / math.sqrt(s.n)
    return s.mean - half, s.mean + half


def _standard_error(sd_a: float, n_a: int, sd_b: float, n_b: int, test: str) -> tuple[float, float]:
    """Standard error of mean_a - mean_b and its degrees of freedom."""
    if test == "student":
        df = float(n_a + n_b - 2)
        pooled_var = ((n_a - 1) * sd_a**2 + (n_b - 1) * sd_b**2) / df
        return math.sqrt(pooled_var * (1.0 / n_a + 1.0 / n_b)), df
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    se2 = va + vb
    # Welch-Satterthwaite; with one variance 0 it reduces to n - 1 of the other side.
    df = se2**2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    return math.sqrt(se2), float(df)


def t_from_summary(
    mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int, test: TestKind = "student"
) -> TTest:
    """Two-sample t-test of a - b from summary statistics (as scipy.stats.ttest_ind_from_stats).

    Args:
        mean_a, sd_a, n_a: mean, sample sd (ddof 1) and size of sample a; likewise for b.
        test: "student" (pooled) or "welch".

    Raises:
        ValueError: n < 2 on a side, or both sds 0 (use `compare` for a non-raising row).
    """
    _check_test(test)
    if n_a < 2 or n_b < 2:
        raise ValueError(f"each sample needs n >= 2, got n_a={n_a}, n_b={n_b}")
    se, df = _standard_error(sd_a, n_a, sd_b, n_b, test) if (sd_a > 0 or sd_b > 0) else (0.0, 0.0)
    if se == 0.0:
        raise ValueError("both samples have zero variance: t is undefined")
    t = (mean_a - mean_b) / se
    p = float(2.0 * sps.t.sf(abs(t), df))
    return TTest(t=float(t), df=df, p=p)


def two_sample_t(a: np.ndarray, b: np.ndarray, test: TestKind = "student") -> TTest:
    """Two-sample t-test of a - b on raw scores (as scipy.stats.ttest_ind, equal_var = student).

    Args:
        a: scores of configuration a, shape (n_a,), n_a >= 2.
        b: scores of configuration b, shape (n_b,), n_b >= 2.
    """
    sa, sb = summarize(a), summarize(b)
    return t_from_summary(sa.mean, sa.sd, sa.n, sb.mean, sb.sd, sb.n, test)


def mean_difference_ci_from_summary(
    sa: Summary, sb: Summary, confidence: float = 0.95, test: TestKind = "student"
) -> tuple[float, float, float]:
    """Difference of means a - b and its CI: diff -+ t_{df, (1+confidence)/2} * se."""
    _check_test(test)
    se, df = _standard_error(sa.sd, sa.n, sb.sd, sb.n, test)
    diff = sa.mean - sb.mean
    half = float(sps.t.ppf(0.5 + confidence / 2.0, df)) * se
    return diff, diff - half, diff + half


def mean_difference_ci(
    a: np.ndarray, b: np.ndarray, confidence: float = 0.95, test: TestKind = "student"
) -> tuple[float, float, float]:
    """Difference of means a - b with its `confidence` CI, on the same t distribution as the test.

    Args:
        a: shape (n_a,), n_a >= 2.  b: shape (n_b,), n_b >= 2.

    Returns:
        (diff, low, high), in the units of the scores (F1 percentage points).
    """
    return mean_difference_ci_from_summary(summarize(a), summarize(b), confidence, test)


def hedges_g_from_summary(sa: Summary, sb: Summary) -> float:
    """Hedges' g of a - b; see `hedges_g`."""
    df = sa.n + sb.n - 2
    pooled_sd = math.sqrt(((sa.n - 1) * sa.sd**2 + (sb.n - 1) * sb.sd**2) / df)
    d = (sa.mean - sb.mean) / pooled_sd
    # Hedges' approximate small-sample correction J = 1 - 3 / (4 (n_a + n_b) - 9); it differs from
    # the exact gamma-function form by < 0.1 % from n_a + n_b = 10 on, far below seed noise.
    return d * (1.0 - 3.0 / (4.0 * (sa.n + sb.n) - 9.0))


def hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    """Hedges' g: Cohen's d on the pooled sd (ddof 1), times J = 1 - 3/(4(n_a+n_b)-9).

    Args:
        a: shape (n_a,), b: shape (n_b,), n_a + n_b >= 3 and a non-zero pooled sd.
    """
    return hedges_g_from_summary(summarize(a), summarize(b))


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (as statsmodels multipletests(method="holm")[1]).

    Sorted ascending, p_(i) is multiplied by (m - i) (i 0-based), made non-decreasing by a running
    max, and capped at 1; results come back in the input order.

    Args:
        pvalues: shape (m,).
    Returns:
        adjusted p-values, shape (m,).
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (m - np.arange(m))
    adjusted_sorted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted


def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value (scipy.stats.mannwhitneyu).

    The exact null distribution is used when the pooled sample has no ties and n_a + n_b <= 40
    (10 seeds a side is cheap to enumerate); otherwise the normal approximation with tie and
    continuity correction. scipy's own "auto" would switch to the approximation above n = 8,
    which is rough at the paper's n = 10.

    Args:
        a: shape (n_a,), b: shape (n_b,), both non-empty.
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    pooled = np.concatenate([a, b])
    has_ties = np.unique(pooled).size < pooled.size
    method = "exact" if (not has_ties and pooled.size <= 40) else "asymptotic"
    return float(sps.mannwhitneyu(a, b, alternative="two-sided", method=method).pvalue)


def _power_by_integration(nc: float, df: int, alpha: float) -> float:
    """Power of a two-sided t-test with non-centrality nc and df, integrating over the chi-square of
    the sd.

    Used where the non-central t of scipy (and hence statsmodels) returns NaN, which happens for
    large non-centralities at tiny df (e.g. d = 9, n = 2).
    """
    from scipy import integrate

    crit = float(sps.t.isf(alpha / 2.0, df))

    def reject_given_v(v: float) -> float:
        x = crit * math.sqrt(v / df)  # reject when |Z + nc| > x, Z standard normal
        return (float(sps.norm.sf(x - nc)) + float(sps.norm.cdf(-x - nc))) * float(sps.chi2.pdf(v, df))

    return float(integrate.quad(reject_given_v, 0.0, math.inf)[0])


def power_two_sample(d: float, n: int, alpha: float) -> float:
    """Power of the two-sided two-sample (pooled) t-test with n runs per arm at effect size d."""
    from statsmodels.stats.power import TTestIndPower

    value = float(TTestIndPower().power(effect_size=d, nobs1=n, alpha=alpha, ratio=1.0))
    return value if math.isfinite(value) else _power_by_integration(d * math.sqrt(n / 2.0), 2 * n - 2, alpha)


def power_paired(d_z: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired t-test with n pairs at effect size d_z = mean / sd of differences."""
    from statsmodels.stats.power import TTestPower

    value = float(TTestPower().power(effect_size=d_z, nobs=n, alpha=alpha))
    return value if math.isfinite(value) else _power_by_integration(d_z * math.sqrt(n), n - 1, alpha)


def _smallest_n(power_at, d: float, alpha: float, power: float, solve) -> int | None:
    """The smallest n >= 2 with power_at(d, n, alpha) >= power; None for d = 0 or not finite."""
    d = abs(float(d))
    if not math.isfinite(d) or d == 0.0:
        return None
    if d >= 1.0:  # small n: scan exactly, which also avoids the solver's convergence failures
        for n in range(2, 64):
            if power_at(d, n, alpha) >= power:
                return n
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a failed solve returns NaN, handled below
        n_solved = solve(d)
    n_solved = float(np.asarray(n_solved).ravel()[0])
    if not math.isfinite(n_solved):
        return None
    n = max(2, math.ceil(n_solved - 1e-9))
    while n > 2 and power_at(d, n - 1, alpha) >= power:  # the solver's root may sit just above
        n -= 1
    return n


def seeds_for_power(effect_size_d: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Runs per arm for a two-sided two-sample t-test to reach `power` at effect size |d|.

    statsmodels TTestIndPower.solve_power (equal arms), rounded up, never below 2 (a t-test needs
    2 per arm). For very large effects (where statsmodels' non-central t gives NaN) the smallest n
    is found by scanning n = 2, 3, ... with the power integrated numerically. Returns None when
    the effect is 0 or not finite (no finite n suffices).
    """
    from statsmodels.stats.power import TTestIndPower

    return _smallest_n(power_two_sample, effect_size_d, alpha, power, lambda d: TTestIndPower().solve_power(
        effect_size=d, nobs1=None, alpha=alpha, power=power, ratio=1.0))


def seeds_for_power_paired(effect_size_dz: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Pairs (seeds per arm) for a two-sided paired t-test to reach `power` at |d_z|.

    d_z = mean(a - b) / sd(a - b); statsmodels TTestPower.solve_power, rounded up, never below 2;
    None for d_z = 0 or not finite.
    """
    from statsmodels.stats.power import TTestPower

    return _smallest_n(power_paired, effect_size_dz, alpha, power, lambda d: TTestPower().solve_power(
        effect_size=d, nobs=None, alpha=alpha, power=power))


def _not_testable_reason(sa: Summary, sb: Summary) -> str:
    if sa.n < 2 or sb.n < 2:
        return f"fewer than 2 runs on a side (n = {sa.n} vs {sb.n})"
    if sa.sd == 0.0 and sb.sd == 0.0:
        return "zero variance on both sides"
    if not all(math.isfinite(v) for v in (sa.mean, sa.sd, sb.mean, sb.sd)):
        return "non-finite scores"
    return ""


def compare_summary(
    sa: Summary,
    sb: Summary,
    test: TestKind = "student",
    alphas: tuple[float, ...] = DEFAULT_ALPHAS,
    label: str = "",
    a: str = "a",
    b: str = "b",
    rope: float | None = None,
) -> Comparison:
    """A Table 4 row from summary statistics: t, df, p, decisions, CI, g, power at every alpha, and
    the Bayesian ROPE probabilities (`rope` in score units, default compare.DEFAULT_ROPE). The
    statistics that need the runs (Mann-Whitney, P(A > B), bootstrap, ASO) stay None."""
    from harness.report import compare as cmp

    _check_test(test)
    rope = cmp.DEFAULT_ROPE if rope is None else float(rope)
    reason = _not_testable_reason(sa, sb)
    base = Comparison(label=label, a=a, b=b, summary_a=sa, summary_b=sb, test=test,
                      testable=not reason, reason=reason, alphas=tuple(alphas), rope=rope)
    if reason:
        return base
    tt = t_from_summary(sa.mean, sa.sd, sa.n, sb.mean, sb.sd, sb.n, test)
    diff, low, high = mean_difference_ci_from_summary(sa, sb, 0.95, test)
    g = hedges_g_from_summary(sa, sb)
    bayes = cmp.rope_probabilities_from_summary(sa, sb, rope, test)
    return dataclasses.replace(
        base, t=tt.t, df=tt.df, p=tt.p, significant=tuple(tt.p < al for al in alphas),
        diff=diff, ci_low=low, ci_high=high, hedges_g=g, seeds_for_power=seeds_for_power(g),
        seeds_for_power_by_alpha=tuple(seeds_for_power(g, al) for al in alphas),
        p_a_better=bayes.p_a_better, p_equivalent=bayes.p_equivalent, p_b_better=bayes.p_b_better,
    )


def _compare_paired(a: np.ndarray, b: np.ndarray, base: Comparison) -> Comparison:
    """The paired replacement of t, df, p, CI, power and the rank test (a, b aligned by seed)."""
    from harness.report import compare as cmp

    reason = ""
    if a.size != b.size:
        reason = f"paired runs are not aligned by seed (n = {a.size} vs {b.size})"
    elif float((a - b).std(ddof=1)) == 0.0:
        reason = "the paired differences have zero variance"
    if reason:
        return dataclasses.replace(base, testable=False, reason=reason,
                                   t=None, df=None, p=None, significant=None, diff=None, ci_low=None,
                                   ci_high=None, hedges_g=None, seeds_for_power=None,
                                   seeds_for_power_by_alpha=None, p_a_better=None, p_equivalent=None,
                                   p_b_better=None, paired=True)
    tt = cmp.paired_t(a, b)
    diff, low, high = cmp.paired_mean_difference_ci(a, b)
    d_z = cmp.paired_effect_size(a, b)
    bayes = cmp.rope_probabilities(a, b, base.rope if base.rope is not None else cmp.DEFAULT_ROPE, paired=True)
    return dataclasses.replace(
        base, paired=True, t=tt.t, df=tt.df, p=tt.p, significant=tuple(tt.p < al for al in base.alphas),
        diff=diff, ci_low=low, ci_high=high, seeds_for_power=seeds_for_power_paired(d_z),
        seeds_for_power_by_alpha=tuple(seeds_for_power_paired(d_z, al) for al in base.alphas),
        correlation=cmp.pearson_r(a, b), wilcoxon_p=cmp.wilcoxon_p(a, b), mann_whitney_p=None,
        p_a_better=bayes.p_a_better, p_equivalent=bayes.p_equivalent, p_b_better=bayes.p_b_better,
    )


def compare(
    a: np.ndarray,
    b: np.ndarray,
    test: TestKind = "student",
    alphas: tuple[float, ...] = DEFAULT_ALPHAS,
    label: str = "",
    name_a: str = "a",
    name_b: str = "b",
    *,
    rope: float | None = None,
    paired: bool = False,
    rng: np.random.Generator | None = None,
    n_resamples: int = 10_000,
    aso_iterations: int = 1000,
) -> Comparison:
    """A Table 4 row from raw scores: the paper's t-test and everything beyond it.

    Args:
        a: scores of configuration a, shape (n_a,) (any n, even 0).
        b: scores of configuration b, shape (n_b,); when `paired`, aligned with a by seed (b[i] and
            a[i] share seed i) and n_b = n_a.
        rope: half-width of the region of practical equivalence, score units (F1 points);
            default compare.DEFAULT_ROPE.
        paired: the variants share seeds: paired t (df = n - 1), paired CI, d_z power, Wilcoxon
            signed-rank, the correlation of the pairs; resampling keeps pairs together.
        rng: generator of the resampling statistics (P(A > B) interval, bootstrap interval of the
            difference, ASO). None leaves those None (nothing is drawn from a global generator).
        n_resamples: bootstrap resamples; aso_iterations: ASO's bootstrap iterations.
    """
    from harness.report import aso, compare as cmp

    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    row = compare_summary(summarize(a), summarize(b), test, alphas, label, name_a, name_b, rope)
    if not row.testable:
        return dataclasses.replace(row, paired=paired)
    if paired:
        row = _compare_paired(a, b, row)
        if not row.testable:
            return row
    else:
        row = dataclasses.replace(row, mann_whitney_p=mann_whitney_p(a, b))
    row = dataclasses.replace(row, prob_improvement=cmp.probability_of_improvement(a, b))
    if rng is None:
        return row
    # Independent streams per statistic, so that adding one never shifts another's numbers.
    rng_pi, rng_diff, rng_aso_a, rng_aso_b = rng.spawn(4)
    _, pi_low, pi_high = cmp.probability_of_improvement_ci(a, b, rng_pi, n_resamples=n_resamples, paired=paired)
    _, boot_low, boot_high = cmp.mean_difference_bootstrap_ci(a, b, rng_diff, n_resamples=n_resamples, paired=paired)
    return dataclasses.replace(
        row, pi_low=pi_low, pi_high=pi_high, boot_low=boot_low, boot_high=boot_high,
        aso_a=aso.aso_epsilon(a, b, rng_aso_a, iterations=aso_iterations),
        aso_b=aso.aso_epsilon(b, a, rng_aso_b, iterations=aso_iterations),
    )


def with_holm(rows: Sequence[Comparison]) -> list[Comparison]:
    """Fill p_holm over the family of testable rows (untestable rows keep None and are not counted)."""
    idx = [i for i, r in enumerate(rows) if r.testable]
    adjusted = holm([rows[i].p for i in idx]) if idx else np.empty(0)
    out = list(rows)
    for i, p_adj in zip(idx, adjusted):
        out[i] = dataclasses.replace(rows[i], p_holm=float(p_adj))
    return out


def _ratio(num: float, den: float) -> float:
    """num / den with x/0 = sign(x) * inf and 0/0 = 0 (a zero difference has t = 0 at any sd)."""
    if den > 0:
        return num / den
    return 0.0 if num == 0 else math.copysign(math.inf, num)


def t_rounding_interval(
    mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int,
    decimals_mean: int | tuple[int, int], decimals_sd: int | tuple[int, int], test: TestKind = "student",
) -> tuple[float, float]:
    """Range of t consistent with published means and sds rounded to the given decimals.

    Each published value v with k decimals stands for any true value in [v - h, v + h], h = 0.5 * 10^-k
    (sds clipped at 0). Decimals may be one int for both configurations or a pair (a, b).

    Why the 2^4 corners of the (mean_a, mean_b, sd_a, sd_b) box suffice: t = (mean_a - mean_b) / se,
    where se (pooled or Welch) is increasing in each sd and does not depend on the means. t increases
    in mean_a and decreases in mean_b, so for any sds its extremes lie at the ends of the difference
    interval [d_lo, d_hi]. For a fixed difference d, t = d / se is monotone in se, hence in each sd
    separately (decreasing if d > 0, increasing if d < 0), so its extremes lie at the sd interval
    ends. When [d_lo, d_hi] straddles 0 the maximum is d_hi / se_min > 0 and the minimum d_lo / se_min
    < 0, both still corners. se_min may be 0 (both sds round to 0): then t is unbounded (+-inf).

    Returns:
        (t_low, t_high).
    """
    _check_test(test)
    dma, dmb = (decimals_mean, decimals_mean) if isinstance(decimals_mean, int) else decimals_mean
    dsa, dsb = (decimals_sd, decimals_sd) if isinstance(decimals_sd, int) else decimals_sd

    def half(decimals: int) -> float:  # half a unit of the last published decimal
        return 0.5 * 10.0 ** (-decimals)

    ts = []
    for ma in (mean_a - half(dma), mean_a + half(dma)):
        for mb in (mean_b - half(dmb), mean_b + half(dmb)):
            for sa in (max(sd_a - half(dsa), 0.0), sd_a + half(dsa)):
                for sb in (max(sd_b - half(dsb), 0.0), sd_b + half(dsb)):
                    se = _standard_error(sa, n_a, sb, n_b, test)[0] if (sa > 0 or sb > 0) else 0.0
                    ts.append(_ratio(ma - mb, se))
    return float(min(ts)), float(max(ts))
