"""What tuning buys: the expected best validation score after k tuning trials (Dodge et al. 2019).

A variant is tuned over a grid: N configurations evaluated, scores v_1..v_N. Had the researcher
tried only k of them at random, the best would have been, on average, the expected maximum of k draws.
Plotted against k = 1..N (or against compute, k x the mean cost of a trial) it says how much a
variant's result owes to tuning, and whether the order of two variants depends on the budget.

Two estimators of E[max of k] from the sorted scores v_(1) <= ... <= v_(N):
- `expected_max_without_replacement` (the U-statistic; Tang et al. 2020):
  E_k = sum_{i=k..N} v_(i) C(i-1, k-1) / C(N, k), the mean of max over all k-subsets of the N scores.
  It is unbiased for the expected best of k configurations drawn from the search space (the mean of the
  kernel max(x_1..x_k) over all subsets of an i.i.d. sample), defined for k <= N, with E_1 = the mean
  and E_N = the maximum.
- `expected_max_with_replacement` (Dodge et al. 2019): E_k = sum_i v_(i) [(i/N)^k - ((i-1)/N)^k], the
  expected max of k draws from the empirical distribution (a V-statistic). Drawing a configuration
  twice wastes a trial, so it is biased low, the more so as k nears N (E_N is below the maximum).
The report should use the without-replacement estimator: it answers the question (the best of k
different configurations), it is unbiased, and it ends at the best score actually found. The
with-replacement form is kept to reproduce curves published with Dodge et al.'s formula.
Ties need nothing special: in both sums the max of a subset is the value at its highest sorted index.

Bands (`tuning_curve(band=...)`), both for the population quantity E[max of k]:
- "bootstrap" (default): pointwise percentile band, the estimator recomputed on resamples of the N
  scores drawn with the generator passed in. It shows how much the curve depends on which N
  configurations happened to be evaluated, and it is as narrow as the data allow, but it undercovers
  as k grows: E[max of k] for large k lies in the upper tail of the score distribution, which a resample
  of the same N scores can never go beyond. Simulated coverage of the 95 % band (N = 20 normal scores):
  0.93 at k = 1, 0.84 at k = 5, 0.68 at k = 10, 0.46 at k = 20 (similar for N = 10, 40 and skewed
  scores). Read it as a display of the spread for k up to about N / 4, not as a test beyond.
- "dkw": simultaneous, distribution-free band, the idea of opda's confidence bands for tuning curves
  (Lourie et al. 2024) with the closed-form DKW bound in place of the exact Kolmogorov-Smirnov one:
  with probability >= confidence the true CDF lies within eps = sqrt(ln(2 / alpha) / (2 N)) of the
  empirical one everywhere (Massart 1990), and E[max of k] is monotone in the CDF, so the curves of
  the band's stochastically smallest and largest distributions bound E[max of k] for every k at
  once (simulated: all 20 k's covered in 100 % of studies). It needs the metric's bounds (the mass
  that may lie beyond the observed scores is put there), and that is its price: with F1 in [0, 100]
  and N = 20 the upper curve is above 50 from k = 1 on, because no finite sample rules out a better
  tail; its lower curve is informative at large k. A separation of DKW bands is a claim that holds.
No band that uses only the N observed scores can cover E[max of k] for k near N: the data say little
about the tail the maximum of many trials lives in. The report should show the bootstrap band and
state the budget-dependent orderings it finds as pointwise and approximate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import gammaln

from harness.errors import DataError

Estimator = Literal["without_replacement", "with_replacement"]
Band = Literal["bootstrap", "dkw"]
DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class TuningCurve:
    """Expected best score after k trials, k = 1..N, with a band.

    Attributes:
        k: shape (N,), 1..N.
        expected_max: shape (N,), the estimate of E[max of k] (score units), non-decreasing in k.
        low, high: shape (N,), the band.
        compute: shape (N,), k x the mean cost of a trial (e.g. GPU hours); None when costs were not given.
        estimator: "without_replacement" or "with_replacement".
        band: "bootstrap" (pointwise) or "dkw" (simultaneous over k).
        confidence: level of the band.
    """

    k: np.ndarray
    expected_max: np.ndarray
    low: np.ndarray
    high: np.ndarray
    compute: np.ndarray | None
    estimator: str
    band: str
    confidence: float

    @property
    def n(self) -> int:
        """N, the configurations evaluated."""
        return int(self.k.size)


@dataclass(frozen=True)
class BudgetComparison:
    """Two tuning curves compared budget by budget.

    Attributes:
        axis: "trials" (budget = k) or "compute" (budget = k x mean trial cost of each variant).
        band: the curves' band ("bootstrap": pointwise, approximate; "dkw": simultaneous).
        budget: shape (m,), the budgets compared (both curves defined there).
        leader: per budget, "a", "b" or "tie": whose expected best is higher.
        separated: per budget, "a" when a's band lies entirely above b's, "b" the reverse, "" when they
            overlap.
        crossings: budgets at which the leader changes (the first budget of the new leader).
        a_ahead, b_ahead: budgets where a's (b's) band lies above the other's.
        changes_with_budget: the bands separate one way at some budget and the other way at another:
            the conclusion itself depends on the budget.
    """

    axis: str
    band: str
    budget: np.ndarray
    leader: tuple[str, ...]
    separated: tuple[str, ...]
    crossings: tuple[float, ...]
    a_ahead: tuple[float, ...]
    b_ahead: tuple[float, ...]
    changes_with_budget: bool


def _scores(scores: np.ndarray) -> np.ndarray:
    v = np.asarray(scores, dtype=float).ravel()
    if v.size == 0:
        raise DataError("a tuning curve needs at least one evaluated configuration")
    if not np.isfinite(v).all():
        raise DataError(f"{int((~np.isfinite(v)).sum())} of the {v.size} configuration scores are missing or "
                        "non-finite; drop those configurations (a failed trial is not a score of 0)")
    return np.sort(v)


def _weights(n: int, estimator: str) -> np.ndarray:
    """W with E_k = sorted_scores @ W[:, k - 1]; shape (N, N), each column sums to 1."""
    i = np.arange(1, n + 1)[:, None]  # sorted position, 1-based
    k = np.arange(1, n + 1)[None, :]
    if estimator == "with_replacement":
        return (i / n) ** k - ((i - 1) / n) ** k
    if estimator != "without_replacement":
        raise ValueError(f"estimator must be 'without_replacement' or 'with_replacement', got {estimator!r}")
    # P(the largest index of a random k-subset is i) = C(i - 1, k - 1) / C(N, k); zero for i < k.
    valid = i >= k
    ii, kk = np.broadcast_arrays(i, k)
    log_w = np.where(valid, gammaln(ii) - gammaln(kk) - gammaln(np.maximum(ii - kk + 1, 1))
                     - (gammaln(n + 1) - gammaln(kk + 1) - gammaln(n - kk + 1)), -np.inf)
    return np.exp(log_w)


def expected_max_without_replacement(scores: np.ndarray) -> np.ndarray:
    """Unbiased expected best of k distinct configurations, k = 1..N (the U-statistic; Tang et al. 2020).

    Args:
        scores: shape (N,), one validation score per evaluated configuration.

    Returns:
        shape (N,): entry k - 1 is the mean over all k-subsets of their maximum.
    """
    v = _scores(scores)
    return v @ _weights(v.size, "without_replacement")


def expected_max_with_replacement(scores: np.ndarray) -> np.ndarray:
    """Expected best of k draws with replacement from the N scores, k = 1..N (Dodge et al. 2019).

    Args:
        scores: shape (N,).

    Returns:
        shape (N,): entry k - 1 is the mean over all N^k k-tuples of their maximum.
    """
    v = _scores(scores)
    return v @ _weights(v.size, "with_replacement")


def _bootstrap_band(v: np.ndarray, weights: np.ndarray, rng: np.random.Generator, confidence: float,
                    n_resamples: int) -> tuple[np.ndarray, np.ndarray]:
    resampled = np.sort(v[rng.integers(0, v.size, size=(n_resamples, v.size))], axis=1)
    curves = resampled @ weights  # (n_resamples, N)
    low, high = np.quantile(curves, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    return low, high


def _expected_max_of_cdf(support: np.ndarray, cdf: np.ndarray, n: int) -> np.ndarray:
    """E[max of k] for k = 1..n under a discrete CDF (cdf[j] = G(support[j]), ending at 1)."""
    k = np.arange(1, n + 1)[None, :]
    at = cdf[:, None] ** k
    before = np.vstack([np.zeros((1, n)), at[:-1]])
    return support @ (at - before)


def _dkw_band(v: np.ndarray, bounds: tuple[float, float], confidence: float) -> tuple[np.ndarray, np.ndarray]:
    lower_bound, upper_bound = bounds
    if not lower_bound <= v[0] or not v[-1] <= upper_bound:
        raise DataError(f"the scores span [{v[0]}, {v[-1]}], outside the bounds {bounds} given for the metric")
    n = v.size
    eps = math.sqrt(math.log(2 / (1 - confidence)) / (2 * n))
    ecdf = np.arange(1, n + 1) / n
    # Stochastically smallest CDF in the band: eps of mass moved down to the metric's lower bound.
    low = _expected_max_of_cdf(np.r_[lower_bound, v], np.minimum(np.r_[eps, ecdf + eps], 1.0), n)
    # Largest: eps of mass moved up to the upper bound.
    high = _expected_max_of_cdf(np.r_[v, upper_bound], np.r_[np.maximum(ecdf - eps, 0.0), 1.0], n)
    return low, high


def _compute(costs: float | np.ndarray | None, n: int) -> np.ndarray | None:
    if costs is None:
        return None
    c = np.asarray(costs, dtype=float).ravel()
    if c.size not in (1, n) or not np.isfinite(c).all() or (c < 0).any():
        raise DataError(f"costs must be one mean cost or one non-negative cost per configuration ({n}), got "
                        f"{c.size} values")
    return np.arange(1, n + 1) * float(c.mean())


def tuning_curve(
    scores: np.ndarray,
    rng: np.random.Generator | None = None,
    costs: float | np.ndarray | None = None,
    estimator: Estimator = "without_replacement",
    band: Band = "bootstrap",
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    bounds: tuple[float, float] | None = None,
) -> TuningCurve:
    """The expected-best-score curve of one variant's tuning grid, with a band.

    Args:
        scores: shape (N,), the validation score of each evaluated configuration.
        rng: generator of the bootstrap resamples (band="bootstrap"); unused by "dkw".
        costs: the mean cost of a trial, or shape (N,) the cost of each configuration (any unit: GPU
            hours, seconds); gives `compute` = k x their mean.
        estimator: "without_replacement" (the report's choice) or "with_replacement".
        band: "bootstrap" (pointwise) or "dkw" (simultaneous, distribution-free; needs `bounds`).
        confidence: level of the band.
        n_resamples: bootstrap resamples.
        bounds: (lowest, highest) value the metric can take, e.g. (0, 100) for F1 in %; band="dkw" only.

    Raises:
        DataError: no scores, non-finite scores, bad costs, scores outside `bounds`.
        ValueError: an unknown estimator or band, a missing generator or bounds.
    """
    v = _scores(scores)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    weights = _weights(v.size, estimator)
    estimate = v @ weights
    if band == "bootstrap":
        if rng is None:
            raise ValueError("band='bootstrap' needs a np.random.Generator")
        low, high = _bootstrap_band(v, weights, rng, confidence, n_resamples)
    elif band == "dkw":
        if bounds is None:
            raise ValueError("band='dkw' needs the metric's bounds, e.g. (0, 100) for F1 in %")
        low, high = _dkw_band(v, bounds, confidence)
    else:
        raise ValueError(f"band must be 'bootstrap' or 'dkw', got {band!r}")
    return TuningCurve(np.arange(1, v.size + 1), estimate, low, high, _compute(costs, v.size), estimator, band,
                       confidence)


def _on_grid(curve: TuningCurve, axis: str, budget: np.ndarray) -> tuple[np.ndarray, ...]:
    """Estimate and band of `curve` at each budget: the curve at the largest k affordable."""
    x = curve.k if axis == "trials" else curve.compute
    idx = np.searchsorted(x, budget, side="right") - 1
    return curve.expected_max[idx], curve.low[idx], curve.high[idx]


def compare_budgets(a: TuningCurve, b: TuningCurve, axis: Literal["trials", "compute"] = "trials"
                    ) -> BudgetComparison:
    """Whether the comparison of two tuned variants depends on the tuning budget.

    Args:
        a, b: tuning curves of the two variants (built with the same estimator and band).
        axis: "trials" compares at equal k (k = 1..min(N_a, N_b)); "compute" at equal compute, each
            variant getting the trials its mean cost affords (both curves need `compute`).

    Returns:
        BudgetComparison. With bootstrap bands a separation at one budget is a pointwise statement;
        with DKW bands it holds for all budgets at once.
    """
    if axis == "trials":
        budget = np.arange(1, min(a.n, b.n) + 1, dtype=float)
    elif axis == "compute":
        if a.compute is None or b.compute is None:
            raise ValueError("axis='compute' needs both curves built with costs")
        start, stop = max(a.compute[0], b.compute[0]), min(a.compute[-1], b.compute[-1])
        budget = np.unique(np.r_[a.compute, b.compute])
        budget = budget[(budget >= start) & (budget <= stop)]
    else:
        raise ValueError(f"axis must be 'trials' or 'compute', got {axis!r}")
    ea, la, ha = _on_grid(a, axis, budget)
    eb, lb, hb = _on_grid(b, axis, budget)
    leader = np.where(ea > eb, "a", np.where(eb > ea, "b", "tie"))
    separated = np.where(la > hb, "a", np.where(lb > ha, "b", ""))
    # The leader changes where it differs from the last non-tie leader before it.
    crossings, last = [], ""
    for x, who in zip(budget, leader):
        if who != "tie":
            if last and who != last:
                crossings.append(float(x))
            last = who
    a_ahead = tuple(float(x) for x in budget[separated == "a"])
    b_ahead = tuple(float(x) for x in budget[separated == "b"])
    if a.band != b.band or a.estimator != b.estimator:
        raise ValueError(f"compare curves built alike: got {a.estimator}/{a.band} and {b.estimator}/{b.band}")
    return BudgetComparison(axis, a.band, budget, tuple(leader.tolist()), tuple(separated.tolist()), tuple(crossings),
                            a_ahead, b_ahead, bool(a_ahead and b_ahead))


def _spans(budget: np.ndarray, chosen: np.ndarray) -> str:
    """Runs of consecutive chosen budgets as "1-3, 7" (consecutive on the comparison's grid)."""
    spans, j = [], 0
    while j < len(budget):
        if not chosen[j]:
            j += 1
            continue
        end = j
        while end + 1 < len(budget) and chosen[end + 1]:
            end += 1
        spans.append(f"{budget[j]:g}" if end == j else f"{budget[j]:g}-{budget[end]:g}")
        j = end + 1
    return ", ".join(spans)


def budget_reading(comparison: BudgetComparison, name_a: str = "a", name_b: str = "b") -> str:
    """One sentence on what the budget changes, e.g. "b's expected best is higher at 1-3 trials, a's at 4-20; the
    bands separate with a ahead at 6-20 trials."""
    unit = "trials" if comparison.axis == "trials" else "compute"
    names = {"a": name_a, "b": name_b}
    budget, leader = comparison.budget, np.array(comparison.leader)
    parts = [f"{names[who]}'s expected best is higher at {_spans(budget, leader == who)} {unit}"
             for who in ("a", "b") if (leader == who).any()]
    if (leader == "tie").any():
        parts.append(f"they tie at {_spans(budget, leader == 'tie')} {unit}")
    text = "; ".join(parts)
    separated = np.array(comparison.separated)
    ahead = [f"{names[w]} ahead at {_spans(budget, separated == w)} {unit}"
             for w in ("a", "b") if (separated == w).any()]
    if not ahead:
        return text + "; the bands overlap at every budget, so the data do not order the two variants."
    verdict = " The order depends on the budget." if comparison.changes_with_budget else ""
    caveat = (" (Pointwise bootstrap bands: approximate, and too narrow at large budgets.)"
              if comparison.band == "bootstrap" else "")
    return f"{text}; the bands separate with {'; '.join(ahead)}.{verdict}{caveat}"
