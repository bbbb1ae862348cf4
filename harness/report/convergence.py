"""Had validation F1 stopped improving when a run's training ended? A stated rule, per run (pure functions).

The paper says it "verified that the validation metric has converged for each experiment type"; a fixed
step budget does not guarantee it, and a comparison between a variant that had converged and one still
climbing measures the budget as much as the method. The rule, on a run's validation F1 per epoch
(metrics.csv, in epoch order):

- the *tail* is the last TAIL_FRACTION of its epochs (rounded up); with fewer than MIN_TAIL_EPOCHS epochs
  in it (fewer than 13 epochs in all) the run is "undetermined": too short a curve to tell noise from trend;
- gain = best val F1 in the tail - best val F1 before it (points; negative when the best epoch lies before
  the tail);
- trend = the OLS slope of val F1 on the epoch over the tail (scipy.stats.linregress), with its one-sided
  p-value for a positive slope (a tail of identical values has slope 0 and p = 1);
- "converged" iff gain <= GAIN_TOLERANCE and the trend is not significantly positive (p >= TREND_ALPHA);
  else "not converged".

Shapes and units: a curve is a sequence of val F1 values in %, one per epoch, epoch 1 first.
"""

from __future__ import annotations

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
# How far the tail's best may exceed the best before it and still count as a plateau: the report's default
# ROPE (harness.report.compare.DEFAULT_ROPE, +-0.5 F1 points), the smallest difference it calls practical.
# With 0 the rule is "the best epoch lies before the last quarter", which a flat but noisy curve fails
# about once in four runs (its maximum falls in the tail by chance).
GAIN_TOLERANCE = 0.5
# One-sided level of the test for a still-rising tail: the conventional 5 %.
TREND_ALPHA = 0.05

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
        gain: best val F1 of the tail minus the best before it (points); None when undetermined.
        slope: OLS slope of val F1 over the tail (points per epoch); None when undetermined.
        p_trend: one-sided p-value of that slope being positive; None when undetermined.
        reason: one line saying why, for the report.
    """

    status: Status
    epochs: int
    best_epoch: int | None
    tail_epochs: int
    gain: float | None = None
    slope: float | None = None
    p_trend: float | None = None
    reason: str = ""


def tail_length(n_epochs: int, fraction: float = TAIL_FRACTION) -> int:
    """Epochs in the tail of an n-epoch curve: ceil(fraction * n) (0 for no epochs)."""
    return math.ceil(fraction * n_epochs - 1e-9) if n_epochs > 0 else 0


def min_epochs(fraction: float = TAIL_FRACTION, min_tail: int = MIN_TAIL_EPOCHS) -> int:
    """The fewest epochs whose tail has `min_tail` epochs and leaves at least one before it (13 by default)."""
    n = max(min_tail + 1, math.floor((min_tail - 1) / fraction) + 1)
    while tail_length(n, fraction) < min_tail or tail_length(n, fraction) >= n:
        n += 1
    return n


def assess(val_f1: Sequence[float], epochs: Sequence[int] | None = None, *,
           fraction: float = TAIL_FRACTION, min_tail: int = MIN_TAIL_EPOCHS,
           tolerance: float = GAIN_TOLERANCE, alpha: float = TREND_ALPHA) -> Convergence:
    """Apply the module's rule to one run's validation curve.

    Args:
        val_f1: validation F1 (%) per epoch, shape (n_epochs,), in epoch order; NaN epochs are left out.
        epochs: their 1-based epoch numbers, shape (n_epochs,); default 1..n_epochs.
        fraction, min_tail, tolerance, alpha: the rule's constants (defaults: the module's).

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
    if np.ptp(tail) == 0:
        slope, p = 0.0, 1.0
    else:
        fit = sps.linregress(tail_x, tail, alternative="greater")
        slope = float(fit.slope)
        p = 1.0 if not math.isfinite(fit.pvalue) else float(fit.pvalue)
    rising, gained = p < alpha, gain > tolerance
    if not rising and not gained:
        status: Status = "converged"
        reason = (f"last {k} epochs: best {gain:+.2f} points on the earlier best, slope {slope:+.3f} "
                  f"points/epoch (one-sided p = {p:.3f})")
    else:
        status = "not converged"
        parts = []
        if gained:
            parts.append(f"the last {k} epochs' best is {gain:+.2f} points above the earlier best (> {tolerance:g})")
        if rising:
            parts.append(f"val F1 still rising over the last {k} epochs ({slope:+.3f} points/epoch, one-sided "
                         f"p = {p:.3f} < {alpha:g})")
        reason = "; ".join(parts)
    return Convergence(status, n, best, k, gain, slope, p, reason)


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


def rule_text() -> str:
    """The rule in one paragraph, with the constants in force (for the report)."""
    return (f"A run has converged when, over the last {100 * TAIL_FRACTION:g} % of its epochs (rounded up), its best "
            f"validation F1 is at most {GAIN_TOLERANCE:g} points above its best before them (so a best epoch "
            f"before them always passes) and the OLS slope of validation F1 over them is not significantly "
            f"positive (one-sided p >= {TREND_ALPHA:g}); runs with fewer than {min_epochs()} epochs are undetermined "
            "(too few points for a trend; harness.report.convergence).")
