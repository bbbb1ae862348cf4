"""Frame probabilities -> DCASE events (SPEC 2, Post-processing).

The chain is: clip gating -> binarisation -> per-class median filter -> contiguous runs -> events.
Arrays are [N, C, T]: N clips, C classes in harness.constants.CLASSES order, T frames of
FRAME_HOP_SECONDS each (frame i starts at i * hop seconds).

Clip durations (keyword `durations`, seconds): features are padded to T frames, so a 9.1 s clip has
455 real frames (the last one ends at 9.1 s) and 45 frames of padding. Given its durations, the chain
treats each clip as its real frames only: the median filter sees the clip's last real frame repeated
past its end (as it sees frame T - 1 repeated past T), padding frames never become events, and the
last event ends at the clip's duration, as the DCASE tools and PSDS expect.
"""

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from harness.config import PostprocessConfig
from harness.constants import CLASSES, FRAME_HOP_SECONDS
from harness.errors import DataError

EVENT_COLUMNS: tuple[str, ...] = ("filename", "onset", "offset", "event_label")

# Guards int(fraction * length) against float noise such as 18 * (1/3) = 5.999999999999999.
_WINDOW_EPS = 1e-9
# A clip's last frame is dropped when less than this share of it lies inside the clip (float noise
# such as 9.1 / 0.02 = 454.99999999999994 must give 455 frames, 10.0000001 s must not give 501).
_FRAME_EPS = 1e-6


def event_length_frames(
    events: pd.DataFrame,
    statistic: Literal["median", "mean"],
    hop_seconds: float = FRAME_HOP_SECONDS,
    classes: Sequence[str] = CLASSES,
) -> np.ndarray:
    """Median or mean event duration of every class, in frames.

    Args:
        events: strong labels (filename, onset, offset, event_label), onsets/offsets in seconds;
            rows without an event_label (DESED's empty clips) are ignored.
        statistic: "median" (the paper) or "mean" (the teacher's public code).
        hop_seconds: frame hop (s).
        classes: class order of the result.

    Returns:
        [C] float: duration statistic of each class divided by hop_seconds.

    Raises:
        DataError: a class has no event, or the statistic is unknown.
    """
    if statistic not in ("median", "mean"):
        raise DataError(f"event-length statistic must be 'median' or 'mean', got {statistic!r}")
    labelled = events.dropna(subset=["event_label"])
    durations = (labelled["offset"] - labelled["onset"]).astype(float)
    grouped = durations.groupby(labelled["event_label"])
    per_class = grouped.median() if statistic == "median" else grouped.mean()
    missing = [name for name in classes if name not in per_class.index]
    if missing:
        raise DataError(
            f"cannot size the median filter: no strong event of class(es) {missing} in the "
            "training labels; check the strong (synthetic) metadata TSV"
        )
    return np.array([per_class[name] / hop_seconds for name in classes], dtype=float)


def median_windows(lengths_frames: np.ndarray, fraction: float = 1 / 3) -> np.ndarray:
    """Median-filter window of each class: max(1, floor(fraction * length)).

    Rounding is down (int truncation of a positive number), after adding 1e-9 so that a product
    that is an integer up to float noise (18 frames / 3) is not rounded one frame short.
    E.g. DESED medians: Alarm 0.38 s = 19 frames -> 6; means: Alarm 1.07 s = 53.5 frames -> 17.

    Args:
        lengths_frames: [C] event length per class (frames).
        fraction: share of the length used as window.

    Returns:
        [C] int windows (frames), each >= 1.
    """
    raw = np.floor(fraction * np.asarray(lengths_frames, dtype=float) + _WINDOW_EPS)
    return np.maximum(1, raw).astype(int)


def gate(frame_probs: np.ndarray, clip_probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Zero the frames of every class whose clip-level probability is below threshold.

    Args:
        frame_probs: [N, C, T] frame probabilities.
        clip_probs: [N, C] clip probabilities.
        threshold: a class is kept in a clip when its clip probability >= threshold.

    Returns:
        [N, C, T] gated frame probabilities (a new array).
    """
    frame_probs = np.asarray(frame_probs)
    keep = np.asarray(clip_probs) >= threshold
    return np.where(keep[:, :, None], frame_probs, np.zeros((), dtype=frame_probs.dtype))


def real_frames(durations: Sequence[float], n_frames: int, hop_seconds: float = FRAME_HOP_SECONDS) -> np.ndarray:
    """Number of frames of each clip that lie inside its real duration.

    Frame i covers [i * hop, (i + 1) * hop); a clip of d seconds has ceil(d / hop) frames (the last
    one may be partial), at most n_frames (longer clips were cropped to n_frames).

    Args:
        durations: [N] clip durations (s), finite and > 0.
        n_frames: T, frames per clip in the arrays.
        hop_seconds: frame hop (s).

    Returns:
        [N] int in 1..T.

    Raises:
        DataError: a duration is not finite and positive.
    """
    durations = np.asarray(durations, dtype=float)
    if durations.ndim != 1:
        raise DataError(f"clip durations must be a 1-d array (one per clip), got shape {durations.shape}")
    bad = ~np.isfinite(durations) | (durations <= 0)
    if bad.any():
        where = int(np.argmax(bad))
        raise DataError(f"clip durations must be finite seconds > 0; clip #{where} has {durations[where]}")
    frames = np.ceil(durations / hop_seconds - _FRAME_EPS).astype(int)
    return np.clip(frames, 1, n_frames)


def _check_durations(durations: Sequence[float] | None, n_clips: int) -> np.ndarray | None:
    if durations is None:
        return None
    durations = np.asarray(durations, dtype=float)
    if durations.shape != (n_clips,):
        raise DataError(f"need one duration per clip: got {durations.shape} for {n_clips} clips")
    return durations


def binarize_and_filter(
    frame_probs: np.ndarray,
    windows: np.ndarray,
    threshold: float = 0.5,
    *,
    n_real: np.ndarray | None = None,
) -> np.ndarray:
    """Binarise at threshold (strictly above is active), then median-filter each class along time.

    The filter is, exactly, scipy.ndimage.median_filter(x, size=(1, w), mode="nearest") over the
    [N, T] slice of a class (all clips at once; the tests check the equality). For binary x the
    median is a vote, so it is computed from a running sum in O(T) whatever w (scipy's rank filter
    is about 100x slower at DESED's windows of up to 88 frames). The window of frame t covers
    [t - w//2, t + (w-1)//2]; frames past the ends repeat the edge value ("nearest"), so a run that
    touches the start or end of the clip is neither shrunk nor grown there. An even w is allowed:
    scipy then takes the upper median, i.e. a frame is active when at least w/2 of its w frames are.

    With n_real, clip n's frames from n_real[n] on are padding: they take the value of the clip's
    last real frame before filtering (so the filter's "nearest" edge is the clip's real end) and
    are inactive in the result.

    Args:
        frame_probs: [N, C, T] probabilities.
        windows: [C] int window per class (frames, >= 1).
        threshold: binarisation threshold.
        n_real: [N] real frames of each clip (real_frames), or None: all T frames are real.

    Returns:
        [N, C, T] bool activity.
    """
    active = np.asarray(frame_probs) > threshold
    windows = np.asarray(windows, dtype=int)
    if windows.shape != (active.shape[1],):
        raise DataError(f"need one median window per class: got {windows.shape}, frames are {active.shape}")
    padding = None
    if n_real is not None:
        padding = np.arange(active.shape[2])[None, :] >= np.asarray(n_real)[:, None]  # [N, T]
        last = np.take_along_axis(active, (np.asarray(n_real) - 1)[:, None, None], axis=2)  # [N, C, 1]
        active = np.where(padding[:, None, :], last, active)
    out = active.copy()
    any_active = active.any(axis=2)  # [N, C]; an all-silent row stays silent: skip it
    for c, w in enumerate(windows):
        rows = np.flatnonzero(any_active[:, c])
        if w > 1 and len(rows):
            out[rows, c] = _binary_median(active[rows, c], int(w))
    if padding is not None:
        out &= ~padding[:, None, :]
    return out


def _binary_median(active: np.ndarray, w: int) -> np.ndarray:
    """[N, T] bool -> [N, T] bool: median over a window of w frames, edges repeated."""
    left, right = w // 2, (w - 1) // 2
    padded = np.pad(active.astype(np.int32), ((0, 0), (left, right)), mode="edge")
    csum = np.concatenate([np.zeros((len(padded), 1), dtype=np.int32), np.cumsum(padded, axis=1)], axis=1)
    votes = csum[:, w:] - csum[:, :-w]  # [N, T] active frames in each window
    return votes >= w - w // 2  # the sorted window's element w//2 is 1


def to_events(
    binary: np.ndarray,
    clip_ids: Sequence[str],
    hop_seconds: float = FRAME_HOP_SECONDS,
    classes: Sequence[str] = CLASSES,
    *,
    durations: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Contiguous active runs -> events; a run of frames [s, e) becomes onset s*hop, offset e*hop.

    With durations, frames past a clip's real end are ignored and offsets are capped at the clip's
    duration (a 9.1 s clip active to its last frame gets offset 9.1, not 9.12 or 10.0).

    Args:
        binary: [N, C, T] bool activity.
        clip_ids: N clip file names, in the order of the first axis.
        hop_seconds: frame hop (s).
        classes: C class names, in the order of the second axis.
        durations: [N] clip durations (s), or None (every clip lasts T * hop).

    Returns:
        DataFrame (filename, onset, offset, event_label), ordered by clip, class, onset.
    """
    binary = np.asarray(binary, dtype=bool)
    n, c, t = binary.shape
    if len(clip_ids) != n or len(classes) != c:
        raise DataError(f"activity shape {binary.shape} does not match {len(clip_ids)} clips x {len(classes)} classes")
    durations = _check_durations(durations, n)
    if durations is not None:
        padding = np.arange(t)[None, :] >= real_frames(durations, t, hop_seconds)[:, None]
        binary = binary & ~padding[:, None, :]
    pair = np.flatnonzero(binary.reshape(n * c, -1).any(axis=1))  # (clip, class) rows with activity
    padded = np.zeros((len(pair), binary.shape[2] + 2), dtype=np.int8)
    padded[:, 1:-1] = binary.reshape(n * c, -1)[pair]
    step = np.diff(padded, axis=1)  # +1 where a run starts, -1 one past its last frame
    row, starts = np.nonzero(step == 1)
    ends = np.nonzero(step == -1)[1]  # same (row, time) order, so runs pair up
    clip_idx, class_idx = np.divmod(pair[row], c)
    offsets = ends * hop_seconds
    if durations is not None:
        offsets = np.minimum(offsets, durations[clip_idx])
    return pd.DataFrame(
        {
            "filename": np.asarray(clip_ids, dtype=object)[clip_idx],
            "onset": starts * hop_seconds,
            "offset": offsets,
            "event_label": np.asarray(classes, dtype=object)[class_idx],
        },
        columns=list(EVENT_COLUMNS),
    )


def postprocess(
    frame_probs: np.ndarray,
    clip_probs: np.ndarray,
    clip_ids: Sequence[str],
    windows: np.ndarray,
    cfg: PostprocessConfig,
    gate_threshold: float = 0.5,
    hop_seconds: float = FRAME_HOP_SECONDS,
    classes: Sequence[str] = CLASSES,
    *,
    durations: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Gate, binarise, median-filter and cut into events (SPEC 2, Post-processing).

    Args:
        frame_probs: [N, C, T] frame probabilities.
        clip_probs: [N, C] clip probabilities.
        clip_ids: N clip file names.
        windows: [C] median-filter windows (frames), e.g. from median_windows.
        cfg: post-processing config (threshold used for binarisation).
        gate_threshold: clip-probability threshold of the gating.
        hop_seconds: frame hop (s).
        classes: class order of the second axis.
        durations: [N] real clip durations (s); None treats every clip as T frames long. Given
            them, each clip is filtered and cut on its real frames only and its events end at or
            before its duration (see the module doc).

    Returns:
        DataFrame (filename, onset, offset, event_label).
    """
    gated = gate(frame_probs, clip_probs, gate_threshold)
    durations = _check_durations(durations, gated.shape[0])
    n_real = None if durations is None else real_frames(durations, gated.shape[2], hop_seconds)
    binary = binarize_and_filter(gated, windows, cfg.threshold, n_real=n_real)
    return to_events(binary, clip_ids, hop_seconds, classes, durations=durations)
