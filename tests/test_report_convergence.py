"""The convergence rule (harness.report.convergence) on hand-made validation curves."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from harness.report.convergence import (GAIN_TOLERANCE, MIN_TAIL_EPOCHS, TAIL_FRACTION, assess, min_epochs,
                                        rule_text, summarize, tail_length)


def test_tail_and_minimum_epochs():
    assert (TAIL_FRACTION, MIN_TAIL_EPOCHS, GAIN_TOLERANCE) == (0.25, 4, 0.5)
    assert [tail_length(n) for n in (0, 1, 4, 12, 13, 16, 17, 34)] == [0, 1, 1, 3, 4, 4, 5, 9]
    assert min_epochs() == 13  # ceil(13 / 4) = 4 epochs in the tail, 9 before it
    assert assess(np.full(12, 40.0)).status == "undetermined"
    assert assess(np.full(13, 40.0)).status == "converged"
    short = assess([30.0, 35.0, 36.0])
    assert short.best_epoch == 3 and short.gain is None and "needs at least 13" in short.reason


def test_flat_curve_has_converged():
    v = assess(np.full(20, 40.0))
    assert v.status == "converged" and v.best_epoch == 1 and v.tail_epochs == 5
    assert v.gain == 0.0 and v.slope == 0.0 and v.p_trend == 1.0  # identical values: no trend


def test_rising_curve_has_not():
    v = assess(20.0 + np.arange(1, 21))  # +1 point an epoch
    assert v.status == "not converged" and v.best_epoch == 20
    assert v.gain == pytest.approx(40.0 - 35.0)  # tail 16..20: best 40; before it: best 35
    assert v.slope == pytest.approx(1.0) and v.p_trend < 1e-6
    assert "+5.00 points above" in v.reason and "still rising" in v.reason


NOISY = [30.0, 35.0, 38.0, 40.0, 41.0, 41.5, 42.0, 41.8, 42.3, 41.9, 42.1, 42.4, 42.0, 42.6, 41.7, 42.3]


def test_noisy_plateau_with_its_best_in_the_tail_has_converged():
    # 16 epochs: tail 13..16 = [42.0, 42.6, 41.7, 42.3], best before it 42.4 (epoch 12).
    v = assess(NOISY)
    assert v.tail_epochs == 4 and v.best_epoch == 14
    assert v.gain == pytest.approx(0.2)  # 42.6 - 42.4 <= 0.5
    # By hand: x - 14.5 = -1.5, -0.5, 0.5, 1.5; y - 42.15 = -0.15, 0.45, -0.45, 0.15; Sxy = 0 -> slope 0.
    assert v.slope == pytest.approx(0.0, abs=1e-12) and v.p_trend == pytest.approx(0.5)
    assert v.status == "converged"
    # The strict rule (no tolerance: the best epoch must lie before the tail) calls the same curve unconverged.
    assert assess(NOISY, tolerance=0.0).status == "not converged"


def test_early_peak_has_converged():
    curve = np.r_[[30.0, 38.0, 42.0, 44.0, 45.0], 45.0 - 0.2 * np.arange(1, 16)]  # overfits after epoch 5
    v = assess(curve)
    assert v.status == "converged" and v.best_epoch == 5 and v.gain < 0
    assert v.slope == pytest.approx(-0.2) and v.p_trend > 0.99


def test_a_slow_significant_rise_within_the_tolerance_has_not_converged():
    curve = np.r_[np.full(15, 40.0), [40.0, 40.1, 40.2, 40.3, 40.4]]
    v = assess(curve)
    assert v.gain == pytest.approx(0.4)  # within the tolerance ...
    ref = sps.linregress(np.arange(16, 21), curve[15:], alternative="greater")
    assert v.slope == pytest.approx(0.1) and v.p_trend == pytest.approx(ref.pvalue)
    assert v.status == "not converged" and "still rising" in v.reason and "above" not in v.reason  # ... the trend


def test_a_jump_in_the_tail_without_a_trend_has_not_converged():
    curve = np.r_[np.full(14, 40.0), [40.5, 40.0, 41.5, 40.0, 40.0, 40.0]]
    v = assess(curve)
    assert v.gain == pytest.approx(1.0)  # 41.5 - 40.5
    # By hand: tail x 16..20, y = 40, 41.5, 40, 40, 40: Sxy = -1.5, Sxx = 10 -> slope -0.15.
    assert v.slope == pytest.approx(-0.15) and v.p_trend > 0.5
    assert v.status == "not converged" and "+1.00 points above" in v.reason and "rising" not in v.reason


def test_missing_epochs_and_explicit_epoch_numbers():
    curve = np.r_[np.full(16, 40.0), [np.nan]]
    v = assess(curve)
    assert v.epochs == 16 and v.tail_epochs == 4 and v.status == "converged"
    w = assess([40.0, 41.0], epochs=[3, 7])
    assert w.best_epoch == 7 and w.status == "undetermined"
    with pytest.raises(ValueError, match="differ in shape"):
        assess([1.0, 2.0], epochs=[1])
    assert assess([]).best_epoch is None and assess([]).status == "undetermined"


def test_summarize():
    verdicts = [assess(np.full(20, 40.0)), assess(20.0 + np.arange(1, 21)), assess([30.0, 31.0])]
    s = summarize(verdicts)
    assert (s.runs, s.converged, s.not_converged, s.undetermined) == (3, 1, 1, 1) and s.flagged
    assert s.median_best_epoch == 2 and s.median_epochs == 20  # best epochs 1, 20, 2; epochs 20, 20, 2
    assert s.median_gain == pytest.approx(2.5) and s.median_slope == pytest.approx(0.5)  # the two tested runs
    empty = summarize([])
    assert empty.runs == 0 and not empty.flagged and math.isnan(empty.median_gain)
    text = rule_text()
    assert "last 25 % of its epochs" in text and "0.5 points" in text and "fewer than 13 epochs" in text
