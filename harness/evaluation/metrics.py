"""Event-based and segment-based F1, exactly as sed_eval computes them, and fast (SPEC 2, Metric).

Two evaluators give the same numbers (checked to 1e-9 on thousands of random cases in the tests):

- "sed_eval": sed_eval itself, file by file over every clip id (the reference, slow).
- "fast": this module's numpy re-implementation of the same counting.

What sed_eval does, and what "fast" reproduces:

Event-based (sed_eval.sound_event.EventBasedMetrics, event_matching_type="optimal"). For each file
and class, a reference event r and an estimated event e may match when
``|r.onset - e.onset| <= t_collar`` and
``|r.offset - e.offset| <= max(t_collar, percentage_of_length * (r.offset - r.onset))``
(plain float comparisons, no rounding). Ntp of the (file, class) is the size of a maximum bipartite
matching of that graph; Nref and Nsys count the events. Counts add up over files per class. Then
P = Ntp / Nsys (NaN if Nsys = 0, but 0 under empty_system_output_handling="zero_score"),
R = Ntp / Nref (NaN if Nref = 0), F = 0 if P = R = 0 else 2PR / (P + R) (NaN if P or R is NaN).
So with zero_score a class that is never predicted but present scores 0, and a class absent from
the reference scores NaN whatever is predicted. The macro F is numpy.nanmean over the classes.

Segment-based (sed_eval.sound_event.SegmentBasedMetrics(time_resolution)). A file is cut into
segments of time_resolution seconds; an event is active in segments floor(onset / res) up to
ceil(offset / res) (exclusive). sed_eval evaluates a file over ceil(max(reference max offset,
estimated max offset) / res) segments, which is long enough to hold every event, so the evaluated
length changes only the true negatives, never F. Per class: Ntp = segments active in both,
Nref / Nsys = segments active in the reference / the estimate. SegmentBasedMetrics has no
empty_system_output_handling: a class with Nsys = 0 has P = NaN, hence F = NaN, and drops out of the
macro average like a class with Nref = 0 (a quirk of sed_eval kept here for exact agreement).

Inputs are DCASE DataFrames (filename, onset, offset, event_label) in seconds. Rows whose
event_label is missing (DESED's empty clips) are ignored, as are rows of files not in clip_ids;
every clip id is evaluated, with or without events.
"""

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from harness.constants import CLASSES
from harness.errors import ConfigError, DataError

Evaluator = Literal["fast", "sed_eval"]
_COLUMNS = ("filename", "onset", "offset", "event_label")


@dataclass(frozen=True)
class ClassWiseScores:
    """Class-wise averaged scores of sed_eval (fractions 0..1; NaN where sed_eval gives NaN).

    Attributes:
        macro_f1: nanmean of the per-class F.
        macro_precision: nanmean of the per-class precision.
        macro_recall: nanmean of the per-class recall.
        per_class_f1: F of every class, keyed by class name.
        per_class_precision: precision of every class.
        per_class_recall: recall of every class.
        counts: (Nref, Nsys, Ntp) of every class (events, or active segments).
    """

    macro_f1: float
    macro_precision: float
    macro_recall: float
    per_class_f1: dict[str, float]
    per_class_precision: dict[str, float]
    per_class_recall: dict[str, float]
    counts: dict[str, tuple[int, int, int]]


@dataclass(frozen=True)
class EventScores(ClassWiseScores):
    """Event-based scores (onset and offset collars)."""


@dataclass(frozen=True)
class SegmentScores(ClassWiseScores):
    """Segment-based scores."""


@dataclass(frozen=True)
class _Events:
    """Events of one table restricted to the evaluated clips: [M] arrays."""

    file: np.ndarray  # int index into clip_ids
    label: np.ndarray  # int index into classes
    onset: np.ndarray  # seconds, float64
    offset: np.ndarray  # seconds, float64


def event_based(
    reference: pd.DataFrame,
    estimated: pd.DataFrame,
    clip_ids: Sequence[str],
    t_collar: float = 0.2,
    percentage_of_length: float = 0.2,
    evaluator: Evaluator = "fast",
    classes: Sequence[str] = CLASSES,
) -> EventScores:
    """Event-based class-wise average F1 of sed_eval with zero_score, evaluated over every clip id.

    Args:
        reference: ground truth (filename, onset, offset, event_label).
        estimated: system output, same columns.
        clip_ids: every clip to evaluate (files without any reference event included).
        t_collar: onset collar and minimum offset collar (s).
        percentage_of_length: offset collar as a share of the reference event's length.
        evaluator: "fast" (numpy) or "sed_eval" (the reference implementation).
        classes: the fixed class list.

    Returns:
        EventScores.
    """
    clip_ids = _check_clip_ids(clip_ids)
    ref = _to_events(reference, clip_ids, classes, "reference")
    est = _to_events(estimated, clip_ids, classes, "estimated")
    if evaluator == "fast":
        counts = _event_counts_fast(ref, est, len(classes), t_collar, percentage_of_length)
        return EventScores(**_scores(counts, classes, zero_score=True))
    if evaluator == "sed_eval":
        return EventScores(**_event_scores_sed_eval(ref, est, clip_ids, classes, t_collar, percentage_of_length))
    raise ConfigError(f"unknown evaluator {evaluator!r} (eval.evaluator); use 'fast' or 'sed_eval'")


def segment_based(
    reference: pd.DataFrame,
    estimated: pd.DataFrame,
    clip_ids: Sequence[str],
    segment_seconds: float = 1.0,
    evaluator: Evaluator = "fast",
    classes: Sequence[str] = CLASSES,
) -> SegmentScores:
    """Segment-based class-wise average F1 of sed_eval's SegmentBasedMetrics over every clip id.

    Args:
        reference: ground truth (filename, onset, offset, event_label).
        estimated: system output, same columns.
        clip_ids: every clip to evaluate.
        segment_seconds: segment length (s), sed_eval's time_resolution.
        evaluator: "fast" (numpy) or "sed_eval".
        classes: the fixed class list.

    Returns:
        SegmentScores (a class never predicted has F = NaN, as in sed_eval; see the module doc).
    """
    clip_ids = _check_clip_ids(clip_ids)
    ref = _to_events(reference, clip_ids, classes, "reference")
    est = _to_events(estimated, clip_ids, classes, "estimated")
    if evaluator == "fast":
        counts = _segment_counts_fast(ref, est, len(classes), segment_seconds)
        return SegmentScores(**_scores(counts, classes, zero_score=False))
    if evaluator == "sed_eval":
        return SegmentScores(**_segment_scores_sed_eval(ref, est, clip_ids, classes, segment_seconds))
    raise ConfigError(f"unknown evaluator {evaluator!r} (eval.evaluator); use 'fast' or 'sed_eval'")


# ---------------------------------------------------------------------------------------------
# Input checks


def event_counts_per_clip(
    reference: pd.DataFrame,
    estimated: pd.DataFrame,
    clip_ids: Sequence[str],
    t_collar: float = 0.2,
    percentage_of_length: float = 0.2,
    classes: Sequence[str] = CLASSES,
) -> np.ndarray:
    """Event-based counts of every clip and class, the additive pieces of event_based.

    sed_eval matches events file by file, so the counts of a set of clips are the sums of the
    clips' counts: counts.sum(axis=0) are event_based's counts, and a clip-level bootstrap only
    needs these [N, C, 3] numbers (see harness.evaluation.bootstrap).

    Args:
        reference: ground truth (filename, onset, offset, event_label).
        estimated: system output, same columns.
        clip_ids: the N evaluated clips.
        t_collar: onset collar and minimum offset collar (s).
        percentage_of_length: offset collar as a share of the reference event's length.
        classes: the fixed class list.

    Returns:
        [N, C, 3] int64: (Nref, Nsys, Ntp) per clip and class.
    """
    clip_ids = _check_clip_ids(clip_ids)
    ref = _to_events(reference, clip_ids, classes, "reference")
    est = _to_events(estimated, clip_ids, classes, "estimated")
    n, c = len(clip_ids), len(classes)
    # A (clip, class) pair is a "class" of its own: the matching is per (file, class) anyway.
    keyed = _event_counts_fast(
        _Events(ref.file, ref.file * c + ref.label, ref.onset, ref.offset),
        _Events(est.file, est.file * c + est.label, est.onset, est.offset),
        n * c, t_collar, percentage_of_length,
    )
    return keyed.reshape(n, c, 3)


def macro_f1_from_counts(counts: np.ndarray, zero_score: bool = True) -> np.ndarray:
    """Class-wise averaged F of sed_eval from summed counts, vectorised over leading axes.

    Same rules as event_based (module doc): P = 0 when Nsys = 0 under zero_score (else NaN),
    R = NaN when Nref = 0, F = 0 when P = R = 0, then the nanmean over classes (NaN if all NaN).

    Args:
        counts: [..., C, 3] (Nref, Nsys, Ntp).
        zero_score: sed_eval's empty_system_output_handling="zero_score".

    Returns:
        [...] macro F (fractions 0..1).
    """
    counts = np.asarray(counts, dtype=float)
    n_ref, n_sys, n_tp = counts[..., 0], counts[..., 1], counts[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_sys == 0, 0.0 if zero_score else np.nan, n_tp / n_sys)
        recall = np.where(n_ref == 0, np.nan, n_tp / n_ref)
        f = np.where((precision == 0) & (recall == 0), 0.0, 2 * precision * recall / (precision + recall))
    valid = ~np.isnan(f)
    total = np.where(valid, f, 0.0).sum(axis=-1)
    n_valid = valid.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_valid > 0, total / n_valid, np.nan)


def _check_clip_ids(clip_ids: Sequence[str]) -> list[str]:
    ids = [str(c) for c in clip_ids]
    if len(set(ids)) != len(ids):
        dup = pd.Index(ids)[pd.Index(ids).duplicated()].unique().tolist()[:5]
        raise DataError(f"clip ids to evaluate must be unique; duplicated: {dup}")
    return ids


def _to_events(df: pd.DataFrame, clip_ids: list[str], classes: Sequence[str], what: str) -> _Events:
    """Validate a DCASE table and index it by clip and class; drops empty-clip rows and other files."""
    missing = [c for c in _COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{what} events lack column(s) {missing}; expected {list(_COLUMNS)}")
    df = df[df["event_label"].notna()]
    label = pd.Index(list(classes)).get_indexer(df["event_label"])
    if (label < 0).any():
        unknown = sorted(set(df["event_label"][label < 0].astype(str)))[:5]
        raise DataError(f"{what} events have labels outside the class list: {unknown}")
    file = pd.Index(clip_ids).get_indexer(df["filename"].astype(str))
    onset = df["onset"].to_numpy(dtype=np.float64)
    offset = df["offset"].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(onset) | ~np.isfinite(offset) | (onset < 0) | (offset < onset)
    if bad.any():
        row = df.iloc[int(np.argmax(bad))]
        raise DataError(
            f"{what} event {row['filename']} {row['event_label']} [{row['onset']}, {row['offset']}] "
            "needs finite times with 0 <= onset <= offset"
        )
    keep = file >= 0
    return _Events(file[keep], label[keep], onset[keep], offset[keep])


# ---------------------------------------------------------------------------------------------
# Scores from counts, as sed_eval's metric.precision / recall / f_measure and nanmean


def _scores(counts: np.ndarray, classes: Sequence[str], zero_score: bool) -> dict:
    """counts: [C, 3] (Nref, Nsys, Ntp) -> the fields of ClassWiseScores."""
    f1, prec, rec, cnt = {}, {}, {}, {}
    for name, (n_ref, n_sys, n_tp) in zip(classes, counts.tolist(), strict=True):
        p, r, f = _f_measure(float(n_tp), float(n_sys), float(n_ref), zero_score)
        f1[name], prec[name], rec[name] = f, p, r
        cnt[name] = (int(n_ref), int(n_sys), int(n_tp))
    return dict(
        macro_f1=_nanmean(list(f1.values())),
        macro_precision=_nanmean(list(prec.values())),
        macro_recall=_nanmean(list(rec.values())),
        per_class_f1=f1,
        per_class_precision=prec,
        per_class_recall=rec,
        counts=cnt,
    )


def _f_measure(n_tp: float, n_sys: float, n_ref: float, zero_score: bool) -> tuple[float, float, float]:
    # Same float operations, in the same order, as sed_eval.metric (beta = 1).
    if n_sys == 0:
        precision = 0.0 if zero_score else float("nan")
    else:
        precision = float(n_tp / float(n_sys))
    recall = float("nan") if n_ref == 0 else float(n_tp / float(n_ref))
    if precision == 0 and recall == 0:
        return precision, recall, 0.0
    return precision, recall, float((1 + 1.0**2) * precision * recall / ((1.0**2) * precision + recall))


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=float)
    if np.isnan(arr).all():
        return float("nan")  # numpy.nanmean's value here, without its RuntimeWarning
    return float(np.nanmean(arr))


# ---------------------------------------------------------------------------------------------
# Fast event-based counting


def _event_counts_fast(ref: _Events, est: _Events, n_classes: int, t_collar: float, pol: float) -> np.ndarray:
    """[C, 3] (Nref, Nsys, Ntp) summed over files, with an optimal matching per (file, class)."""
    n_ref = np.bincount(ref.label, minlength=n_classes)
    n_sys = np.bincount(est.label, minlength=n_classes)
    r_idx, e_idx = _same_key_pairs(ref.file * n_classes + ref.label, est.file * n_classes + est.label)
    onset_ok = np.abs(ref.onset[r_idx] - est.onset[e_idx]) <= t_collar
    ref_len = ref.offset[r_idx] - ref.onset[r_idx]
    offset_ok = np.abs(ref.offset[r_idx] - est.offset[e_idx]) <= np.maximum(t_collar, pol * ref_len)
    hit = onset_ok & offset_ok
    matched_refs = _max_matching_rows(r_idx[hit], e_idx[hit], len(ref.file), len(est.file))
    n_tp = np.bincount(ref.label[matched_refs], minlength=n_classes)
    return np.stack([n_ref, n_sys, n_tp], axis=1)


def _same_key_pairs(ref_key: np.ndarray, est_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (reference, estimate) index pairs that share a (file, class) key, without Python loops."""
    est_order = np.argsort(est_key, kind="stable")
    sorted_keys = est_key[est_order]
    first = np.searchsorted(sorted_keys, ref_key, side="left")
    n_per_ref = np.searchsorted(sorted_keys, ref_key, side="right") - first
    r_idx = np.repeat(np.arange(len(ref_key)), n_per_ref)
    # position of each pair within its reference's block of candidates
    within = np.arange(len(r_idx)) - np.repeat(np.cumsum(n_per_ref) - n_per_ref, n_per_ref)
    e_idx = est_order[first[r_idx] + within]
    return r_idx, e_idx


def _max_matching_rows(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """Reference indices matched by a maximum bipartite matching of the hit graph.

    The graph is block-diagonal over (file, class), so one maximum matching of the whole graph
    is a maximum matching of every block. An edge whose two ends have no other edge is matched
    in every maximum matching; only the remaining edges (the rare ambiguous cases) go to scipy's
    Hopcroft-Karp.
    """
    row_deg = np.bincount(rows, minlength=n_rows)
    col_deg = np.bincount(cols, minlength=n_cols)
    simple = (row_deg[rows] == 1) & (col_deg[cols] == 1)
    matched = [rows[simple]]
    if not simple.all():
        r, c = rows[~simple], cols[~simple]
        graph = csr_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n_rows, n_cols))
        match_of_row = maximum_bipartite_matching(graph, perm_type="column")
        matched.append(np.nonzero(match_of_row >= 0)[0])
    return np.concatenate(matched)


# ---------------------------------------------------------------------------------------------
# Fast segment-based counting


def _segment_counts_fast(ref: _Events, est: _Events, n_classes: int, segment_seconds: float) -> np.ndarray:
    """[C, 3] (Nref, Nsys, Ntp) in active segments, summed over files."""
    ref_key = ref.file * n_classes + ref.label
    est_key = est.file * n_classes + est.label
    keys, inverse = np.unique(np.concatenate([ref_key, est_key]), return_inverse=True)
    ref_roll = _segment_roll(inverse[: len(ref_key)], ref, len(keys), segment_seconds)
    est_roll = _segment_roll(inverse[len(ref_key) :], est, len(keys), segment_seconds)
    n_segments = max(ref_roll.shape[1], est_roll.shape[1])
    ref_roll = _pad(ref_roll, n_segments)
    est_roll = _pad(est_roll, n_segments)
    label_of_key = keys % n_classes
    per_key = np.stack([ref_roll.sum(1), est_roll.sum(1), (ref_roll & est_roll).sum(1)], axis=1)
    counts = np.zeros((n_classes, 3), dtype=np.int64)
    np.add.at(counts, label_of_key, per_key)
    return counts


def _segment_roll(row: np.ndarray, events: _Events, n_rows: int, res: float) -> np.ndarray:
    """[n_rows, S] bool: segment activity of each (file, class) row, as sed_eval's event roll."""
    first = np.floor(events.onset * 1 / res).astype(np.int64)
    stop = np.ceil(events.offset * 1 / res).astype(np.int64)
    n_segments = int(stop.max()) if len(stop) else 0
    delta = np.zeros((n_rows, n_segments + 1), dtype=np.int64)
    nonempty = stop > first
    np.add.at(delta, (row[nonempty], first[nonempty]), 1)
    np.add.at(delta, (row[nonempty], stop[nonempty]), -1)
    return np.cumsum(delta, axis=1)[:, :n_segments] > 0


def _pad(roll: np.ndarray, n_segments: int) -> np.ndarray:
    return np.pad(roll, ((0, 0), (0, n_segments - roll.shape[1])))


# ---------------------------------------------------------------------------------------------
# The reference: sed_eval itself, file by file


def _event_lists(events: _Events, clip_ids: list[str], classes: Sequence[str]) -> dict[int, list[dict]]:
    """Plain-dict event lists per clip index, the input sed_eval's evaluate accepts."""
    lists: dict[int, list[dict]] = {}
    columns = (events.file.tolist(), events.label.tolist(), events.onset.tolist(), events.offset.tolist())
    for f, c, on, off in zip(*columns, strict=True):
        item = {"filename": clip_ids[f], "event_label": classes[c], "onset": on, "offset": off}
        lists.setdefault(f, []).append(item)
    return lists


def _event_scores_sed_eval(
    ref: _Events, est: _Events, clip_ids: list[str], classes: Sequence[str], t_collar: float, pol: float
) -> dict:
    import sed_eval  # heavy import, only on the reference path

    metric = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=list(classes),
        t_collar=float(t_collar),
        percentage_of_length=float(pol),
        evaluate_onset=True,
        evaluate_offset=True,
        empty_system_output_handling="zero_score",
    )
    ref_lists, est_lists = _event_lists(ref, clip_ids, classes), _event_lists(est, clip_ids, classes)
    for f in range(len(clip_ids)):
        metric.evaluate(reference_event_list=ref_lists.get(f, []), estimated_event_list=est_lists.get(f, []))
    return _sed_eval_scores(metric, classes)


def _segment_scores_sed_eval(
    ref: _Events, est: _Events, clip_ids: list[str], classes: Sequence[str], segment_seconds: float
) -> dict:
    import sed_eval

    metric = sed_eval.sound_event.SegmentBasedMetrics(
        event_label_list=list(classes), time_resolution=float(segment_seconds)
    )
    ref_lists, est_lists = _event_lists(ref, clip_ids, classes), _event_lists(est, clip_ids, classes)
    for f in range(len(clip_ids)):
        metric.evaluate(reference_event_list=ref_lists.get(f, []), estimated_event_list=est_lists.get(f, []))
    return _sed_eval_scores(metric, classes)


def _sed_eval_scores(metric, classes: Sequence[str]) -> dict:
    """The fields of ClassWiseScores, read from sed_eval's own results (not recomputed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-NaN classes
        per_class = metric.results_class_wise_metrics()
        average = metric.results_class_wise_average_metrics()["f_measure"]
    cw = metric.class_wise
    return dict(
        macro_f1=float(average["f_measure"]),
        macro_precision=float(average["precision"]),
        macro_recall=float(average["recall"]),
        per_class_f1={c: float(per_class[c]["f_measure"]["f_measure"]) for c in classes},
        per_class_precision={c: float(per_class[c]["f_measure"]["precision"]) for c in classes},
        per_class_recall={c: float(per_class[c]["f_measure"]["recall"]) for c in classes},
        counts={c: (int(cw[c]["Nref"]), int(cw[c]["Nsys"]), int(cw[c]["Ntp"])) for c in classes},
    )
