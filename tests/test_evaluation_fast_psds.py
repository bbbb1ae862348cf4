"""The fast PSDS engine (harness.evaluation.fast_psds) against sed_scores_eval itself, number for number.

Every case compares, on the same ScoredSet: the per-clip deltas of the four metrics with
sed_scores_eval's intermediate_statistics_deltas (same change points, same deltas, same order), then
PSDS1 / PSDS2 (overall and per class), the PSD-ROC, intersection F1 and collar F1 (macro and per
class) with sed_scores_eval's psds / psd_roc / fscore called directly, and the bootstrap intervals of
both engines with one seed.
"""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import uniform_filter1d
from sed_scores_eval import collar_based, intersection_based

from harness.errors import ConfigError, DataError
from harness.evaluation import fast_psds
from harness.evaluation.bootstrap import psds_intervals
from harness.evaluation.postprocess import to_events
from harness.evaluation.psds import (
    COLLAR_RATE,
    COLLAR_SECONDS,
    F1_THRESHOLD,
    INTERSECTION_F1_DTC,
    PSDS1,
    PSDS2,
    collar_f1,
    intersection_f1,
    metric_deltas,
    psd_roc,
    psds_metrics,
    psds_value,
    score_set,
    score_tables,
)

COLUMNS = ["filename", "onset", "offset", "event_label"]
CLASSES = ("A", "B", "C")


def _smooth(rng: np.random.Generator, truth: np.ndarray, smooth: int = 5, noise: float = 0.2) -> np.ndarray:
    """Noisy, smoothed scores around a [N, C, T] truth, float32 in [0, 1]."""
    x = 0.6 * uniform_filter1d(truth.astype(float), smooth, axis=2) + rng.uniform(0, 0.4, truth.shape[:2] + (1,))
    x += uniform_filter1d(rng.normal(0, noise, truth.shape), smooth, axis=2)
    return np.clip(x, 0, 1).astype(np.float32)


def _random_case(seed: int, n: int = 10, t: int = 100, hop: float = 0.1, max_len: int = 30):
    """n clips x 3 classes x t frames; 0-3 events per clip (some clips empty), short and long."""
    rng = np.random.default_rng(seed)
    ids = [f"c{i}.wav" for i in range(n)]
    truth = np.zeros((n, len(CLASSES), t), bool)
    for i in range(1, n):
        for _ in range(rng.integers(0, 4)):
            on = rng.integers(0, t - 2)
            truth[i, rng.integers(len(CLASSES)), on : on + rng.integers(1, max_len)] = True
    truth[0, :, 10:40] = True  # every class present
    dur = np.where(np.arange(n) % 3 == 0, (t - 7.5) * hop, t * hop)  # some clips shorter than T frames
    ref = to_events(truth, ids, hop, CLASSES, durations=dur)
    return _smooth(rng, truth), ids, dur, ref, hop


def _assert_same(frame, ids, dur, ref, hop, classes=CLASSES, median_windows=None, drop_empty_clips=False):
    """Fast engine == sed_scores_eval on every statistic and metric of one case."""
    scored = score_set(frame, ids, dur, ref, hop_seconds=hop, classes=classes, median_windows=median_windows,
                       drop_empty_clips=drop_empty_clips)
    _assert_same_deltas(scored)
    for params in (PSDS1, PSDS2):
        if params.alpha_ct and len(scored.classes) < 2:
            continue
        value, per_class, (etpr, efpr), _ = intersection_based.psds(
            scores=scored.scores, ground_truth=scored.reference, audio_durations=scored.durations,
            dtc_threshold=params.dtc, gtc_threshold=params.gtc, cttc_threshold=params.cttc, alpha_ct=params.alpha_ct,
            alpha_st=params.alpha_st, unit_of_time="hour", max_efpr=params.e_max)
        ours, ours_class = psds_value(scored, params)
        assert ours == float(value)
        assert all(ours_class[k] == float(per_class[k]) for k in scored.classes)
        curve = psd_roc(scored, params)
        np.testing.assert_array_equal(curve[0], etpr)
        np.testing.assert_array_equal(curve[1], efpr)
    f, *_ = intersection_based.fscore(scores=scored.scores, ground_truth=scored.reference, threshold=F1_THRESHOLD,
                                      dtc_threshold=INTERSECTION_F1_DTC, gtc_threshold=INTERSECTION_F1_DTC)
    _assert_same_f1(intersection_f1(scored), f, scored.classes)
    f, *_ = collar_based.fscore(scores=scored.scores, ground_truth=scored.reference, threshold=F1_THRESHOLD,
                                onset_collar=COLLAR_SECONDS, offset_collar=COLLAR_SECONDS,
                                offset_collar_rate=COLLAR_RATE)
    _assert_same_f1(collar_f1(scored), f, scored.classes)
    return scored


def _assert_same_f1(ours, theirs, classes):
    macro, per_class = ours
    assert macro == float(theirs["macro_average"])
    assert all(per_class[k] == float(theirs[k]) for k in classes)


def _assert_same_deltas(scored):
    """fast_psds' per-clip deltas are sed_scores_eval's, change point by change point."""
    names = ["psds1", "intersection_f1", "collar_f1"] + (["psds2"] if len(scored.classes) > 1 else [])
    fast = metric_deltas(scored, names)  # sed_scores_eval fails on cross-triggers with a single class
    reference = metric_deltas(scored, names, engine="sed_scores_eval")
    for name in fast:
        nested = fast_psds.nested(fast[name], scored.clip_ids)
        for clip_id in scored.clip_ids:
            for cls in scored.classes:
                (cp, ours), (cp_ref, theirs) = nested[clip_id][cls], reference[name][clip_id][cls]
                np.testing.assert_array_equal(cp, cp_ref, err_msg=f"{name} {clip_id} {cls}")
                assert set(ours) == set(theirs), (name, clip_id, cls)
                for key in theirs:
                    np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"{name} {clip_id} {cls} {key}")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_cases_equal_sed_scores_eval(seed):
    _assert_same(*_random_case(seed))


def test_short_events_and_flickering_scores_equal_sed_scores_eval(monkeypatch):
    # Short events close together and noisy scores: runs hitting two events within the collars and
    # events hit by two runs (the matching fallback), events of one frame or less.
    calls = []
    original = fast_psds._max_matching
    monkeypatch.setattr(fast_psds, "_max_matching", lambda a, b: calls.append(1) or original(a, b))
    rng = np.random.default_rng(7)
    n, t, hop = 12, 120, 0.05
    ids = [f"s{i}.wav" for i in range(n)]
    rows = []
    for i in range(n):
        at = float(rng.uniform(0, 0.5))
        while at < t * hop - 0.5:
            length = float(rng.choice([0.03, 0.05, 0.1, 0.15, 0.4]))
            rows.append((ids[i], round(at, 3), round(at + length, 3), CLASSES[rng.integers(3)]))
            at += length + float(rng.choice([0.04, 0.1, 0.3, 1.0]))
    ref = pd.DataFrame(rows, columns=COLUMNS)
    truth = np.zeros((n, 3, t), bool)
    for clip, on, off, label in rows:
        truth[ids.index(clip), CLASSES.index(label), int(on / hop) : int(np.ceil(off / hop))] = True
    frame = _smooth(rng, truth, smooth=1, noise=0.25)
    _assert_same(frame, ids, np.full(n, t * hop), ref, hop)
    assert calls  # the one-by-one matching was exercised


def test_hand_case_where_a_run_hits_two_events_and_an_event_two_runs():
    # Class A: events [1.0, 1.1] and [1.15, 1.25]; at threshold 0.8 the detections [1.0, 1.2] (hits
    # both) and [1.3, 1.4] (hits the second): 3 hit pairs, a maximum matching of 2.
    hop = 0.05
    frame = np.full((1, 1, 60), 0.05, np.float32)
    frame[0, 0, 20:24] = 0.9
    frame[0, 0, 26:28] = 0.8
    ref = pd.DataFrame([("x.wav", 1.0, 1.1, "A"), ("x.wav", 1.15, 1.25, "A")], columns=COLUMNS)
    scored = _assert_same(frame, ["x.wav"], [3.0], ref, hop, classes=("A",))
    assert collar_f1(scored)[0] == 1.0


def test_ties_plateaus_and_constant_scores_equal_sed_scores_eval():
    frame, ids, dur, ref, hop = _random_case(5)
    frame = np.round(frame * 5) / 5  # few distinct scores: long plateaus, ties across clips
    frame[2] = 0.4  # a clip of constant scores
    frame[3, 1] = 0.0
    _assert_same(frame.astype(np.float32), ids, dur, ref, hop)


def test_touching_merged_and_many_events_per_clip_equal_sed_scores_eval(monkeypatch):
    # Touching and overlapping reference events (merged), events at the clip's edges, and 9 events of
    # one class in a clip (np.sum over >= 8 values is pairwise: the cross-trigger sum must follow it).
    calls = []
    original = fast_psds.Context._overlap_sum
    monkeypatch.setattr(fast_psds.Context, "_overlap_sum", lambda *a: calls.append(1) or original(*a))
    rng = np.random.default_rng(11)
    n, t, hop = 6, 200, 0.04
    ids = [f"m{i}.wav" for i in range(n)]
    rows = [("m0.wav", 0.0, 0.5, "A"), ("m0.wav", 0.5, 1.2, "A"), ("m0.wav", 1.0, 1.6, "A"),
            ("m0.wav", 7.5, 8.0, "B"), ("m1.wav", 2.0, 4.0, "C")]
    rows += [("m2.wav", 0.3 + 0.8 * k, 0.3 + 0.8 * k + 0.37, "B") for k in range(9)]
    rows += [("m2.wav", 0.0, 8.0, "C"), ("m3.wav", 1.0, 1.04, "A"), ("m4.wav", 0.0, 8.0, "A")]
    ref = pd.DataFrame(rows, columns=COLUMNS)
    truth = np.zeros((n, 3, t), bool)
    for clip, on, off, label in rows:
        truth[ids.index(clip), CLASSES.index(label), int(on / hop) : int(np.ceil(off / hop))] = True
    truth[2, 0] = uniform_filter1d(rng.normal(size=t), 9) > 0  # class A fires in bursts over them
    _assert_same(_smooth(rng, truth, smooth=3), ids, np.full(n, t * hop), ref, hop)
    assert calls


def test_class_without_events_median_windows_and_dropped_clips_equal_sed_scores_eval():
    frame, ids, dur, ref, hop = _random_case(9)
    ref = ref[ref["event_label"] != "C"]  # class C: no reference event, left out (NaN)
    for windows, drop in ((np.array([3, 1, 7]), False), (np.array([5, 9, 2]), True)):
        scored = _assert_same(frame, ids, dur, ref, hop, median_windows=windows, drop_empty_clips=drop)
        assert scored.classes == ("A", "B")
    m = psds_metrics(frame, ids, dur, ref, hop_seconds=0.1, classes=CLASSES, median_windows=np.array([3, 1, 7]))
    assert math.isnan(m.psds1_per_class["C"]) and not math.isnan(m.psds1)


def test_single_class_equals_sed_scores_eval_and_psds2_is_undefined():
    frame, ids, dur, ref, hop = _random_case(4)
    ref = ref[ref["event_label"] == "B"]
    scored = _assert_same(frame[:, 1:2], ids, dur, ref, hop, classes=("B",))
    assert math.isnan(psds_value(scored, PSDS2)[0]) and psd_roc(scored, PSDS2) is None


def test_both_engines_give_the_same_metrics_and_bootstrap_intervals():
    frame, ids, dur, ref, hop = _random_case(6, n=14)
    kw = dict(hop_seconds=hop, classes=CLASSES, median_windows=np.array([1, 3, 5]))
    assert psds_metrics(frame, ids, dur, ref, **kw) == psds_metrics(frame, ids, dur, ref, engine="sed_scores_eval", **kw)
    fast = psds_intervals(frame, ids, dur, ref, rng=np.random.default_rng(3), n_resamples=30, **kw)
    reference = psds_intervals(frame, ids, dur, ref, rng=np.random.default_rng(3), n_resamples=30,
                               engine="sed_scores_eval", **kw)
    assert fast == reference


def test_score_tables_of_a_scored_set_are_the_direct_ones():
    frame, ids, dur, ref, hop = _random_case(8)
    windows = np.array([3, 4, 1])
    scored = score_set(frame, ids, dur, ref, hop_seconds=hop, classes=CLASSES, median_windows=windows)
    direct = score_tables(frame, ids, dur, hop_seconds=hop, classes=CLASSES, median_windows=windows)
    for clip_id in ids:
        pd.testing.assert_frame_equal(scored.scores[clip_id], direct[clip_id])
    # the per-clip median filter of the original implementation
    from scipy.ndimage import median_filter

    k = int(scored.n_frames[3])
    expected = median_filter(frame[3, 1, :k].astype(np.float32), size=4, mode="nearest")
    np.testing.assert_array_equal(scored.scores[ids[3]]["B"].to_numpy(), expected)


def test_non_finite_scores_take_the_sed_scores_eval_path_and_bad_engines_fail():
    frame, ids, dur, ref, hop = _random_case(2)
    frame[1, 0, 5] = np.nan
    scored = score_set(frame, ids, dur, ref, hop_seconds=hop, classes=CLASSES)
    assert not scored.finite
    with pytest.raises(DataError, match="non-finite"):
        fast_psds.Context(scored)
    assert psds_value(scored, PSDS1) == psds_value(scored, PSDS1, engine="sed_scores_eval")
    with pytest.raises(ConfigError, match="engine"):
        psds_value(scored, PSDS1, engine="numba")


def test_flat_and_nested_deltas_round_trip():
    frame, ids, dur, ref, hop = _random_case(1)
    scored = score_set(frame, ids, dur, ref, hop_seconds=hop, classes=CLASSES)
    deltas = metric_deltas(scored, ["psds2"])["psds2"]
    back = fast_psds.flat(fast_psds.nested(deltas, scored.clip_ids), scored.clip_ids, scored.classes)
    for cls in scored.classes:
        np.testing.assert_array_equal(back[cls].clip, deltas[cls].clip)
        np.testing.assert_array_equal(back[cls].scores, deltas[cls].scores)
        for key, values in deltas[cls].values.items():
            np.testing.assert_array_equal(back[cls].values[key], values)


def _netted(clip: np.ndarray, score: np.ndarray, change: np.ndarray) -> np.ndarray:
    """[K, 3] (clip, score, net change) of the non-zero nets per clip and score, sorted."""
    cells, where = np.unique(np.stack([clip.astype(float), score]), axis=1, return_inverse=True)
    net = np.bincount(where.reshape(-1), weights=change, minlength=cells.shape[1])
    return np.column_stack([cells.T, net])[net != 0]


@pytest.mark.parametrize("seed", [0, 3])
def test_changes_netted_per_clip_and_score_are_the_deltas(seed):
    # the clip bootstrap's input (Context.*_changes): the deltas' entries before netting
    frame, ids, dur, ref, hop = _random_case(seed)
    scored = score_set(frame, ids, dur, ref, hop_seconds=hop, classes=CLASSES)
    changes = {
        "psds1": scored.fast.intersection_changes(PSDS1.dtc, PSDS1.gtc, PSDS1.cttc),
        "psds2": scored.fast.intersection_changes(PSDS2.dtc, PSDS2.gtc, PSDS2.cttc),
        "collar_f1": scored.fast.collar_changes(COLLAR_SECONDS, COLLAR_SECONDS, COLLAR_RATE),
    }
    deltas = metric_deltas(scored, list(changes))
    for name, by_class in changes.items():
        for cls, c in by_class.items():
            d = deltas[name][cls]
            assert set(c.values) == set(d.values), (name, cls)
            for key, pieces in c.values.items():
                empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
                clip, rank, change = (np.concatenate([p[i] for p in [empty, *pieces]]) for i in range(3))
                ours = _netted(clip, c.thresholds[rank], change)
                theirs = _netted(d.clip, d.scores, d.values[key])
                np.testing.assert_array_equal(ours, theirs, err_msg=f"{name} {cls} {key}")
