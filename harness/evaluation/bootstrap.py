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
  every intermediate statistic (TP, FP, cross-triggers) at every score where it changes ("deltas").
  A clip's statistic at a threshold is the sum of its changes at the scores >= the threshold, so
  the statistics of all B resamples at K thresholds are one product `weights @ per_clip`: the
  [B, N] clip counts times the [N, K] per-clip statistics (formed sparse: the changes summed per
  clip and threshold, then a cumulative sum over the thresholds). The changes come from
  harness.evaluation.fast_psds (the default engine: Context.intersection_changes / collar_changes,
  the entries of its deltas before they are netted per clip and score) or from sed_scores_eval's
  deltas (engine "sed_scores_eval", and `weighted_metric`). The F-scores need one threshold. A
  PSD-ROC needs only the thresholds whose eFPR is <= e_max in some resample: the FP count alone
  bounds the eFPR from below, and per range of thresholds a clip's FP count is >= its count above
  the range plus its negative changes in it (and >= 0), so a [B, ranges] product of these bounds
  rules out the ranges no resample can use, coarse ranges first (_candidate_columns); typically a
  few hundred thresholds of tens of thousands are left. Of those, the thresholds between two
  changes of the TPR (and of the cross-trigger rates) give one ROC point at most, the one with the
  fewest FPs, so each resample's FP counts are reduced to their minimum there (_class_rocs). The
  ROCs and the PSDS then follow sed_scores_eval.intersection_based.psds (cummax, unique eFPR,
  interpolation, alpha_st, staircase area), vectorised over the resamples.

Same numbers as the previous implementation (kept below as `_reference_weighted_metric` and
`_reference_intervals`: prefix sums over every change point, one ROC at a time), to the last bit:
the counts are integers, exact in float64 whatever the summation order or the number of BLAS
threads; the float sums that are not (weighted durations and reference lengths) are the same
products on the same chunks of _CHUNK resamples; the steps after them are elementwise, or
column-wise reductions over the classes, which numpy sums row by row as it does for one resample
(a resample whose eFPR grid has a single point, where numpy sums the classes pairwise, takes the
previous code); each staircase area is np.sum over the same terms. The dropped thresholds and ROC
points are ones the previous code cut (eFPR > e_max) or dropped (no rise of the running TPR
maximum). tests/test_evaluation_bootstrap.py compares the two bit for bit on random cases, and a
resample with sed_scores_eval run on the resample's clips. sed_scores_eval's own bootstrapped_psds
draws 5-fold subsets with a fixed seed and recomputes each, which is neither a bootstrap with
replacement nor seedable here.

A replicate in which a class has no reference event gives that class a TPR of 0 in PSDS (as
sed_scores_eval does) and leaves it out of the F-score macro average (sed_scores_eval refuses it).
"""

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from harness.constants import CLASSES, FRAME_HOP_SECONDS
from harness.errors import ConfigError
from harness.evaluation import fast_psds
from harness.evaluation.metrics import event_counts_per_clip, macro_f1_from_counts
from harness.evaluation.psds import (
    COLLAR_RATE,
    COLLAR_SECONDS,
    ENGINES,
    F1_THRESHOLD,
    INTERSECTION_F1_DTC,
    INTERSECTION_F1_GTC,
    PSDS1,
    PSDS2,
    PsdsParams,
    ScoredSet,
    metric_deltas,
    score_set,
)

PSDS_METRICS: tuple[str, ...] = ("psds1", "psds2", "intersection_f1", "collar_f1")
_SECONDS_PER_HOUR = 3600.0
_CHUNK = 16  # resamples per float product in the reference (weighted durations): kept, for the same sums
_FIRST = 64  # ranges of thresholds first bounded when ruling out those past e_max (see _candidate_columns) ...
_SPLIT = 32  # ... then parts per range left
_INTERSECTION = {  # the intersection-based metrics' (dtc, gtc, cttc), as psds.metric_deltas
    "psds1": (PSDS1.dtc, PSDS1.gtc, PSDS1.cttc),
    "psds2": (PSDS2.dtc, PSDS2.gtc, PSDS2.cttc),
    "intersection_f1": (INTERSECTION_F1_DTC, INTERSECTION_F1_GTC, None),
}


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
        metrics: a subset of PSDS_METRICS (each costs its per-clip statistics once).
        engine: where the per-clip statistics come from, "fast" (fast_psds' changes) or
            "sed_scores_eval" (its deltas, psds.metric_deltas); the same numbers, so the same intervals.

    Returns:
        metric name -> BootstrapInterval; the points equal psds_metrics' values.
    """
    unknown = sorted(set(metrics) - set(PSDS_METRICS))
    if unknown:
        raise ConfigError(f"unknown bootstrap metric(s) {unknown}; valid: {list(PSDS_METRICS)}")
    scored = score_set(frame_probs, clip_ids, durations, reference, hop_seconds=hop_seconds, classes=classes,
                       median_windows=median_windows, drop_empty_clips=drop_empty_clips)
    undefined = {"psds2"} if len(scored.classes) < 2 else set()  # no cross-trigger rate with one class
    stats = _metric_statistics(scored, [name for name in metrics if name not in undefined], engine)
    n = len(scored.clip_ids)
    weights = resample_counts(n, n_resamples, rng).astype(float)
    out = {}
    for name in metrics:
        if name in undefined:
            out[name] = percentile_interval(np.full(n_resamples, np.nan), float("nan"), confidence)
            continue
        point, replicates = _weighted(scored, stats[name], name, [np.ones((1, n)), weights])
        out[name] = percentile_interval(replicates, point[0], confidence)
    return out


def weighted_metric(scored: ScoredSet, deltas: dict, metric: str, weights: np.ndarray) -> np.ndarray:
    """A metric of PSDS_METRICS with every clip counted weights[b, n] times, for each row b.

    Args:
        scored: the clip set (its clip_ids order is the order of the weights' columns).
        deltas: sed_scores_eval's deltas of that metric (psds.metric_deltas, either engine).
        metric: "psds1", "psds2", "intersection_f1" or "collar_f1".
        weights: [B, N] non-negative clip weights (bootstrap counts; all ones: the plain metric).
            Integer weights give the reference's numbers to the last bit (module doc); others round.

    Returns:
        [B] metric values.
    """
    if metric not in PSDS_METRICS:
        raise ConfigError(f"unknown metric {metric!r}; valid: {list(PSDS_METRICS)}")
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 2 or weights.shape[1] != len(scored.clip_ids):
        raise ConfigError(f"weights must be [B, {len(scored.clip_ids)}], got {weights.shape}")
    if (weights < 0).any():
        raise ConfigError("clip weights must be non-negative")
    return _weighted(scored, _Statistics.from_deltas(scored, deltas, _Clips.of(scored)), metric, [weights])[0]


# ---------------------------------------------------------------------------------------------
# Per-clip statistics as changes per threshold

_Piece = tuple[np.ndarray, np.ndarray, np.ndarray]  # [K] clip, [K] column, [K] float64 integer change
_Changes = list[_Piece]  # one statistic's changes, in pieces (fast_psds shares its detection changes)


@dataclass(frozen=True)
class _Clips:
    """Per class, the reference of each clip; each clip's duration."""

    n_ref: dict[str, np.ndarray]  # class -> [N] reference events per clip
    t_ref: dict[str, np.ndarray]  # class -> [N] reference seconds per clip
    duration: np.ndarray  # [N] clip durations (s)

    @staticmethod
    def of(scored: ScoredSet) -> "_Clips":
        ids = scored.clip_ids
        index = {clip_id: i for i, clip_id in enumerate(ids)}
        n_ref = {name: np.zeros(len(ids)) for name in scored.classes}
        t_ref = {name: np.zeros(len(ids)) for name in scored.classes}
        for clip_id, events in scored.reference.items():
            for onset, offset, label in events:
                n_ref[label][index[clip_id]] += 1
                t_ref[label][index[clip_id]] += offset - onset
        return _Clips(n_ref, t_ref, np.array([scored.durations[clip_id] for clip_id in ids]))


@dataclass(frozen=True)
class _Statistics:
    """One metric's statistics, per class: the changes of each statistic at the class's thresholds.

    Columns index a class's thresholds (ascending), then +inf (every statistic 0). A clip's statistic
    at column j is the sum of its changes at columns >= j; the changes need neither netting nor order.
    """

    n_columns: dict[str, int]  # class -> thresholds + 1
    f1_column: dict[str, int]  # class -> the first column with a threshold > F1_THRESHOLD
    changes: dict[str, dict[str, _Changes]]  # class -> statistic -> changes
    clips: _Clips

    @staticmethod
    def from_changes(changes: dict[str, fast_psds.ClassChanges], clips: _Clips) -> "_Statistics":
        """From fast_psds' changes (columns: all distinct scores of the class)."""
        n_columns, f1_column = {}, {}
        for name, c in changes.items():
            n_columns[name] = len(c.thresholds) + 1
            f1_column[name] = int(np.searchsorted(c.thresholds, F1_THRESHOLD, side="right"))
        return _Statistics(n_columns, f1_column, {name: c.values for name, c in changes.items()}, clips)

    @staticmethod
    def from_deltas(scored: ScoredSet, deltas: dict, clips: _Clips) -> "_Statistics":
        """From sed_scores_eval's deltas of either engine (columns: the change-point scores)."""
        n_columns, f1_column, changes = {}, {}, {}
        for name, d in fast_psds.flat(deltas, scored.clip_ids, scored.classes).items():
            unique, column = np.unique(d.scores, return_inverse=True)
            n_columns[name] = len(unique) + 1
            f1_column[name] = int(np.searchsorted(unique, F1_THRESHOLD, side="right"))
            changes[name] = {}
            for key, values in d.values.items():
                nonzero = np.flatnonzero(values)
                changes[name][key] = [(np.asarray(d.clip, np.int64)[nonzero],
                                       column.reshape(-1)[nonzero].astype(np.int64),
                                       np.asarray(values, np.float64)[nonzero])]
        return _Statistics(n_columns, f1_column, changes, clips)


def _metric_statistics(scored: ScoredSet, metrics: Sequence[str], engine: str) -> dict[str, _Statistics]:
    """metric name -> its per-clip statistics, from the engine's changes or deltas."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown PSDS engine {engine!r}; valid: {list(ENGINES)}")
    clips = _Clips.of(scored)
    if engine == "fast" and scored.finite:
        context = scored.fast
        return {name: _Statistics.from_changes(
            context.collar_changes(COLLAR_SECONDS, COLLAR_SECONDS, COLLAR_RATE) if name == "collar_f1"
            else context.intersection_changes(*_INTERSECTION[name]), clips) for name in metrics}
    deltas = metric_deltas(scored, metrics, engine=engine)
    return {name: _Statistics.from_deltas(scored, deltas[name], clips) for name in metrics}


def _from(changes: _Changes, first: int) -> _Piece:
    """The changes at the columns >= first, in one piece."""
    kept = [(clip[column >= first], column[column >= first], change[column >= first])
            for clip, column, change in changes]
    return (np.concatenate([np.zeros(0, np.int64)] + [k[0] for k in kept]),
            np.concatenate([np.zeros(0, np.int64)] + [k[1] for k in kept]),
            np.concatenate([np.zeros(0)] + [k[2] for k in kept]))


def _weighted_sums(weights_t: np.ndarray, statistics: list[_Changes], columns: np.ndarray) -> np.ndarray:
    """[M, K, B] M statistics at the given K columns (ascending), weighted by each of the B weight
    rows (weights_t: [N, B]): the changes at the columns >= each, times their clip's weight, summed.
    One sparse product: [M * K, N] changes summed by statistic, reach and clip, times [N, B], then a
    cumulative sum over the columns (integers: exact in float64, whatever the order)."""
    m, k = len(statistics), len(columns)
    if k == 0:
        return np.zeros((m, 0, weights_t.shape[1]))
    rows, clips, values = [], [], []
    for i, changes in enumerate(statistics):
        clip, column, change = _from(changes, columns[0])  # the others count at none of the columns
        rows.append(i * k + k - np.searchsorted(columns, column, side="right"))  # k - (columns it counts at)
        clips.append(clip)
        values.append(change)
    by_reach = sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(clips))),
                                 shape=(m * k, len(weights_t)))
    return np.cumsum((by_reach @ weights_t).reshape(m, k, -1), axis=1)[:, ::-1]


def _chunked(weights: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """weights @ vector as the reference forms it (per chunk of _CHUNK rows), for the same float sums."""
    return np.concatenate([weights[start : start + _CHUNK] @ vector for start in range(0, len(weights), _CHUNK)])


_BLAS: list = []  # the threadpoolctl controller, made on first use (None: threadpoolctl is missing)


def _one_blas_thread() -> AbstractContextManager:
    """BLAS on one thread: the products of the re-weighting are small ([B, N] @ [N, a few hundred]),
    so that threads cost more than they save. Only around products of integers: the float products
    (_chunked) are left in the caller's setting, as the reference forms them."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # comes with scipy's usual installs; without it BLAS keeps its threads
            _BLAS.append(None)
        else:
            _BLAS.append(ThreadpoolController())
    return nullcontext() if _BLAS[0] is None else _BLAS[0].limit(limits=1, user_api="blas")


# ---------------------------------------------------------------------------------------------
# Weighted metrics; `groups` are weight matrices whose float products are formed separately (the
# point's all-ones row, then the resamples), as the reference forms them


def _weighted(scored: ScoredSet, stats: _Statistics, metric: str, groups: list[np.ndarray]) -> list[np.ndarray]:
    if metric in ("psds1", "psds2"):
        params = PSDS1 if metric == "psds1" else PSDS2
        if params.alpha_ct and len(scored.classes) < 2:  # undefined, as in psds.psds_value
            return [np.full(len(weights), np.nan) for weights in groups]
        return _weighted_psds(scored, stats, params, groups)
    with _one_blas_thread():  # products of integers only
        return _weighted_fscore(stats, groups)


def _weighted_psds(scored: ScoredSet, stats: _Statistics, params: PsdsParams,
                   groups: list[np.ndarray]) -> list[np.ndarray]:
    weights = np.concatenate(groups)
    duration = np.concatenate([_chunked(g, stats.clips.duration) for g in groups])
    t_ref = {}
    if params.alpha_ct:
        t_ref = {name: np.maximum(np.concatenate([_chunked(g, stats.clips.t_ref[name]) for g in groups]), 1e-12)
                 for name in scored.classes}
    with _one_blas_thread():  # below: products of integers only (exact on any number of threads)
        rocs = [_class_rocs(stats, name, scored.classes, params, weights, duration, t_ref) for name in scored.classes]
    values = _psds_of_rows(rocs, len(weights), params)
    return np.split(values, np.cumsum([len(g) for g in groups])[:-1])


def _candidate_columns(fps: _Changes, n_columns: int, weights: np.ndarray, duration: np.ndarray,
                       e_max: float) -> tuple[np.ndarray, _Piece]:
    """(The columns where some row's FP rate may be <= e_max, a superset of those where it is; the FP
    changes at the first of them and above, in one piece).

    Per range of columns and clip, the FP count at every column of the range is >= the count above
    the range plus the clip's negative changes in it, and >= 0 (a count); weighted by non-negative
    weights, the bounds add up. A range whose bound exceeds e_max in every row is out: bound <= count
    gives bound / duration * 3600 <= count / duration * 3600 in floats too (rounding is monotone).
    First _FIRST ranges of all columns, then the ranges left are split in _SPLIT and bounded again
    while they are wider than the clips are many (a range costs a [B, N] @ [N] product, a column
    about B sums).
    """
    n_clips = weights.shape[1]
    shift = (-(-n_columns // _FIRST) - 1).bit_length()  # ranges of 2 ** shift columns, at most _FIRST
    n_parts = (n_columns + (1 << shift) - 1) >> shift
    total, falls = np.zeros(n_clips * n_parts), np.zeros(n_clips * n_parts)
    for clip, column, change in fps:
        key = clip * n_parts + (column >> shift)
        total += np.bincount(key, weights=change, minlength=n_clips * n_parts)
        falls += np.bincount(key, weights=np.minimum(change, 0.0), minlength=n_clips * n_parts)
    total, falls = total.reshape(n_clips, n_parts), falls.reshape(n_clips, n_parts)
    above = np.zeros((n_clips, n_parts))  # [:, s]: the changes above range s
    np.cumsum(total[:, :0:-1], axis=1, out=above[:, -2::-1])
    starts = np.arange(n_parts) << shift
    stops = np.minimum(starts + (1 << shift), n_columns)
    while True:
        bound = weights @ np.maximum(above + falls, 0.0)
        keep = ((bound / duration[:, None]) * _SECONDS_PER_HOUR <= e_max).any(axis=0)
        starts, stops = starts[keep], stops[keep]
        if not len(starts) or (stops - starts).max() <= max(n_clips, _SPLIT):
            break
        fps = [_from(fps, starts[0])]  # the changes below every range bound nothing
        width = -(-(stops - starts) // _SPLIT)  # ceil: at most _SPLIT parts per range
        parts = -(-(stops - starts) // width)
        owner = np.repeat(np.arange(len(starts)), parts)
        starts = starts[owner] + width[owner] * (np.arange(len(owner)) - np.repeat(np.cumsum(parts) - parts, parts))
        stops = np.minimum(starts + width[owner], stops[owner])
        n_parts = len(starts)
        clip, column, change = fps[0]
        part = np.searchsorted(starts, column, side="right") - 1
        gap = column >= stops[part]  # between two ranges
        table = np.bincount(clip * (n_parts + 1) + n_parts - part - gap, weights=change,
                            minlength=n_clips * (n_parts + 1)).reshape(n_clips, n_parts + 1)
        above = np.cumsum(table, axis=1)[:, n_parts - 1 :: -1]
        falling = (change < 0) & ~gap
        falls = np.bincount(clip[falling] * n_parts + part[falling], weights=change[falling],
                            minlength=n_clips * n_parts).reshape(n_clips, n_parts)
    width = stops - starts
    return np.repeat(starts - np.cumsum(width) + width, width) + np.arange(width.sum()), _from(fps, starts[:1].sum())


def _class_rocs(stats: _Statistics, name: str, classes: Sequence[str], params: PsdsParams, weights: np.ndarray,
                duration: np.ndarray, t_ref: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row's (TPR, eFPR per hour) ROC of one class, after cummax, unique eFPR and the e_max cut,
    flat: (row, TPR, eFPR), by row then eFPR.

    Of the thresholds where the TPR and the cross-trigger rates are the same (a segment: no change of
    those between them), the ROC can only take the one with the lowest eFPR (a point with the TPR of
    an earlier point in eFPR order is no rise of the running max), which is the one with the fewest
    FPs (the eFPR is fps / duration + a constant, monotone in floats too). So each row's FP counts
    are reduced to their minimum per segment, and the other statistics are formed per segment only.
    """
    changes, n_clips = stats.changes[name], weights.shape[1]
    columns, region = _candidate_columns(changes["fps"], stats.n_columns[name], weights, duration, params.e_max)
    if not len(columns):  # no row weighs anything
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    others = [changes[f"cts\\{o}"] for o in classes if o != name] if params.alpha_ct else []
    fps = [region]
    steps = [_from(statistic, columns[0]) for statistic in [changes["tps"], *others]]
    # A column where no clip's statistics change repeats the next one (in the same segment): only
    # +inf and the columns with a change are needed (the FP changes netted per clip: many cancel).
    changed = np.zeros(len(columns), bool)
    changed[-1] = True
    for k, (clip, column, change) in enumerate([*fps, *steps]):
        at = np.minimum(np.searchsorted(columns, column), len(columns) - 1)
        on = columns[at] == column  # not between two ranges of columns
        if k == 0:
            cell, where = np.unique(at[on] * n_clips + clip[on], return_inverse=True)
            net = np.bincount(where.reshape(-1), weights=change[on], minlength=len(cell))
            changed[cell[net != 0] // n_clips] = True
        else:
            changed[at[on]] = True
    columns = columns[changed]
    moved = np.zeros(len(columns) + 1, bool)  # [i]: a TPR or cross-trigger change between columns i - 1 and i
    for _, column, _ in steps:
        moved[np.searchsorted(columns, column, side="right")] = True
    starts = np.concatenate([[0], np.flatnonzero(moved[1:-1]) + 1])
    weights_t = np.ascontiguousarray(weights.T)
    segment_fps = np.minimum.reduceat(_weighted_sums(weights_t, [fps], columns)[0], starts, axis=0)  # [S, B]
    counts = _weighted_sums(weights_t, [[s] for s in steps], columns[starts])  # [1 + others, S, B]
    efpr = segment_fps.T / duration[:, None]
    tpr = counts[0].T / np.maximum(weights @ stats.clips.n_ref[name], 1)[:, None]
    if params.alpha_ct:
        rate = np.zeros_like(efpr)
        for o, count in zip([o for o in classes if o != name], counts[1:], strict=True):
            rate += count.T / t_ref[o][:, None]  # the mean over the other classes, in sed_scores_eval's order
        efpr = efpr + params.alpha_ct * (rate / len(others))
    return _monotone_rocs(tpr, efpr * _SECONDS_PER_HOUR, params.e_max)


def _monotone_rocs(tpr: np.ndarray, efpr: np.ndarray, e_max: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """_monotone_roc of every row of [B, K] (TPR, eFPR), flat: (row, TPR, eFPR) by row then eFPR."""
    row, col = np.nonzero(efpr <= e_max)  # row by row, columns ascending: the reference's order
    t, e = tpr[row, col], efpr[row, col]
    order = np.lexsort((t, e, row))  # per row by eFPR, then TPR (stable)
    row, t, e = row[order], t[order], e[order]
    level = np.unique(t, return_inverse=True)[1].reshape(-1)  # TPR order as integers ...
    running = np.maximum.accumulate(row * (len(t) + 1) + level)  # ... for a running max per row
    rise = np.ones(len(t), bool)
    rise[1:] = running[1:] > running[:-1]  # where it rises (a row's first point: always)
    row, t, e = row[rise], t[rise], e[rise]
    last = np.ones(len(t), bool)
    last[:-1] = (e[1:] != e[:-1]) | (row[1:] != row[:-1])  # of equal eFPRs in a row, the last
    return row[last], t[last], e[last]


def _psds_of_rows(rocs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n_rows: int, params: PsdsParams) -> np.ndarray:
    """_psds_from_rocs of every row, from the flat per-class ROCs of _class_rocs."""
    rows = np.concatenate([row for row, _, _ in rocs])
    efprs = np.concatenate([e for _, _, e in rocs])
    order = np.lexsort((efprs, rows))
    rows, efprs = rows[order], efprs[order]
    new = np.ones(len(rows), bool)
    new[1:] = (rows[1:] != rows[:-1]) | (efprs[1:] != efprs[:-1])
    grid_row, grid = rows[new], efprs[new]  # per row, the unique eFPRs of its class ROCs
    bounds = np.searchsorted(grid_row, np.arange(n_rows + 1))
    values, level = np.unique(grid, return_inverse=True)
    span = len(values) + 1
    grid_key = grid_row * span + level.reshape(-1)  # ascending
    tprs = np.empty((len(rocs), len(grid)))
    for c, (row, t, e) in enumerate(rocs):  # step interpolation: the TPR of the last ROC point at or left of x
        at = np.searchsorted(grid_key, row * span + np.searchsorted(values, e))
        mark = np.full(len(grid), -1)
        mark[at] = np.arange(len(at))
        last = np.maximum.accumulate(mark)
        idx = np.maximum(last, 0)
        tprs[c] = np.where((last >= 0) & (row[idx] == grid_row), t[idx], 0.0)
    etpr = np.maximum(tprs.mean(axis=0) - params.alpha_st * tprs.std(axis=0), 0.0)
    # the staircase area of each row: its terms etpr * width, then its last etpr * 0, summed by np.sum
    filled = np.flatnonzero(bounds[1:] > bounds[:-1])  # rows with an eFPR (all, unless a row weighs nothing)
    ends = bounds[filled + 1] - 1
    following = np.append(grid[1:], 0.0)
    following[ends] = params.e_max
    terms = np.zeros(len(grid) + n_rows)
    terms[np.arange(len(grid)) + grid_row] = etpr * (following - grid)
    terms[ends + filled + 1] = etpr[ends] * (params.e_max - params.e_max)
    out = np.empty(n_rows)
    for b in range(n_rows):
        if bounds[b + 1] - bounds[b] > 1:
            out[b] = float(np.sum(terms[bounds[b] + b : bounds[b + 1] + b + 1])) / params.e_max
        else:  # one eFPR: numpy would sum the classes pairwise there; the reference's own steps
            out[b] = _psds_from_rocs([(t[row == b], e[row == b]) for row, t, e in rocs], params)
    return out


def _weighted_fscore(stats: _Statistics, groups: list[np.ndarray]) -> list[np.ndarray]:
    per_clip = {}  # class -> [N] TPs and FPs of each clip at the threshold: its changes at the thresholds above it
    for name, changes in stats.changes.items():
        pieces = [_from(changes[key], stats.f1_column[name]) for key in ("tps", "fps")]
        per_clip[name] = [np.bincount(clip, weights=change, minlength=len(stats.clips.duration))
                          for clip, _, change in pieces]
    out = []
    for weights in groups:
        f = []
        for name, (tp_clip, fp_clip) in per_clip.items():
            f.append(_f1(weights @ tp_clip, weights @ fp_clip, weights @ stats.clips.n_ref[name]))
        out.append(_macro(f))
    return out


# ---------------------------------------------------------------------------------------------
# The reference: the previous re-weighting (prefix sums of the weighted deltas over every change
# point, a chunk of resamples at a time, one ROC at a time). The tests and
# benchmarks/bench_final_eval.py check that the code above gives its numbers, bit for bit;
# _monotone_roc and _psds_from_rocs also serve the code above (rows with a single eFPR).


def _reference_weighted_metric(scored: ScoredSet, deltas: dict, metric: str, weights: np.ndarray) -> np.ndarray:
    """The reference's weighted_metric."""
    if metric not in PSDS_METRICS:
        raise ConfigError(f"unknown metric {metric!r}; valid: {list(PSDS_METRICS)}")
    return _reference_weighted(scored, _ReferenceStats.collect(scored, deltas), metric, weights)


def _reference_intervals(scored: ScoredSet, deltas: dict, weights: np.ndarray, metrics: Sequence[str] = PSDS_METRICS,
                         confidence: float = 0.95) -> dict[str, BootstrapInterval]:
    """The reference's psds_intervals after score_set: from the metrics' deltas (psds.metric_deltas;
    a metric without deltas is undefined) and the resamples' clip counts (resample_counts)."""
    out = {}
    for name in metrics:
        if name not in deltas:
            out[name] = percentile_interval(np.full(len(weights), np.nan), float("nan"), confidence)
            continue
        stats = _ReferenceStats.collect(scored, deltas[name])
        point = _reference_weighted(scored, stats, name, np.ones((1, len(scored.clip_ids))))[0]
        out[name] = percentile_interval(_reference_weighted(scored, stats, name, weights), point, confidence)
    return out


def _reference_weighted(scored: ScoredSet, stats: "_ReferenceStats", metric: str, weights: np.ndarray) -> np.ndarray:
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 2 or weights.shape[1] != len(stats.duration):
        raise ConfigError(f"weights must be [B, {len(stats.duration)}], got {weights.shape}")
    if metric in ("psds1", "psds2"):
        params = PSDS1 if metric == "psds1" else PSDS2
        if params.alpha_ct and len(scored.classes) < 2:  # undefined, as in psds.psds_value
            return np.full(len(weights), np.nan)
        return _reference_weighted_psds(scored, stats, params, weights)
    return _reference_weighted_fscore(stats, weights)


@dataclass(frozen=True)
class _ReferenceStats:
    """Per class: the deltas of all clips, in descending order of change-point score, and per-clip
    reference sizes. The statistic at threshold u sums the deltas of the change points >= u, i.e.
    a prefix of the descending order; only non-zero deltas are kept, so sums stay exact integers."""

    above_threshold: dict[str, int]  # class -> change points with score > F1_THRESHOLD
    # class -> key -> the non-zero deltas in descending score order (position among all change
    # points, clip, delta) and, for each unique score (ascending) then +inf, how many have a score >= it
    # (position, clip, delta, taken)
    nonzero: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]]
    n_ref: dict[str, np.ndarray]  # class -> [N] reference events per clip
    t_ref: dict[str, np.ndarray]  # class -> [N] reference seconds per clip
    duration: np.ndarray  # [N] clip durations (s)

    @staticmethod
    def collect(scored: ScoredSet, deltas: dict) -> "_ReferenceStats":
        ids = scored.clip_ids
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
        clips = _Clips.of(scored)  # the per-clip reference counts, as the fast path has them
        return _ReferenceStats(above, nonzero, clips.n_ref, clips.t_ref, clips.duration)

    def curve(self, name: str, key: str, weights: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """[B, U + 1] weighted statistic when the threshold falls below each unique change-point score
        (ascending), then at +inf (0); only the given columns of it when columns is not None."""
        _, clip, values, taken = self.nonzero[name][key]
        prefix = np.zeros((len(weights), len(values) + 1))
        np.cumsum(weights[:, clip] * values, axis=1, out=prefix[:, 1:])
        return prefix[:, taken if columns is None else taken[columns]]


def _reference_weighted_psds(scored: ScoredSet, stats: _ReferenceStats, params: PsdsParams,
                             weights: np.ndarray) -> np.ndarray:
    out = np.empty(len(weights))
    for start in range(0, len(weights), _CHUNK):
        w = weights[start : start + _CHUNK]
        rocs = [_reference_class_rocs(stats, name, scored.classes, params, w) for name in scored.classes]  # [C][b]
        for b in range(len(w)):
            out[start + b] = _psds_from_rocs([roc[b] for roc in rocs], params)
    return out


def _reference_class_rocs(
    stats: _ReferenceStats, name: str, classes: Sequence[str], params: PsdsParams, weights: np.ndarray
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


def _reference_weighted_fscore(stats: _ReferenceStats, weights: np.ndarray) -> np.ndarray:
    f = []
    for name, above in stats.above_threshold.items():
        # the statistics at the threshold: the deltas of the change points scored above it
        tp, fp = (_reference_prefix_sum(stats, name, key, above, weights) for key in ("tps", "fps"))
        f.append(_f1(tp, fp, weights @ stats.n_ref[name]))
    return _macro(f)


def _f1(tp: np.ndarray, fp: np.ndarray, n_ref: np.ndarray) -> np.ndarray:
    """F1 of one class per resample [B]: precision 1 without detections, NaN without reference events."""
    precision = np.where(tp + fp == 0, 1.0, tp / np.maximum(tp + fp, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(n_ref == 0, np.nan, tp / n_ref)
    return 2 * precision * recall / np.maximum(precision + recall, 1e-15)


def _macro(per_class: list[np.ndarray]) -> np.ndarray:
    """The mean over the classes that have a value, per resample [B] (NaN where none has)."""
    f = np.asarray(per_class)  # [C, B]
    valid = ~np.isnan(f)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(valid.any(axis=0), np.where(valid, f, 0).sum(axis=0) / valid.sum(axis=0), np.nan)


def _reference_prefix_sum(stats: _ReferenceStats, name: str, key: str, n_first: int, weights: np.ndarray) -> np.ndarray:
    pos, clip, values, _ = stats.nonzero[name][key]
    keep = pos < n_first
    return weights[:, clip[keep]] @ values[keep]
