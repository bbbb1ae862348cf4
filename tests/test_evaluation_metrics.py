"""Event- and segment-based F1: hand-built cases and a randomised comparison with sed_eval itself."""

import math

import numpy as np
import pandas as pd
import pytest

from harness.errors import ConfigError, DataError
from harness.evaluation.metrics import event_based, event_counts_per_clip, macro_f1_from_counts, segment_based

COLS = ["filename", "onset", "offset", "event_label"]
CL = ("A", "B", "C")


def _df(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLS)


def _both(fn, ref, est, ids, **kw):
    fast = fn(ref, est, ids, evaluator="fast", classes=CL, **kw)
    ref_scores = fn(ref, est, ids, evaluator="sed_eval", classes=CL, **kw)
    return fast, ref_scores


def _same(x: float, y: float, tol: float = 1e-12) -> bool:
    return (math.isnan(x) and math.isnan(y)) or abs(x - y) < tol


def _assert_agree(fast, reference, tol: float = 1e-12) -> None:
    assert fast.counts == reference.counts
    assert _same(fast.macro_f1, reference.macro_f1, tol), (fast.macro_f1, reference.macro_f1)
    for c in CL:
        assert _same(fast.per_class_f1[c], reference.per_class_f1[c], tol), c
        assert _same(fast.per_class_precision[c], reference.per_class_precision[c], tol), c
        assert _same(fast.per_class_recall[c], reference.per_class_recall[c], tol), c


def test_perfect_prediction_scores_one():
    ref = _df([("x", 0.5, 1.5, "A"), ("x", 2.0, 6.0, "B"), ("y", 0.0, 10.0, "A")])
    fast, sed = _both(event_based, ref, ref, ["x", "y", "empty"])
    _assert_agree(fast, sed)
    assert fast.macro_f1 == 1.0 and fast.per_class_f1["A"] == 1.0
    assert math.isnan(fast.per_class_f1["C"])  # absent from the reference: NaN, left out of the mean


def test_zero_score_one_class_perfect_others_missed():
    ref = _df([("x", 0.5, 1.5, "A"), ("x", 2.0, 6.0, "B"), ("y", 1.0, 2.0, "C")])
    est = _df([("x", 0.5, 1.5, "A")])
    fast, sed = _both(event_based, ref, est, ["x", "y"])
    _assert_agree(fast, sed)
    # B and C are never predicted: zero_score gives them 0 instead of NaN -> macro 1/3, not 1
    assert fast.per_class_f1 == {"A": 1.0, "B": 0.0, "C": 0.0}
    assert fast.macro_f1 == pytest.approx(1 / 3, abs=1e-15)


def test_prediction_of_a_class_absent_from_reference_is_nan_but_counts_false_alarms_in_empty_clips():
    ref = _df([("x", 0.5, 1.5, "A"), ("empty", np.nan, np.nan, np.nan)])  # DESED empty-clip row
    est = _df([("x", 0.5, 1.5, "A"), ("empty", 3.0, 4.0, "A"), ("x", 1.0, 2.0, "B"), ("other", 0.5, 1.5, "A")])
    fast, sed = _both(event_based, ref, est, ["x", "empty"])  # "other" is not evaluated
    _assert_agree(fast, sed)
    assert fast.counts["A"] == (1, 2, 1)
    assert fast.per_class_f1["A"] == pytest.approx(2 / 3)
    assert math.isnan(fast.per_class_f1["B"]) and fast.macro_f1 == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("est_onset", "est_offset", "hit"),
    [
        (1.2, 2.0, True),  # onset exactly at the 0.2 s collar
        (0.8, 1.8, True),  # both at the collar, other side (1.0 - 0.8 = 0.19999999999999996)
        (1.0, 2.2, False),  # no rounding, as in sed_eval: 2.2 - 2.0 = 0.20000000000000018 > 0.2
        (1.21, 2.0, False),
        (1.0, 2.21, False),  # 1 s event: offset collar is max(0.2, 0.2 * 1) = 0.2
    ],
)
def test_collar_boundaries(est_onset, est_offset, hit):
    ref = _df([("x", 1.0, 2.0, "A")])
    est = _df([("x", est_onset, est_offset, "A")])
    fast, sed = _both(event_based, ref, est, ["x"])
    _assert_agree(fast, sed)
    assert fast.per_class_f1["A"] == (1.0 if hit else 0.0)


@pytest.mark.parametrize(("est_offset", "hit"), [(5.9, True), (4.05, True), (6.1, False), (3.9, False)])
def test_percentage_of_length_for_long_events(est_offset, hit):
    ref = _df([("x", 0.0, 5.0, "A")])  # offset collar max(0.2, 0.2 * 5 s) = 1 s
    est = _df([("x", 0.1, est_offset, "A")])
    fast, sed = _both(event_based, ref, est, ["x"])
    _assert_agree(fast, sed)
    assert fast.counts["A"][2] == int(hit)


def test_optimal_matching_beats_greedy():
    # est 0 fits both references, est 1 only the first: a greedy pass (ref 0 takes est 0) finds
    # one hit, the maximum matching (ref 0 - est 1, ref 1 - est 0) finds two.
    ref = _df([("x", 0.0, 1.0, "A"), ("x", 0.3, 1.3, "A")])
    est = _df([("x", 0.15, 1.15, "A"), ("x", 0.0, 1.0, "A")])
    fast, sed = _both(event_based, ref, est, ["x"])
    _assert_agree(fast, sed)
    assert fast.counts["A"] == (2, 2, 2) and fast.macro_f1 == 1.0


def test_segment_based_by_hand():
    ref = _df([("x", 0.5, 2.5, "A"), ("x", 0.2, 0.4, "B")])  # A in segments 0, 1, 2
    est = _df([("x", 2.1, 3.0, "A")])  # A in segment 2 only
    fast, sed = _both(segment_based, ref, est, ["x"])
    _assert_agree(fast, sed)
    assert fast.counts["A"] == (3, 1, 1)
    assert fast.per_class_f1["A"] == pytest.approx(0.5)
    # sed_eval's SegmentBasedMetrics has no zero_score: never-predicted B is NaN, not 0
    assert math.isnan(fast.per_class_f1["B"]) and fast.macro_f1 == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        (_df([("x", 0.0, 1.0, "Z")]), "Z"),
        (_df([("x", -0.1, 1.0, "A")]), "onset"),
        (_df([("x", 2.0, 1.0, "A")]), "onset"),
        (pd.DataFrame({"filename": ["x"], "onset": [0.0], "offset": [1.0]}), "event_label"),
    ],
)
def test_bad_input_is_a_data_error(ref, match):
    with pytest.raises(DataError, match=match):
        event_based(ref, _df([]), ["x"], classes=CL)


def test_duplicate_clip_ids_rejected():
    with pytest.raises(DataError, match="unique"):
        segment_based(_df([]), _df([]), ["x", "x"], classes=CL)


# ---------------------------------------------------------------------------------------------
# Randomised agreement with sed_eval


def _random_case(rng: np.random.Generator, n_files: int) -> tuple[list[str], pd.DataFrame, pd.DataFrame]:
    """Random reference and estimate: grid and off-grid times, near-collar jitter, overlaps,
    empty files, and files with many events of one class (where optimal matching matters)."""
    ids = [f"f{i}.wav" for i in range(n_files)]
    refs, ests = [], []
    for fid in ids:
        for c in CL:
            kind = rng.integers(0, 6)
            n_ref = (0, 1, 1, 2, 5, 0)[kind]
            n_est = (0, 1, 2, 3, 6, 2)[kind]
            mine = []
            for _ in range(n_ref):
                on = rng.uniform(0, 9)
                on = round(on / 0.02) * 0.02 if rng.random() < 0.5 else on
                off = on + (rng.uniform(0.05, 0.5) if rng.random() < 0.5 else rng.uniform(0.5, 5))
                mine.append((fid, on, off, c))
            for _ in range(n_est):
                if mine and rng.random() < 0.7:  # a jittered copy of a reference event
                    _, on, off, _ = mine[rng.integers(len(mine))]
                    sign = rng.choice([-1, 1])
                    on2 = max(0.0, on + sign * rng.choice([0.0, 0.02, 0.1, 0.19999, 0.2, 0.20001]))
                    shift = rng.choice([0.0, 0.05, 0.2, 0.3, 0.2 * (off - on), 0.2 * (off - on) + 1e-9])
                    off2 = max(on2, off + rng.choice([-1, 1]) * shift)
                else:  # a false alarm
                    on2 = rng.uniform(0, 9)
                    off2 = on2 + rng.uniform(0, 2)
                if rng.random() < 0.5:
                    on2 = round(on2 / 0.02) * 0.02
                    off2 = max(on2, round(off2 / 0.02) * 0.02)
                ests.append((fid, on2, off2, c))
            refs.extend(mine)
    return ids, _df(refs), _df(ests)


def test_fast_equals_sed_eval_on_random_cases():
    rng = np.random.default_rng(20261124)
    situations = 0
    for _ in range(50):
        ids, ref, est = _random_case(rng, n_files=20)
        situations += len(ids) * len(CL)
        for fn in (event_based, segment_based):
            fast, sed = _both(fn, ref, est, ids)
            _assert_agree(fast, sed, tol=1e-9)
    assert situations >= 2000


def test_unknown_evaluator_is_a_config_error():
    with pytest.raises(ConfigError, match="evaluator"):
        event_based(_df([]), _df([]), ["x"], evaluator="fastest", classes=CL)


def test_per_clip_counts_add_up_to_event_based():
    # The bootstrap re-weights these: their sum must be event_based's counts, and the vectorised
    # macro F of a sum must be event_based's macro F (NaN classes included).
    rng = np.random.default_rng(7)
    for _ in range(20):
        ids, ref, est = _random_case(rng, n_files=8)
        per_clip = event_counts_per_clip(ref, est, ids, classes=CL)
        scores = event_based(ref, est, ids, classes=CL)
        assert per_clip.shape == (8, 3, 3)
        assert [tuple(row) for row in per_clip.sum(axis=0).tolist()] == [scores.counts[c] for c in CL]
        assert _same(float(macro_f1_from_counts(per_clip.sum(axis=0))), scores.macro_f1)
    assert math.isnan(float(macro_f1_from_counts(np.zeros((3, 3)))))  # no reference, no output
