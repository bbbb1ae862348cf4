"""TOST (harness.report.equivalence) on hand-checkable inputs."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from harness.report.equivalence import tost


def test_paired_by_hand():
    a = np.array([40.0, 41.0, 42.0, 43.0])
    b = a - np.array([0.1, -0.1, 0.2, 0.0])  # differences: mean 0.05, sd 0.1291
    r = tost(a, b, margin=1.0)
    se = np.std([0.1, -0.1, 0.2, 0.0], ddof=1) / 2
    assert r.diff == pytest.approx(0.05) and r.se == pytest.approx(se) and r.df == 3
    assert r.p_lower == pytest.approx(sps.t.sf(1.05 / se, 3)) and r.p_upper == pytest.approx(sps.t.cdf(-0.95 / se, 3))
    assert r.p == max(r.p_lower, r.p_upper) and r.equivalent
    assert r.low == pytest.approx(0.05 - sps.t.ppf(0.95, 3) * se) and -1 < r.low < r.high < 1


def test_equivalent_iff_the_90_percent_interval_is_inside_the_margin():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = rng.normal(40, 1, 6), rng.normal(40.3, 1, 6)
        for paired in (True, False):
            r = tost(a, b, 1.0, paired=paired)
            assert r.equivalent == (-1.0 < r.low and r.high < 1.0)


def test_unpaired_is_pooled_student_and_a_shift_is_not_equivalent():
    a, b = np.array([40.0, 41.0, 42.0]), np.array([38.0, 39.0, 40.0])
    r = tost(a, b, margin=1.0, paired=False)
    ref = sps.ttest_ind(a, b)
    assert r.diff == pytest.approx(2.0) and r.df == 4 and r.diff / r.se == pytest.approx(ref.statistic)
    assert not r.equivalent and r.p_upper > 0.5


def test_no_variance_and_bad_input():
    same = np.array([40.0, 41.0])
    assert tost(same, same, 1.0).equivalent and tost(same, same, 1.0).p == 0.0
    assert not tost(same + 2, same, 1.0).equivalent
    with pytest.raises(ValueError, match="positive"):
        tost(same, same, 0.0)
    with pytest.raises(ValueError, match="differ in shape"):
        tost(same, np.array([1.0]), 1.0)
    with pytest.raises(ValueError, match="at least 2 runs"):
        tost(same, np.array([1.0]), 1.0, paired=False)
    assert math.isfinite(tost(same, same + 0.5, 1.0).p)
