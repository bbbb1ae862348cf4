"""harness.report.aso: Almost Stochastic Order by hand on tiny inputs, and against deepsig itself."""

import sys

import numpy as np
import pytest

from harness.report import aso


def test_violation_ratio_by_hand():
    # dt = 0.25: grid t = 0.25, 0.5, 0.75; with n = 2 the quantile index is ceil(2 t) - 1 = 0, 0, 1.
    # a = [1, 2] lies above b = [0, 1] everywhere: no violation.
    assert float(aso.violation_ratios([1.0, 2.0], [0.0, 1.0], dt=0.25)) == 0.0
    # a = [0, 3], b = [1, 2]: F^-1 = 0, 0, 3 and G^-1 = 1, 1, 2; G - F = 1, 1, -1; W2 = 3 x 0.25;
    # violated (F < G) at the first two points, of which deepsig integrates all but the first: 0.25.
    assert float(aso.violation_ratios([0.0, 3.0], [1.0, 2.0], dt=0.25)) == pytest.approx(0.25 / 0.75)
    # Identical samples: W2 = 0, ratio 0.5 by convention.
    assert float(aso.violation_ratios([1.0, 2.0], [1.0, 2.0])) == 0.5
    # Vectorised over leading axes.
    both = aso.violation_ratios(np.array([[1.0, 2.0], [0.0, 3.0]]), np.array([[0.0, 1.0], [1.0, 2.0]]), dt=0.25)
    np.testing.assert_allclose(both, [0.0, 1 / 3])


def test_dominance_and_reproducibility():
    a, b = np.array([45.0, 46.0, 47.0]), np.array([30.0, 31.0, 32.0])
    assert aso.aso_epsilon(a, b, np.random.default_rng(0), iterations=200) == 0.0
    # b dominates: every grid point violates, but deepsig leaves the first out of the violation integral.
    assert float(aso.violation_ratios(b, a)) == pytest.approx(1 - 1 / 199)
    assert aso.aso_epsilon(b, a, np.random.default_rng(0), iterations=200) > 0.99
    rng = np.random.default_rng(1)
    x, y = rng.normal(40, 1, 8), rng.normal(39.8, 1, 8)
    e1 = aso.aso_epsilon(x, y, np.random.default_rng(5), iterations=300)
    assert e1 == aso.aso_epsilon(x, y, np.random.default_rng(5), iterations=300)
    assert 0.0 <= e1 <= 1.0
    with pytest.raises(ValueError, match="both sides"):
        aso.aso_epsilon(x, [], np.random.default_rng(0))


def test_same_draws_as_deepsig_give_the_same_eps_min():
    deepsig = pytest.importorskip("deepsig")  # a dev-only oracle: see harness/report/aso.py for why
    rng = np.random.default_rng(2)
    iterations, seed = 50, 7
    for n_a, n_b, shift in [(5, 7, 0.3), (4, 4, 0.0), (3, 6, -0.5)]:
        a, b = rng.normal(41, 0.6, n_a), rng.normal(41 - shift, 0.7, n_b)
        u_a, u_b = [], []
        for i in range(1, iterations + 1):  # deepsig reseeds numpy's global generator per iteration
            np.random.seed(seed + i)
            u_a.append(np.random.uniform(0, 1, n_a))
            u_b.append(np.random.uniform(0, 1, n_b))
        ours = aso._eps_min_from_uniforms(a, b, np.array(u_a), np.array(u_b), 0.95, aso.DEFAULT_DT)
        theirs = deepsig.aso(a, b, seed=seed, num_bootstrap_iterations=iterations, show_progress=False)
        assert ours == pytest.approx(float(theirs), abs=1e-12)
        ratio = sys.modules["deepsig.aso"].compute_violation_ratio(a, b, dt=aso.DEFAULT_DT)
        assert float(aso.violation_ratios(a, b)) == pytest.approx(ratio, abs=1e-12)
