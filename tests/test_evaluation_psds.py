"""PSDS and the sed_scores_eval F-scores: hand cases, psds_eval, sed_eval, durations, pandas 3."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import uniform_filter1d

from harness.errors import DataError
from harness.evaluation.metrics import event_based
from harness.evaluation.postprocess import to_events
from harness.evaluation.psds import (
    PSDS1,
    PSDS2,
    PsdsParams,
    metric_versions,
    psds_metrics,
    psds_value,
    reference_lists,
    score_set,
    score_tables,
)

COLUMNS = ["filename", "onset", "offset", "event_label"]


def _events(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def _two_class_case():
    """Two 180 s clips, 1 s frames (0.1 h in all). Class A: its event c0 [2, 4) scored 0.9, and a
    false alarm c1 [10, 12) scored 0.95 above it; class B: its event c1 [50, 60) scored 0.8, alone."""
    frame = np.zeros((2, 2, 180))
    frame[0, 0, 2:4] = 0.9
    frame[1, 0, 10:12] = 0.95
    frame[1, 1, 50:60] = 0.8
    reference = _events([("c0.wav", 2.0, 4.0, "A"), ("c1.wav", 50.0, 60.0, "B")])
    return frame, ["c0.wav", "c1.wav"], np.array([180.0, 180.0]), reference


def test_two_class_hand_case_psds_and_f1():
    # A's ROC: TPR 0 until its false alarm (1 FP / 0.1 h = 10 per hour), then 1 -> area 90 of 100.
    # B's ROC: TPR 1 from eFPR 0 -> area 1. Over [0, 10): mean 0.5 - std 0.5 = 0; then 1 -> 0.9.
    frame, ids, dur, ref = _two_class_case()
    m = psds_metrics(frame, ids, dur, ref, hop_seconds=1.0, classes=("A", "B"))
    assert m.psds1 == pytest.approx(0.9, abs=1e-12)
    assert m.psds1_per_class == pytest.approx({"A": 0.9, "B": 1.0}, abs=1e-12)
    # At 0.5 A has 1 TP and 1 FP (F = 2/3), B is perfect: both F-scores are 5/6.
    assert m.intersection_f1 == pytest.approx(5 / 6)
    assert m.collar_f1 == pytest.approx(5 / 6)
    assert m.collar_f1_per_class == pytest.approx({"A": 2 / 3, "B": 1.0})
    assert (m.n_clips, m.hours, m.classes_evaluated, m.score_filter) == (2, pytest.approx(0.1), ("A", "B"), "none")
    # Without the stability penalty the [0, 10) stretch counts at mean TPR 0.5: (0.5 * 10 + 90) / 100.
    no_st = PsdsParams(dtc=0.7, gtc=0.7, cttc=None, alpha_ct=0.0, alpha_st=0.0, e_max=100.0)
    assert psds_value(score_set(frame, ids, dur, ref, hop_seconds=1.0, classes=("A", "B")), no_st)[0] == pytest.approx(0.95)


def test_perfect_detection_scores_one_and_false_alarms_only_score_zero():
    frame, ids, dur, ref = _two_class_case()
    perfect = np.zeros_like(frame)
    perfect[0, 0, 2:4] = perfect[1, 1, 50:60] = 1.0
    m = psds_metrics(perfect, ids, dur, ref, hop_seconds=1.0, classes=("A", "B"))
    assert (m.psds1, m.psds2, m.intersection_f1, m.collar_f1) == (1.0, 1.0, 1.0, 1.0)
    wrong = np.zeros_like(frame)
    wrong[1, 0, 100:110] = wrong[0, 1, 100:110] = 1.0  # each class fires only where it is absent
    m = psds_metrics(wrong, ids, dur, ref, hop_seconds=1.0, classes=("A", "B"))
    assert (m.psds1, m.psds2, m.intersection_f1, m.collar_f1) == (0.0, 0.0, 0.0, 0.0)


def test_intersection_and_collar_f1_differ_on_a_late_offset():
    # Reference [2, 4]; detection [2, 4.5]: 80 % of it lies in the reference and covers all of it
    # (intersection TP), but its offset misses by 0.5 s > max(0.2, 20 % of 2 s) (collar miss).
    frame = np.zeros((1, 1, 20))
    frame[0, 0, 4:9] = 0.9  # 0.5 s frames 4..8 = [2.0, 4.5)
    ref = _events([("c.wav", 2.0, 4.0, "A")])
    m = psds_metrics(frame, ["c.wav"], [10.0], ref, hop_seconds=0.5, classes=("A",))
    assert (m.intersection_f1, m.collar_f1) == (1.0, 0.0)
    assert m.psds1 == 1.0 and math.isnan(m.psds2)  # one class: no cross-trigger rate, PSDS2 undefined


def test_scores_end_at_each_clips_real_duration():
    # A 9.1 s clip has 455 frames of 20 ms, the last ending at 9.1 s; padding frames are dropped,
    # so the high scores in its padding cannot become false alarms.
    frame = np.zeros((2, 1, 500), dtype=np.float32)
    frame[:, 0, 100:200] = 1.0
    frame[0, 0, 455:] = 1.0  # padding of the 9.1 s clip
    tables = score_tables(frame, ["short.wav", "full.wav"], [9.1, 10.0], classes=("A",))
    assert len(tables["short.wav"]) == 455 and tables["short.wav"]["offset"].iloc[-1] == 9.1
    assert len(tables["full.wav"]) == 500 and tables["full.wav"]["offset"].iloc[-1] == 10.0
    ref = _events([("short.wav", 2.0, 4.0, "A"), ("full.wav", 2.0, 4.0, "A")])
    m = psds_metrics(frame, ["short.wav", "full.wav"], [9.1, 10.0], ref, classes=("A",))
    assert (m.psds1, m.collar_f1) == (1.0, 1.0)
    assert m.hours == pytest.approx(19.1 / 3600)


def test_pandas3_read_only_score_columns_are_scored():
    # Under pandas 3 DataFrame.to_numpy() is a read-only view, which sed_scores_eval 0.0.4's Cython
    # code refused for float64 columns ("buffer source array is read-only"). The score columns are
    # float32, so sed_scores_eval makes a writable float64 copy; the view itself stays read-only.
    frame, ids, dur, ref = _two_class_case()
    tables = score_tables(frame, ids, dur, hop_seconds=1.0, classes=("A", "B"))
    view = tables["c0.wav"][["A", "B"]].to_numpy()
    assert view.dtype == np.float32
    if int(pd.__version__.split(".")[0]) >= 3:
        assert not view.flags.writeable
    assert psds_metrics(frame, ids, dur, ref, hop_seconds=1.0, classes=("A", "B")).psds1 == pytest.approx(0.9)


def test_reference_lists_merge_overlaps_and_keep_empty_clips():
    ref = _events([
        ("a.wav", 1.0, 2.0, "A"), ("a.wav", 1.5, 3.0, "A"), ("a.wav", 3.0, 4.0, "A"),  # overlap, touch
        ("a.wav", 1.0, 2.0, "B"), ("empty.wav", np.nan, np.nan, np.nan), ("other.wav", 0.0, 1.0, "A"),
    ])
    lists = reference_lists(ref, ["a.wav", "empty.wav", "silent.wav"], ("A", "B"))
    assert lists == {"a.wav": [(1.0, 2.0, "B"), (1.0, 4.0, "A")], "empty.wav": [], "silent.wav": []}
    with pytest.raises(DataError, match="not in the class list"):
        reference_lists(_events([("a.wav", 1.0, 2.0, "Z")]), ["a.wav"], ("A",))


def test_classes_without_reference_events_are_nan_and_empty_clips_can_be_dropped():
    frame, ids, dur, ref = _two_class_case()
    frame = np.concatenate([frame, np.zeros((2, 1, 180))], axis=1)  # a third class, never present
    frame = np.concatenate([frame, np.zeros((1, 3, 180))], axis=0)  # and a clip without events
    ids, dur = ids + ["silent.wav"], np.append(dur, 180.0)
    m = psds_metrics(frame, ids, dur, ref, hop_seconds=1.0, classes=("A", "B", "C"))
    assert m.classes_evaluated == ("A", "B") and math.isnan(m.psds1_per_class["C"])
    assert m.n_clips == 3 and m.psds1 == pytest.approx(1 - (1 / 0.15) / 100)  # A's false alarm: 1 per 0.15 h
    dropped = psds_metrics(frame, ids, dur, ref, hop_seconds=1.0, classes=("A", "B", "C"), drop_empty_clips=True)
    assert dropped.n_clips == 2 and dropped.psds1 == pytest.approx(0.9)
    with pytest.raises(DataError, match="no reference event"):
        psds_metrics(frame, ids, dur, ref.iloc[:0], hop_seconds=1.0, classes=("A", "B", "C"))


def test_median_filter_on_scores_removes_a_one_frame_spike():
    frame, ids, dur, ref = _two_class_case()
    frame[0, 1, 30] = 0.99  # a one-frame false alarm of B above its true event's score
    raw = psds_metrics(frame, ids, dur, ref, hop_seconds=1.0, classes=("A", "B"))
    filtered = psds_metrics(frame, ids, dur, ref, hop_seconds=1.0, classes=("A", "B"), median_windows=np.array([1, 3]))
    assert raw.psds1_per_class["B"] == pytest.approx(0.9)
    assert filtered.psds1_per_class["B"] == 1.0 and filtered.score_filter == "median"


def test_metric_versions_name_every_package():
    versions = metric_versions()
    assert set(versions) == {"sed_scores_eval", "sed_eval", "psds_eval"}
    assert versions["sed_scores_eval"]  # installed: a runtime dependency


# ---------------------------------------------------------------------------------------------
# Cross-checks against the other implementations on the same scores


def _smooth_case(seed: int):
    """16 clips x 3 classes x 100 frames of 0.1 s, smooth scores quantised to 0.05 (21 thresholds)."""
    rng = np.random.default_rng(seed)
    classes, ids = ("A", "B", "C"), [f"c{i}.wav" for i in range(16)]
    truth = np.zeros((16, 3, 100), bool)
    for i in range(16):
        for _ in range(rng.integers(1, 4)):
            on = rng.integers(0, 80)
            truth[i, rng.integers(3), on : on + rng.integers(5, 30)] = True
    dur = np.where(np.arange(16) % 3 == 0, 8.75, 10.0)
    ref = to_events(truth, ids, 0.1, classes, durations=dur)
    x = 0.6 * uniform_filter1d(truth.astype(float), 5, axis=2) + rng.uniform(0, 0.5, (16, 3, 1))
    x += uniform_filter1d(rng.normal(0, 0.15, (16, 3, 100)), 5, axis=2)
    return (np.round(np.clip(x, 0, 1) * 20) / 20).astype(np.float32), ids, dur, ref, classes


@pytest.fixture
def psds_eval_on_numpy2_pandas3(monkeypatch):
    """psds_eval 0.5.3 (its last release, 2021) with two test-local shims for today's libraries.

    Its last two steps use APIs that pandas 3 and numpy 2 removed: DataFrame.fillna(method="ffill")
    and int() of a one-element 2-d array (np.argwhere). The shims restore exactly those two.
    """
    psds_module = pytest.importorskip("psds_eval.psds")
    fillna = pd.DataFrame.fillna

    def fillna_with_method(self, value=None, *, method=None, **kwargs):
        return self.ffill(**kwargs) if method == "ffill" else fillna(self, value=value, **kwargs)

    class NumpyWithScalarArgwhere:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def argwhere(a):
            found = np.argwhere(a)
            return found.ravel()[0] if len(found) == 1 else found

    monkeypatch.setattr(pd.DataFrame, "fillna", fillna_with_method)
    monkeypatch.setattr(psds_module, "np", NumpyWithScalarArgwhere())
    return psds_module.PSDSEval


@pytest.mark.parametrize("seed", [0, 2])
def test_psds_equals_psds_eval_with_every_threshold(seed, psds_eval_on_numpy2_pandas3):
    # psds_eval samples the ROC at the thresholds it is given; at every distinct score it sees all
    # operating points. sed_scores_eval's curve is their upper envelope (cummax), so it is >= psds_eval
    # in general; here (monotone ROCs) the two agree to float precision.
    frame, ids, dur, ref, classes = _smooth_case(seed)
    m = psds_metrics(frame, ids, dur, ref, hop_seconds=0.1, classes=classes)
    meta = pd.DataFrame({"filename": ids, "duration": dur})
    for params, ours in ((PSDS1, m.psds1), (PSDS2, m.psds2)):
        ev = psds_eval_on_numpy2_pandas3(
            dtc_threshold=params.dtc, gtc_threshold=params.gtc,
            cttc_threshold=1.0 if params.cttc is None else params.cttc,
            ground_truth=ref, metadata=meta, duration_unit="hour",
        )
        for u in np.unique(frame):  # detections where the score >= u: the operating point just below u
            ev.add_operating_point(to_events(frame >= u, ids, 0.1, classes, durations=dur))
        theirs = ev.psds(alpha_ct=params.alpha_ct, alpha_st=params.alpha_st, max_efpr=params.e_max).value
        assert 0 < ours < 1 and ours == pytest.approx(theirs, abs=1e-9)


def test_intersection_f1_equals_psds_eval(psds_eval_on_numpy2_pandas3):
    frame, ids, dur, ref, classes = _smooth_case(0)
    m = psds_metrics(frame, ids, dur, ref, hop_seconds=0.1, classes=classes)
    ev = psds_eval_on_numpy2_pandas3(dtc_threshold=0.5, gtc_threshold=0.5, ground_truth=ref,
                                     metadata=pd.DataFrame({"filename": ids, "duration": dur}))
    macro, per_class = ev.compute_macro_f_score(to_events(frame > 0.5, ids, 0.1, classes, durations=dur))
    assert m.intersection_f1 == pytest.approx(macro, abs=1e-12)
    assert m.intersection_f1_per_class == pytest.approx({k: float(v) for k, v in per_class.items()}, abs=1e-12)


def test_collar_f1_equals_sed_eval_event_f1_on_the_same_detections():
    # The same rules as the paper's event F1 (harness metrics = sed_eval). References are shifted
    # by 13 ms off the 0.1 s grid: at an exact collar boundary sed_scores_eval rounds times to 6
    # decimals while sed_eval compares raw floats, so grid-aligned ties may be counted differently.
    frame, ids, dur, ref, classes = _smooth_case(1)
    ref = ref.assign(onset=ref["onset"] + 0.013, offset=np.minimum(ref["offset"] + 0.013, 8.75))
    m = psds_metrics(frame, ids, dur, ref, hop_seconds=0.1, classes=classes)
    sed_eval_like = event_based(ref, to_events(frame > 0.5, ids, 0.1, classes, durations=dur), ids, classes=classes)
    assert m.collar_f1 == pytest.approx(sed_eval_like.macro_f1, abs=1e-12)
    assert m.collar_f1_per_class == pytest.approx(sed_eval_like.per_class_f1, abs=1e-12)
