"""Uncertainty within one run: clip-level bootstrap intervals of its metrics.

A run's metric is computed on a fixed set of clips; resampling the clips with replacement (n clips
drawn out of n, B times) and recomputing the metric gives its sampling spread on that set of
clips, beside the across-seed spread of the study. The interval is the percentile interval of the
B replicates; the point is the metric on all clips. Randomness is an explicit np.random.Generator.

Both metric families are re-weighted, not recomputed, so a replicate costs little:

- the paper's event-based F1: sed_eval matches events file by file, so the counts (Nref, Nsys, Ntp)
  of a resample are the clip counts weighted by how often each clip is drawn
  (harness.evaluation.metrics.event_counts_per_clip);
- PSDS and the sed_scores_eval F-scores: sed_scores_eval computes, per clip and class, the change of
  every intermediate statistic (TP, FP, cross-triggers) at every score where it changes ("deltas";
  harness.evaluation.fast_psds computes the same deltas for all clips at once, the default engine).
  The statistics of a resample are the same deltas weighted by the clip counts, summed over clips.
  This module turns weighted deltas into the PSD-ROC and the PSDS exactly as
  sed_scores_eval.intersection_based.psds does (cummax, unique eFPR, interpolation, alpha_st,
  staircase area), vectorised; the tests check that all-ones weights give sed_scores_eval's value
  and that a resample equals sed_scores_eval on the resample's clips. sed_scores_eval's own
  bootstrapped_psds draws 5-fold subsets with a fixed seed and recomputes each, which is neither a
  bootstrap with replacement nor seedable here.

A replicate in which a class has no reference event gives that class a TPR of 0 in PSDS (as
sed_scores_eval does) and leaves it out of the F-score macro average (sed_scores_eval refuses it).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.constants import CLASSES, FRAME_HOP_SECONDS
from harness.errors import ConfigError
from harness.evaluation import fast_psds
from harness.evaluation.metrics import event_counts_per_clip, macro_f1_from_counts
from harness.evaluation.psds import (
    F1_THRESHOLD,
    PSDS1,
    PSDS2,
    PsdsParams,
    ScoredSet,
    metric_deltas,
    score_set,
)

PSDS_METRICS: tuple[str, ...] = ("psds1", "psds2", "intersection_f1", "collar_f1")
_SECONDS_PER_HOUR = 3600.0
_CHUNK = 16  # resamples accumulated at once (memory: _CHUNK x change points x 8 bytes per statistic)


@dataclass(frozen=True)
class BootstrapInterval:
    """Percentile bootstrap interval of one metric (fractions 0..1, like the metric).

    Attributes:
        point: the metric on all clips.
        low: lower bound, the (1 - confidence) / 2 quantile of the replicates.
        high: upper bound, the (1 + confidence) / 2 quantile.
        std: standard deviation of the replicates (the bootstrap standard error).
        confidence: nominal coverage, e.g. 0.95.
        n_resamples: number of replicates (B).
    """

    point: float
    low: float
    high: float
    std: float
    confidence: float
    n_resamples: int


def resample_counts(n_clips: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each clip is drawn in each resample of n_clips draws with replacement.

    Returns:
        [B, N] int counts, each row summing to N.
    """
    if n_clips < 1 or n_resamples < 1:
        raise ConfigError(f"bootstrap needs >= 1 clip and >= 1 resample, got {n_clips} and {n_resamples}")
    return rng.multinomial(n_clips, np.full(n_clips, 1.0 / n_clips), size=n_resamples)


def percentile_interval(replicates: np.ndarray, point: float, confidence: float) -> BootstrapInterval:
    """Percentile interval of [B] replicates; NaN replicates (metric undefined there) are dropped."""
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    reps = np.asarray(replicates, dtype=float)
    reps = reps[~np.isnan(reps)]
    if len(reps) == 0:
        nan = float("nan")
        return BootstrapInterval(float(point), nan, nan, nan, confidence, 0)
    low, high = np.quantile(reps, [(1 - confidence) / 2, (1 + confidence) / 2])
    return BootstrapInterval(float(point), float(low), float(high), float(reps.std(ddof=1)) if len(reps) > 1
                             else 0.0, confidence, len(reps))


def event_f1_interval(
    reference: pd.DataFrame,
    estimated: pd.DataFrame,
    clip_ids: Sequence[str],
    *,
    rng: np.random.Generator,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    t_collar: float = 0.2,
    percentage_of_length: float = 0.2,
    classes: Sequence[str] = CLASSES,
) -> BootstrapInterval:
    """Bootstrap interval of the paper's macro event-based F1 (sed_eval rules, zero_score).

    Args:
        reference: ground truth (filename, onset, offset, event_label).
        estimated: post-processed system events, same columns.
        clip_ids: the N evaluated clips (the resampled units).
        rng: the random generator (e.g. np.random.default_rng(seed)).
        n_resamples: B.
        confidence: nominal coverage of the interval.
        t_collar, percentage_of_length, classes: as metrics.event_based.

    Returns:
        BootstrapInterval; its point equals event_based(...).macro_f1.
    """
    per_clip = event_counts_per_clip(reference, estimated, clip_ids, t_collar, percentage_of_length, classes)
    n, c, _ = per_clip.shape
    weights = resample_counts(n, n_resamples, rng)
    replicates = (weights @ per_clip.reshape(n, c * 3)).reshape(n_resamples, c, 3)
    point = float(macro_f1_from_counts(per_clip.sum(axis=0)))
    return percentile_interval(macro_f1_from_counts(replicates), point, confidence)


def psds_intervals(
    frame_probs: np.ndarray,
    clip_ids: Sequence[str],
    durations: Sequence[float],
    reference: pd.DataFrame,
    *,
    rng: np.random.Generator,
    n_resamples: int = 200,
    confidence: float = 0.95,
    metrics: Sequence[str] = PSDS_METRICS,
    hop_seconds: float = FRAME_HOP_SECONDS,
    classes: Sequence[str] = CLASSES,
    median_windows: np.ndarray | None = None,
    drop_empty_clips: bool = False,
    engine: str = "fast",
) -> dict[str, BootstrapInterval]:
    """Bootstrap intervals of PSDS1, PSDS2 and the two sed_scores_eval F1s of one run.

    The same B resamples serve every metric (paired). Arguments as psds.psds_metrics, plus:

    Args:
        rng: the random generator.
        n_resamples: B.
        confidence: nominal coverage.
        metrics: a subset of PSDS_METRICS (each costs sed_scores_eval's deltas once).
        engine: where the per-clip deltas come from, "fast" or "sed_scores_eval" (psds.metric_deltas;
            the same numbers, so the same intervals).

    Returns:
        metric name -> BootstrapInterval; the points equal psds_metrics' values.
    """
    unknown = sorted(set(metrics) - set(PSDS_METRICS))
    if unknown:
        raise ConfigError(f"unknown bootstrap metric(s) {unknown}; valid: {list(PSDS_METRICS)}")
    scored = score_set(frame_probs, clip_ids, durations, reference, hop_seconds=hop_seconds, classes=classes,
                       median_windows=median_windows, drop_empty_clips=drop_empty_clips)
    undefined = {"psds2"} if len(scored.classes) < 2 else set()  # no cross-trigger rate with one class
    deltas = metric_deltas(scored, [name for name in metrics if name not in undefined], engine=engine)
    ids = scored.clip_ids
    weights = resample_counts(len(ids), n_resamples, rng)
    out = {}
    for name in metrics:
        if name in undefined:
            out[name] = percentile_interval(np.full(n_resamples, np.nan), float("nan"), confidence)
            continue
        stats = _ClassStats.collect(scored, deltas[name])
        point = _weighted(scored, stats, name, np.ones((1, len(ids))))[0]
        out[name] = percentile_interval(_weighted(scored, stats, name, weights), point, confidence)
    return out


def weighted_metric(scored: ScoredSet, deltas: dict, metric: str, weights: np.ndarray) -> np.ndarray:
    """A metric of PSDS_METRICS with every clip counted weights[b, n] times, for each row b.

    Args:
        scored: the clip set (its clip_ids order is the order of the weights' columns).
        deltas: sed_scores_eval's deltas of that metric (psds.metric_deltas, either engine).
        metric: "psds1", "psds2", "intersection_f1" or "collar_f1".
        weights: [B, N] non-negative clip weights (bootstrap counts; all ones: the plain metric).

    Returns:
        [B] metric values.
    """
    if metric not in PSDS_METRICS:
        raise ConfigError(f"unknown metric {metric!r}; valid: {list(PSDS_METRICS)}")
    return _weighted(scored, _ClassStats.collect(scored, deltas), metric, weights)


def _weighted(scored: ScoredSet, stats: "_ClassStats", metric: str, weights: np.ndarray) -> np.ndarray:
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 2 or weights.shape[1] != len(stats.duration):
        raise ConfigError(f"weights must be [B, {len(stats.duration)}], got {weights.shape}")
    if metric in ("psds1", "psds2"):
        params = PSDS1 if metric == "psds1" else PSDS2
        if params.alpha_ct and len(scored.classes) < 2:  # undefined, as in psds.psds_value
            return np.full(len(weights), np.nan)
        return _weighted_psds(scored, stats, params, weights)
    return _weighted_fscore(stats, weights)


# ---------------------------------------------------------------------------------------------
# Weighted intermediate statistics


@dataclass(frozen=True)
class _ClassStats:
    """Per class: the deltas of all clips, in descending order of change-point score, and per-clip
    reference sizes. The statistic at threshold u sums the deltas of the change points >= u, i.e.
    a prefix of the descending order; only non-zero deltas are kept, so sums stay exact integers."""

    above_threshold: dict[str, int]  # class -> change points with score > F1_THRESHOLD
    # class -> key -> the non-zero deltas in descending score order (position among all change
    # points, clip, delta) and, for each unique score (ascending) then +inf, how many have a score >= it
    nonzero: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]]  # (position, clip, delta, taken)
    n_ref: dict[str, np.ndarray]  # class -> [N] reference events per clip
    t_ref: dict[str, np.ndarray]  # class -> [N] reference seconds per clip
    duration: np.ndarray  # [N] clip durations (s)

    @staticmethod
    def collect(scored: ScoredSet, deltas: dict) -> "_ClassStats":
        ids = scored.clip_ids
        index = {clip_id: i for i, clip_id in enumerate(ids)}
        flat_deltas = fast_psds.flat(deltas, ids, scored.classes)  # either engine's format
        above, nonzero = {}, {}
        for name in scored.classes:
            d = flat_deltas[name]
            flat = d.scores
            order = np.argsort(-flat, kind="stable")  # descending scores
            clip = d.clip[order]
            unique = np.unique(flat)
            n_at_least = np.append(len(flat) - np.searchsorted(np.sort(flat), unique, side="left"), 0)
            above[name] = int((flat > F1_THRESHOLD).sum())
            nonzero[name] = {}
            for key, delta in d.values.items():
                values = delta[order]
                pos = np.flatnonzero(values)
                taken = np.searchsorted(pos, n_at_least, side="left")
                nonzero[name][key] = (pos, clip[pos], values[pos], taken)
        n_ref = {name: np.zeros(len(ids)) for name in scored.classes}
        t_ref = {name: np.zeros(len(ids)) for name in scored.classes}
        for clip_id, events in scored.reference.items():
            for onset, offset, label in events:
                n_ref[label][index[clip_id]] += 1
                t_ref[label][index[clip_id]] += offset - onset
        duration = np.array([scored.durations[clip_id] for clip_id in ids])
        return _ClassStats(above, nonzero, n_ref, t_ref, duration)

    def curve(self, name: str, key: str, weights: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """[B, U + 1] weighted statistic when the threshold falls below each unique change-point score
        (ascending), then at +inf (0); only the given columns of it when columns is not None."""
        _, clip, values, taken = self.nonzero[name][key]
        prefix = np.zeros((len(weights), len(values) + 1))
        np.cumsum(weights[:, clip] * values, axis=1, out=prefix[:, 1:])
        return prefix[:, taken if columns is None else taken[columns]]


# ---------------------------------------------------------------------------------------------
# PSDS from weighted statistics (the steps of sed_scores_eval.intersection_based.psds)


def _weighted_psds(scored: ScoredSet, stats: _ClassStats, params: PsdsParams, weights: np.ndarray) -> np.ndarray:
    out = np.empty(len(weights))
    for start in range(0, len(weights), _CHUNK):
        w = weights[start : start + _CHUNK]
        rocs = [_class_rocs(stats, name, scored.classes, params, w) for name in scored.classes]  # [C] of [b] rocs
        for b in range(len(w)):
            out[start + b] = _psds_from_rocs([roc[b] for roc in rocs], params)
    return out


def _class_rocs(
    stats: _ClassStats, name: str, classes: Sequence[str], params: PsdsParams, weights: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """[B] (TPR, eFPR per hour) ROCs of one class, after cummax, unique eFPR and the e_max cut."""
    duration = weights @ stats.duration  # [B]
    efpr = stats.curve(name, "fps", weights) / duration[:, None]
    # The FP rate alone bounds the eFPR from below: thresholds past e_max in every resample are
    # cut anyway, so the other statistics are needed only at the remaining ones.
    columns = np.flatnonzero((efpr * _SECONDS_PER_HOUR <= params.e_max).any(axis=0))
    efpr = efpr[:, columns]
    tpr = stats.curve(name, "tps", weights, columns) / np.maximum(weights @ stats.n_ref[name], 1)[:, None]
    if params.alpha_ct:
        others = [o for o in classes if o != name]
        rate = np.zeros_like(efpr)
        for o in others:  # the mean over the other classes, summed in sed_scores_eval's order
            t_other = np.maximum(weights @ stats.t_ref[o], 1e-12)[:, None]
            rate += stats.curve(name, f"cts\\{o}", weights, columns) / t_other
        efpr = efpr + params.alpha_ct * (rate / len(others))
    efpr = efpr * _SECONDS_PER_HOUR
    return [_monotone_roc(tpr[b], efpr[b], params.e_max) for b in range(len(weights))]


def _monotone_roc(tpr: np.ndarray, efpr: np.ndarray, e_max: float) -> tuple[np.ndarray, np.ndarray]:
    inside = efpr <= e_max  # cut first: sorting by eFPR puts every later point after the cut anyway
    tpr, efpr = tpr[inside], efpr[inside]
    order = np.lexsort((tpr, efpr))  # by eFPR, then TPR
    tpr, efpr = tpr[order], efpr[order]
    running = np.maximum.accumulate(tpr)
    keep = np.concatenate([[True], running[1:] > running[:-1]])  # where the running max rises
    tpr, efpr = tpr[keep], efpr[keep]
    last = np.concatenate([efpr[1:] != efpr[:-1], [True]])  # of equal eFPRs, the last (highest TPR)
    return tpr[last], efpr[last]


def _psds_from_rocs(rocs: list[tuple[np.ndarray, np.ndarray]], params: PsdsParams) -> float:
    grid = np.unique(np.concatenate([efpr for _, efpr in rocs]))
    tprs = []
    for tpr, efpr in rocs:  # step interpolation: the TPR of the last ROC point at or left of x
        idx = np.searchsorted(efpr, grid, side="right") - 1
        tprs.append(np.where(idx >= 0, tpr[np.maximum(idx, 0)], 0.0))
    tprs = np.asarray(tprs)
    etpr = np.maximum(tprs.mean(axis=0) - params.alpha_st * tprs.std(axis=0), 0.0)
    return _staircase_area(np.append(etpr, etpr[-1]), np.append(grid, params.e_max), params.e_max) / params.e_max


def _staircase_area(y: np.ndarray, x: np.ndarray, x_max: float) -> float:
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    n = int(np.searchsorted(x, x_max, side="right"))
    x = np.append(x[:n], x_max)
    return float(np.sum(y[:n] * np.diff(x)))


# ---------------------------------------------------------------------------------------------
# F-score at the fixed threshold from weighted statistics


def _weighted_fscore(stats: _ClassStats, weights: np.ndarray) -> np.ndarray:
    f = []
    for name, above in stats.above_threshold.items():
        # the statistics at the threshold: the deltas of the change points scored above it
        tp, fp = (_prefix_sum(stats, name, key, above, weights) for key in ("tps", "fps"))
        n_ref = weights @ stats.n_ref[name]
        precision = np.where(tp + fp == 0, 1.0, tp / np.maximum(tp + fp, 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            recall = np.where(n_ref == 0, np.nan, tp / n_ref)
        f.append(2 * precision * recall / np.maximum(precision + recall, 1e-15))
    f = np.asarray(f)  # [C, B]
    valid = ~np.isnan(f)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(valid.any(axis=0), np.where(valid, f, 0).sum(axis=0) / valid.sum(axis=0), np.nan)


def _prefix_sum(stats: _ClassStats, name: str, key: str, n_first: int, weights: np.ndarray) -> np.ndarray:
    pos, clip, values, _ = stats.nonzero[name][key]
    keep = pos < n_first
    return weights[:, clip[keep]] @ values[keep]
