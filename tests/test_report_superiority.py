"""harness.report.superiority: P(A > B) against scipy, by hand, and the coverage of its interval."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from harness.errors import DataError
from harness.report.superiority import (brunner_munzel, newcombe_interval, superiority, superiority_reading)

A = np.array([40.1, 41.3, 39.8, 41.3, 42.0])
B = np.array([39.5, 41.3, 40.0, 38.9, 40.2, 39.1])  # one tie with A (41.3, twice in A)


def test_hand_cases():
    s = superiority([1, 2, 3], [0, 0, 0])
    assert s.estimate == 1.0 and s.high == 1.0 and s.low < 1.0  # not the collapsed [1, 1]
    same = superiority([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same.estimate == 0.5 and same.low < 0.5 < same.high and not same.significant
    assert superiority([0, 0, 0], [1, 2, 3]).estimate == 0.0
    # [1, 2] vs [2, 0]: pairs (1>2 no, 1>0 yes, 2=2 half, 2>0 yes) -> 2.5 / 4.
    assert superiority([1, 2], [2, 0]).estimate == pytest.approx(0.625)


def test_estimate_is_mann_whitney_u_over_pairs():
    u = sps.mannwhitneyu(A, B, alternative="two-sided").statistic  # U of the first sample, ties half
    assert superiority(A, B).estimate == pytest.approx(u / (A.size * B.size))
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = np.round(rng.normal(40, 1, 7), 1), np.round(rng.normal(39.5, 1, 9), 1)
        u = sps.mannwhitneyu(a, b).statistic
        assert superiority(a, b).estimate == pytest.approx(u / 63)


def test_brunner_munzel_matches_scipy():
    t, df, low, high = brunner_munzel(A, B)
    ref = sps.brunnermunzel(B, A)  # scipy orients the statistic the other way round
    assert t == pytest.approx(ref.statistic) and sps.brunnermunzel(A, B).statistic == pytest.approx(-t)
    assert 2 * sps.t.sf(abs(t), df) == pytest.approx(ref.pvalue)
    p = superiority(A, B).estimate
    sigma = (p - 0.5) / t
    assert p - low == pytest.approx(sps.t.ppf(0.975, df) * sigma) and high == min(1.0, p + (p - low))
    s = superiority(A, B, method="brunner-munzel")
    assert (s.low, s.high) == pytest.approx((low, high)) and s.method == "brunner-munzel"
    # No overlap: the placements have no spread and the Brunner-Munzel interval collapses (documented).
    assert brunner_munzel([3, 4, 5], [0, 1, 2])[2:] == (1.0, 1.0)


def test_newcombe_by_hand():
    # Method 5 at p = 1, n_a = n_b = 5: the lower end solves (1 - t)^2 = z^2 V(t), V of Hanley-McNeil with N* = 5.
    low, high = newcombe_interval(1.0, 5, 5)
    z = sps.norm.ppf(0.975)
    v = low * (1 - low) / 25 * (1 + 4 * ((1 - low) / (2 - low) + low / (1 + low)))
    assert high == 1.0 and (1 - low) ** 2 == pytest.approx(z * z * v) and low == pytest.approx(0.6427, abs=1e-4)
    # Symmetric: the interval of 1 - p is the mirror image.
    lo, hi = newcombe_interval(0.3, 6, 4)
    assert newcombe_interval(0.7, 4, 6) == pytest.approx((1 - hi, 1 - lo))


@pytest.mark.parametrize("n,shift", [(5, 0.0), (5, 1.0), (10, 0.5), (10, 2.0)])
def test_interval_covers_at_the_nominal_rate(n, shift):
    # Normal runs: P(A > B) = Phi(shift / sqrt 2). 400 simulated comparisons; sd of a 0.95 coverage is 0.011.
    truth = sps.norm.cdf(shift / math.sqrt(2))
    rng = np.random.default_rng(17)
    hits = 0
    for _ in range(400):
        s = superiority(rng.normal(shift, 1, n), rng.normal(0, 1, n))
        hits += s.low <= truth <= s.high
    assert 0.9 <= hits / 400 <= 0.99, hits / 400


def test_decision_and_reading():
    clear = superiority(np.arange(10) + 10.0, np.arange(10) * 0.5)
    assert clear.significant and clear.meaningful and clear.surely_meaningful
    assert "meaningful (the whole interval is above 75 %)" in superiority_reading(clear, "mean teacher", "baseline")
    assert superiority_reading(clear, "mean teacher", "baseline").startswith("mean teacher beats baseline in 100 %")
    none = superiority([1.0, 2.0, 3.0], [1.5, 2.5, 0.5])
    assert not none.significant and "not significant" in superiority_reading(none)
    worse = superiority(np.arange(10) * 0.5, np.arange(10) + 10.0)
    assert "B is the better one" in superiority_reading(worse)
    mid = superiority(np.arange(40) + 6.0, np.arange(40.0))  # P = 0.6525: significant, below gamma
    assert mid.significant and not mid.meaningful and "below the 75 %" in superiority_reading(mid)


def test_bad_input():
    with pytest.raises(DataError, match="both variants"):
        superiority([], [1.0])
    with pytest.raises(DataError, match="non-finite"):
        superiority([1.0, math.nan], [1.0])
    with pytest.raises(DataError, match="at least 2 runs"):
        superiority([1.0], [0.0, 2.0], method="brunner-munzel")
    with pytest.raises(ValueError, match="gamma"):
        superiority([1.0], [0.0], gamma=0.5)
