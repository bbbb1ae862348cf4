"""Had validation F1 stopped improving when a run's training ended? A calibrated rule, per run (pure functions).

The paper says it "verified that the validation metric has converged for each experiment type"; a fixed
step budget does not guarantee it, and a comparison between a variant that had converged and one still
climbing measures the budget as much as the method. The rule, on a run's validation F1 per epoch
(metrics.csv, in epoch order):

- the *tail* is the last TAIL_FRACTION of its epochs (rounded up); with fewer than MIN_TAIL_EPOCHS epochs
  in it (fewer than 13 epochs in all) the run is "undetermined": too short a curve to tell noise from trend;
- trend = the slope of val F1 on the epoch over the tail, fitted by generalised least squares with the
  tail's noise taken as AR(1) with correlation NOISE_RHO between consecutive epochs (Prais-Winsten with a
  fixed rho: whiten by the Cholesky factor of rho^|e_i - e_j|, then OLS), with its one-sided t-test for a
  positive slope (k - 2 degrees of freedom for a tail of k epochs; a tail of identical values has slope 0
  and p = 1);
- "not converged" iff the slope is significantly positive (one-sided p < TREND_ALPHA); else "converged"
  (which means "no rise detected": see the error rates below).

Its error rates. Under its noise model (Gaussian AR(1) with correlation NOISE_RHO, any sd) the t statistic
of a flat tail is exactly Student with k - 2 df, so the rule flags TREND_ALPHA = 5 % of true plateaus by
construction, and fewer with less correlated noise (3.0-4.4 % at the measured correlation 0.2, 1.0-3.4 %
with independent noise; 6-11 % if it were 0.5: benchmarks/RESULTS-convergence.md); a plateau reached before
the tail begins is a flat tail too. A tail
still rising by z points/epoch is flagged with probability P(T' > t_{k-2, 0.95}), T' noncentral t with
noncentrality z * sqrt(1 / [(X' R^-1 X)^-1]_11) / sd, R the AR(1) correlation matrix: `error_rates`. At the
noise measured on the committed quick-long runs (NOISE_SD = 1.67 points, rho ~ 0.2;
benchmarks/RESULTS-convergence.md) a rise of RISE_PER_EPOCH = 0.5 points/epoch (the report's practical
difference, compare.DEFAULT_ROPE, gained every epoch) is caught >= 80 % of the time from a tail of 12
epochs on (45 epochs in all: the paper profile's 53 and quick-long's 71, not the quick profile's 19-34);
slower rises need longer tails (`detectable_slope`).

The previous rule also flagged a run whose best epoch in the tail beat the best before it by more than 0.5
points ("gain"). Comparing maxima of noisy curves, at the measured noise it flagged 20-23 % of curves flat
throughout, 35-40 % of those that reached their plateau halfway and 82-98 % of those that reached it as the
tail began (RESULTS-convergence.md); the gain is still computed and shown, but no longer decides.

Shapes and units: a curve is a sequence of val F1 values in %, one per epoch, epoch 1 first.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from scipy import stats as sps

# The last quarter of the epochs is where a converged curve is flat. A quarter keeps the tail long enough
# for a trend test (9 of the quick profile's 34 epochs, 14 of the paper profile's 53) and leaves the
# curriculum's first generations, where the training set grows, before it in both profiles.
TAIL_FRACTION = 0.25
# A slope from fewer than 4 points has 1 degree of freedom or none: no test worth reporting.
MIN_TAIL_EPOCHS = 4
# One-sided level of the test for a still-rising tail: the share of true plateaus the rule may flag.
TREND_ALPHA = 0.05
# The correlation between consecutive epochs' noise that the test allows for. Measured on the committed
# quick-long curves: ~0.2 (0.17-0.32 by window, 90 % upper bounds 0.32-0.57; RESULTS-convergence.md); 0.3
# keeps the false-flag rate at or below 5 % up to that correlation and costs little power where it is lower.
NOISE_RHO = 0.3
# The epoch-to-epoch noise of validation F1 (points): the root mean square of the 15 committed quick-long
# runs' residual sds around their tail's linear trend (1.07-2.56; benchmarks/calibrate_convergence.py). It
# enters the power only; the false-flag rate does not depend on it.
NOISE_SD = 1.67
# The rise the rule is calibrated to catch: the report's practical difference (compare.DEFAULT_ROPE, 0.5
# points) gained every epoch. A rise that adds up to 0.5 points over the tail or over a doubling of the
# budget (0.03 and 0.007 points/epoch for quick-long) is below the noise: no test on a tail can see it
# (power 6-15 % at every tail of 4-40 epochs).
RISE_PER_EPOCH = 0.5
# The power the rule aims at for that rise.
TARGET_POWER = 0.8

Status = Literal["converged", "not converged", "undetermined"]


@dataclass(frozen=True)
class Convergence:
    """The verdict on one run's validation curve, with the numbers behind it.

    Attributes:
        status: "converged", "not converged" or "undetermined" (too few epochs).
        epochs: epochs with a finite val F1.
        best_epoch: 1-based epoch of the best val F1 (the first of equal ones, as training keeps it);
            None without any epoch.
        tail_epochs: epochs in the tail (the last TAIL_FRACTION, rounded up).
        gain: best val F1 of the tail minus the best before it (points; shown, not used by the rule);
            None when undetermined.
        slope: GLS slope of val F1 over the tail (points per epoch; the OLS slope when NOISE_RHO = 0);
            None when undetermined.
        p_trend: one-sided p-value of that slope being positive; None when undetermined.
        reason: one line saying why, for the report.
        noise_sd: sd of the tail's residuals around its OLS line (points, k - 2 df); None when undetermined.
    """

    status: Status
    epochs: int
    best_epoch: int | None
    tail_epochs: int
    gain: float | None = None
    slope: float | None = None
    p_trend: float | None = None
    reason: str = ""
    noise_sd: float | None = None


def tail_length(n_epochs: int, fraction: float = TAIL_FRACTION) -> int:
    """Epochs in the tail of an n-epoch curve: ceil(fraction * n) (0 for no epochs)."""
    return math.ceil(fraction * n_epochs - 1e-9) if n_epochs > 0 else 0


def min_epochs(fraction: float = TAIL_FRACTION, min_tail: int = MIN_TAIL_EPOCHS) -> int:
    """The fewest epochs whose tail has `min_tail` epochs and leaves at least one before it (13 by default)."""
    n = max(min_tail + 1, math.floor((min_tail - 1) / fraction) + 1)
    while tail_length(n, fraction) < min_tail or tail_length(n, fraction) >= n:
        n += 1
    return n


def _whitener(x: np.ndarray, rho: float) -> np.ndarray:
    """W with W' W = R^-1, R_ij = rho^|x_i - x_j| (AR(1) correlation at epochs x; gaps allowed): the inverse
    Cholesky factor, so that W @ (AR(1) noise) is white."""
    if rho == 0:
        return np.eye(x.size)
    corr = rho ** np.abs(x[:, None] - x[None, :])
    return np.linalg.inv(np.linalg.cholesky(corr))


def trend_test(x: Sequence[float], y: np.ndarray, rho: float = NOISE_RHO) -> tuple[np.ndarray, np.ndarray]:
    """The rule's trend test on one tail or many: GLS slope under AR(1) noise of correlation rho, one-sided p.

    Args:
        x: epoch numbers, shape (k,), k >= 3.
        y: val F1 (%), shape (k,) or (m, k) (m curves on the same epochs).
        rho: the AR(1) correlation assumed between consecutive epochs (0: OLS, as scipy's linregress).

    Returns:
        (slope, p): shape () or (m,) each; points per epoch, and P(T >= t) for T ~ Student(k - 2).
        A tail of identical values has slope 0 and p = 1; an exact straight line, p = 0 if rising else 1.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    single = y.ndim == 1
    ys = np.atleast_2d(y)
    k = x.size
    w = _whitener(x - x[0], rho)
    design = w @ np.c_[np.ones(k), x - x.mean()]
    yw = ys @ w.T
    coef, *_ = np.linalg.lstsq(design, yw.T, rcond=None)  # (2, m)
    resid = yw - (design @ coef).T
    s2 = (resid ** 2).sum(axis=1) / (k - 2)
    var_b = s2 * np.linalg.inv(design.T @ design)[1, 1]
    slope = coef[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(var_b > 1e-24 * np.maximum(1.0, slope ** 2), slope / np.sqrt(var_b),
                     np.where(slope > 1e-12, np.inf, -np.inf))
    p = sps.t.sf(t, k - 2)
    flat = np.ptp(ys, axis=1) == 0
    slope, p = np.where(flat, 0.0, slope), np.where(flat, 1.0, p)
    return (slope[0], p[0]) if single else (slope, p)


def assess(val_f1: Sequence[float], epochs: Sequence[int] | None = None, *,
           fraction: float = TAIL_FRACTION, min_tail: int = MIN_TAIL_EPOCHS,
           alpha: float = TREND_ALPHA, rho: float = NOISE_RHO) -> Convergence:
    """Apply the module's rule to one run's validation curve.

    Args:
        val_f1: validation F1 (%) per epoch, shape (n_epochs,), in epoch order; NaN epochs are left out.
        epochs: their 1-based epoch numbers, shape (n_epochs,); default 1..n_epochs.
        fraction, min_tail, alpha, rho: the rule's constants (defaults: the module's).

    Returns:
        The Convergence verdict.
    """
    y = np.asarray(val_f1, dtype=float)
    x = np.arange(1, y.size + 1, dtype=float) if epochs is None else np.asarray(epochs, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"epochs {x.shape} and val_f1 {y.shape} differ in shape")
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(y.size)
    best = int(x[int(np.argmax(y))]) if n else None
    k = tail_length(n, fraction)
    if k < min_tail or k >= n:
        return Convergence("undetermined", n, best, k, reason=f"{n} epochs: the rule needs at least "
                           f"{min_epochs(fraction, min_tail)} (a tail of {min_tail})")
    head, tail, tail_x = y[: n - k], y[n - k:], x[n - k:]
    gain = float(tail.max() - head.max())
    slope_, p_ = trend_test(tail_x, tail, rho)
    slope, p = float(slope_), float(p_)
    ols = np.polyfit(tail_x, tail, 1)
    noise = float(np.sqrt(((tail - np.polyval(ols, tail_x)) ** 2).sum() / (k - 2)))
    trend = f"slope {slope:+.3f} points/epoch over the last {k} epochs (one-sided p = {p:.3f}"
    if p < alpha:
        status: Status = "not converged"
        reason = f"val F1 still rising: {trend} < {alpha:g})"
    else:
        status = "converged"
        reason = f"no significant rise: {trend}); their best {gain:+.2f} points on the earlier best"
    return Convergence(status, n, best, k, gain, slope, p, reason, noise)


@functools.lru_cache(maxsize=256)
def _slope_information(k: int, rho: float) -> float:
    """1 / var(GLS slope) for k consecutive epochs of AR(1) noise with unit sd and correlation rho."""
    x = np.arange(k, dtype=float)
    design = _whitener(x, rho) @ np.c_[np.ones(k), x - x.mean()]
    return float(1.0 / np.linalg.inv(design.T @ design)[1, 1])


def detection_rate(k: int, rise: float, sd: float = NOISE_SD, rho: float = NOISE_RHO,
                   alpha: float = TREND_ALPHA) -> float:
    """P(the rule flags a tail of k epochs rising `rise` points/epoch), noise AR(1) of sd `sd` and correlation
    `rho` (the test's own): the noncentral t. rise = 0 gives the false-flag rate, alpha."""
    if k < 3:
        return float("nan")
    nc = rise * math.sqrt(_slope_information(k, rho)) / sd
    return float(sps.nct.sf(sps.t.isf(alpha, k - 2), k - 2, nc))


def detectable_slope(k: int, power: float = TARGET_POWER, sd: float = NOISE_SD, rho: float = NOISE_RHO,
                     alpha: float = TREND_ALPHA) -> float:
    """The rise (points/epoch) that a tail of k epochs flags with probability `power`."""
    from scipy.optimize import brentq

    return float(brentq(lambda z: detection_rate(k, z, sd, rho, alpha) - power, 1e-6, 1e3, xtol=1e-6))


@dataclass(frozen=True)
class ErrorRates:
    """The rule's two error rates for tails of k epochs at the measured noise (NOISE_SD, NOISE_RHO).

    Attributes:
        tail_epochs: k.
        false_flag: share of true plateaus (flat tails) flagged: TREND_ALPHA, exact under the noise model.
        rise: the rise per epoch the detection is computed for (RISE_PER_EPOCH).
        detection: share of tails rising `rise` points/epoch flagged.
        detectable: the rise (points/epoch) flagged TARGET_POWER of the time.
    """

    tail_epochs: int
    false_flag: float
    rise: float
    detection: float
    detectable: float

    @property
    def calibrated(self) -> bool:
        """Whether both targets hold: false_flag <= TREND_ALPHA and detection >= TARGET_POWER."""
        return self.false_flag <= TREND_ALPHA + 1e-12 and self.detection >= TARGET_POWER


def error_rates(k: int, rise: float = RISE_PER_EPOCH) -> ErrorRates:
    """The rule's error rates for a tail of k (>= 3) epochs (see ErrorRates)."""
    return ErrorRates(k, detection_rate(k, 0.0), rise, detection_rate(k, rise), detectable_slope(k))


def _share(x: float) -> str:
    """A rate in %, never rounded to 0 or 100 when it is not."""
    if x >= 0.995:
        return "> 99 %"
    if x < 0.005:
        return "< 1 %"
    return f"{100 * x:.0f} %"


def rates_text(tail_epochs: Sequence[int]) -> str:
    """One sentence stating the rule's two error rates for the tail lengths of a study's tested runs ("" for
    none), at the measured noise (NOISE_SD, NOISE_RHO)."""
    ks = sorted({int(k) for k in tail_epochs if k >= MIN_TAIL_EPOCHS})
    if not ks:
        return ""
    parts = []
    for k in ks:
        r = error_rates(k)
        parts.append(f"for tails of {k} epochs it catches {_share(r.detection)} of curves still rising by "
                     f"{r.rise:g} points/epoch, and 80 % of those rising by {r.detectable:.2f} points/epoch "
                     f"({r.detectable * k:.1f} points over the tail)")
    return (f"Its error rates, at the epoch-to-epoch noise measured on real runs (sd {NOISE_SD:g} points, "
            f"correlation up to {NOISE_RHO:g}): it flags at most {100 * TREND_ALPHA:g} % of true plateaus; "
            + "; ".join(parts) + f". Both targets (<= {100 * TREND_ALPHA:g} % and >= {100 * TARGET_POWER:g} % at "
            f"{RISE_PER_EPOCH:g} points/epoch, the report's practical difference every epoch) hold for tails of "
            f"{min_calibrated_tail()} epochs or more. A slower rise usually goes unflagged: a run without † may "
            "still have been rising slowly (benchmarks/RESULTS-convergence.md).")


@functools.lru_cache(maxsize=8)
def min_calibrated_tail(rise: float = RISE_PER_EPOCH, max_tail: int = 200) -> int:
    """The shortest tail whose rates meet both targets at `rise` (12 epochs at the defaults)."""
    for k in range(MIN_TAIL_EPOCHS, max_tail + 1):
        if detection_rate(k, rise) >= TARGET_POWER:
            return k
    return max_tail + 1


@dataclass(frozen=True)
class VariantConvergence:
    """The verdicts of one variant's runs, summarised.

    Attributes:
        runs: runs with a curve; converged + not_converged + undetermined == runs.
        median_best_epoch, median_epochs: over the runs with a curve (NaN without any).
        median_gain, median_slope: over the runs that were tested (NaN without any).
    """

    runs: int
    converged: int
    not_converged: int
    undetermined: int
    median_best_epoch: float
    median_epochs: float
    median_gain: float
    median_slope: float

    @property
    def flagged(self) -> bool:
        """True when any run had not converged (undetermined runs do not flag a variant)."""
        return self.not_converged > 0


def summarize(verdicts: Sequence[Convergence]) -> VariantConvergence:
    """Counts and medians of a variant's verdicts (see VariantConvergence)."""
    def median(values: list[float]) -> float:
        return float(np.median(values)) if values else float("nan")

    tested = [v for v in verdicts if v.status != "undetermined"]
    return VariantConvergence(
        runs=len(verdicts), converged=sum(v.status == "converged" for v in verdicts),
        not_converged=sum(v.status == "not converged" for v in verdicts),
        undetermined=sum(v.status == "undetermined" for v in verdicts),
        median_best_epoch=median([v.best_epoch for v in verdicts if v.best_epoch is not None]),
        median_epochs=median([v.epochs for v in verdicts]),
        median_gain=median([v.gain for v in tested if v.gain is not None]),
        median_slope=median([v.slope for v in tested if v.slope is not None]))


def rule_text(tail_epochs: Sequence[int] = ()) -> str:
    """The rule in one paragraph, with the constants in force (for the report); with the tail lengths of a
    study's tested runs, also its two error rates there (rates_text)."""
    text = (f"A run has converged when the slope of its validation F1 over the last {100 * TAIL_FRACTION:g} % of "
            f"its epochs (rounded up) is not significantly positive (one-sided t-test, p >= {TREND_ALPHA:g}, on a "
            f"least-squares slope that allows for noise correlated {NOISE_RHO:g} between consecutive epochs), which "
            "means that no rise was detected; otherwise it has not converged. Whether the best epoch fell in those "
            "epochs (the gain) is shown but not used: the maxima of noisy curves say little. Runs with fewer than "
            f"{min_epochs()} epochs are undetermined (too few points for a trend; harness.report.convergence).")
    rates = rates_text(tail_epochs)
    return f"{text} {rates}" if rates else text
