"""The convergence rule (harness.report.convergence): hand-made curves, and its error rates on simulated ones.

Changes from the tests of the previous rule (gain > 0.5 or OLS p < 0.05), each because the rule changed:
- the constants: GAIN_TOLERANCE is gone from the rule (the previous rule's gain criterion flagged ~21 % of
  flat curves at the measured noise: test_the_old_rule_flags_a_fifth_of_plateaus); NOISE_RHO is new;
- the noisy plateau's slope and p are hand-checked with rho = 0 (OLS), where they are exact by hand; its
  "strict" variant (tolerance 0) is gone with the tolerance;
- a jump in the tail without a trend (gain +1.0, slope -0.15) now has converged: the gain no longer decides;
- the slow rise within the old tolerance is compared with scipy's linregress at rho = 0 (the default rho
  whitens the tail first); the reasons' wording changed with the rule;
- rule_text states the slope test and, given tail lengths, the two error rates.
"""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.report import compare
from harness.report import convergence as conv
from harness.report import convergence_calibration as cc
from harness.report.convergence import (MIN_TAIL_EPOCHS, NOISE_RHO, TAIL_FRACTION, TREND_ALPHA, assess,
                                        error_rates, min_epochs, rule_text, summarize, tail_length, trend_test)

SIMS = 4000
MC_MARGIN = 3 * math.sqrt(0.05 * 0.95 / SIMS)  # 3 Monte Carlo standard errors at 5 %: 1.0 point


def test_tail_and_minimum_epochs():
    assert (TAIL_FRACTION, MIN_TAIL_EPOCHS, TREND_ALPHA, NOISE_RHO) == (0.25, 4, 0.05, 0.3)
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
    assert v.slope == pytest.approx(1.0) and v.p_trend < 1e-6  # an exact line: GLS finds it too
    assert "still rising" in v.reason and "+1.000 points/epoch" in v.reason


NOISY = [30.0, 35.0, 38.0, 40.0, 41.0, 41.5, 42.0, 41.8, 42.3, 41.9, 42.1, 42.4, 42.0, 42.6, 41.7, 42.3]


def test_noisy_plateau_with_its_best_in_the_tail_has_converged():
    # 16 epochs: tail 13..16 = [42.0, 42.6, 41.7, 42.3], best before it 42.4 (epoch 12).
    v = assess(NOISY)
    assert v.tail_epochs == 4 and v.best_epoch == 14 and v.status == "converged"
    assert v.gain == pytest.approx(0.2)  # 42.6 - 42.4: shown, not used
    # By hand, OLS (rho = 0): x - 14.5 = -1.5, -0.5, 0.5, 1.5; y - 42.15 = -0.15, 0.45, -0.45, 0.15; Sxy = 0.
    w = assess(NOISY, rho=0.0)
    assert w.slope == pytest.approx(0.0, abs=1e-12) and w.p_trend == pytest.approx(0.5)
    # Residuals = y - 42.15: RSS = 0.0225 + 0.2025 + 0.2025 + 0.0225 = 0.45, sd = sqrt(0.45 / 2) = 0.474.
    assert v.noise_sd == pytest.approx(math.sqrt(0.45 / 2))
    assert v.p_trend > 0.05 and "no significant rise" in v.reason


def test_early_peak_has_converged():
    curve = np.r_[[30.0, 38.0, 42.0, 44.0, 45.0], 45.0 - 0.2 * np.arange(1, 16)]  # overfits after epoch 5
    v = assess(curve)
    assert v.status == "converged" and v.best_epoch == 5 and v.gain < 0
    assert v.slope == pytest.approx(-0.2) and v.p_trend > 0.99


def test_a_slow_significant_rise_within_the_old_tolerance_has_not_converged():
    curve = np.r_[np.full(15, 40.0), [40.0, 40.1, 40.2, 40.3, 40.4]]
    v = assess(curve)
    assert v.gain == pytest.approx(0.4)  # within the old tolerance: it never mattered here, the trend did
    assert v.slope == pytest.approx(0.1) and v.p_trend < 1e-6  # an exact line: no noise at all
    assert v.status == "not converged" and "still rising" in v.reason
    noisy = curve + np.array([0.0] * 15 + [0.05, -0.05, 0.1, -0.1, 0.0])
    ref = sps.linregress(np.arange(16, 21), noisy[15:], alternative="greater")
    w = assess(noisy, rho=0.0)
    assert w.slope == pytest.approx(ref.slope) and w.p_trend == pytest.approx(ref.pvalue)


def test_a_jump_in_the_tail_without_a_trend_has_converged():
    # The previous rule flagged this curve (gain +1.0 > 0.5); its tail has no upward trend.
    curve = np.r_[np.full(14, 40.0), [40.5, 40.0, 41.5, 40.0, 40.0, 40.0]]
    v = assess(curve)
    assert v.gain == pytest.approx(1.0)  # 41.5 - 40.5
    # By hand, OLS: tail x 16..20, y = 40, 41.5, 40, 40, 40: Sxy = -1.5, Sxx = 10 -> slope -0.15.
    assert assess(curve, rho=0.0).slope == pytest.approx(-0.15)
    assert v.slope < 0 and v.p_trend > 0.5
    assert v.status == "converged" and "+1.00 points on the earlier best" in v.reason


def test_trend_test_is_gls_under_ar1():
    rng = np.random.default_rng(7)
    y = 40 + 0.1 * np.arange(10) + rng.normal(0, 1.5, 10)
    x = np.arange(31, 41, dtype=float)
    # rho = 0: scipy's OLS test.
    ref = sps.linregress(x, y, alternative="greater")
    slope, p = trend_test(x, y, rho=0.0)
    assert slope == pytest.approx(ref.slope) and p == pytest.approx(ref.pvalue)
    # rho = 0.3, consecutive epochs: Prais-Winsten by hand (first row scaled by sqrt(1 - rho^2), then
    # quasi-differences), OLS on the transformed rows without an added intercept.
    r = 0.3
    rows = np.c_[np.ones(10), x]
    ty = np.r_[math.sqrt(1 - r * r) * y[0], y[1:] - r * y[:-1]]
    tx = np.r_[[math.sqrt(1 - r * r) * rows[0]], rows[1:] - r * rows[:-1]]
    beta, rss, *_ = np.linalg.lstsq(tx, ty, rcond=None)
    se = math.sqrt(rss[0] / 8 * np.linalg.inv(tx.T @ tx)[1, 1])
    slope, p = trend_test(x, y, rho=r)
    assert slope == pytest.approx(beta[1]) and p == pytest.approx(sps.t.sf(beta[1] / se, 8))
    # Gaps: the correlation is rho^|epoch difference|; GLS with that covariance, by hand.
    xg = np.array([10.0, 11.0, 13.0, 14.0, 17.0])
    yg = y[:5]
    cov = r ** np.abs(xg[:, None] - xg[None, :])
    design = np.c_[np.ones(5), xg]
    ci = np.linalg.inv(cov)
    b = np.linalg.solve(design.T @ ci @ design, design.T @ ci @ yg)
    res = yg - design @ b
    s2 = res @ ci @ res / 3
    t = b[1] / math.sqrt(s2 * np.linalg.inv(design.T @ ci @ design)[1, 1])
    slope, p = trend_test(xg, yg, rho=r)
    assert slope == pytest.approx(b[1]) and p == pytest.approx(sps.t.sf(t, 3))
    # Many curves at once give the same as one at a time.
    many = np.vstack([y, y[::-1], np.full(10, 3.0)])
    slopes, ps = trend_test(x, many)
    assert slopes[0] == pytest.approx(trend_test(x, y)[0]) and (slopes[2], ps[2]) == (0.0, 1.0)


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


def test_rule_text_states_the_rule_and_its_error_rates():
    text = rule_text()
    assert text.startswith("A run has converged when") and "last 25 % of its epochs" in text
    assert "p >= 0.05" in text and "correlated 0.3" in text and "fewer than 13 epochs" in text
    assert "error rates" not in text  # without tail lengths, no rates
    text = rule_text([18, 18, 5])
    assert "flags at most 5 % of true plateaus" in text and "sd 1.67 points" in text
    assert "for tails of 5 epochs it catches 17 % of curves still rising by 0.5 points/epoch" in text
    assert "for tails of 18 epochs it catches > 99 %" in text and "hold for tails of 12 epochs or more" in text
    assert "80 % of those rising by 0.25 points/epoch (4.5 points over the tail)" in text
    assert rule_text([2]) == rule_text()  # undetermined tails: no rates


# ---------------------------------------------------------------- calibration: analytic and simulated rates

def test_constants_come_from_the_report_and_the_measured_noise():
    assert conv.RISE_PER_EPOCH == compare.DEFAULT_ROPE  # the practical difference, gained every epoch
    runs = pd.read_csv(Path(__file__).resolve().parents[1] / "benchmarks/convergence-inputs/tables/convergence_runs.csv")
    sd = cc.residual_sd(runs["slope"], runs["p_trend"], runs["tail_epochs"])
    assert len(sd) == 15 and math.sqrt(np.mean(sd ** 2)) == pytest.approx(conv.NOISE_SD, abs=0.005)
    assert 1.0 < sd.min() and sd.max() < 2.6


def test_residual_sd_inverts_the_ols_test():
    rng = np.random.default_rng(3)
    x = np.arange(54, 72, dtype=float)
    y = 40 + 0.05 * x + rng.normal(0, 1.7, x.size)
    fit = sps.linregress(x, y, alternative="greater")
    rss = ((y - fit.intercept - fit.slope * x) ** 2).sum()
    assert cc.residual_sd(fit.slope, fit.pvalue, x.size) == pytest.approx(math.sqrt(rss / 16))


def test_analytic_rates_and_the_calibrated_tail_lengths():
    assert error_rates(18).false_flag == pytest.approx(0.05)
    # >= 80 % of tails rising 0.5 points/epoch are flagged from 12 epochs on (45 epochs in all), not before.
    assert conv.min_calibrated_tail() == 12
    assert [error_rates(k).calibrated for k in (4, 5, 9, 11, 12, 14, 18, 40)] == [False] * 4 + [True] * 4
    assert error_rates(5).detection == pytest.approx(0.171, abs=0.002)  # the quick reports' 19 epochs
    assert error_rates(14).detection == pytest.approx(0.961, abs=0.002)  # paper, 53 epochs
    assert error_rates(18).detectable == pytest.approx(0.251, abs=0.002)  # quick-long, 71 epochs
    # A rise adding up to the ROPE over the tail is below the noise at every tail length considered.
    assert all(conv.detection_rate(k, 0.5 / k) < 0.12 for k in (4, 9, 18, 40))


@pytest.mark.parametrize("n_epochs", [20, 36, 53, 71])
def test_simulated_plateaus_are_flagged_at_most_5_percent(n_epochs):
    rng = np.random.default_rng(2028 + n_epochs)
    k = tail_length(n_epochs)
    for rho in (0.0, 0.2, NOISE_RHO):
        flat = cc.simulate(rng, SIMS, n_epochs, "flat", rho=rho)
        assert cc.flag_rate(cc.new_rule_flags(flat))[0] <= 0.05 + MC_MARGIN, (n_epochs, rho)
    # Plateaus reached partway (halfway, and as the tail begins), at the measured correlation.
    for start in (n_epochs // 2, n_epochs - k + 1):
        curves = cc.simulate(rng, SIMS, n_epochs, "plateau", rho=0.2, plateau_from=start)
        assert cc.flag_rate(cc.new_rule_flags(curves))[0] <= 0.05 + MC_MARGIN, (n_epochs, start)
    # At the rule's own rho the rate is 5 % exactly: the simulation agrees within its margin.
    exact = cc.new_rule_flags(cc.simulate(rng, SIMS, n_epochs, "flat", rho=NOISE_RHO))
    assert abs(cc.flag_rate(exact)[0] - 0.05) <= MC_MARGIN


@pytest.mark.parametrize("n_epochs", [48, 53, 71])
def test_simulated_rising_curves_are_caught_at_least_80_percent(n_epochs):
    rng = np.random.default_rng(80 + n_epochs)
    k = tail_length(n_epochs)
    for rho in (0.2, NOISE_RHO):
        rising = cc.simulate(rng, SIMS, n_epochs, "rising", rho=rho, rise=conv.RISE_PER_EPOCH)
        rate, se = cc.flag_rate(cc.new_rule_flags(rising))
        assert rate >= 0.80, (n_epochs, rho, rate)
        if rho == NOISE_RHO:  # the analytic power under the rule's own noise model
            assert rate == pytest.approx(error_rates(k).detection, abs=3 * se + 1e-3)


def test_the_old_rule_flags_a_fifth_of_plateaus():
    rng = np.random.default_rng(28)
    flat = cc.simulate(rng, SIMS, 71, "flat", rho=0.2)
    assert 0.17 < cc.flag_rate(cc.old_rule_flags(flat))[0] < 0.25
    half = cc.simulate(rng, SIMS, 71, "plateau", rho=0.2, plateau_from=35)
    assert cc.flag_rate(cc.old_rule_flags(half))[0] > 0.33
