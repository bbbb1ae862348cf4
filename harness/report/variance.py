"""Where the spread between runs comes from: variance components of a balanced seed-stream design.

A run's seed is split into named streams (init, order, augment, teacher); a study varies them
crossed (every init with every order with every teacher) or nested (several orders within each
teacher). Each stream is a random factor: its levels are draws of that seed, and its variance
component is how much the metric moves when only that seed changes. Pure functions: a DataFrame (or
a mapping of arrays) in, frozen dataclasses out; no printing, every random draw from the
np.random.Generator passed in.

Estimators (balanced designs only; ANOVA, method of moments = expected mean squares):
- Crossed, factors F_1..F_p with a_i levels, r >= 1 runs per cell, N = r * prod(a_i) runs, main
  effects only: y = mu + u_1 + ... + u_p + e. MS_i = (N / a_i) sum_levels (mean_level - mean)^2 /
  (a_i - 1); the residual takes everything else (SS_total - sum SS_i, N - 1 - sum (a_i - 1) df).
  E[MS_i] = s2_e + (N / a_i) s2_i and E[MS_res] = s2_e, so s2_i = (MS_i - MS_res) / (N / a_i).
  The residual absorbs every interaction (init x order, ...) and the run-to-run noise of repeated
  cells: it is "what the main effects do not explain". With two factors the main-effect estimates stay
  unbiased when interactions exist; with three or more they are unbiased when interactions are
  negligible (the pooled residual then mixes interaction variances with unequal weights).
- Nested, factors outer to inner (teacher, then order within teacher), each group holding the same
  number of subgroups and each innermost cell r runs: E[MS_l] = s2_e + sum_{m >= l} n_m s2_m with n_m
  runs per group of factor m, so s2_l = (MS_l - MS_{l+1}) / n_l. With one run per innermost cell the
  innermost factor cannot be told from the residual: its component is reported under its name and
  includes the residual (its `note` says so).
- A negative moment estimate (a factor's mean square below the next one) is set to 0, reported with
  `truncated=True`, and the other components are left as estimated (the usual convention; REML would
  refit them). Shares are of the sum of the truncated components, so they sum to 1.

Intervals: generalized confidence intervals (Weerahandi 1993; the generalized pivotal quantities of
Krishnamoorthy & Mathew for balanced mixed models). In a balanced normal design the mean squares are
independent with df_j MS_j / E[MS_j] ~ chi2(df_j); drawing W_j ~ chi2(df_j) and putting E[MS_j]* =
ms_j df_j / W_j into the moment formulas gives draws of every component (truncated at 0) and of every
share at once; their alpha/2 and 1 - alpha/2 quantiles are the interval. Why this and not the others:
Satterthwaite's interval is undefined for a negative or zero estimate and is known to undercover a
difference of mean squares with few levels (a seed stream has 2-5); a parametric bootstrap from the
fitted model draws from a world in which a truncated component is exactly 0, so its interval sits at
0 whatever the truth. The generalized interval reduces to the exact chi-square interval for a
component that is a single mean square (the residual), gives the shares' intervals from the same
draws, and covers close to nominally in simulation (tests/test_report_variance.py). With 2-3 levels
a factor's interval is wide whatever the method: 1-2 degrees of freedom carry little information.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from harness.errors import DataError

RESIDUAL = "residual"
DEFAULT_DRAWS = 10_000
Design = Literal["crossed", "nested"]

# How the plain reading names a stream; unknown names are used as they are.
STREAM_LABELS: dict[str, str] = {
    "init": "the weight initialisation",
    "order": "the batch order",
    "augment": "the augmentation draws",
    "teacher": "the teacher",
    RESIDUAL: "what the design does not separate (interactions and run-to-run noise)",
}


class DesignError(DataError):
    """The runs do not form the balanced design a variance-component estimator needs."""


@dataclass(frozen=True)
class Component:
    """One variance component.

    Attributes:
        name: the stream (factor) or "residual".
        variance: the estimate, truncated at 0 (metric units squared).
        estimate: the moment estimate before truncation (may be negative).
        truncated: the moment estimate was negative and `variance` was set to 0.
        share: variance / the sum of all truncated components, in [0, 1].
        low, high: generalized confidence interval of the variance.
        share_low, share_high: generalized confidence interval of the share.
        levels: levels of the factor (nested: groups of it over the whole design, e.g. 2 teachers x 3
            orders = 6); residual: the number of runs.
        df: degrees of freedom of its mean square.
        note: what the component absorbs ("" when nothing).
    """

    name: str
    variance: float
    estimate: float
    truncated: bool
    share: float
    low: float
    high: float
    share_low: float
    share_high: float
    levels: int
    df: int
    note: str = ""


@dataclass(frozen=True)
class VarianceComponents:
    """The variance components of one variant's runs.

    Attributes:
        design: "crossed" or "nested".
        metric: the column analysed.
        components: one per factor (in the order given), then the residual (absent when nested with one
            run per cell: the innermost factor includes it).
        total: sum of the truncated components (an estimate of the variance of one run's metric).
        mean: the grand mean of the metric.
        n_runs: runs analysed; runs_per_cell: r, the runs of each cell of the design.
        confidence: level of the intervals.
    """

    design: str
    metric: str
    components: tuple[Component, ...]
    total: float
    mean: float
    n_runs: int
    runs_per_cell: int
    confidence: float


@dataclass(frozen=True)
class _Anova:
    """Mean squares of a balanced design and their expectations: E[ms] = ems @ components."""

    names: tuple[str, ...]  # components, in ems' column order
    ms: np.ndarray  # (J,)
    df: np.ndarray  # (J,)
    ems: np.ndarray  # (J, J), row j: coefficients of the components in E[MS_j]
    levels: tuple[int, ...]
    notes: tuple[str, ...]
    runs_per_cell: int


def _frame(runs: pd.DataFrame | Mapping[str, np.ndarray], factors: Sequence[str], metric: str) -> pd.DataFrame:
    frame = runs if isinstance(runs, pd.DataFrame) else pd.DataFrame(dict(runs))
    missing = [c for c in (*factors, metric) if c not in frame.columns]
    if missing:
        raise DesignError(f"the runs have no column {missing}; columns are {list(frame.columns)}")
    if not factors or len(set(factors)) != len(factors):
        raise DesignError(f"give one or more distinct stream columns, got {list(factors)}")
    if RESIDUAL in factors:
        raise DesignError(f"{RESIDUAL!r} is the name of the remainder; rename that stream column")
    y = pd.to_numeric(frame[metric], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(y).all():
        raise DesignError(f"{metric!r} has missing or non-finite values in {int((~np.isfinite(y)).sum())} runs; "
                          "drop those runs and every run of their cells so that the design stays balanced")
    if frame[list(factors)].isna().any().any():
        raise DesignError(f"a stream column among {list(factors)} has missing level ids")
    out = frame[list(factors)].copy()
    out["_y"] = y
    return out


def _codes(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[np.ndarray, int]:
    """Integer group ids of the rows by the joint levels of `columns`, and the number of groups."""
    per_column = [pd.factorize(frame[c])[0] for c in columns]
    joint = np.ravel_multi_index(per_column, [c.max() + 1 for c in per_column])
    codes, uniques = pd.factorize(joint)
    return codes, len(uniques)


def _group_mean(y: np.ndarray, codes: np.ndarray, groups: int) -> np.ndarray:
    """Each run's group mean, shape (n,)."""
    return (np.bincount(codes, y, groups) / np.bincount(codes, minlength=groups))[codes]


def _crossed(frame: pd.DataFrame, factors: Sequence[str]) -> _Anova:
    y = frame["_y"].to_numpy()
    n = y.size
    levels = [int(frame[f].nunique()) for f in factors]
    cell, cells = _codes(frame, factors)
    counts = np.bincount(cell, minlength=cells)
    if cells != int(np.prod(levels)) or counts.min() != counts.max():
        raise DesignError(f"the design over {list(factors)} is not fully crossed and balanced ({cells} of "
                          f"{int(np.prod(levels))} cells present, {counts.min()}-{counts.max()} runs a cell); run the "
                          "missing cells, or drop runs until every cell has the same count, or fit a mixed model "
                          "(statsmodels MixedLM) instead of the ANOVA estimators")
    if min(levels) < 2:
        raise DesignError(f"every stream needs at least 2 levels, got {dict(zip(factors, levels))}")
    grand = y.mean()
    ms, df = [], []
    for f, a in zip(factors, levels):
        codes, _ = _codes(frame, [f])
        # Summed over runs, (level mean - grand mean)^2 is (N / a) x the sum over levels.
        ms.append(np.sum((_group_mean(y, codes, a) - grand) ** 2) / (a - 1))
        df.append(a - 1)
    ss_residual = np.sum((y - grand) ** 2) - sum(m * d for m, d in zip(ms, df))
    df_residual = n - 1 - sum(df)
    if df_residual < 1:
        raise DesignError(f"{n} runs over {list(factors)} leave no degrees of freedom for the residual; add runs "
                          "(a second run per cell, or a further level of a stream)")
    ms.append(max(ss_residual, 0.0) / df_residual)  # max: rounding can make a zero sum slightly negative
    df.append(df_residual)
    p = len(factors)
    ems = np.zeros((p + 1, p + 1))
    ems[:, p] = 1.0
    for i, a in enumerate(levels):
        ems[i, i] = n / a
    note = "absorbs every interaction between streams" + (" and the spread of repeated cells" if
                                                          counts[0] > 1 else "")
    return _Anova((*factors, RESIDUAL), np.array(ms), np.array(df, dtype=float), ems, (*levels, n),
                  ("",) * p + (note,), int(counts[0]))


def _nested(frame: pd.DataFrame, factors: Sequence[str]) -> _Anova:
    y = frame["_y"].to_numpy()
    n = y.size
    ids = [_codes(frame, factors[: i + 1]) for i in range(len(factors))]  # groups of each level, outer first
    counts = [g for _, g in ids]
    parents = [np.zeros(n, dtype=int)] + [c for c, _ in ids[:-1]]
    # Balanced: every parent has the same number of subgroups, every innermost cell the same runs.
    children = [np.bincount(np.unique(np.stack([p, c]), axis=1)[0]) for p, (c, _) in zip(parents, ids)]
    runs = np.bincount(ids[-1][0], minlength=counts[-1])
    if any(ch.min() != ch.max() for ch in children) or runs.min() != runs.max():
        raise DesignError(f"the nested design {' > '.join(factors)} is not balanced (each group needs the same "
                          "number of subgroups and each innermost cell the same number of runs); run the missing "
                          "runs or drop runs until it is, or fit a mixed model (statsmodels MixedLM)")
    r = int(runs[0])
    if min(int(ch[0]) for ch in children) < 2:
        raise DesignError(f"every stream needs at least 2 levels within each group of the one above it "
                          f"({' > '.join(factors)})")
    if r == 1 and len(factors) == 1:
        raise DesignError(f"one run per level of {factors[0]!r} leaves nothing to compare it with; run each "
                          "level at least twice")
    # Deviations of each group's mean from its parent's mean, level by level; the last "level" is the run.
    means = [np.full(n, y.mean())] + [_group_mean(y, c, g) for c, g in ids] + [y]
    ss = [np.sum((means[i + 1] - means[i]) ** 2) for i in range(len(factors) + 1)]
    dfs = [counts[0] - 1] + [counts[i] - counts[i - 1] for i in range(1, len(factors))] + [n - counts[-1]]
    names, levels, notes = [*factors, RESIDUAL], [*counts, n], [""] * len(factors) + [""]
    if r == 1:  # the innermost factor is the residual: one mean square for both
        ss, dfs, names, levels = ss[:-1], dfs[:-1], names[:-1], levels[:-1]
        notes = [""] * (len(factors) - 1) + ["includes the residual: one run per cell"]
    ms = np.array([s / d for s, d in zip(ss, dfs)])
    runs_per_group = [n / c for c in counts][: len(names) - 1] + [1.0]
    j = len(names)
    ems = np.array([[runs_per_group[m] if m >= row else 0.0 for m in range(j)] for row in range(j)])
    return _Anova(tuple(names), ms, np.array(dfs, dtype=float), ems, tuple(levels), tuple(notes), r)


def _intervals(anova: _Anova, rng: np.random.Generator, draws: int, confidence: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Generalized pivotal draws: (component draws, share draws), each (draws, J), truncated at 0."""
    coef = np.linalg.inv(anova.ems)  # components = coef @ E[MS]
    w = rng.chisquare(anova.df, size=(draws, anova.df.size))
    expected_ms = anova.ms * anova.df / w
    comp = np.maximum(expected_ms @ coef.T, 0.0)
    total = comp.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, comp / total, np.nan)
    return comp, share


def variance_components(
    runs: pd.DataFrame | Mapping[str, np.ndarray],
    factors: Sequence[str],
    metric: str,
    rng: np.random.Generator,
    design: Design = "crossed",
    confidence: float = 0.95,
    draws: int = DEFAULT_DRAWS,
) -> VarianceComponents:
    """Each seed stream's share of the metric's variance between runs, with intervals.

    Args:
        runs: one row per run: a column per stream holding its level id (any hashable: the seed), and the
            metric; shape (n_runs, len(factors) + 1) at least.
        factors: the stream columns; for design="nested", outer to inner (("teacher", "order"): orders
            within each teacher; inner ids may repeat across outer levels, they are told apart by it).
        metric: the metric column (e.g. "val_f1").
        rng: generator of the generalized-pivot draws of the intervals.
        design: "crossed" (main effects, residual absorbs interactions) or "nested".
        confidence: level of the intervals.
        draws: pivot draws (10 000: the interval ends move by < 1 % of their width between generators).

    Raises:
        DesignError: a missing column, non-finite metric, fewer than 2 levels, an unbalanced or incomplete
            design (with what to do), or no degrees of freedom left for the residual, or a metric that
            does not vary at all.
    """
    if design not in ("crossed", "nested"):
        raise ValueError(f"design must be 'crossed' or 'nested', got {design!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    frame = _frame(runs, factors, metric)
    anova = _crossed(frame, factors) if design == "crossed" else _nested(frame, factors)
    if not np.any(anova.ms > 0):
        raise DesignError(f"{metric!r} is the same in every run: there is no variance to split")
    raw = np.linalg.solve(anova.ems, anova.ms)
    variance = np.maximum(raw, 0.0)
    total = float(variance.sum())
    comp, share = _intervals(anova, rng, draws, confidence)
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    lo, hi = np.quantile(comp, q, axis=0)
    share_lo, share_hi = np.nanquantile(share, q, axis=0)
    components = tuple(
        Component(name, float(variance[j]), float(raw[j]), bool(raw[j] < 0), float(variance[j] / total),
                  float(lo[j]), float(hi[j]), float(share_lo[j]), float(share_hi[j]), int(anova.levels[j]),
                  int(anova.df[j]), anova.notes[j])
        for j, name in enumerate(anova.names))
    return VarianceComponents(design, metric, components, total, float(frame["_y"].mean()), len(frame),
                              anova.runs_per_cell, confidence)


def _label(name: str, labels: Mapping[str, str] | None) -> str:
    return {**STREAM_LABELS, **(labels or {})}.get(name, name)


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def reading(result: VarianceComponents, labels: Mapping[str, str] | None = None) -> str:
    """The plain reading of a variance decomposition, e.g. "Most of the spread between runs comes from the
    batch order (62 %, 95 % CI 20-85 %); then ...".

    Args:
        result: from `variance_components`.
        labels: how to name streams beyond STREAM_LABELS (stream -> words).
    """
    ordered = sorted(result.components, key=lambda c: -c.share)
    level = f"{100 * result.confidence:.0f} % CI"

    def part(c: Component) -> str:
        note = f"; {c.note}" if c.note and c.name != RESIDUAL else ""  # the residual's label says it already
        interval = f"{100 * c.share_low:.0f}-{_pct(c.share_high)}"
        return f"{_label(c.name, labels)} ({_pct(c.share)}, {level} {interval}{note})"

    top = ordered[0]
    lead = "Most of the spread between runs" if top.share >= 0.5 else "The largest part of the spread between runs"
    text = f"{lead} comes from {part(top)}"
    rest = [c for c in ordered[1:] if not c.truncated]
    if rest:
        text += "; then " + ", ".join(part(c) for c in rest)
    text += "."
    zero = [c for c in ordered if c.truncated]
    if zero:
        names = ", ".join(_label(c.name, labels) for c in zero)
        text += (f" No spread was detected from {names}: the estimate was negative and is reported as 0 "
                 f"(upper end of its share's {level}: " + ", ".join(_pct(c.share_high) for c in zero) + ").")
    if any(c.df <= 2 for c in result.components if c.name != RESIDUAL):
        text += " With 2-3 levels of a stream its share is known only roughly: read the intervals, not the point."
    return text
