"""Sequential seeds: add seeds in rounds, stop a comparison once decided, keep the family's error at alpha.

A study run with `--until-decided --looks 3,5,10` looks at its comparisons after 3, 5 and 10 seeds per
arm. At each look a comparison whose |t| reaches the boundary is *decided* (significant, direction
given by the sign of t) and its arms stop gaining seeds for it; a comparison still open after the
last look is *not significant* at the maximum seeds. Everything here is a pure function: the design
(boundaries) from the looks, alpha and a generator; the decisions from the runs so far. The runner
calls `design_sequential` once, then after every round `sequential_decisions` and `seeds_to_run`.

Which boundary, and why
- Alpha spending (Lan & DeMets 1983): the two-sided alpha spent by look k is a function of the
  information fraction tau_k = n_k / n_K (seeds per arm at the look over the maximum), so looks may
  be unequally spaced (3, 5, 10) and need not be planned in a table. The default spending function
  is Kim & DeMets' (1987) power family alpha tau^rho with rho = 2, between Pocock (rho ~ 1) and
  O'Brien-Fleming (rho ~ 3). Why not O'Brien-Fleming: within the paper's family of 12 comparisons
  its first look at 3 seeds per arm spends alpha/12 x 4e-5, which with the t statistic's 4 df is
  |t| >= 77: nothing can stop at 3 seeds, and the study always pays for 5. Why not Pocock: it spends
  42 % of alpha at the first look and pays with a higher last boundary (|t| >= 2.48 instead of 2.20 at
  10 seeds, alpha 0.05), i.e. 9-10 points less power on the paper's marginal comparisons. With
  rho = 2 the paper's largest effects stop at the first look (simulated: 0.99), the last boundary
  stays close to the fixed design's 2.10, and the paper's 12 comparisons use 7.1 seeds per arm on
  average instead of 10 (numbers: tests/test_report_sequential.py and README). `spending=
  "obrien-fleming"` and `"pocock"` (Lan-DeMets types) are available.
- The family: `family="holm"` (default) controls the family-wise error over all comparisons and
  all looks, by the group-sequential Holm procedure (Maurer & Bretz 2013; Ye et al. 2013): with r
  comparisons still open, each is tested against the boundary that spends alpha / r; each rejection
  passes its share on (r falls), the open comparisons are re-checked against the new, lower
  boundaries at this and earlier looks, and so on until no rejection. `family="none"` tests every
  comparison at alpha (the paper's per-comparison convention; only the looks are controlled).
- t, not z: with 3 seeds per arm a t statistic has 4 df, and spending the z boundary's nominal level
  on it would be far off. The boundaries are set on the |t| scale. Look 1 is exact (the t quantile
  of the alpha spent). Later looks are calibrated by simulation: under no effect the vector of t
  statistics at the looks has a distribution free of the mean and sd (normal scores, a common sd),
  so `n_sim` simulated null studies give, look by look, the critical value at which exactly the
  spent increment of the not-yet-stopped paths crosses. Where an increment is too small to
  estimate (fewer than `min_exceedances` simulated crossings, e.g. O'Brien-Fleming's early looks at
  alpha / 12), the look takes the marginal t quantile of the increment, which can only spend less.
  Each boundary is then verified on an independent simulation (`simulated_alpha`, with its Monte
  Carlo standard error).
- The statistic: with equal arms (every look has n_k seeds on each side) Student's pooled t and
  Welch's t are the same number, so the decision does not depend on --test. Both assume a common sd
  for their small-n tails; when one arm is much noisier than the other (the paper has sd 0.6 against
  1.6) the error at 3-5 seeds per arm exceeds alpha (simulated: family error 0.06-0.08 at an sd
  ratio of 2.7). `sd_ratios=(1.0, 3.0)` calibrates every look for the least favourable of those
  ratios and restores the guarantee up to that ratio, at a cost in power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import numpy as np
from scipy import stats as sps

SPENDINGS: tuple[str, ...] = ("kim-demets", "obrien-fleming", "pocock")
DEFAULT_SPENDING = "kim-demets"
DEFAULT_RHO = 2.0  # Kim-DeMets exponent: alpha * tau^rho (1 ~ Pocock, 3 ~ O'Brien-Fleming)
FAMILIES: tuple[str, ...] = ("holm", "none")
DEFAULT_LOOKS: tuple[int, ...] = (3, 5, 10)
DEFAULT_N_SIM = 200_000
MIN_EXCEEDANCES = 100  # simulated crossings needed to estimate a look's critical value
_CHUNK = 25_000  # simulated studies per batch (bounds memory: chunk x 2 arms x max seeds floats)

Status = Literal["significant", "not significant", "continue"]


@dataclass(frozen=True)
class Boundary:
    """Critical values of one comparison's statistic at each look, spending `level` in all."""

    level: float  # two-sided type I error spent over all looks
    cumulative_alpha: tuple[float, ...]  # the spending function at each look's information fraction
    critical_t: tuple[float, ...]  # reject at look k when |t_k| >= critical_t[k]
    nominal_p: tuple[float, ...]  # the same as pooled-t p-values at each look's df (for display)
    method: tuple[str, ...]  # per look: "exact" (look 1), "simulated" or "marginal" (see module docstring)
    simulated_alpha: float  # type I error of this boundary on an independent null simulation
    simulated_alpha_se: float  # its Monte Carlo standard error


@dataclass(frozen=True)
class SequentialDesign:
    """Looks, level, family procedure and the boundaries they need."""

    looks: tuple[int, ...]  # seeds per arm at each look, increasing
    alpha: float  # the family's (holm) or each comparison's (none) two-sided type I error
    n_comparisons: int  # m, the size of the family
    family: str  # "holm" or "none"
    spending: str  # "kim-demets", "obrien-fleming" or "pocock"
    rho: float  # the Kim-DeMets exponent (unused by the other two)
    paired: bool  # paired t on per-seed differences (df = n - 1), else two-sample t (df = 2n - 2)
    sd_ratios: tuple[float, ...]  # ratios of the arms' sds the boundaries hold for (1.0: the t-test's assumption)
    df: tuple[int, ...]  # degrees of freedom of the statistic at each look
    boundaries: tuple[Boundary, ...]  # holm: boundaries[r - 1] spends alpha / r; none: one at alpha
    n_sim: int  # simulated null studies per calibration and per verification

    def boundary(self, n_open: int) -> Boundary:
        """The boundary in force when n_open comparisons are still open (holm), or the only one."""
        if self.family == "none":
            return self.boundaries[0]
        return self.boundaries[max(1, min(n_open, self.n_comparisons)) - 1]


@dataclass(frozen=True)
class SequentialDecision:
    """Where one comparison stands after the runs so far."""

    label: str
    status: Status  # significant: stop; not significant: last look reached; continue: needs next_n
    look: int | None  # 1-based look at which it was decided (None while continuing)
    n: int | None  # seeds per arm at that look
    next_n: int | None  # seeds per arm the next look needs (continue only)
    direction: int  # +1: a scored higher, -1: b higher, 0: not significant or continuing
    t: tuple[float, ...]  # the statistic at each look evaluated (NaN where not testable)
    p: tuple[float, ...]  # its two-sided p-value
    level: float  # the local level of the boundary in force at the decision (or now)
    critical_t: tuple[float, ...]  # that boundary at every look (for plots: the path against it)


# --------------------------------------------------------------------------- spending and calibration


def alpha_spent(tau: np.ndarray, alpha: float, spending: str = DEFAULT_SPENDING,
                rho: float = DEFAULT_RHO) -> np.ndarray:
    """Alpha-spending function: the two-sided alpha spent by information fraction tau.

    kim-demets: alpha tau^rho (Kim & DeMets 1987); obrien-fleming: 2 - 2 Phi(z_{1-alpha/2} / sqrt(tau))
    and pocock: alpha log(1 + (e - 1) tau) (both Lan & DeMets 1983).

    Args:
        tau: information fractions in (0, 1], shape (K,).
        rho: the Kim-DeMets exponent (ignored by the other two).
    Returns:
        cumulative alpha, shape (K,), equal to alpha at tau = 1.
    """
    tau = np.asarray(tau, dtype=float)
    if spending == "kim-demets":
        if not rho > 0:
            raise ValueError(f"rho must be positive, got {rho}")
        return alpha * tau**rho
    if spending == "obrien-fleming":
        return 2.0 - 2.0 * sps.norm.cdf(sps.norm.isf(alpha / 2.0) / np.sqrt(tau))
    if spending == "pocock":
        return alpha * np.log1p((math.e - 1.0) * tau)
    raise ValueError(f"spending must be one of {SPENDINGS}, got {spending!r}")


def validate_looks(looks: Sequence[int], max_seeds: int | None = None, paired: bool = False) -> tuple[int, ...]:
    """Looks as seeds per arm, strictly increasing, from 2 (3 when paired: a paired t needs 2 df to be
    worth a look), ending at max_seeds when given.

    Raises:
        ValueError: with the looks and what is wrong (the CLI turns it into a ConfigError).
    """
    out = tuple(int(n) for n in looks)
    low = 3 if paired else 2
    if not out:
        raise ValueError("give at least one look, e.g. --looks 3,5,10")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"looks must be strictly increasing seeds per arm, got {','.join(map(str, out))}")
    if out[0] < low:
        raise ValueError(f"the first look needs at least {low} seeds per arm, got {out[0]}")
    if max_seeds is not None and out[-1] != max_seeds:
        raise ValueError(f"the last look ({out[-1]}) must equal --max-seeds ({max_seeds}); e.g. --looks "
                         f"{','.join(map(str, [n for n in out if n < max_seeds] + [max_seeds]))}")
    return out


def _df(looks: Sequence[int], paired: bool) -> np.ndarray:
    n = np.asarray(looks)
    return n - 1 if paired else 2 * n - 2


def _null_abs_t(looks: Sequence[int], paired: bool, n_sim: int, rng: np.random.Generator,
                sd_ratio: float = 1.0) -> np.ndarray:
    """|t| at each look of n_sim studies under no difference of means, shape (n_sim, K).

    With normal scores the joint law of the t statistics does not depend on the mean or the scale,
    only (unpaired) on the ratio of the arms' sds: N(0, 1) and N(0, sd_ratio^2) scores stand for
    every study with that ratio (1: no effect at all, the t-test's assumption).
    """
    looks = np.asarray(looks)
    out = []
    for start in range(0, n_sim, _CHUNK):
        size = min(_CHUNK, n_sim - start)
        if paired:
            t = _t_at_looks_paired(rng.standard_normal((size, looks[-1])), looks)
        else:
            x = rng.standard_normal((size, looks[-1]))
            y = sd_ratio * rng.standard_normal((size, looks[-1]))
            t = _t_at_looks_pooled(x, y, looks)
        out.append(np.abs(t))
    return np.concatenate(out)


def _t_at_looks_pooled(x: np.ndarray, y: np.ndarray, looks: np.ndarray) -> np.ndarray:
    """Two-sample t of x - y on the first n_k columns of each, x, y: (..., n_K) -> (..., K).

    With equal arms the pooled (Student) and the Welch statistic are the same number,
    (mean_x - mean_y) / sqrt((s_x^2 + s_y^2) / n); only their reference df differ.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return (_prefix_means(x, looks) - _prefix_means(y, looks)) / np.sqrt(
            (_prefix_vars(x, looks) + _prefix_vars(y, looks)) / looks)


def _t_at_looks_paired(d: np.ndarray, looks: np.ndarray) -> np.ndarray:
    """One-sample t of the differences d on the first n_k columns, d: (..., n_K) -> (..., K)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _prefix_means(d, looks) / np.sqrt(_prefix_vars(d, looks) / looks)


def _prefix_means(x: np.ndarray, looks: np.ndarray) -> np.ndarray:
    return np.stack([np.mean(x[..., :n], axis=-1) for n in looks], axis=-1)


def _prefix_vars(x: np.ndarray, looks: np.ndarray) -> np.ndarray:
    """Sample variances (ddof 1) of the first n_k columns."""
    return np.stack([np.var(x[..., :n], axis=-1, ddof=1) for n in looks], axis=-1)


def _calibrate(null_sets: Sequence[np.ndarray], cumulative: np.ndarray, df: np.ndarray,
               min_exceedances: int) -> tuple[list[float], list[str]]:
    """Critical |t| per look so that, in every null set, the first crossings at look k spend at most
    the increment of the spending function (exactly, in the least favourable set).

    Args:
        null_sets: simulated |t|, each (n_sim, K); more than one when calibrating over sd ratios.
    """
    alive = [np.ones(t.shape[0], dtype=bool) for t in null_sets]
    critical, methods, previous = [], [], 0.0
    for k in range(cumulative.size):
        increment = float(cumulative[k] - previous)
        previous = float(cumulative[k])
        n_sim = null_sets[0].shape[0]
        exact = float(sps.t.isf(increment / 2.0, df[k]))
        if k == 0 and len(null_sets) == 1:
            c, method = exact, "exact"
        elif increment * n_sim >= min_exceedances:
            c, method = max(_quantile_of_alive(t[a, k], increment * n_sim) for t, a in zip(null_sets, alive)), \
                "simulated"
        else:
            c, method = exact, "marginal"
            if len(null_sets) > 1:  # the marginal tail of the least favourable set
                c = max(c, *(float(np.quantile(t[:, k], 1.0 - increment)) for t in null_sets))
        critical.append(c)
        methods.append(method)
        for t, a in zip(null_sets, alive):
            a &= t[:, k] < c
    return critical, methods


def _quantile_of_alive(abs_t: np.ndarray, target: float) -> float:
    """The |t| above which `target` of the given (still running) paths lie."""
    ordered = np.sort(abs_t)[::-1]
    j = int(round(target))
    if j >= ordered.size:
        return 0.0
    return float(0.5 * (ordered[j - 1] + ordered[j])) if j >= 1 else float(ordered[0]) + 1e-9


def _crossing_rate(abs_t: np.ndarray, critical: Sequence[float]) -> float:
    return float(np.any(abs_t >= np.asarray(critical)[None, :], axis=1).mean())


def design_sequential(
    looks: Sequence[int] = DEFAULT_LOOKS,
    n_comparisons: int = 1,
    *,
    rng: np.random.Generator,
    alpha: float = 0.05,
    family: str = "holm",
    spending: str = DEFAULT_SPENDING,
    rho: float = DEFAULT_RHO,
    paired: bool = False,
    sd_ratios: Sequence[float] = (1.0,),
    n_sim: int = DEFAULT_N_SIM,
    min_exceedances: int = MIN_EXCEEDANCES,
) -> SequentialDesign:
    """The group-sequential design: t-scale boundaries for every level the family procedure needs.

    Args:
        looks: seeds per arm at each look, e.g. (3, 5, 10) (see `validate_looks`).
        n_comparisons: m, the comparisons in the family (all of the study's, on one metric).
        rng: generator of the calibration and verification simulations (same seed, same boundaries).
        alpha: two-sided; family-wise with family="holm", per comparison with "none".
        family: "holm" (group-sequential Holm over the comparisons) or "none".
        spending: "kim-demets" (alpha tau^rho), "obrien-fleming" or "pocock" (Lan-DeMets types).
        rho: the Kim-DeMets exponent.
        paired: boundaries for the paired t (df = n - 1) instead of the two-sample t (df = 2n - 2).
        sd_ratios: ratios of the arms' sds the boundaries must hold for (unpaired): (1.0,) is the
            t-test's assumption; e.g. (1.0, 3.0) also covers one arm 3 times as noisy, at a cost
            in power (the least favourable ratio sets each look's critical value).
        n_sim: simulated null studies per sd ratio, for the calibration and again for the verification.

    Returns:
        the design; `design.boundary(r)` is the boundary with r comparisons open.
    """
    looks = validate_looks(looks, paired=paired)
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if spending not in SPENDINGS:
        raise ValueError(f"spending must be one of {SPENDINGS}, got {spending!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_comparisons < 1:
        raise ValueError(f"n_comparisons must be at least 1, got {n_comparisons}")
    ratios = (1.0,) if paired else tuple(float(r) for r in sd_ratios)
    if not ratios or any(not r > 0 for r in ratios):
        raise ValueError(f"sd_ratios must be positive numbers, got {sd_ratios}")
    df = _df(looks, paired)
    tau = np.asarray(looks, dtype=float) / looks[-1]
    rng_calibrate, rng_verify = rng.spawn(2)
    calibration = [_null_abs_t(looks, paired, n_sim, g, r) for g, r in zip(rng_calibrate.spawn(len(ratios)), ratios)]
    verification = [_null_abs_t(looks, paired, n_sim, g, r) for g, r in zip(rng_verify.spawn(len(ratios)), ratios)]
    levels = [alpha] if family == "none" else [alpha / r for r in range(1, n_comparisons + 1)]
    boundaries = []
    for level in levels:
        cumulative = alpha_spent(tau, level, spending, rho)
        critical, methods = _calibrate(calibration, cumulative, df, min_exceedances)
        rate = max(_crossing_rate(v, critical) for v in verification)
        boundaries.append(Boundary(
            level=level, cumulative_alpha=tuple(float(c) for c in cumulative), critical_t=tuple(critical),
            nominal_p=tuple(float(2.0 * sps.t.sf(c, d)) for c, d in zip(critical, df)), method=tuple(methods),
            simulated_alpha=rate, simulated_alpha_se=math.sqrt(max(rate * (1 - rate), 1e-12) / n_sim)))
    return SequentialDesign(looks=looks, alpha=alpha, n_comparisons=n_comparisons, family=family,
                            spending=spending, rho=float(rho), paired=paired, sd_ratios=ratios,
                            df=tuple(int(d) for d in df), boundaries=tuple(boundaries), n_sim=n_sim)


# --------------------------------------------------------------------------- decisions


def decide(design: SequentialDesign, abs_t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The family procedure on the |t| statistics at the looks so far, for many studies at once.

    Args:
        abs_t: |t| of a - b, shape (S, m, k) for S studies, m comparisons and the first k looks
            (k <= K; NaN where a comparison is not testable: it cannot cross there).

    Returns:
        (decided_at, crossed_at, open_at), each shape (S, m), int: the 0-based look at which a
        comparison was rejected, the look whose statistic crossed (earlier than decided_at when a
        Holm step lowered the boundaries), and how many comparisons were open when it was rejected
        (its boundary is design.boundary(open_at)); -1 where not rejected.
    """
    abs_t = np.asarray(abs_t, dtype=float)
    n_studies, m, k_avail = abs_t.shape
    if m != design.n_comparisons and design.family == "holm":
        raise ValueError(f"the design is for {design.n_comparisons} comparisons, got {m}")
    table = np.array([b.critical_t for b in design.boundaries])  # (levels, K)
    decided = np.full((n_studies, m), -1)
    crossed = np.full((n_studies, m), -1)
    open_at = np.full((n_studies, m), -1)
    for k in range(k_avail):
        while True:
            open_ = decided < 0
            n_open = open_.sum(axis=1)
            row = np.clip(n_open, 1, m) - 1 if design.family == "holm" else np.zeros(n_studies, dtype=int)
            critical = table[row, : k + 1]  # (S, k+1)
            hits = abs_t[:, :, : k + 1] >= critical[:, None, :]  # (S, m, k+1); NaN compares False
            new = hits.any(axis=2) & open_
            if not new.any():
                break
            decided[new] = k
            crossed[new] = np.argmax(hits, axis=2)[new]
            open_at[new] = np.broadcast_to(n_open[:, None], (n_studies, m))[new]
    return decided, crossed, open_at


def _t_and_p(a: np.ndarray, b: np.ndarray, paired: bool) -> tuple[float, float]:
    """The statistic the boundaries are for, and its p (pooled df; with equal arms Welch's t is the
    same number)."""
    from harness.report import compare, stats

    try:
        tt = compare.paired_t(a, b) if paired else stats.two_sample_t(a, b, "student")
    except ValueError:  # zero variance: not testable at this look
        return math.nan, math.nan
    return tt.t, tt.p


def sequential_decisions(
    design: SequentialDesign,
    scores: Sequence[tuple[np.ndarray, np.ndarray]],
    labels: Sequence[str] | None = None,
) -> list[SequentialDecision]:
    """Where each comparison of the family stands, from the runs finished so far (stateless).

    Args:
        scores: per comparison, (a, b): the scores of its two arms in seed order, shape (n_a,), (n_b,)
            (paired: aligned by seed). Look k uses the first looks[k] runs of each arm; runs beyond
            the last look evaluated are ignored.
        labels: names of the comparisons (default "1", "2", ...).

    Returns:
        one SequentialDecision per comparison, in order. Looks are evaluated in turn while every
        comparison still open at a look has the runs that look needs; the first that lacks them
        stops the evaluation, and the open comparisons are "continue" with next_n = that look's n.
    """
    m, n_looks = len(scores), len(design.looks)
    labels = list(labels) if labels is not None else [str(i + 1) for i in range(m)]
    t = np.full((m, n_looks), np.nan)
    p = np.full((m, n_looks), np.nan)
    available = np.zeros(m, dtype=int)  # looks whose runs are there
    for i, (a, b) in enumerate(scores):
        a = np.asarray(a, dtype=float).ravel()
        b = np.asarray(b, dtype=float).ravel()
        for k, n in enumerate(design.looks):
            if a.size < n or b.size < n:
                break
            t[i, k], p[i, k] = _t_and_p(a[:n], b[:n], design.paired)
            available[i] = k + 1
    abs_t = np.abs(t)
    k_done = 0
    while k_done < n_looks:
        open_ = decide(design, abs_t[None, :, :k_done])[0][0] < 0
        if not open_.any() or np.any(available[open_] <= k_done):
            break
        k_done += 1
    decided, crossed, open_at = (x[0] for x in decide(design, abs_t[None, :, :k_done]))
    n_open_now = int((decided < 0).sum())
    out = []
    for i in range(m):
        if decided[i] >= 0:
            k = int(decided[i])
            boundary = design.boundary(int(open_at[i]))
            status, look, n, next_n = "significant", k + 1, design.looks[k], None
            direction = int(np.sign(t[i, crossed[i]]))
        else:
            boundary = design.boundary(max(n_open_now, 1))
            direction, look, n, next_n = 0, None, None, None
            if k_done == n_looks:
                status, look, n = "not significant", n_looks, design.looks[-1]
            else:
                status, next_n = "continue", design.looks[k_done]
        last = (int(decided[i]) + 1) if decided[i] >= 0 else k_done
        out.append(SequentialDecision(
            label=labels[i], status=status, look=look, n=n, next_n=next_n, direction=direction,
            t=tuple(float(x) for x in t[i, :last]), p=tuple(float(x) for x in p[i, :last]),
            level=boundary.level, critical_t=boundary.critical_t))
    return out


def seeds_to_run(
    design: SequentialDesign,
    comparisons: Sequence[tuple[str, str]],
    decisions: Sequence[SequentialDecision],
    variants: Sequence[str] = (),
    uncompared: int | None = None,
) -> dict[str, int]:
    """Seeds per arm each variant needs now: the most that any of its comparisons needs.

    Args:
        comparisons: (a, b) variant names, in the order of `decisions`.
        variants: every variant of the study (those in no comparison get `uncompared` seeds).
        uncompared: seeds for variants in no comparison (default: the last look, the full plan).

    Returns:
        variant -> seeds per arm: next_n for a continuing comparison, the seeds of its decision look
        for a decided one. The runner runs the variant's first that-many seeds (the ones it has are
        kept) and calls `sequential_decisions` again; when no comparison continues, the study is done.
    """
    need: dict[str, int] = {v: (design.looks[-1] if uncompared is None else uncompared) for v in variants}
    for v in {v for pair in comparisons for v in pair}:
        need[v] = 0
    for (a, b), decision in zip(comparisons, decisions):
        n = decision.next_n if decision.status == "continue" else decision.n
        for v in (a, b):
            need[v] = max(need[v], int(n or 0))
    return need


def all_decided(decisions: Sequence[SequentialDecision]) -> bool:
    """True when no comparison continues: stop running rounds."""
    return all(d.status != "continue" for d in decisions)


# --------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class SimulatedDesign:
    """Simulated studies under given true effects: what the design decides and what it costs."""

    decided_at: np.ndarray  # (S, m) 0-based look of rejection, -1 never
    seeds_per_arm: np.ndarray  # (S, m) seeds per arm each comparison used (its decision look, or the last)
    direction: np.ndarray  # (S, m) sign of t at the crossing, 0 where not rejected

    def family_error(self, null: np.ndarray) -> float:
        """Fraction of studies with a rejection among the comparisons where `null` (m,) is True."""
        null = np.asarray(null, dtype=bool)
        return float((self.decided_at[:, null] >= 0).any(axis=1).mean())

    def stop_rate(self, look: int = 0) -> np.ndarray:
        """Per comparison, the fraction of studies rejected at look `look` (0-based), shape (m,)."""
        return (self.decided_at == look).mean(axis=0)


def simulate_design(
    design: SequentialDesign,
    mean_diff: Sequence[float],
    sd_a: Sequence[float],
    sd_b: Sequence[float],
    n_studies: int,
    rng: np.random.Generator,
) -> SimulatedDesign:
    """Simulate n_studies studies of m independent comparisons with normal scores.

    Args:
        mean_diff: true mu_a - mu_b per comparison, shape (m,), F1 points; sd_a, sd_b: true sds (m,)
            (paired designs: the sd of the differences is sqrt(sd_a^2 + sd_b^2), no correlation).
        rng: generator of the simulated scores.
    """
    diff = np.asarray(mean_diff, dtype=float)
    sa, sb = np.asarray(sd_a, dtype=float), np.asarray(sd_b, dtype=float)
    m = diff.size
    looks = np.asarray(design.looks)
    t = np.empty((n_studies, m, looks.size))
    for start in range(0, n_studies, _CHUNK):
        size = min(_CHUNK, n_studies - start)
        x = diff[None, :, None] + sa[None, :, None] * rng.standard_normal((size, m, looks[-1]))
        y = sb[None, :, None] * rng.standard_normal((size, m, looks[-1]))
        t[start:start + size] = _t_at_looks_paired(x - y, looks) if design.paired else _t_at_looks_pooled(x, y, looks)
    sign = np.sign(t)
    decided, crossed, _ = decide(design, np.abs(t))
    seeds = np.where(decided >= 0, looks[np.maximum(decided, 0)], looks[-1])
    s_idx, m_idx = np.nonzero(decided >= 0)
    direction = np.zeros((n_studies, m), dtype=int)
    direction[s_idx, m_idx] = sign[s_idx, m_idx, crossed[s_idx, m_idx]].astype(int)
    return SimulatedDesign(decided_at=decided, seeds_per_arm=seeds, direction=direction)


def paper_effects(configurations: Mapping[str, tuple[float, float]],
                  comparisons: Sequence[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean_diff, sd_a, sd_b), each (m,), from (mean, sd) per configuration and (a, b) pairs."""
    diff = np.array([configurations[a][0] - configurations[b][0] for a, b in comparisons])
    sd_a = np.array([configurations[a][1] for a, _ in comparisons])
    sd_b = np.array([configurations[b][1] for _, b in comparisons])
    return diff, sd_a, sd_b
