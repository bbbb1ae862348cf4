"""Threshold-independent SED metrics with sed_scores_eval (SPEC 5b): PSDS1, PSDS2, and F1 at 0.5.

What is scored. The model's raw frame probabilities, per clip on its real frames only (frame i covers
[i * hop, (i + 1) * hop), the last frame ends at the clip's duration, padding frames are dropped), with
no clip gating, no binarisation and, by default, no median filter. A threshold-independent metric
sweeps the decision threshold over the scores; gating at a fixed clip threshold of 0.5 would freeze
part of the sweep (every gated frame ties at 0), and the paper's median windows are sized for
binarised output at 0.5. The DCASE 2023-2024 baselines give sed_scores_eval their frame scores after
a median filter on the scores; `median_windows` (per class, on each clip's real frames) reproduces
that convention for comparisons with published DCASE numbers.

The four numbers, as the DCASE 2021-2024 Task 4 baselines compute them with sed_scores_eval:

- PSDS1: dtc = gtc = 0.7, no cross-trigger term, alpha_st = 1, e_max = 100 false positives per hour;
- PSDS2: dtc = gtc = 0.1, cttc = 0.3, alpha_ct = 0.5, alpha_st = 1, e_max = 100;
- intersection-based F1 at decision threshold 0.5 with dtc = gtc = 0.5;
- collar-based F1 at threshold 0.5, collars 0.2 s / 20 % of the reference length (sed_eval's rules
  with an optimal matching: on the same detections it equals harness.evaluation.metrics.event_based).

Per-class values are sed_scores_eval's: the area under each class's own ROC (no alpha_st) for PSDS,
the class's F1 for the F-scores. Differences from the DESED_task recipe, on purpose: every clip is
scored, clips without events included (they add false positives and duration; the recipe drops
them, `drop_empty_clips=True` does the same); a class without any reference event is left out (NaN)
instead of failing (sed_scores_eval refuses such classes); touching or overlapping reference events of
one class in one clip are merged first (sed_scores_eval refuses them too).

pandas 3. sed_scores_eval 0.0.4's Cython code takes the score columns as writable float64 memory
views, but under pandas 3's copy-on-write `DataFrame.to_numpy()` returns a read-only view, and the
Cython code then fails ("buffer source array is read-only"). The score columns are therefore stored
as float32 (the models' own precision): sed_scores_eval converts them to float64, which is a writable
copy. This works under pandas 2 and 3, with 0.0.4 and with its fixed development version.

Engines. Every metric takes `engine`: "fast" (the default) computes sed_scores_eval's per-clip
statistics for all clips at once from the score arrays (harness.evaluation.fast_psds: no DataFrame,
the runs and overlaps computed once for the four metrics) and gives sed_scores_eval's numbers;
"sed_scores_eval" calls sed_scores_eval itself on one DataFrame per clip (the reference path, the
tests' oracle). Scores with a NaN or an infinity always take the sed_scores_eval path.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pandas as pd
from scipy.ndimage import median_filter

from harness.constants import CLASSES, FRAME_HOP_SECONDS
from harness.errors import ConfigError, DataError
from harness.evaluation import fast_psds
from harness.evaluation.postprocess import real_frames

Reference = dict[str, list[tuple[float, float, str]]]  # clip id -> (onset, offset, label) events


@dataclass(frozen=True)
class PsdsParams:
    """One PSDS scenario (Bilen et al. 2020)."""

    dtc: float  # detection tolerance criterion: share of a detection that must overlap the reference
    gtc: float  # ground-truth intersection criterion: share of a reference event to be covered
    cttc: float | None  # cross-trigger tolerance criterion; None: cross-triggers not counted
    alpha_ct: float  # weight of the cross-trigger rate in the effective false-positive rate
    alpha_st: float  # weight of the across-class standard deviation of the TPR, subtracted
    e_max: float  # largest effective false-positive rate, per hour, of the ROC area


PSDS1 = PsdsParams(dtc=0.7, gtc=0.7, cttc=None, alpha_ct=0.0, alpha_st=1.0, e_max=100.0)
PSDS2 = PsdsParams(dtc=0.1, gtc=0.1, cttc=0.3, alpha_ct=0.5, alpha_st=1.0, e_max=100.0)

F1_THRESHOLD = 0.5  # decision threshold of the two F-scores
INTERSECTION_F1_DTC = INTERSECTION_F1_GTC = 0.5  # the DCASE baselines' intersection-based F1
COLLAR_SECONDS = 0.2  # onset collar and minimum offset collar (SPEC 2, Metric)
COLLAR_RATE = 0.2  # offset collar as a share of the reference event's length

METRIC_PACKAGES: tuple[str, ...] = ("sed_scores_eval", "sed_eval", "psds_eval")
ENGINES: tuple[str, ...] = ("fast", "sed_scores_eval")  # see the module doc


@dataclass(frozen=True)
class PsdsMetrics:
    """Threshold-independent metrics of one set of frame scores (fractions 0..1).

    Attributes:
        psds1: PSDS of scenario 1 (PSDS1 parameters).
        psds2: PSDS of scenario 2 (NaN with a single evaluated class: no cross-triggers to rate).
        psds1_per_class: per class, the normalised area under the class's own PSD-ROC (scenario 1).
        psds2_per_class: the same for scenario 2 (its eFPR includes the class's cross-triggers).
        intersection_f1: macro intersection-based F1 at threshold 0.5 (dtc = gtc = 0.5).
        intersection_f1_per_class: F1 of each class.
        collar_f1: macro collar-based F1 at threshold 0.5 (collars 0.2 s / 20 %).
        collar_f1_per_class: F1 of each class.
        classes_evaluated: classes with at least one reference event; the others are NaN above.
        n_clips: clips scored.
        hours: total duration of the scored clips (h), the denominator of the FP rates.
        score_filter: post-processing of the scores before scoring: "none" or "median".
    """

    psds1: float
    psds2: float
    psds1_per_class: dict[str, float]
    psds2_per_class: dict[str, float]
    intersection_f1: float
    intersection_f1_per_class: dict[str, float]
    collar_f1: float
    collar_f1_per_class: dict[str, float]
    classes_evaluated: tuple[str, ...]
    n_clips: int
    hours: float
    score_filter: str


@dataclass(frozen=True, eq=False)
class ScoredSet:
    """Frame scores and reference of a clip set (see score_set).

    Attributes:
        frames: [N, C, T] float32 scores of the evaluated classes (median-filtered when asked); the
            frames past a clip's n_frames are not scored.
        n_frames: [N] real frames of each clip (postprocess.real_frames).
        ends: [N] end of each clip's last frame (s): min(duration, T * hop).
        hop_seconds: frame hop (s).
        clip_ids: N clip ids.
        reference: clip id -> list of (onset, offset, label), every scored clip present.
        durations: clip id -> duration (s).
        classes: evaluated classes (C), the score columns.
        all_classes: the full class list (results carry NaN for the classes left out).
    """

    frames: np.ndarray
    n_frames: np.ndarray
    ends: np.ndarray
    hop_seconds: float
    clip_ids: tuple[str, ...]
    reference: Reference
    durations: dict[str, float]
    classes: tuple[str, ...]
    all_classes: tuple[str, ...]

    @cached_property
    def scores(self) -> dict[str, pd.DataFrame]:
        """clip id -> sed_scores_eval score DataFrame (score_tables), built on first use."""
        return _tables(self.frames, self.clip_ids, self.n_frames, self.ends, self.hop_seconds, self.classes)

    @cached_property
    def fast(self) -> fast_psds.Context:
        """Runs and events shared by the fast metrics, built on first use."""
        return fast_psds.Context(self)

    @cached_property
    def finite(self) -> bool:
        """Whether every scored frame is finite (else only the sed_scores_eval engine scores it)."""
        real = np.arange(self.frames.shape[2])[None, :] < self.n_frames[:, None]  # [N, T]
        return bool(np.isfinite(self.frames.transpose(1, 0, 2)[:, real]).all())


def metric_versions() -> dict[str, str]:
    """Installed versions of the metric packages, "" for one that is not installed.

    Note: sed_scores_eval's development version (with the pandas 3 fix) still reports 0.0.4.
    """
    out = {}
    for name in METRIC_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = ""
    return out


def score_tables(
    frame_probs: np.ndarray,
    clip_ids: Sequence[str],
    durations: Sequence[float],
    *,
    hop_seconds: float = FRAME_HOP_SECONDS,
    classes: Sequence[str] = CLASSES,
    median_windows: np.ndarray | None = None,
) -> dict[str, pd.DataFrame]:
    """Frame probabilities -> sed_scores_eval score DataFrames, each clip cut at its real duration.

    Args:
        frame_probs: [N, C, T] frame probabilities.
        clip_ids: N clip ids (the keys of the result).
        durations: [N] clip durations (s); a clip has real_frames(...) frames, the last ending at
            min(duration, T * hop).
        hop_seconds: frame hop (s).
        classes: C class names (the score columns, in order).
        median_windows: [C] median-filter window (frames) per class applied to each clip's real
            frames (scipy.ndimage.median_filter, edges repeated), or None for raw scores.

    Returns:
        clip id -> DataFrame with columns onset, offset (float64, s) and the classes (float32).
    """
    frame_probs = np.asarray(frame_probs)
    n, c, t = frame_probs.shape
    if len(clip_ids) != n or len(classes) != c:
        raise DataError(f"frame scores {frame_probs.shape} do not match {len(clip_ids)} clips x {len(classes)} classes")
    if len(set(clip_ids)) != n:
        raise DataError("clip ids must be unique")
    durations = np.asarray(durations, dtype=float)
    if durations.shape != (n,):
        raise DataError(f"need one duration per clip: got {durations.shape} for {n} clips")
    n_real = real_frames(durations, t, hop_seconds)
    if median_windows is not None:
        median_windows = np.asarray(median_windows, dtype=int)
        if median_windows.shape != (c,) or (median_windows < 1).any():
            raise DataError(f"need one median window >= 1 per class, got {median_windows}")
    frames = _filtered(frame_probs, n_real, median_windows)
    return _tables(frames, clip_ids, n_real, np.minimum(durations, t * hop_seconds), hop_seconds, classes)


def _filtered(frame_probs: np.ndarray, n_real: np.ndarray, median_windows: np.ndarray | None) -> np.ndarray:
    """[N, C, T] float32 copy of the scores (float32: see the module doc), each class median-filtered
    on each clip's real frames (edges repeated) when windows are given; frames past n_real untouched."""
    out = np.asarray(frame_probs).astype(np.float32)
    if median_windows is None:
        return out
    for k in np.unique(n_real):  # clips of equal length filtered together, one row each
        sel = np.flatnonzero(n_real == k)
        for j, w in enumerate(median_windows):
            out[sel, j, :k] = median_filter(out[sel, j, :k], size=(1, int(w)), mode="nearest")
    return out


def _tables(frames: np.ndarray, clip_ids: Sequence[str], n_real: np.ndarray, ends: np.ndarray, hop_seconds: float,
            classes: Sequence[str]) -> dict[str, pd.DataFrame]:
    """clip id -> DataFrame (onset, offset, one float32 column per class) of each clip's real frames."""
    tables = {}
    for i, clip_id in enumerate(clip_ids):
        k = int(n_real[i])
        stamps = np.arange(k + 1, dtype=np.float64) * hop_seconds
        stamps[-1] = ends[i]
        columns = {"onset": stamps[:-1], "offset": stamps[1:]}
        columns.update({name: frames[i, j, :k] for j, name in enumerate(classes)})
        tables[clip_id] = pd.DataFrame(columns)
    return tables


def reference_lists(reference: pd.DataFrame, clip_ids: Sequence[str], classes: Sequence[str] = CLASSES) -> Reference:
    """Reference DataFrame -> clip id -> sorted (onset, offset, label) list, for every clip id.

    Rows without a label (DESED's empty clips) and rows of other clips are ignored; touching or
    overlapping events of one class in one clip are merged into one (their union).

    Raises:
        DataError: a missing column, an unknown label, or an event without 0 <= onset < offset.
    """
    missing = [col for col in ("filename", "onset", "offset", "event_label") if col not in reference.columns]
    if missing:
        raise DataError(f"reference events lack column(s) {missing}")
    wanted = set(clip_ids)
    rows = reference[reference["event_label"].notna() & reference["filename"].isin(wanted)]
    unknown = sorted(set(rows["event_label"]) - set(classes))
    if unknown:
        raise DataError(f"reference labels {unknown} are not in the class list {list(classes)}")
    onset, offset = rows["onset"].to_numpy(dtype=float), rows["offset"].to_numpy(dtype=float)
    bad = ~(np.isfinite(onset) & np.isfinite(offset) & (onset >= 0) & (offset > onset))
    if bad.any():
        row = rows.iloc[int(np.argmax(bad))]
        raise DataError(f"reference event {row['filename']} {row['event_label']} [{row['onset']}, {row['offset']}] "
                        "needs 0 <= onset < offset")
    events: Reference = {clip_id: [] for clip_id in clip_ids}
    for (clip_id, label), group in rows.groupby(["filename", "event_label"], sort=True):
        events[clip_id].extend(_merge(group["onset"].to_numpy(float), group["offset"].to_numpy(float), label))
    for clip_id in events:
        events[clip_id].sort()
    return events


def _merge(onset: np.ndarray, offset: np.ndarray, label: str) -> list[tuple[float, float, str]]:
    order = np.argsort(onset, kind="stable")
    merged: list[list[float]] = []
    for on, off in zip(onset[order].tolist(), offset[order].tolist(), strict=True):
        if merged and on <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], off)
        else:
            merged.append([on, off])
    return [(on, off, label) for on, off in merged]


def score_set(
    frame_probs: np.ndarray,
    clip_ids: Sequence[str],
    durations: Sequence[float],
    reference: pd.DataFrame,
    *,
    hop_seconds: float = FRAME_HOP_SECONDS,
    classes: Sequence[str] = CLASSES,
    median_windows: np.ndarray | None = None,
    drop_empty_clips: bool = False,
) -> ScoredSet:
    """Scores, reference and durations of a clip set, restricted to the classes with reference events.

    Args: as psds_metrics.

    Raises:
        DataError: no reference event at all, or inconsistent shapes.
    """
    clip_ids = [str(x) for x in clip_ids]
    events = reference_lists(reference, clip_ids, classes)
    present = {label for evs in events.values() for _, _, label in evs}
    evaluated = tuple(name for name in classes if name in present)
    if not evaluated:
        raise DataError(f"no reference event in the {len(clip_ids)} scored clips: PSDS is undefined")
    keep = [i for i, clip_id in enumerate(clip_ids) if events[clip_id] or not drop_empty_clips]
    cols = [classes.index(name) for name in evaluated]
    frame = np.asarray(frame_probs)
    if frame.ndim != 3 or frame.shape[:2] != (len(clip_ids), len(classes)):
        raise DataError(f"frame scores {frame.shape} are not [{len(clip_ids)}, {len(classes)}, T]")
    if len(set(clip_ids)) != len(clip_ids):
        raise DataError("clip ids must be unique")
    windows = None
    if median_windows is not None:
        windows = np.asarray(median_windows, dtype=int)
        if windows.shape != (len(classes),) or (windows < 1).any():
            raise DataError(f"need one median window >= 1 per class, got {median_windows}")
        windows = windows[cols]
    kept_ids = [clip_ids[i] for i in keep]
    durations = np.asarray(durations, dtype=float)
    if durations.shape != (len(clip_ids),):
        raise DataError(f"need one duration per clip: got {durations.shape} for {len(clip_ids)} clips")
    kept_durations = durations[keep]
    t = frame.shape[2]
    n_real = real_frames(kept_durations, t, hop_seconds)
    return ScoredSet(
        frames=_filtered(frame[keep][:, cols], n_real, windows),
        n_frames=np.asarray(n_real, dtype=np.int64),
        ends=np.minimum(kept_durations, t * hop_seconds),
        hop_seconds=float(hop_seconds),
        clip_ids=tuple(kept_ids),
        reference={clip_id: events[clip_id] for clip_id in kept_ids},
        durations={clip_id: float(d) for clip_id, d in zip(kept_ids, kept_durations, strict=True)},
        classes=evaluated,
        all_classes=tuple(classes),
    )


def psds_metrics(
    frame_probs: np.ndarray,
    clip_ids: Sequence[str],
    durations: Sequence[float],
    reference: pd.DataFrame,
    *,
    hop_seconds: float = FRAME_HOP_SECONDS,
    classes: Sequence[str] = CLASSES,
    median_windows: np.ndarray | None = None,
    drop_empty_clips: bool = False,
    engine: str = "fast",
) -> PsdsMetrics:
    """PSDS1, PSDS2, intersection-based and collar-based F1 of frame scores (module doc).

    Args:
        frame_probs: [N, C, T] raw frame probabilities (before gating), e.g. `frame` of
            probabilities_{validation,test}.npz.
        clip_ids: N clip file names, the filename of the reference rows.
        durations: [N] real clip durations (s).
        reference: ground truth (filename, onset, offset, event_label) in seconds; clips without
            events may be absent or present as rows with an empty label.
        hop_seconds: frame hop (s).
        classes: C class names of the second axis.
        median_windows: [C] median-filter windows (frames) on the scores, or None (the default:
            raw scores).
        drop_empty_clips: score only clips with reference events (the DESED_task recipe).
        engine: "fast" or "sed_scores_eval" (module doc); both give the same numbers.

    Returns:
        PsdsMetrics.
    """
    scored = score_set(frame_probs, clip_ids, durations, reference, hop_seconds=hop_seconds, classes=classes,
                       median_windows=median_windows, drop_empty_clips=drop_empty_clips)
    p1, p1_class = psds_value(scored, PSDS1, engine=engine)
    p2, p2_class = psds_value(scored, PSDS2, engine=engine)
    fi, fi_class = intersection_f1(scored, engine=engine)
    fc, fc_class = collar_f1(scored, engine=engine)
    return PsdsMetrics(
        psds1=p1, psds2=p2, psds1_per_class=p1_class, psds2_per_class=p2_class,
        intersection_f1=fi, intersection_f1_per_class=fi_class, collar_f1=fc, collar_f1_per_class=fc_class,
        classes_evaluated=scored.classes, n_clips=len(scored.clip_ids),
        hours=sum(scored.durations.values()) / 3600.0,
        score_filter="none" if median_windows is None else "median",
    )


# ---------------------------------------------------------------------------------------------
# The four metrics of a ScoredSet; `deltas` (sed_scores_eval's per-clip intermediate statistics, in
# its nested format or fast_psds' flat one) replaces the scores when given, which is how the
# bootstrap re-weights clips without rescoring.


def _fast(scored: ScoredSet, engine: str) -> bool:
    """Whether to use the fast engine (non-finite scores: sed_scores_eval's own handling)."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown PSDS engine {engine!r}; valid: {list(ENGINES)}")
    return engine == "fast" and scored.finite


def _intersection_stats(scored: ScoredSet, dtc: float, gtc: float, cttc: float | None,
                        deltas: dict | None) -> fast_psds.ClassStats:
    if deltas is not None:
        return fast_psds.stats_of(fast_psds.flat(deltas, scored.clip_ids, scored.classes))
    return scored.fast.intersection_stats(dtc, gtc, cttc)


def _nested(scored: ScoredSet, deltas: dict | None) -> dict | None:
    """Deltas in sed_scores_eval's nested format (as they are when already nested)."""
    if deltas is None or not any(isinstance(v, fast_psds.ClassDeltas) for v in deltas.values()):
        return deltas
    return fast_psds.nested(deltas, scored.clip_ids)


def psds_value(scored: ScoredSet, params: PsdsParams, deltas: dict | None = None, *,
               engine: str = "fast") -> tuple[float, dict[str, float]]:
    """(PSDS, per-class PSDS over scored.all_classes, NaN for classes not evaluated).

    With cross-triggers (alpha_ct > 0) and a single evaluated class, PSDS is undefined (the
    cross-trigger rate averages over the other classes): all NaN.
    """
    if params.alpha_ct and len(scored.classes) < 2:
        return float("nan"), _per_class({}, scored.all_classes)
    if _fast(scored, engine):
        d = _intersection_stats(scored, params.dtc, params.gtc, params.cttc, deltas)
        value, per_class, _ = fast_psds.psds(scored, d, params.alpha_ct, params.alpha_st, params.e_max)
        return float(value), _per_class(per_class, scored.all_classes)
    from sed_scores_eval import intersection_based

    value, per_class, *_ = intersection_based.psds(
        scores=None if deltas is not None else scored.scores,
        ground_truth=scored.reference,
        audio_durations=scored.durations,
        deltas=_nested(scored, deltas),
        dtc_threshold=params.dtc,
        gtc_threshold=params.gtc,
        cttc_threshold=params.cttc,
        alpha_ct=params.alpha_ct,
        alpha_st=params.alpha_st,
        unit_of_time="hour",
        max_efpr=params.e_max,
    )
    return float(value), _per_class(per_class, scored.all_classes)


def psd_roc(scored: ScoredSet, params: PsdsParams, *, engine: str = "fast") -> tuple[np.ndarray, np.ndarray] | None:
    """The PSD-ROC of a scenario, as sed_scores_eval computes it for its PSDS: (eTPR, eFPR per hour),
    eFPR ascending up to params.e_max; the PSDS is its staircase area over e_max. None where the
    scenario is undefined (cross-triggers with a single evaluated class)."""
    if params.alpha_ct and len(scored.classes) < 2:
        return None
    if _fast(scored, engine):
        d = _intersection_stats(scored, params.dtc, params.gtc, params.cttc, None)
        (etpr, efpr), _ = fast_psds.psd_roc(scored, d, params.alpha_ct, params.alpha_st, params.e_max)
        return etpr, efpr
    from sed_scores_eval import intersection_based

    (etpr, efpr), _ = intersection_based.psd_roc(
        scores=scored.scores, ground_truth=scored.reference, audio_durations=scored.durations,
        dtc_threshold=params.dtc, gtc_threshold=params.gtc, cttc_threshold=params.cttc,
        alpha_ct=params.alpha_ct, alpha_st=params.alpha_st, unit_of_time="hour", max_efpr=params.e_max,
    )
    return np.asarray(etpr, dtype=float), np.asarray(efpr, dtype=float)


def roc_on_grid(etpr: np.ndarray, efpr: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A PSD-ROC read at the eFPRs of `grid` (the step function PSDS integrates: the eTPR of the last
    ROC point at or left of each grid value, 0 before the first), so that runs can be averaged.

    Args:
        etpr, efpr: [K] the ROC's points, efpr ascending.
        grid: [G] eFPR values (per hour).

    Returns:
        [G] eTPR.
    """
    idx = np.searchsorted(np.asarray(efpr, dtype=float), np.asarray(grid, dtype=float), side="right") - 1
    return np.where(idx >= 0, np.asarray(etpr, dtype=float)[np.maximum(idx, 0)], 0.0)


def intersection_f1(scored: ScoredSet, deltas: dict | None = None, *,
                    engine: str = "fast") -> tuple[float, dict[str, float]]:
    """(macro, per-class) intersection-based F1 at F1_THRESHOLD, dtc = gtc = 0.5."""
    if _fast(scored, engine):
        d = _intersection_stats(scored, INTERSECTION_F1_DTC, INTERSECTION_F1_GTC, None, deltas)
        f, per_class = fast_psds.fscore(scored, d, F1_THRESHOLD)
        return f, _per_class(per_class, scored.all_classes)
    from sed_scores_eval import intersection_based

    f, *_ = intersection_based.fscore(
        scores=None if deltas is not None else scored.scores,
        ground_truth=scored.reference,
        threshold=F1_THRESHOLD,
        deltas=_nested(scored, deltas),
        dtc_threshold=INTERSECTION_F1_DTC,
        gtc_threshold=INTERSECTION_F1_GTC,
    )
    return float(f["macro_average"]), _per_class(f, scored.all_classes)


def collar_f1(scored: ScoredSet, deltas: dict | None = None, *,
              engine: str = "fast") -> tuple[float, dict[str, float]]:
    """(macro, per-class) collar-based F1 at F1_THRESHOLD, collars 0.2 s / 20 %."""
    if _fast(scored, engine):
        d = (fast_psds.stats_of(fast_psds.flat(deltas, scored.clip_ids, scored.classes)) if deltas is not None
             else scored.fast.collar_stats(COLLAR_SECONDS, COLLAR_SECONDS, COLLAR_RATE))
        f, per_class = fast_psds.fscore(scored, d, F1_THRESHOLD)
        return f, _per_class(per_class, scored.all_classes)
    from sed_scores_eval import collar_based

    f, *_ = collar_based.fscore(
        scores=None if deltas is not None else scored.scores,
        ground_truth=scored.reference,
        threshold=F1_THRESHOLD,
        deltas=_nested(scored, deltas),
        onset_collar=COLLAR_SECONDS,
        offset_collar=COLLAR_SECONDS,
        offset_collar_rate=COLLAR_RATE,
    )
    return float(f["macro_average"]), _per_class(f, scored.all_classes)


def metric_deltas(scored: ScoredSet, metrics: Sequence[str] = ("psds1", "psds2", "intersection_f1", "collar_f1"),
                  *, engine: str = "fast") -> dict[str, dict]:
    """sed_scores_eval's per-clip deltas (intermediate statistics) of each named metric.

    Args:
        scored: the clip set.
        metrics: names among psds1, psds2, intersection_f1, collar_f1.
        engine: "fast": fast_psds.MetricDeltas (class -> ClassDeltas, flat); "sed_scores_eval":
            its nested {clip id -> {class -> (change-point scores, {statistic -> deltas})}}. Both
            hold the same numbers (fast_psds.nested / fast_psds.flat convert).

    Returns:
        name -> deltas.
    """
    intersection = {
        "psds1": (PSDS1.dtc, PSDS1.gtc, PSDS1.cttc),
        "psds2": (PSDS2.dtc, PSDS2.gtc, PSDS2.cttc),
        "intersection_f1": (INTERSECTION_F1_DTC, INTERSECTION_F1_GTC, None),
    }
    unknown = sorted(set(metrics) - {*intersection, "collar_f1"})
    if unknown:
        raise DataError(f"unknown metric(s) {unknown}; valid: {[*intersection, 'collar_f1']}")
    if _fast(scored, engine):
        return {name: scored.fast.collar_deltas(COLLAR_SECONDS, COLLAR_SECONDS, COLLAR_RATE) if name == "collar_f1"
                else scored.fast.intersection_deltas(*intersection[name]) for name in metrics}
    from sed_scores_eval import collar_based, intersection_based

    def reference_deltas(name: str) -> dict:
        if name == "collar_f1":
            return collar_based.intermediate_statistics_deltas(
                scores=scored.scores, ground_truth=scored.reference,
                onset_collar=COLLAR_SECONDS, offset_collar=COLLAR_SECONDS, offset_collar_rate=COLLAR_RATE,
            )
        dtc, gtc, cttc = intersection[name]
        return intersection_based.intermediate_statistics_deltas(
            scores=scored.scores, ground_truth=scored.reference, dtc_threshold=dtc, gtc_threshold=gtc,
            cttc_threshold=cttc,
        )

    return {name: reference_deltas(name) for name in metrics}


def _per_class(values: dict, classes: Sequence[str]) -> dict[str, float]:
    return {name: float(values[name]) if name in values else float("nan") for name in classes}
