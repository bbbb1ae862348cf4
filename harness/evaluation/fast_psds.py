"""sed_scores_eval's threshold-independent statistics, computed for all clips at once (same numbers).

sed_scores_eval (0.0.4) scores one clip and class at a time: for every distinct score u of the clip
it forms the detections at threshold u (the maximal runs of frames scoring >= u), compares them with
the reference in a [thresholds x detections x events] array, and keeps the per-clip changes
("deltas") of the TP, FP and cross-trigger counts at the scores where they change. It is exact and
slow (about 1 ms per clip and class, plus one pandas DataFrame per clip). This module computes the
same deltas for all clips and classes with a few array passes:

- Runs. Every run that is a detection at some threshold is the run of its lowest frame j at u = s[j]:
  it spans from just after the nearest frame to the left scoring < s[j] to just before the nearest
  one to the right scoring < s[j], and it is a detection for the thresholds in (lo, hi], hi = s[j],
  lo = the higher of those two neighbours' scores (-inf at the clip's edges, i.e. never removed). The
  nearest lower neighbours of all frames come from pointer jumping (`_nearest_left`).
- Per-run criteria. The DTC, the cross-trigger criterion and the collar criteria depend on the run
  and the reference only, so a run adds its count at hi and removes it at lo. The FP count is the
  number of detections (+1 at each local maximum of the scores, -1 at each local minimum: the frame
  level, no run needed) minus the DTC-passing runs; only runs touching another class's event are
  tested for cross-triggers. The GTC of a reference event depends on the DTC-passing runs present at
  u: its covered length at every score is a cumulative sum, from the top score down, of (+overlap at
  hi, -overlap at lo). Collar-based TPs are the size of a maximum matching of the present runs and
  events: the number of events hit when no run hits two, the number of hitting runs when no event is
  hit twice, else the pairs are matched one by one (rare).
- Scores are ranked per class among all its distinct scores, so every statistic is a set of
  (clip, rank, change) entries: summed per rank, they give the statistics over all clips (the
  metrics); netted per clip and rank, sed_scores_eval's per-clip deltas (the bootstrap), in its order
  (ascending score per clip; frame order for the clips it shortcuts, see `Context._extrema`).

Same numbers: the intersections, the 6-decimal rounding before each comparison and the per-run sums
over reference events are sed_scores_eval's float operations on the same values; only the covered
length of an event is summed in another order (a cumulative sum instead of a sum over the detections
present), a difference of a few ulps (at most ~1e-12 s over a whole set) that the rounding to 6
decimals removes: it could only show for a covered length within that distance of an odd multiple of
0.5 us, which times given in ms and frame hops of a few ms and more stay far from. The accumulation, the
PSD-ROC, the PSDS and the F-scores then repeat sed_scores_eval's steps (stable sorts for its Python
sorts, its summation orders). The metrics take every distinct score of a class as a threshold, not
only the clips' change points: an extra threshold repeats the statistics of the next change point
above it, hence a duplicate ROC point, which sed_scores_eval's own cummax / unique steps drop.
tests/test_evaluation_fast_psds.py checks deltas and metrics against sed_scores_eval itself.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np

from harness.errors import DataError

_DECIMALS = 6  # sed_scores_eval's time_decimals: times are compared after rounding to 1 us
_SECONDS_PER_HOUR = 3600.0
_WINDOW = 8  # nearest-lower-neighbour search: direct comparisons up to this distance, then pointer jumping


class ScoredLike(Protocol):
    """What this module reads of a harness.evaluation.psds.ScoredSet."""

    frames: np.ndarray  # [N, C, T] float32 scores of the evaluated classes
    n_frames: np.ndarray  # [N] real frames per clip
    ends: np.ndarray  # [N] end of each clip's last frame (s)
    hop_seconds: float
    clip_ids: tuple[str, ...]
    reference: Mapping[str, list[tuple[float, float, str]]]
    durations: Mapping[str, float]
    classes: tuple[str, ...]


@dataclass(frozen=True)
class ClassDeltas:
    """One class's per-clip deltas, flat: the content of sed_scores_eval's
    {clip: {class: (change-point scores, {statistic: deltas})}} for this class, clips in ScoredSet order.

    Attributes:
        clip: [D] index of the clip (ScoredSet.clip_ids) of each change point.
        scores: [D] float64 change-point scores (per clip ascending, or in frame order for clips
            sed_scores_eval shortcuts; duplicates possible there, as in sed_scores_eval).
        values: statistic ("tps", "fps", "cts" or "cts\\\\<class>") -> [D] float64 deltas (integers).
    """

    clip: np.ndarray
    scores: np.ndarray
    values: dict[str, np.ndarray]


MetricDeltas = dict[str, ClassDeltas]  # class -> its deltas

# class -> ([U + 1] ascending thresholds then +inf, statistic -> [U + 1] its value over all clips)
ClassStats = dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]


@dataclass(frozen=True)
class ClassChanges:
    """One class's per-clip changes of each statistic, not netted: the entries the deltas are made of.

    Summed per clip over the entries of rank >= r, they give that clip's statistic at the threshold
    thresholds[r], exactly as sed_scores_eval's per-clip deltas summed over the change points scored
    >= thresholds[r] do (the deltas are these entries netted per clip and score). Nothing is sorted.

    Attributes:
        thresholds: [U] the class's distinct scores, ascending, float64.
        values: statistic ("tps", "fps", "cts" or "cts\\\\<class>") -> its changes in pieces, each
            ([K] int64 clip index, [K] int64 rank in thresholds, [K] float64 integer change), in no
            particular order (the detections' piece of "fps" is shared by the metrics of a Context).
    """

    thresholds: np.ndarray
    values: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]


# ---------------------------------------------------------------------------------------------
# Runs and events (shared by every metric)


@dataclass(frozen=True)
class _Runs:
    """The runs of one class (every detection at every threshold), in clip order.

    Attributes:
        clip: [R] clip index.
        hi: [R] rank (among the class's distinct scores) of the run's lowest score: a detection for
            thresholds <= that score ...
        lo: [R] ... and > the score of this rank (-1: at every lower threshold).
        first, stop: [R] its frames [first, stop).
        onset, offset: [R] its times (s), sed_scores_eval's timestamps.
    """

    clip: np.ndarray
    hi: np.ndarray
    lo: np.ndarray
    first: np.ndarray
    stop: np.ndarray
    onset: np.ndarray
    offset: np.ndarray

    @cached_property
    def length(self) -> np.ndarray:
        return self.offset - self.onset


@dataclass(frozen=True)
class _Events:
    """Reference events of one class, grouped by clip (each clip's sorted, as sed_scores_eval's)."""

    onset: np.ndarray  # [E]
    offset: np.ndarray  # [E]
    clip: np.ndarray  # [E] clip index
    start: np.ndarray  # [N] first event of each clip
    count: np.ndarray  # [N] events of each clip

    @cached_property
    def length(self) -> np.ndarray:
        return self.offset - self.onset


@dataclass(frozen=True)
class _AllEvents:
    """Reference events of every class, grouped by clip then class (each group in onset order)."""

    onset: np.ndarray  # [E]
    offset: np.ndarray  # [E]
    cls: np.ndarray  # [E] class index
    clip_start: np.ndarray  # [N] first event of each clip
    clip_count: np.ndarray  # [N]
    count: np.ndarray  # [N, C] events of each clip and class


def _nearest_left(flat: np.ndarray, strict: bool) -> np.ndarray:
    """Per finite position j, the nearest p < j with flat[p] < flat[j] (strict) or <= (not strict).

    Each row starts with -inf, so the search never leaves the row. Invariant of ptr[j]: every value
    strictly between ptr[j] and j fails the test; jumping to ptr[ptr[j]] keeps it (the values skipped
    fail for ptr[j], hence for j), which halves the remaining distance per round.

    Args:
        flat: [L] float32 rows of scores separated by -inf.
        strict: the comparison.

    Returns:
        [L] int32 (int64 past 2**31 positions) positions (meaningless at non-finite positions).
    """
    n = len(flat)
    index = np.int32 if n < 2**31 else np.int64  # half the memory traffic of int64
    ptr = np.arange(-1, n - 1, dtype=index)
    done = ~np.isfinite(flat)
    for d in range(1, _WINDOW + 1):  # most answers are a few frames away: cheap contiguous passes
        hit = ~done[d:] & ((flat[:-d] < flat[d:]) if strict else (flat[:-d] <= flat[d:]))
        ptr[d:][hit] -= d - 1
        done[d:] |= hit
    todo = np.flatnonzero(~done).astype(index)
    ptr[todo] = todo - _WINDOW
    while todo.size:
        p = ptr[todo]
        todo = todo[(flat[p] >= flat[todo]) if strict else (flat[p] > flat[todo])]
        ptr[todo] = ptr[ptr[todo]]
    return ptr


def _padded(scored: ScoredLike) -> np.ndarray:
    """[C * N * (T + 2)] float32: per (class, clip) row -inf, the real frame scores, then -inf."""
    n, c, t = scored.frames.shape
    beyond = np.arange(t)[None, :] >= np.asarray(scored.n_frames)[:, None]
    padded = np.full((c, n, t + 2), -np.inf, dtype=np.float32)
    padded[:, :, 1:-1] = scored.frames.transpose(1, 0, 2)
    padded[:, beyond.nonzero()[0], beyond.nonzero()[1] + 1] = -np.inf
    return padded.ravel()


def _score_ranks(flat: np.ndarray, n_classes: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """([L] rank of each score among its class's distinct scores (-1 at padding), per class the
    [U] distinct scores, ascending, float64)."""
    rank = np.full(len(flat), -1, dtype=np.int64)
    size = len(flat) // n_classes
    uniques = []
    for k in range(n_classes):
        real = np.flatnonzero(np.isfinite(flat[k * size : (k + 1) * size]))
        unique, inverse = np.unique(flat[k * size + real], return_inverse=True)
        rank[k * size + real] = inverse
        uniques.append(unique.astype(np.float64))
    return rank, uniques


def _all_runs(scored: ScoredLike, flat: np.ndarray, rank: np.ndarray) -> list[_Runs]:
    """The runs of every class (see the module doc), one _Runs per evaluated class."""
    n, c, t = scored.frames.shape
    width = t + 2
    left = _nearest_left(flat, strict=False)  # nearest <= to the left
    right = _nearest_left(flat[::-1], strict=True)[::-1]  # nearest < to the right, mirrored
    # A run's leftmost lowest frame is the one whose nearest <= neighbour to the left is < it; it
    # represents the run once (its equal-scored frames would repeat it).
    j = np.flatnonzero(flat[left] < flat)  # false at -inf padding
    lp, rp = left[j].astype(np.int64), len(flat) - 1 - right[j].astype(np.int64)
    row = j // width
    first, stop = lp - row * width, rp - row * width - 1  # frames [first, stop)
    lower = np.where(flat[lp] >= flat[rp], lp, rp)
    clip = row % n
    hop = float(scored.hop_seconds)
    n_frames, ends = np.asarray(scored.n_frames), np.asarray(scored.ends, dtype=np.float64)
    onset = first * hop  # int * float: float64(first) * hop, as sed_scores_eval's timestamps
    offset = np.where(stop == n_frames[clip], ends[clip], stop * hop)
    bounds = np.searchsorted(row, np.arange(c + 1) * n)
    hi, lo = rank[j], rank[lower]  # -1 where the lower neighbour is padding
    return [
        _Runs(clip[a:b], hi[a:b], lo[a:b], first[a:b], stop[a:b], onset[a:b], offset[a:b])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def _class_events(scored: ScoredLike, n: int) -> dict[str, _Events]:
    """Reference events per class, grouped by clip."""
    by_class: dict[str, list[tuple[int, float, float]]] = {name: [] for name in scored.classes}
    index = {clip_id: i for i, clip_id in enumerate(scored.clip_ids)}
    for clip_id, events in scored.reference.items():
        for onset, offset, label in events:
            if label in by_class:
                by_class[label].append((index[clip_id], float(onset), float(offset)))
    out = {}
    for name, rows in by_class.items():
        rows.sort(key=lambda row: row[0])  # stable: each clip's events keep their (sorted) order
        arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
        clip = arr[:, 0].astype(np.int64)
        count = np.bincount(clip, minlength=n)
        out[name] = _Events(arr[:, 1].copy(), arr[:, 2].copy(), clip, np.cumsum(count) - count, count)
    return out


def _all_events(events: dict[str, _Events], n: int) -> _AllEvents:
    cls = np.concatenate([np.full(len(e.clip), k) for k, e in enumerate(events.values())])
    clip = np.concatenate([e.clip for e in events.values()])
    order = np.lexsort((np.arange(len(clip)), cls, clip))  # stable: onset order kept within a group
    count = np.stack([e.count for e in events.values()], axis=1)
    clip_count = count.sum(axis=1)
    return _AllEvents(np.concatenate([e.onset for e in events.values()])[order],
                      np.concatenate([e.offset for e in events.values()])[order], cls[order],
                      np.cumsum(clip_count) - clip_count, clip_count, count)


def _ragged(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner, index): for each k, the indices starts[k] .. starts[k] + counts[k] - 1, owner k."""
    owner = np.repeat(np.arange(len(counts)), counts)
    return owner, np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())


def _groups(runs: _Runs, events: _Events, select: np.ndarray | None = None):
    """Yield (run indices, [R_G, G] event indices) for the runs whose clip has G >= 1 events."""
    count = events.count[runs.clip]
    candidates = np.flatnonzero(count > 0) if select is None else np.flatnonzero(select & (count > 0))
    for g in np.unique(count[candidates]):
        sel = candidates[count[candidates] == g]
        yield sel, events.start[runs.clip[sel]][:, None] + np.arange(g)


def _intersections(runs: _Runs, sel: np.ndarray, idx: np.ndarray, events: _Events) -> np.ndarray:
    """[R_G, G] overlap (s) of runs with events, sed_scores_eval's expression."""
    return np.maximum(
        np.minimum(runs.offset[sel, None], events.offset[idx]) - np.maximum(runs.onset[sel, None], events.onset[idx]),
        0.0,
    )


# ---------------------------------------------------------------------------------------------
# Step functions of the threshold as entries (owner, rank, change)

_Entries = tuple[np.ndarray, np.ndarray, np.ndarray]  # [K] owner (clip or event), [K] rank, [K] change


def _span_entries(owner: np.ndarray, hi: np.ndarray, lo: np.ndarray, weight: np.ndarray) -> _Entries:
    """A count present for thresholds in (lo, hi]: +weight at hi, -weight at lo (none at lo = -1)."""
    low = lo >= 0
    return (np.concatenate([owner, owner[low]]), np.concatenate([hi, lo[low]]),
            np.concatenate([weight, -weight[low]]))


def _steps(owner: np.ndarray, rank: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per owner and rank with an entry, the statistic there: the sum of the owner's changes at that
    rank and above.

    Args:
        owner, rank: [K].
        weight: [K] or [K, m] changes.

    Returns:
        ([G] owner, [G] rank, [G] or [G, m] statistic), by owner then descending rank.
    """
    order = np.lexsort((-rank, owner))
    owner, rank, weight = owner[order], rank[order], weight[order]
    last = np.ones(len(owner), bool)
    last[:-1] = (owner[1:] != owner[:-1]) | (rank[1:] != rank[:-1])
    start = np.zeros(len(owner), np.int64)
    new_owner = np.ones(len(owner), bool)
    new_owner[1:] = owner[1:] != owner[:-1]
    start[new_owner] = np.flatnonzero(new_owner)
    np.maximum.accumulate(start, out=start)
    total = np.cumsum(weight, axis=0)
    before = total - weight  # the running total before each entry
    return owner[last], rank[last], total[last] - before[start[last]]


def _changes(owner: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Inverse of _steps: each group's change from the owner's previous (higher-rank) group."""
    change = state.astype(np.float64)
    same = owner[1:] == owner[:-1]
    change[1:][same] -= state[:-1][same]
    return change


@dataclass(frozen=True)
class _Parts:
    """One class's statistics of one metric, before accumulation.

    Attributes:
        entries: statistic -> changes (clip, rank, change) of the computed clips.
        computed: [N] clips sed_scores_eval computes; the others take its shortcut (see _extrema).
        with_detections: statistics that also count every detection (+1 at local maxima, -1 at
            minima, of every clip): "fps" = detections - the entries' corrections.
    """

    entries: dict[str, list[_Entries]]
    computed: np.ndarray
    with_detections: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# The shared context: runs and events once, then the statistics of any metric


class Context:
    """Runs and events of a scored set, built once and shared by every metric computed on it.

    Args:
        scored: a ScoredSet (frames, n_frames, ends, hop_seconds, clip_ids, reference, durations,
            classes).

    Raises:
        DataError: non-finite scores (sed_scores_eval's treatment of those is not reproduced).
    """

    def __init__(self, scored: ScoredLike):
        frames = np.asarray(scored.frames)
        if frames.ndim != 3 or frames.shape[1] != len(scored.classes):
            raise DataError(f"scores {frames.shape} are not [N, {len(scored.classes)}, T]")
        n, c, t = frames.shape
        self.scored, self.n, self.t = scored, n, t
        real = np.arange(t)[None, :] < np.asarray(scored.n_frames)[:, None]
        if not np.isfinite(frames.transpose(1, 0, 2)[:, real]).all():
            raise DataError("non-finite frame scores")
        self.flat = _padded(scored)
        self.rank, self.uniques = _score_ranks(self.flat, c)
        self.runs = dict(zip(scored.classes, _all_runs(scored, self.flat, self.rank), strict=True))
        self.events = _class_events(scored, n)
        self.all_events = _all_events(self.events, n)
        self._target_cache: dict[str, tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        self._extrema_cache: dict[str, tuple[np.ndarray, ...]] = {}
        self._touch_cache: dict[str, np.ndarray] = {}

    # -- public: statistics per class, accumulated (metrics) or per clip (bootstrap)

    def intersection_stats(self, dtc: float, gtc: float, cttc: float | None) -> ClassStats:
        """sed_scores_eval's accumulated intersection-based statistics, per class, with every score of
        the class as a threshold (the ones that are no clip's change point repeat a neighbour's
        statistics, so the ROC and the F-score are the same).

        Args:
            dtc: detection tolerance criterion.
            gtc: ground-truth intersection criterion.
            cttc: cross-trigger tolerance criterion, or None (no cross-triggers: a zero "cts").
        """
        return {name: self._accumulate(name, self._intersection(name, dtc, gtc, cttc)) for name in self.scored.classes}

    def intersection_deltas(self, dtc: float, gtc: float, cttc: float | None) -> MetricDeltas:
        """sed_scores_eval.intersection_based.intermediate_statistics_deltas, per class (flat)."""
        return {name: self._collect(name, self._intersection(name, dtc, gtc, cttc)) for name in self.scored.classes}

    def collar_stats(self, onset_collar: float, offset_collar: float, offset_collar_rate: float) -> ClassStats:
        """sed_scores_eval's accumulated collar-based statistics, per class (see intersection_stats)."""
        return {name: self._accumulate(name, self._collar(name, onset_collar, offset_collar, offset_collar_rate))
                for name in self.scored.classes}

    def collar_deltas(self, onset_collar: float, offset_collar: float, offset_collar_rate: float) -> MetricDeltas:
        """sed_scores_eval.collar_based.intermediate_statistics_deltas, per class (flat)."""
        return {name: self._collect(name, self._collar(name, onset_collar, offset_collar, offset_collar_rate))
                for name in self.scored.classes}

    def intersection_changes(self, dtc: float, gtc: float, cttc: float | None) -> dict[str, ClassChanges]:
        """intersection_deltas before netting per clip and score (the clip bootstrap's input)."""
        return {name: self._changes(name, self._intersection(name, dtc, gtc, cttc)) for name in self.scored.classes}

    def collar_changes(self, onset_collar: float, offset_collar: float,
                       offset_collar_rate: float) -> dict[str, ClassChanges]:
        """collar_deltas before netting per clip and score (the clip bootstrap's input)."""
        return {name: self._changes(name, self._collar(name, onset_collar, offset_collar, offset_collar_rate))
                for name in self.scored.classes}

    # -- intersection-based

    def _intersection(self, name: str, dtc: float, gtc: float, cttc: float | None) -> _Parts:
        runs, events = self.runs[name], self.events[name]
        covered, (pair_run, pair_event, piece) = self._target(name)
        cross = cttc is not None and len(self.scored.classes) > 1
        # sed_scores_eval shortcuts the clips without an event of the class (unless cross-triggers
        # are counted): their deltas are the detections' (see _extrema)
        computed = np.ones(self.n, bool) if cross else events.count > 0
        relevant = covered >= np.round(dtc * runs.length, decimals=_DECIMALS)
        good = np.flatnonzero(relevant)
        keep = relevant[pair_run]
        entries = {
            "tps": [self._gtc(name, pair_run[keep], pair_event[keep], piece[keep], gtc)],
            "fps": [_span_entries(runs.clip[good], runs.hi[good], runs.lo[good], -np.ones(len(good)))],
        }
        if cross:
            entries.update(self._cross_triggers(name, relevant, cttc))
        else:
            entries["cts"] = []
        return _Parts(entries, computed, ("fps",))

    def _target(self, name: str) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """([R] rounded total overlap of each run with the class's events (sed_scores_eval's sum over
        the clip's events), (run, event, overlap) of the overlapping pairs)."""
        if name not in self._target_cache:
            runs, events = self.runs[name], self.events[name]
            covered = np.zeros(len(runs.clip))
            pr, pe, px = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
            for sel, idx in _groups(runs, events):
                pieces = _intersections(runs, sel, idx, events)
                covered[sel] = np.round(np.sum(pieces, axis=-1), decimals=_DECIMALS)
                r, k = np.nonzero(pieces > 0)
                pr.append(sel[r]), pe.append(idx[r, k]), px.append(pieces[r, k])
            self._target_cache[name] = (covered, (np.concatenate(pr), np.concatenate(pe), np.concatenate(px)))
        return self._target_cache[name]

    def _gtc(self, name: str, pair_run: np.ndarray, pair_event: np.ndarray, piece: np.ndarray, gtc: float) -> _Entries:
        """TP changes: an event is a TP where the DTC-passing runs present cover >= gtc of it (their
        overlaps summed over the thresholds from the top, then rounded as sed_scores_eval does)."""
        runs, events = self.runs[name], self.events[name]
        event, rank, cover = _steps(*_span_entries(pair_event, runs.hi[pair_run], runs.lo[pair_run], piece))
        hit = np.round(cover, decimals=_DECIMALS) >= np.round(gtc * events.length[event], decimals=_DECIMALS)
        change = _changes(event, hit)
        keep = change != 0
        return events.clip[event[keep]], rank[keep], change[keep]

    def _touching(self, name: str) -> np.ndarray:
        """[N, T + 1] per clip, the number of frames before each frame that touch (with one frame of
        margin) an event of another class: a run without such a frame overlaps none of them."""
        if name not in self._touch_cache:
            ev, hop = self.all_events, float(self.scored.hop_seconds)
            c = self.scored.classes.index(name)
            other = ev.cls != c
            clip = np.repeat(np.arange(self.n), ev.clip_count)[other]
            a = np.clip(np.floor(ev.onset[other] / hop).astype(np.int64) - 1, 0, self.t)
            b = np.clip(np.ceil(ev.offset[other] / hop).astype(np.int64) + 2, 0, self.t)
            diff = np.zeros((self.n, self.t + 1))
            np.add.at(diff, (clip, a), 1.0)
            np.add.at(diff, (clip, b), -1.0)
            touched = np.cumsum(diff, axis=1)[:, : self.t] > 0
            prefix = np.zeros((self.n, self.t + 1), np.int64)
            np.cumsum(touched, axis=1, out=prefix[:, 1:])
            self._touch_cache[name] = prefix
        return self._touch_cache[name]

    def _cross_triggers(self, name: str, relevant: np.ndarray, cttc: float) -> dict[str, list[_Entries]]:
        """"cts\\<other>" -> changes: a run failing the DTC that overlaps the other class's events by
        >= cttc of its length (sed_scores_eval's sum over those events, then rounding)."""
        runs, ev = self.runs[name], self.all_events
        c, n_classes = self.scored.classes.index(name), len(self.scored.classes)
        prefix = self._touching(name)
        touches = prefix[runs.clip, runs.stop] > prefix[runs.clip, runs.first]
        cand = np.flatnonzero(~relevant & touches)  # a DTC-passing run counts no cross-trigger
        owner, event = _ragged(ev.clip_start[runs.clip[cand]], ev.clip_count[runs.clip[cand]])
        run = cand[owner]
        keep = ev.cls[event] != c
        run, event = run[keep], event[keep]
        piece = np.maximum(np.minimum(runs.offset[run], ev.offset[event]) - np.maximum(runs.onset[run], ev.onset[event]),
                           0.0)
        pos = piece > 0  # zeros change no sequential sum
        run, cls, piece = run[pos], ev.cls[event[pos]], piece[pos]
        key = run * n_classes + cls  # sorted: runs ascending, then classes
        new = np.ones(len(key), bool)
        new[1:] = key[1:] != key[:-1]
        total = np.bincount(np.cumsum(new) - 1, weights=piece)  # sequential, as np.sum of < 8 values
        run, cls = run[new], cls[new]
        total = np.round(total, decimals=_DECIMALS)
        for k in np.flatnonzero(ev.count[runs.clip[run], cls] >= 8):  # np.sum is pairwise from 8 values
            total[k] = self._overlap_sum(runs, run[k], int(cls[k]))
        ct = total >= np.round(cttc * runs.length[run], decimals=_DECIMALS)
        out = {}
        for k, other in enumerate(self.scored.classes):
            if k != c:
                r = run[ct & (cls == k)]
                out[f"cts\\{other}"] = [_span_entries(runs.clip[r], runs.hi[r], runs.lo[r], np.ones(len(r)))]
        return out

    def _overlap_sum(self, runs: _Runs, r: int, k: int) -> float:
        """Rounded overlap of run r with the events of class k of its clip, summed by np.sum over all
        of them as sed_scores_eval does."""
        events = self.events[self.scored.classes[k]]
        i = runs.clip[r]
        on = events.onset[events.start[i] : events.start[i] + events.count[i]]
        off = events.offset[events.start[i] : events.start[i] + events.count[i]]
        pieces = np.maximum(np.minimum(runs.offset[r], off) - np.maximum(runs.onset[r], on), 0.0)
        return float(np.round(np.sum(pieces), decimals=_DECIMALS))

    # -- collar-based

    def _collar(self, name: str, onset_collar: float, offset_collar: float, rate: float) -> _Parts:
        runs, events = self.runs[name], self.events[name]
        collars = np.maximum(offset_collar, rate * events.length)
        hr, he = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for sel, idx in _groups(runs, events):
            on_ok = np.round(np.abs(runs.onset[sel, None] - events.onset[idx]) - onset_collar,
                             decimals=_DECIMALS) <= 0.0
            off_ok = np.round(np.abs(runs.offset[sel, None] - events.offset[idx]) - collars[idx],
                              decimals=_DECIMALS) <= 0.0
            r, k = np.nonzero(on_ok & off_ok)
            hr.append(sel[r]), he.append(idx[r, k])
        clip, rank, change = self._matched(runs, events, np.concatenate(hr), np.concatenate(he))
        return _Parts({"tps": [(clip, rank, change)], "fps": [(clip, rank, -change)]}, events.count > 0, ("fps",))

    def _matched(self, runs: _Runs, events: _Events, hit_run: np.ndarray, hit_event: np.ndarray) -> _Entries:
        """TP changes: the size of a maximum matching of the present runs and events (collar hits)."""
        ones = np.ones(len(hit_run))
        hitting = np.unique(hit_run)
        event, e_rank, present = _steps(*_span_entries(hit_event, runs.hi[hit_run], runs.lo[hit_run], ones))
        e_change = _changes(event, present > 0)  # an event gets / loses its first present hit
        streams = [  # per clip: present hit pairs, hitting runs, hit events
            _span_entries(runs.clip[hit_run], runs.hi[hit_run], runs.lo[hit_run], ones),
            _span_entries(runs.clip[hitting], runs.hi[hitting], runs.lo[hitting], np.ones(len(hitting))),
            (events.clip[event], e_rank, e_change),
        ]
        weights = np.zeros((sum(len(s[0]) for s in streams), 3))
        at = np.cumsum([0] + [len(s[0]) for s in streams])
        for k, s in enumerate(streams):
            weights[at[k] : at[k + 1], k] = s[2]
        clip, rank, state = _steps(np.concatenate([s[0] for s in streams]), np.concatenate([s[1] for s in streams]),
                                   weights)
        pairs, hit_runs, hit_events = state.T
        # Each present run hitting one event: stars around the events, one match per event hit; each
        # event hit by one run: one match per run. Otherwise match the present pairs one by one.
        matched = np.where(pairs == hit_runs, hit_events, np.where(pairs == hit_events, hit_runs, -1.0))
        for g in np.flatnonzero(matched < 0):
            present = (runs.clip[hit_run] == clip[g]) & (runs.hi[hit_run] >= rank[g]) & (runs.lo[hit_run] < rank[g])
            matched[g] = _max_matching(hit_run[present].tolist(), hit_event[present].tolist())
        change = _changes(clip, matched)
        keep = change != 0
        return clip[keep], rank[keep], change[keep]

    # -- shortcut clips: detections only

    def _extrema(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every clip's detection count changes, as sed_scores_eval's shortcut for a clip without an
        event of the class lists them: +1 at each local maximum, -1 at each local minimum (plateaus
        once), at the frame's score, in frame order.

        Returns:
            ([M] clip, [M] frame, [M] score rank, [M] change).
        """
        if name not in self._extrema_cache:
            c = self.scored.classes.index(name)
            width = self.t + 2
            block = self.flat[c * self.n * width : (c + 1) * self.n * width].reshape(self.n, width)
            s, prev, nxt = block[:, 1:-1], block[:, :-2], block[:, 2:]
            delta = (s > prev).astype(np.int8) - (nxt > s).astype(np.int8)
            delta[~np.isfinite(s)] = 0
            clip, frame = np.nonzero(delta)
            rank = self.rank.reshape(-1, width)[c * self.n + clip, frame + 1]
            self._extrema_cache[name] = (clip, frame, rank, delta[clip, frame].astype(np.float64))
        return self._extrema_cache[name]

    # -- output

    def _accumulate(self, name: str, parts: _Parts) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(scores, statistics) as `accumulate` of the deltas, with every score of the class."""
        unique = self.uniques[self.scored.classes.index(name)]
        detections = None
        stats = {}
        for key, entries in parts.entries.items():
            per_score = np.zeros(len(unique))
            for _, rank, change in entries:
                per_score += np.bincount(rank, weights=change, minlength=len(unique))
            if key in parts.with_detections:
                if detections is None:
                    _, _, rank, change = self._extrema(name)
                    detections = np.bincount(rank, weights=change, minlength=len(unique))
                per_score += detections
            stats[key] = np.concatenate([np.cumsum(per_score[::-1])[::-1], [0.0]])  # integers: exact
        return np.append(unique, np.inf), stats

    def _changes(self, name: str, parts: _Parts) -> ClassChanges:
        """The entries of every clip (computed or shortcut) as they are: `_collect` without netting."""
        e_clip, _, e_rank, e_change = self._extrema(name)
        values = {}
        for key, entries in parts.entries.items():
            pieces = [*entries, (e_clip, e_rank, e_change)] if key in parts.with_detections else list(entries)
            values[key] = [(np.asarray(c, np.int64), np.asarray(r, np.int64), np.asarray(v, np.float64))
                           for c, r, v in pieces]
        return ClassChanges(self.uniques[self.scored.classes.index(name)], values)

    def _collect(self, name: str, parts: _Parts) -> ClassDeltas:
        """Per-clip deltas in sed_scores_eval's order: the computed clips' non-zero changes per
        distinct score (ascending), the shortcut clips' detection changes in frame order."""
        unique = self.uniques[self.scored.classes.index(name)]
        e_clip, _, e_rank, e_change = self._extrema(name)
        inside, shortcut = parts.computed[e_clip], ~parts.computed[e_clip]
        keys = list(parts.entries)
        cells: list[np.ndarray] = [np.zeros(0, np.int64)]
        weights: list[np.ndarray] = [np.zeros(0)]
        for k, key in enumerate(keys):
            pieces = list(parts.entries[key])
            if key in parts.with_detections:
                pieces.append((e_clip[inside], e_rank[inside], e_change[inside]))
            for clip, rank, change in pieces:
                cells.append((clip * len(unique) + rank) * len(keys) + k)
                weights.append(change)
        cells = np.concatenate(cells)  # (clip, rank, statistic) in one integer
        cell, where = np.unique(cells // len(keys), return_inverse=True)  # by clip, then score
        table = np.bincount(where * len(keys) + cells % len(keys), weights=np.concatenate(weights),
                            minlength=len(cell) * len(keys)).reshape(len(cell), len(keys))
        nonzero = (table != 0).any(axis=1)
        cell, table = cell[nonzero], table[nonzero]
        clip = np.concatenate([cell // len(unique), e_clip[shortcut]])
        order = np.argsort(clip, kind="stable")
        scores = np.concatenate([unique[cell % len(unique)], unique[e_rank[shortcut]]])[order]
        values = {}
        for k, key in enumerate(keys):
            extra = e_change[shortcut] if key in parts.with_detections else np.zeros(int(shortcut.sum()))
            values[key] = np.concatenate([table[:, k], extra])[order]
        return ClassDeltas(clip[order], scores, values)


def _max_matching(left: list[int], right: list[int]) -> int:
    """Size of a maximum matching of the bipartite graph with edges (left[k], right[k]) (augmenting paths)."""
    graph: dict[int, list[int]] = {}
    for a, b in zip(left, right, strict=True):
        graph.setdefault(a, []).append(b)
    match: dict[int, int] = {}  # right vertex -> left vertex

    def augment(a: int, seen: set[int]) -> bool:
        for b in graph[a]:
            if b not in seen:
                seen.add(b)
                if b not in match or augment(match[b], seen):
                    match[b] = a
                    return True
        return False

    return sum(augment(a, set()) for a in graph)


# ---------------------------------------------------------------------------------------------
# From deltas to sed_scores_eval's metrics


def accumulate(deltas: ClassDeltas) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Statistics over all clips at every change-point score (sed_scores_eval's
    _intermediate_statistics_from_deltas).

    Returns:
        ([U + 1] ascending unique scores then +inf, statistic -> [U + 1] value when the threshold
        falls to each score; 0 at +inf).
    """
    unique, inverse = np.unique(deltas.scores, return_inverse=True)
    stats = {}
    for key, values in deltas.values.items():
        per_score = np.bincount(inverse, weights=values, minlength=len(unique))  # integers: exact
        stats[key] = np.concatenate([np.cumsum(per_score[::-1])[::-1], [0.0]])
    return np.append(unique, np.inf), stats


def reference_counts(scored: ScoredLike) -> tuple[dict[str, int], dict[str, float]]:
    """(class -> reference events, class -> their summed length in s), in sed_scores_eval's order."""
    counts = dict.fromkeys(scored.classes, 0)
    lengths = dict.fromkeys(scored.classes, 0.0)
    for events in scored.reference.values():
        for onset, offset, label in events:
            if label in counts:
                counts[label] += 1
                lengths[label] += offset - onset
    return counts, lengths


def stats_of(deltas: MetricDeltas) -> ClassStats:
    """`accumulate` of every class."""
    return {name: accumulate(d) for name, d in deltas.items()}


def class_roc(
    scored: ScoredLike, stats: ClassStats, name: str, alpha_ct: float, e_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """One class's PSD-ROC (sed_scores_eval's _single_class_roc_from_intermediate_statistics):
    (TPR, eFPR per hour), eFPR ascending up to e_max, TPR rising."""
    counts, lengths = reference_counts(scored)
    duration = sum(scored.durations.values())  # sed_scores_eval's dataset duration, same summation
    _, values = stats[name]
    tpr = values["tps"] / max(counts[name], 1)
    efpr = values["fps"] / duration
    if alpha_ct != 0.0:
        rates = [values[f"cts\\{o}"] / max(lengths[o], 1e-12) for o in scored.classes if o != name]
        efpr = efpr + alpha_ct * np.mean(rates, axis=0)
    return _unique_cummax(tpr, efpr * _SECONDS_PER_HOUR, e_max)


def _unique_cummax(tpr: np.ndarray, efpr: np.ndarray, e_max: float) -> tuple[np.ndarray, np.ndarray]:
    # sed_scores_eval sorts, keeps the rises of the running max, then cuts at e_max: the points past
    # e_max sort after all the others and cannot change their running max, so cut first (fewer to sort)
    inside = efpr <= e_max
    tpr, efpr = tpr[inside], efpr[inside]
    order = np.lexsort((tpr, efpr))  # by eFPR then TPR, stable: sed_scores_eval's Python sort
    tpr, efpr = tpr[order], efpr[order]
    running = np.maximum.accumulate(tpr)
    rises = np.concatenate([[0], np.flatnonzero(running[1:] > running[:-1]) + 1])
    tpr, efpr = tpr[rises], efpr[rises]
    efpr, last = np.unique(efpr[::-1], return_index=True)  # of equal eFPRs, the last
    tpr = tpr[-1 - last]
    cut = int(np.searchsorted(efpr, e_max, side="right"))  # drop eFPR > e_max
    return tpr[:cut], efpr[:cut]


def psd_roc(
    scored: ScoredLike, stats: ClassStats, alpha_ct: float, alpha_st: float, e_max: float
) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """sed_scores_eval.intersection_based.psd_roc from accumulated statistics.

    Returns:
        ((eTPR [G + 1], eFPR [G + 1] per hour, ending at e_max), class -> (TPR, eFPR) ROC).
    """
    rocs = {name: class_roc(scored, stats, name, alpha_ct, e_max) for name in scored.classes}
    grid = np.unique(np.sort(np.concatenate([efpr for _, efpr in rocs.values()])))
    tprs = []
    for tpr, efpr in rocs.values():  # 'previous' interpolation, 0 before the first point
        idx = np.searchsorted(efpr, grid, side="right") - 1
        tprs.append(np.where(idx >= 0, tpr[np.maximum(idx, 0)], 0.0))
    etpr = np.maximum(np.mean(tprs, axis=0) - alpha_st * np.std(tprs, axis=0), 0.0)
    return (np.append(etpr, etpr[-1]), np.append(grid, e_max)), rocs


def staircase_auc(y: np.ndarray, x: np.ndarray, x_max: float) -> float:
    """Area under the step curve up to x_max (sed_scores_eval's staircase_auc, same summation)."""
    order = np.argsort(x)
    x, y = x[order], y[order]
    cut = int(np.searchsorted(x, x_max, side="right"))
    x = np.append(x[:cut], x_max)
    areas = y[:cut] * (x[1:] - x[:-1])
    return float(sum(areas))  # builtin sum over numpy scalars: sed_scores_eval's sequential order


def psds(
    scored: ScoredLike, stats: ClassStats, alpha_ct: float, alpha_st: float, e_max: float
) -> tuple[float, dict[str, float], tuple[np.ndarray, np.ndarray]]:
    """(PSDS, class -> its ROC's normalised area, the PSD-ROC (eTPR, eFPR)), as sed_scores_eval."""
    (etpr, efpr), rocs = psd_roc(scored, stats, alpha_ct, alpha_st, e_max)
    per_class = {name: staircase_auc(tpr, x, e_max) / e_max for name, (tpr, x) in rocs.items()}
    return staircase_auc(etpr, efpr, e_max) / e_max, per_class, (etpr, efpr)


def fscore(scored: ScoredLike, stats: ClassStats, threshold: float) -> tuple[float, dict[str, float]]:
    """(macro F1, class -> F1) at a decision threshold, as sed_scores_eval's fscore: the statistics
    at the lowest change-point score above the threshold."""
    counts, _ = reference_counts(scored)
    f = {}
    for name in scored.classes:
        scores, values = stats[name]
        idx = int(np.searchsorted(scores, threshold, side="right"))
        tp, fp = values["tps"][idx], values["fps"][idx]
        p = 1.0 if tp + fp == 0 else tp / max(tp + fp, 1)
        r = tp / counts[name]
        f[name] = np.float64(2.0 * p * r / max(p + r, 1e-15))
    return float(np.mean([f[name] for name in f])), {name: float(v) for name, v in f.items()}


# ---------------------------------------------------------------------------------------------
# Conversions to and from sed_scores_eval's nested deltas


def nested(deltas: MetricDeltas, clip_ids: Sequence[str]) -> dict[str, dict[str, tuple[np.ndarray, dict]]]:
    """sed_scores_eval's format: clip id -> class -> (change-point scores, statistic -> deltas)."""
    out: dict[str, dict] = {clip_id: {} for clip_id in clip_ids}
    for name, d in deltas.items():
        bounds = np.searchsorted(d.clip, np.arange(len(clip_ids) + 1))
        for i, clip_id in enumerate(clip_ids):
            a, b = bounds[i], bounds[i + 1]
            out[clip_id][name] = (d.scores[a:b], {key: v[a:b] for key, v in d.values.items()})
    return out


def flat(deltas: Mapping, clip_ids: Sequence[str], classes: Sequence[str]) -> MetricDeltas:
    """The inverse of `nested` (deltas already flat are returned as they are)."""
    if all(isinstance(deltas.get(name), ClassDeltas) for name in classes):
        return dict(deltas)
    out = {}
    for name in classes:
        parts = [deltas[clip_id][name] for clip_id in clip_ids]
        clip = np.repeat(np.arange(len(clip_ids)), [len(cp) for cp, _ in parts])
        keys = list(parts[0][1])
        values = {key: np.concatenate([np.asarray(v[key], dtype=np.float64) for _, v in parts]) for key in keys}
        out[name] = ClassDeltas(clip, np.concatenate([np.asarray(cp, np.float64) for cp, _ in parts]), values)
    return out
