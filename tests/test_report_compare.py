"""harness.report.compare and the rows of stats.compare: against scipy, baycomp and hand computation."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from harness.report import compare, stats

A = np.array([1.0, 2.0, 3.0])
B = np.array([2.0, 2.0, 2.0])


def test_probability_of_improvement_by_hand():
    # pairs with a > b: 3 > 2 three times; ties: 2 = 2 three times -> (3 + 1.5) / 9
    assert compare.probability_of_improvement(A, B) == pytest.approx(0.5)
    # 3 > 1, 2; 3 = 3; 4 > 1, 2, 3 -> (5 + 0.5) / 6
    assert compare.probability_of_improvement([3.0, 4.0], [1.0, 2.0, 3.0]) == pytest.approx(5.5 / 6)
    assert compare.probability_of_improvement([5.0], [1.0]) == 1.0
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 7), rng.normal(0.5, 1, 5)
    u = sps.mannwhitneyu(a, b).statistic  # U of a: pairs a > b, ties half
    assert compare.probability_of_improvement(a, b) == pytest.approx(u / 35)


def test_probability_of_improvement_interval():
    rng = np.random.default_rng(1)
    a, b = rng.normal(41, 0.6, 10), rng.normal(40.5, 0.7, 10)
    point, low, high = compare.probability_of_improvement_ci(a, b, np.random.default_rng(2), n_resamples=2000)
    assert 0 <= low <= point <= high <= 1
    again = compare.probability_of_improvement_ci(a, b, np.random.default_rng(2), n_resamples=2000)
    assert again == (point, low, high)  # same generator, same numbers
    other = compare.probability_of_improvement_ci(a, b, np.random.default_rng(3), n_resamples=2000)
    assert other[1:] != (low, high)


def test_bootstrap_interval_is_scipys_percentile_bootstrap():
    rng = np.random.default_rng(4)
    a, b = rng.normal(40, 1, 6), rng.normal(39, 1, 5)
    diff, low, high = compare.mean_difference_bootstrap_ci(a, b, np.random.default_rng(5), n_resamples=3000)
    ref = sps.bootstrap((a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), n_resamples=3000,
                        vectorized=True, method="percentile", rng=np.random.default_rng(5))
    assert diff == pytest.approx(a.mean() - b.mean())
    assert (low, high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))


def test_paired_bootstrap_keeps_pairs():
    a = np.array([40.0, 42.0, 38.0, 41.0, 39.5])
    b = a - 1.0  # every pair differs by exactly 1 point
    _, low, high = compare.mean_difference_bootstrap_ci(a, b, np.random.default_rng(0), n_resamples=500, paired=True)
    assert low == pytest.approx(1.0) and high == pytest.approx(1.0)
    _, low_u, high_u = compare.mean_difference_bootstrap_ci(a, b, np.random.default_rng(0), n_resamples=500)
    assert low_u < 0.5 and high_u > 1.5  # unpaired, the seed-to-seed spread enters


def test_rope_probabilities_by_hand():
    sa, sb = stats.Summary(40.7, 0.6, 10), stats.Summary(40.3, 0.7, 10)
    got = compare.rope_probabilities_from_summary(sa, sb, rope=0.5)
    se = math.sqrt((0.36 + 0.49) / 2 * 0.2)  # pooled standard error, df 18
    assert got.df == 18 and got.scale == pytest.approx(se) and got.mean == pytest.approx(0.4)
    assert got.p_a_better == pytest.approx(sps.t.sf((0.5 - 0.4) / se, 18))
    assert got.p_b_better == pytest.approx(sps.t.cdf((-0.5 - 0.4) / se, 18))
    assert got.p_a_better + got.p_equivalent + got.p_b_better == pytest.approx(1.0)
    # Without a ROPE the posterior P(B better) is the one-sided p-value of the pooled t-test.
    flat = compare.rope_probabilities_from_summary(sa, sb, rope=0.0)
    assert flat.p_equivalent == 0.0
    assert flat.p_b_better == pytest.approx(stats.t_from_summary(40.7, 0.6, 10, 40.3, 0.7, 10).p / 2)
    welch = compare.rope_probabilities_from_summary(sa, sb, rope=0.5, test="welch")
    assert welch.df == pytest.approx(stats.t_from_summary(40.7, 0.6, 10, 40.3, 0.7, 10, "welch").df)
    with pytest.raises(ValueError, match="rope"):
        compare.rope_probabilities_from_summary(sa, sb, rope=-1.0)


def test_rope_probabilities_match_baycomp_posterior():
    from baycomp.single import Posterior

    a, b = np.array([41.0, 40.5, 40.9, 41.3, 40.2]), np.array([40.1, 40.6, 39.8, 40.0, 40.4])
    got = compare.rope_probabilities(a, b, rope=0.3, paired=True)
    d = a - b
    left, middle, right = Posterior(d.mean(), d.var(ddof=1) / 5, 4, 0.3).probs()
    assert (got.p_b_better, got.p_equivalent, got.p_a_better) == pytest.approx((left, middle, right))
    # baycomp's correlated t-test is the same posterior with the variance inflated by the
    # Nadeau-Bengio factor (1/n + 1/(k - 1)) / (1/n) for k-fold cross-validation; with runs = 1 and
    # n = 5 "folds" its variance is (1/5 + 1/4) / (1/5) = 2.25 times ours: independent seeds have no
    # fold overlap, which is why the harness uses the Posterior directly.
    mean, var, df = __import__("baycomp").CorrelatedTTest.compute_statistics(b, a, runs=1)
    assert mean == pytest.approx(d.mean()) and df == 4
    assert var == pytest.approx(got.scale**2 * 2.25)


def test_paired_t_and_rank_test_match_scipy():
    rng = np.random.default_rng(6)
    shared = rng.normal(40, 1, 8)  # seed effect shared by both variants
    a, b = shared + rng.normal(0.5, 0.3, 8), shared + rng.normal(0, 0.3, 8)
    got = compare.paired_t(a, b)
    ref = sps.ttest_rel(a, b)
    assert got.t == pytest.approx(ref.statistic) and got.p == pytest.approx(ref.pvalue) and got.df == 7
    assert compare.wilcoxon_p(a, b) == pytest.approx(sps.wilcoxon(a - b).pvalue)
    assert compare.pearson_r(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])
    diff, low, high = compare.paired_mean_difference_ci(a, b)
    half = sps.t.ppf(0.975, 7) * (a - b).std(ddof=1) / math.sqrt(8)
    assert (low, high) == pytest.approx((diff - half, diff + half))
    assert compare.paired_effect_size(a, b) == pytest.approx((a - b).mean() / (a - b).std(ddof=1))
    assert compare.pearson_r([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None
    assert compare.wilcoxon_p(a, a) is None


def test_compare_row_without_and_with_generator():
    rng = np.random.default_rng(7)
    a, b = rng.normal(41, 0.6, 5), rng.normal(40, 0.7, 5)
    plain = stats.compare(a, b, rope=0.5)
    assert plain.pi_low is None and plain.aso_a is None and plain.boot_low is None  # nothing drawn
    assert plain.prob_improvement == compare.probability_of_improvement(a, b)
    assert plain.p_a_better is not None and plain.rope == 0.5
    assert plain.seeds_for_power_by_alpha == tuple(stats.seeds_for_power(plain.hedges_g, al) for al in plain.alphas)
    full = stats.compare(a, b, rope=0.5, rng=np.random.default_rng(8), n_resamples=1000, aso_iterations=200)
    assert full == stats.compare(a, b, rope=0.5, rng=np.random.default_rng(8), n_resamples=1000, aso_iterations=200)
    assert 0 <= full.pi_low <= full.prob_improvement <= full.pi_high <= 1
    assert full.boot_low <= full.diff <= full.boot_high
    assert 0 <= full.aso_a <= 1 and 0 <= full.aso_b <= 1 and full.aso_a < full.aso_b  # a is better here
    assert stats.compare(a, b).rope == compare.DEFAULT_ROPE


def test_compare_paired_row():
    rng = np.random.default_rng(9)
    shared = rng.normal(40, 1.0, 6)
    a, b = shared + 0.8 + rng.normal(0, 0.2, 6), shared + rng.normal(0, 0.2, 6)
    row = stats.compare(a, b, paired=True, rng=np.random.default_rng(1), n_resamples=500, aso_iterations=100)
    ref = sps.ttest_rel(a, b)
    assert row.paired and row.df == 5 and row.t == pytest.approx(ref.statistic)
    assert row.correlation == pytest.approx(np.corrcoef(a, b)[0, 1]) and row.correlation > 0.8
    assert row.mann_whitney_p is None and row.wilcoxon_p == pytest.approx(sps.wilcoxon(a - b).pvalue)
    d_z = (a - b).mean() / (a - b).std(ddof=1)
    assert row.seeds_for_power == stats.seeds_for_power_paired(d_z)
    unpaired = stats.compare(a, b)
    assert row.p < unpaired.p  # pairing removes the shared seed effect
    # Not testable: unaligned, or differences without variance.
    assert not stats.compare(a, b[:5], paired=True).testable
    flat = stats.compare(a, a - 1.0, paired=True)
    assert not flat.testable and "paired differences" in flat.reason and flat.t is None


def test_seeds_for_power_paired():
    from statsmodels.stats.power import TTestPower

    for d in (0.3, 0.8):
        solved = TTestPower().solve_power(effect_size=d, nobs=None, alpha=0.05, power=0.8)
        assert stats.seeds_for_power_paired(d) == math.ceil(solved)
    assert stats.seeds_for_power_paired(1.0) == 10  # power 0.80 first reached at 10 pairs
    assert stats.power_paired(1.0, 10, 0.05) >= 0.8 > stats.power_paired(1.0, 9, 0.05)
    assert stats.seeds_for_power_paired(30.0) == 2
    assert stats.seeds_for_power_paired(0.0) is None
    assert stats.seeds_for_power(1.0, alpha=0.2) < stats.seeds_for_power(1.0) < stats.seeds_for_power(1.0, 0.01)
