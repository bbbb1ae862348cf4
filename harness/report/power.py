"""Seed planning from a pilot: how many seeds per arm each comparison needs, and what they cost.

`plan_seeds` takes the finished runs of a study (e.g. a 3-seed pilot), estimates each comparison's
effect size (Hedges' g; d_z of the per-seed differences when the variants share seeds), and returns
the seeds per arm a two-sided t-test needs for `power` (default 80 %) at each alpha (default the
paper's 0.2, 0.05 and 0.01), with the runs still to do and their compute from the measured job times.
A variant in several comparisons needs the most any of them needs, so the study's total counts each
variant once.

Read a pilot's plan as an order of magnitude: with 3 seeds a side the effect size is itself
uncertain by a factor of about 2 (its 95 % interval at g = 2 is roughly [0, 4]), so the seeds the
plan asks for are uncertain by a factor of about 4. `harness run --until-decided` (harness.report.
sequential) spends seeds only where they are needed and does not rely on the estimate.

Pure functions: arrays and mappings in, frozen dataclasses out; no pandas, no printing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from harness.report import compare, stats

PAPER_ALPHAS: tuple[float, ...] = stats.DEFAULT_ALPHAS  # 0.2, 0.05, 0.01
DEFAULT_POWER = 0.8


@dataclass(frozen=True)
class PilotComparison:
    """One comparison's pilot runs."""

    label: str
    a: str  # variant names
    b: str
    scores_a: np.ndarray  # shape (n_a,), F1 in %; paired: aligned with scores_b by seed
    scores_b: np.ndarray  # shape (n_b,)


@dataclass(frozen=True)
class ComparisonPlan:
    label: str
    a: str
    b: str
    n_a: int  # runs in the pilot
    n_b: int
    effect: float | None  # Hedges' g (unpaired) or d_z (paired) of a - b; None when not estimable
    paired: bool
    correlation: float | None  # of the paired runs (paired only)
    alphas: tuple[float, ...]
    seeds_per_arm: tuple[int | None, ...]  # per alpha; None: no finite number (zero or unknown effect)
    extra_runs: tuple[int | None, ...]  # per alpha, runs still to do for this comparison alone (both arms)
    extra_seconds: tuple[float | None, ...]  # their compute from the arms' mean job times; None: unknown
    reason: str  # why there is no plan ("" when there is one)


@dataclass(frozen=True)
class VariantPlan:
    name: str
    n_done: int  # finished runs
    job_seconds: float | None  # mean wall-clock seconds of its finished jobs
    seeds_per_arm: tuple[int | None, ...]  # per alpha: the most that any of its plannable comparisons needs
    extra_seconds: tuple[float | None, ...]  # per alpha: (seeds - n_done)+ x job_seconds; None: time unknown


@dataclass(frozen=True)
class SeedPlan:
    power: float
    alphas: tuple[float, ...]
    comparisons: tuple[ComparisonPlan, ...]
    variants: tuple[VariantPlan, ...]
    extra_runs: tuple[int, ...]  # per alpha, the study's runs still to do (each variant once)
    extra_seconds: tuple[float | None, ...]  # per alpha, their compute; None when a job time is unknown
    unplanned: tuple[str, ...]  # comparisons with no finite plan (zero or unknown effect), left out of the totals


def _effect(pc: PilotComparison, paired: bool) -> tuple[float | None, float | None, str]:
    a = np.asarray(pc.scores_a, dtype=float).ravel()
    b = np.asarray(pc.scores_b, dtype=float).ravel()
    if paired:
        if a.size != b.size:
            return None, None, f"paired runs are not aligned by seed (n = {a.size} vs {b.size})"
        if a.size < 2:
            return None, None, f"fewer than 2 paired runs (n = {a.size})"
        d = a - b
        if float(d.std(ddof=1)) == 0.0:
            return None, None, "the paired differences have zero variance"
        return compare.paired_effect_size(a, b), compare.pearson_r(a, b), ""
    sa, sb = stats.summarize(a), stats.summarize(b)
    if sa.n < 2 or sb.n < 2:
        return None, None, f"fewer than 2 runs on a side (n = {sa.n} vs {sb.n})"
    if sa.sd == 0.0 and sb.sd == 0.0:
        return None, None, "zero variance on both sides"
    return stats.hedges_g_from_summary(sa, sb), None, ""


def _seconds(runs: int | None, job_seconds: float | None) -> float | None:
    if runs is None or job_seconds is None:
        return None
    return runs * job_seconds


def plan_seeds(
    comparisons: Sequence[PilotComparison],
    job_seconds: Mapping[str, float | None] | None = None,
    *,
    runs_done: Mapping[str, int] | None = None,
    alphas: tuple[float, ...] = PAPER_ALPHAS,
    power: float = DEFAULT_POWER,
    paired: bool = False,
) -> SeedPlan:
    """Seeds per arm for `power` at each alpha, per comparison and per variant, with their compute.

    Args:
        comparisons: the pilot runs of each comparison.
        job_seconds: variant -> mean wall-clock seconds of one of its jobs (None or absent: unknown).
        runs_done: variant -> finished runs (default: the most scores given for it).
        alphas: two-sided levels to plan for.
        power: the target power of each test.
        paired: plan paired t-tests (variants share seeds; effect d_z of the per-seed differences).

    Returns:
        the SeedPlan. Seeds come from `stats.seeds_for_power` (or `seeds_for_power_paired`) at the
        pilot's effect; a comparison with no estimable or a zero effect has None (no finite n).
    """
    job_seconds = dict(job_seconds or {})
    done: dict[str, int] = {}
    for pc in comparisons:
        done[pc.a] = max(done.get(pc.a, 0), int(np.asarray(pc.scores_a).size))
        done[pc.b] = max(done.get(pc.b, 0), int(np.asarray(pc.scores_b).size))
    done.update(runs_done or {})
    solve = stats.seeds_for_power_paired if paired else stats.seeds_for_power
    plans = []
    for pc in comparisons:
        effect, r, reason = _effect(pc, paired)
        seeds = tuple(None if effect is None else solve(effect, al, power) for al in alphas)
        if not reason and any(n is None for n in seeds):
            reason = "no difference in the pilot (effect 0): no number of seeds reaches the power"
        extra_runs, extra_seconds = [], []
        for n in seeds:
            if n is None:
                extra_runs.append(None)
                extra_seconds.append(None)
                continue
            more_a, more_b = max(0, n - done[pc.a]), max(0, n - done[pc.b])
            extra_runs.append(more_a + more_b)
            sec_a, sec_b = _seconds(more_a, job_seconds.get(pc.a)), _seconds(more_b, job_seconds.get(pc.b))
            extra_seconds.append(None if (sec_a is None and more_a) or (sec_b is None and more_b)
                                 else (sec_a or 0.0) + (sec_b or 0.0))
        plans.append(ComparisonPlan(
            label=pc.label, a=pc.a, b=pc.b, n_a=int(np.asarray(pc.scores_a).size),
            n_b=int(np.asarray(pc.scores_b).size), effect=effect, paired=paired, correlation=r,
            alphas=tuple(alphas), seeds_per_arm=seeds, extra_runs=tuple(extra_runs),
            extra_seconds=tuple(extra_seconds), reason=reason))
    variants = _variant_plans(plans, done, job_seconds, alphas)
    totals_runs, totals_seconds = [], []
    for i in range(len(alphas)):
        totals_runs.append(sum(max(0, (v.seeds_per_arm[i] or 0) - v.n_done) for v in variants))
        secs = [v.extra_seconds[i] for v in variants]
        totals_seconds.append(None if any(s is None for s in secs) else float(sum(secs)))  # type: ignore[arg-type]
    unplanned = tuple(p.label for p in plans if any(n is None for n in p.seeds_per_arm))
    return SeedPlan(power=power, alphas=tuple(alphas), comparisons=tuple(plans), variants=tuple(variants),
                    extra_runs=tuple(totals_runs), extra_seconds=tuple(totals_seconds), unplanned=unplanned)


def _variant_plans(plans: Sequence[ComparisonPlan], done: Mapping[str, int],
                   job_seconds: Mapping[str, float | None], alphas: tuple[float, ...]) -> list[VariantPlan]:
    names = list(dict.fromkeys(v for p in plans for v in (p.a, p.b)))
    out = []
    for name in names:
        seeds, seconds = [], []
        for i in range(len(alphas)):
            needs = [p.seeds_per_arm[i] for p in plans if name in (p.a, p.b) and p.seeds_per_arm[i] is not None]
            n = max(needs) if needs else None
            seeds.append(n)
            more = 0 if n is None else max(0, n - done[name])
            seconds.append(0.0 if more == 0 else _seconds(more, job_seconds.get(name)))
        out.append(VariantPlan(name=name, n_done=done[name], job_seconds=job_seconds.get(name),
                               seeds_per_arm=tuple(seeds), extra_seconds=tuple(seconds)))
    return out


def seeds_from_summary(sa: stats.Summary, sb: stats.Summary, alphas: tuple[float, ...] = PAPER_ALPHAS,
                       power: float = DEFAULT_POWER) -> tuple[int | None, ...]:
    """Seeds per arm for `power` at each alpha from published means, sds and n (Hedges' g)."""
    if _not_estimable(sa, sb):
        return tuple(None for _ in alphas)
    g = stats.hedges_g_from_summary(sa, sb)
    return tuple(stats.seeds_for_power(g, al, power) for al in alphas)


def _not_estimable(sa: stats.Summary, sb: stats.Summary) -> bool:
    return sa.n < 2 or sb.n < 2 or (sa.sd == 0 and sb.sd == 0) or not math.isfinite(sa.mean - sb.mean)
