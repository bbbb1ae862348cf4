"""harness.report.stats against scipy, statsmodels and hand computation, and the paper's Table 4."""

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from harness.report import stats

A = np.array([1.0, 2.0, 3.0])
B = np.array([2.0, 4.0, 6.0])


@pytest.mark.parametrize("test,equal_var", [("student", True), ("welch", False)])
def test_two_sample_t_matches_scipy(test, equal_var):
    rng = np.random.default_rng(0)
    a, b = rng.normal(40, 1, 7), rng.normal(39, 2, 5)
    got = stats.two_sample_t(a, b, test)
    ref = sps.ttest_ind(a, b, equal_var=equal_var)
    assert got.t == pytest.approx(ref.statistic, rel=1e-12)
    assert got.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert got.df == pytest.approx(ref.df, rel=1e-12)


@pytest.mark.parametrize("test,equal_var", [("student", True), ("welch", False)])
def test_t_from_summary_matches_scipy(test, equal_var):
    got = stats.t_from_summary(40.7, 0.6, 10, 40.3, 0.7, 12, test)
    ref = sps.ttest_ind_from_stats(40.7, 0.6, 10, 40.3, 0.7, 12, equal_var=equal_var)
    assert got.t == pytest.approx(ref.statistic, rel=1e-12)
    assert got.p == pytest.approx(ref.pvalue, rel=1e-10)


def test_student_by_hand():
    # means 2 and 4, variances 1 and 4; pooled var (2*1 + 2*4)/4 = 2.5; se = sqrt(2.5 * 2/3)
    r = stats.two_sample_t(A, B, "student")
    assert r.df == 4
    assert r.t == pytest.approx(-2.0 / math.sqrt(2.5 * 2 / 3))


def test_welch_df_by_hand():
    # Welch-Satterthwaite: (va/na + vb/nb)^2 / ((va/na)^2/(na-1) + (vb/nb)^2/(nb-1)), va=1, vb=4, n=3
    va, vb = 1 / 3, 4 / 3
    expected = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    r = stats.two_sample_t(A, B, "welch")
    assert r.df == pytest.approx(expected)  # = 3.2352...
    assert r.t == pytest.approx(-2.0 / math.sqrt(va + vb))


def test_hedges_g_by_hand():
    # d = (2 - 4) / sqrt(2.5); J = 1 - 3 / (4 * 6 - 9) = 0.8
    assert stats.hedges_g(A, B) == pytest.approx(-2.0 / math.sqrt(2.5) * 0.8)


@pytest.mark.parametrize("test", ["student", "welch"])
def test_mean_difference_ci_by_hand(test):
    diff, low, high = stats.mean_difference_ci(A, B, 0.95, test)
    se = math.sqrt(2.5 * 2 / 3) if test == "student" else math.sqrt(1 / 3 + 4 / 3)
    df = stats.two_sample_t(A, B, test).df
    half = sps.t.ppf(0.975, df) * se
    assert diff == -2.0
    assert (low, high) == pytest.approx((-2.0 - half, -2.0 + half))
    assert low <= diff <= high
    # Student with df 4: t_{0.975,4} = 2.776445, se = 1.290994 -> half width 3.584
    if test == "student":
        assert high - diff == pytest.approx(3.5843, abs=1e-4)


def test_ci_excludes_zero_iff_p_below_alpha():
    rng = np.random.default_rng(3)
    for _ in range(20):
        a, b = rng.normal(0, 1, 6), rng.normal(1, 1, 6)
        _, low, high = stats.mean_difference_ci(a, b)
        assert (low > 0 or high < 0) == (stats.two_sample_t(a, b).p < 0.05)


def test_holm_matches_statsmodels_with_ties_and_ones():
    rng = np.random.default_rng(1)
    for size in (1, 2, 5, 12):
        p = rng.uniform(0, 0.2, size)
        if size >= 5:
            p[1] = p[3]  # a tie
            p[4] = 1.0
        expected = multipletests(p, method="holm")[1]
        np.testing.assert_allclose(stats.holm(p), expected, rtol=0, atol=1e-15)


def test_holm_hand():
    # sorted 0.01, 0.02, 0.04 -> 0.03, 0.04, 0.04 (running max)
    np.testing.assert_allclose(stats.holm([0.04, 0.01, 0.02]), [0.04, 0.03, 0.04])


def test_mann_whitney_exact_and_tied():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([5.0, 6.0, 7.0, 8.0])
    # Complete separation, exact: 2 / C(8, 4) = 2 / 70
    assert stats.mann_whitney_p(a, b) == pytest.approx(2 / 70)
    tied = np.array([1.0, 1.0, 2.0])
    ref = sps.mannwhitneyu(tied, b, alternative="two-sided", method="asymptotic").pvalue
    assert stats.mann_whitney_p(tied, b) == pytest.approx(ref)


def test_seeds_for_power():
    assert stats.seeds_for_power(1.0) == 17  # 16.71 -> 17 per arm at alpha 0.05, power 0.8
    assert stats.seeds_for_power(-1.0) == 17
    assert stats.seeds_for_power(0.5) == 64  # classic table value (63.77)
    assert stats.seeds_for_power(0.0) is None
    assert stats.seeds_for_power(20.0) == 2  # statsmodels' nct gives NaN here; never below 2
    assert stats.seeds_for_power(3.0) == 4  # power 0.78 at n = 3, 0.94 at n = 4


@pytest.mark.parametrize("a,b,reason", [
    ([40.0], [39.0, 38.0], "fewer than 2"),
    ([], [39.0, 38.0], "fewer than 2"),
    ([40.0, 40.0], [39.0, 39.0], "zero variance"),
    ([40.0, 40.0], [40.0, 40.0], "zero variance"),
])
def test_not_testable(a, b, reason):
    for test in ("student", "welch"):
        row = stats.compare(np.array(a), np.array(b), test)
        assert not row.testable
        assert reason in row.reason
        assert row.t is None and row.p is None and row.significant is None


def test_one_zero_variance_is_testable():
    for test in ("student", "welch"):
        row = stats.compare(np.array([40.0, 40.0, 40.0]), np.array([38.0, 39.0, 40.0]), test)
        assert row.testable and row.reason == ""
        ref = sps.ttest_ind([40.0, 40.0, 40.0], [38.0, 39.0, 40.0], equal_var=test == "student")
        assert row.t == pytest.approx(ref.statistic)
        assert math.isfinite(row.p)


def test_compare_row_contents():
    row = stats.compare(B, A, "student", label="B vs A", name_a="B", name_b="A")
    assert row.testable
    assert row.significant == tuple(row.p < al for al in (0.2, 0.05, 0.01))
    assert row.diff == 2.0 and row.ci_low < 2.0 < row.ci_high
    assert row.hedges_g == pytest.approx(2.0 / math.sqrt(2.5) * 0.8)
    assert row.seeds_for_power == stats.seeds_for_power(row.hedges_g)
    assert row.p_holm is None  # set per family
    holmed = stats.with_holm([row, stats.compare(A[:1], B), row])
    assert holmed[0].p_holm == pytest.approx(min(1.0, 2 * row.p))  # two testable rows in the family
    assert holmed[1].p_holm is None


def test_rounding_interval_brute_force():
    # The corners give the same extremes as a dense grid over the box, also when the difference
    # interval straddles 0.
    for (ma, sa, mb, sb) in [(40.7, 0.6, 40.3, 0.7), (40.3, 0.8, 40.3, 0.7), (1.0, 0.1, 1.05, 0.3)]:
        for test in ("student", "welch"):
            low, high = stats.t_rounding_interval(ma, sa, 10, mb, sb, 8, 1, 1, test)
            grid = np.linspace(-0.05, 0.05, 7)
            ts = [stats.t_from_summary(ma + x, sa + y, 10, mb + z, sb + w, 8, test).t
                  for x in grid for y in grid for z in grid for w in grid]
            assert low == pytest.approx(min(ts)) and high == pytest.approx(max(ts))


def test_rounding_interval_zero_sd():
    low, high = stats.t_rounding_interval(2.0, 0.0, 5, 1.0, 0.0, 5, 1, 1)
    assert high == math.inf and low > 0


# The paper: Tables 1-3 (validation F1, n = 10) and its Table 4.
PAPER_VAL = {"EF+SW+EM+CS": (40.7, 0.6), "SW+EM+CS": (40.3, 0.7), "HF+SW+EM+CS": (40.3, 0.8),
             "EF+SW+EM+SS": (40.0, 0.4), "EF+SW+EM+NS": (39.5, 0.4), "EF+SW+SM+CS": (39.2, 0.4),
             "EF+SW+NM+CS": (33.9, 0.8), "EF+W+EM+CS": (26.0, 1.0), "EM+CS": (21.0, 1.6)}
# label, a, b, published t, published Y/N at 0.2/0.05/0.01, published t consistent with rounding?
PAPER_TABLE4 = [
    ("Easier first vs all", "EF+SW+EM+CS", "SW+EM+CS", 1.413, "YNN", True),
    ("Harder first vs all", "HF+SW+EM+CS", "SW+EM+CS", 0.143, "NNN", True),
    ("Easier vs harder first", "EF+SW+EM+CS", "HF+SW+EM+CS", 1.483, "YNN", True),
    ("Cust. SpecAug vs std.", "EF+SW+EM+CS", "EF+SW+EM+SS", 2.802, "YYN", True),
    # Inconsistent: 40.7 +- 0.6 vs 39.5 +- 0.4 allow t in [4.400, 6.306] only.
    ("Cust. SpecAug vs none", "EF+SW+EM+CS", "EF+SW+EM+NS", 7.055, "YYY", False),
    ("Std. SpecAug vs none", "EF+SW+EM+SS", "EF+SW+EM+NS", 2.989, "YYY", True),
    ("Event mask vs segment", "EF+SW+EM+CS", "EF+SW+SM+CS", 6.800, "YYY", True),
    ("Segment mask vs none", "EF+SW+SM+CS", "EF+SW+NM+CS", 19.875, "YYY", True),
    ("Event mask vs none", "EF+SW+EM+CS", "EF+SW+NM+CS", 23.021, "YYY", True),
    ("Weak pseudolabels vs none", "EF+W+EM+CS", "EM+CS", 8.361, "YYY", True),
    ("Strong + weak vs weak", "EF+SW+EM+CS", "EF+W+EM+CS", 41.954, "YYY", True),
    ("Strong + weak vs none", "EF+SW+EM+CS", "EM+CS", 36.011, "YYY", True),
]
# Y/N from the *rounded* published means and sds differ from the paper in three rows.
RECOMPUTED_DIFFERENT = {"Easier vs harder first": "NNN", "Cust. SpecAug vs std.": "YYY",
                        "Std. SpecAug vs none": "YYN"}


@pytest.mark.parametrize("label,a,b,t_pub,yn,consistent", PAPER_TABLE4)
def test_paper_table4(label, a, b, t_pub, yn, consistent):
    (ma, sa), (mb, sb) = PAPER_VAL[a], PAPER_VAL[b]
    low, high = stats.t_rounding_interval(ma, sa, 10, mb, sb, 10, 1, 1, "student")
    assert (low - 5e-4 <= t_pub <= high + 5e-4) == consistent
    # The published t, at Student's df = 18, gives the paper's decisions in every row.
    p_pub = 2 * sps.t.sf(t_pub, 18)
    assert "".join("Y" if p_pub < al else "N" for al in (0.2, 0.05, 0.01)) == yn
    row = stats.compare_summary(stats.Summary(ma, sa, 10), stats.Summary(mb, sb, 10), "student")
    assert row.df == 18
    recomputed = "".join("Y" if s else "N" for s in row.significant)
    assert recomputed == RECOMPUTED_DIFFERENT.get(label, yn)


def test_paper_easier_first_vs_all_numbers():
    row = stats.compare_summary(stats.Summary(40.7, 0.6, 10), stats.Summary(40.3, 0.7, 10))
    assert row.t == pytest.approx(0.4 / math.sqrt((0.36 + 0.49) / 2 * 0.2))  # 1.372, not 1.413
    low, high = stats.t_rounding_interval(40.7, 0.6, 10, 40.3, 0.7, 10, 1, 1)
    assert low < 1.413 < high
