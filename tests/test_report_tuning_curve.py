"""harness.report.tuning_curve: expected best score after k trials, against brute-force enumeration."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from harness.errors import DataError
from harness.report.tuning_curve import (budget_reading, compare_budgets, expected_max_with_replacement,
                                         expected_max_without_replacement, tuning_curve)

SMALL = [
    np.array([3.0]),
    np.array([2.0, 1.0]),
    np.array([40.1, 39.5, 41.2, 38.0, 40.7]),
    np.array([40.0, 40.0, 38.5, 41.0, 41.0, 39.0, 41.0]),  # ties, including at the maximum
    np.array([5.0, 5.0, 5.0, 5.0]),  # all tied
    np.array([0.31, 0.29, 0.35, 0.33, 0.30, 0.35, 0.28, 0.34]),  # N = 8
]


@pytest.mark.parametrize("v", SMALL)
def test_equals_brute_force_over_all_subsets_and_tuples(v):
    n = v.size
    without = expected_max_without_replacement(v)
    with_ = expected_max_with_replacement(v)
    tuples = v  # the max of every k-tuple, shape (N,) * k, built up one draw at a time
    for k in range(1, n + 1):
        subsets = [max(v[list(s)]) for s in itertools.combinations(range(n), k)]
        assert without[k - 1] == pytest.approx(np.mean(subsets), rel=1e-12)
        if k > 1 and tuples.size * n > 300_000:  # N = 8: tuples checked up to k = 6 (8^6 of them), fast
            continue
        if k > 1:
            tuples = np.maximum.outer(tuples, v)
        assert with_[k - 1] == pytest.approx(tuples.mean(), rel=1e-12)
    assert without[0] == pytest.approx(v.mean()) and with_[0] == pytest.approx(v.mean())
    assert without[-1] == pytest.approx(v.max())
    assert np.all(np.diff(without) >= -1e-12) and np.all(without >= with_ - 1e-12)


def test_hand_values():
    # [1, 2, 4]: k = 2 subsets {1,2} {1,4} {2,4} -> max 2, 4, 4 -> 10 / 3. With replacement, the 9 pairs have
    # max 1 once, 2 three times, 4 five times -> (1 + 6 + 20) / 9 = 3.
    assert expected_max_without_replacement([1, 2, 4]) == pytest.approx([7 / 3, 10 / 3, 4])
    assert expected_max_with_replacement([4, 1, 2]) == pytest.approx([7 / 3, 3, (1 + 7 * 2 + 19 * 4) / 27])


def test_large_n_is_stable():
    v = np.random.default_rng(0).normal(40, 1, 500)
    e = expected_max_without_replacement(v)
    assert np.isfinite(e).all() and e[0] == pytest.approx(v.mean()) and e[-1] == pytest.approx(v.max())
    assert np.all(np.diff(e) >= -1e-9)


def test_band_contains_the_estimate_and_seed_reproduces():
    rng = np.random.default_rng(3)
    for t in range(60):
        n = int(rng.integers(1, 25))
        v = np.round(rng.normal(40, 2, n) if t % 2 else 30 + rng.exponential(2, n), 1)  # rounding makes ties
        for estimator in ("without_replacement", "with_replacement"):
            boot = tuning_curve(v, np.random.default_rng(t), estimator=estimator, n_resamples=300)
            dkw = tuning_curve(v, estimator=estimator, band="dkw", bounds=(0, 100))
            for c in (boot, dkw):
                assert np.all(c.low <= c.expected_max + 1e-9) and np.all(c.expected_max <= c.high + 1e-9)
                assert np.all(np.diff(c.low) >= -1e-9) and np.all(np.diff(c.high) >= -1e-9)
    a = tuning_curve(v, np.random.default_rng(7), costs=np.full(v.size, 2.5))
    b = tuning_curve(v, np.random.default_rng(7), costs=2.5)
    for field in ("k", "expected_max", "low", "high", "compute"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert np.array_equal(a.compute, 2.5 * a.k) and a.n == v.size


def test_dkw_band_is_simultaneous_and_honest_about_the_tail():
    # E[max of k] of N(0, 1) by quadrature; the DKW band covers all k at once in (far) more than 95 % of studies.
    x = np.linspace(-9, 9, 36001)
    n = 12
    truth = np.array([np.trapezoid(x * k * sps.norm.pdf(x) * sps.norm.cdf(x) ** (k - 1), x) for k in range(1, n + 1)])
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(200):
        c = tuning_curve(rng.normal(0, 1, n), band="dkw", bounds=(-9, 9))
        covered += np.all((c.low <= truth) & (truth <= c.high))
    assert covered / 200 >= 0.95
    # F1 in [0, 100], 20 configurations near 40: the upper curve cannot rule out a better tail.
    c = tuning_curve(np.random.default_rng(0).normal(40, 1, 20), band="dkw", bounds=(0, 100))
    eps = math.sqrt(math.log(2 / 0.05) / 40)
    assert c.high[0] > 100 * eps and c.low[-1] > 39  # the lower curve stays informative at large k


def test_budget_changes_the_order():
    rng = np.random.default_rng(5)
    steady = 41 + rng.uniform(0, 0.5, 30)  # good on average, never great
    risky = np.r_[35 + rng.uniform(0, 0.5, 20), 46 + rng.uniform(0, 0.5, 10)]  # worse on average, best at its top
    a = tuning_curve(steady, np.random.default_rng(1), costs=1.0)
    b = tuning_curve(risky, np.random.default_rng(2), costs=1.0)
    cmp = compare_budgets(a, b)
    assert cmp.leader[0] == "a" and cmp.leader[-1] == "b" and len(cmp.crossings) == 1
    assert cmp.a_ahead[0] == 1 and cmp.b_ahead[-1] == 30 and cmp.changes_with_budget
    assert cmp.crossings[0] == next(k for k, who in zip(cmp.budget, cmp.leader) if who == "b")
    text = budget_reading(cmp, "steady", "risky")
    k_b = int(cmp.crossings[0])
    assert text.startswith(f"steady's expected best is higher at 1{'' if k_b == 2 else f'-{k_b - 1}'} trials; "
                           f"risky's expected best is higher at {k_b}-30 trials")
    assert "risky ahead at" in text and "-30 trials" in text and "order depends on the budget" in text
    # On the compute axis, b's trials cost twice as much: b affords half the trials at each budget.
    b2 = tuning_curve(risky, np.random.default_rng(2), costs=2.0)
    by_compute = compare_budgets(a, b2, axis="compute")
    assert by_compute.budget[0] == 2.0 and by_compute.budget[-1] == 30.0
    k_b = by_compute.budget // 2
    assert by_compute.leader == tuple("a" if a.expected_max[int(x) - 1] > b.expected_max[int(k) - 1] else "b"
                                      for x, k in zip(by_compute.budget, k_b))


def test_same_variant_never_separates():
    v = np.random.default_rng(0).normal(40, 1, 15)
    cmp = compare_budgets(tuning_curve(v, np.random.default_rng(0)), tuning_curve(v, np.random.default_rng(1)))
    assert set(cmp.leader) == {"tie"} and not cmp.a_ahead and not cmp.b_ahead and not cmp.changes_with_budget
    assert "do not order the two variants" in budget_reading(cmp)


def test_bad_input():
    with pytest.raises(DataError, match="at least one"):
        expected_max_without_replacement([])
    with pytest.raises(DataError, match="non-finite"):
        tuning_curve([40.0, np.nan], np.random.default_rng(0))
    with pytest.raises(DataError, match="outside the bounds"):
        tuning_curve([40.0, 120.0], band="dkw", bounds=(0, 100))
    with pytest.raises(DataError, match="costs"):
        tuning_curve([40.0, 41.0, 42.0], np.random.default_rng(0), costs=[1.0, 2.0])
    with pytest.raises(ValueError, match="Generator"):
        tuning_curve([40.0, 41.0])
    with pytest.raises(ValueError, match="bounds"):
        tuning_curve([40.0, 41.0], band="dkw")
    a = tuning_curve([40.0, 41.0], np.random.default_rng(0))
    with pytest.raises(ValueError, match="costs"):
        compare_budgets(a, a, axis="compute")
    with pytest.raises(ValueError, match="built alike"):
        compare_budgets(a, tuning_curve([40.0, 41.0], band="dkw", bounds=(0, 100)))
