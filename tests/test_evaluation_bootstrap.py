"""Clip-level bootstrap: seeded, exact re-weighting (checked against direct recomputation)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import uniform_filter1d

from harness.errors import ConfigError
from harness.evaluation.bootstrap import (
    PSDS_METRICS,
    event_f1_interval,
    percentile_interval,
    psds_intervals,
    resample_counts,
    weighted_metric,
)
from harness.evaluation.metrics import event_based
from harness.evaluation.postprocess import to_events
from harness.evaluation.psds import (
    ENGINES,
    PSDS1,
    PSDS2,
    collar_f1,
    intersection_f1,
    metric_deltas,
    psds_metrics,
    psds_value,
    score_set,
)

CLASSES = ("A", "B", "C")


def _case(seed: int = 0, n: int = 12):
    """n clips x 3 classes x 100 frames of 0.1 s with smooth noisy scores."""
    rng = np.random.default_rng(seed)
    ids = [f"c{i}.wav" for i in range(n)]
    truth = np.zeros((n, 3, 100), bool)
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            on = rng.integers(0, 80)
            truth[i, rng.integers(3), on : on + rng.integers(5, 30)] = True
    truth[0, :, 10:40] = True  # every class present
    dur = np.where(np.arange(n) % 4 == 0, 9.05, 10.0)
    ref = to_events(truth, ids, 0.1, CLASSES, durations=dur)
    x = 0.6 * uniform_filter1d(truth.astype(float), 5, axis=2) + rng.uniform(0, 0.45, (n, 3, 1))
    x += uniform_filter1d(rng.normal(0, 0.2, (n, 3, 100)), 5, axis=2)
    return np.clip(x, 0, 1).astype(np.float32), ids, dur, ref


def test_resample_counts_are_seeded_draws_of_n_out_of_n():
    a = resample_counts(7, 50, np.random.default_rng(3))
    assert a.shape == (50, 7) and (a.sum(axis=1) == 7).all()
    np.testing.assert_array_equal(a, resample_counts(7, 50, np.random.default_rng(3)))
    assert not np.array_equal(a, resample_counts(7, 50, np.random.default_rng(4)))
    with pytest.raises(ConfigError):
        resample_counts(0, 5, np.random.default_rng(0))


def test_percentile_interval_by_hand():
    iv = percentile_interval(np.array([1.0, 2.0, 3.0, 4.0, 5.0, np.nan]), point=3.0, confidence=0.5)
    assert (iv.point, iv.low, iv.high, iv.n_resamples) == (3.0, 2.0, 4.0, 5)
    assert iv.std == pytest.approx(np.std([1, 2, 3, 4, 5], ddof=1))
    with pytest.raises(ConfigError):
        percentile_interval(np.ones(3), 1.0, confidence=1.0)


def test_weights_of_one_give_sed_scores_eval_values():
    frame, ids, dur, ref = _case()
    m = psds_metrics(frame, ids, dur, ref, hop_seconds=0.1, classes=CLASSES)
    scored = score_set(frame, ids, dur, ref, hop_seconds=0.1, classes=CLASSES)
    for engine in ENGINES:
        deltas = metric_deltas(scored, engine=engine)
        for name in PSDS_METRICS:
            value = weighted_metric(scored, deltas[name], name, np.ones((1, len(ids))))[0]
            assert value == pytest.approx(getattr(m, name), abs=1e-12), (engine, name)


def test_a_resample_equals_sed_scores_eval_on_the_resampled_clips():
    # Clip k drawn w[k] times = w[k] renamed copies of it, scored by sed_scores_eval itself.
    frame, ids, dur, ref = _case(1)
    scored = score_set(frame, ids, dur, ref, hop_seconds=0.1, classes=CLASSES)
    w = resample_counts(len(ids), 1, np.random.default_rng(11))[0]
    assert (w == 0).any() and (w > 1).any()
    copies = [(f"{clip_id}#{j}", k) for k, (clip_id, count) in enumerate(zip(ids, w, strict=True))
              for j in range(count)]
    rename = [pd.DataFrame(columns=ref.columns)] + [ref[ref["filename"] == ids[k]].assign(filename=new)
                                                    for new, k in copies]
    resampled = score_set(frame[[k for _, k in copies]], [new for new, _ in copies], dur[[k for _, k in copies]],
                          pd.concat(rename), hop_seconds=0.1, classes=CLASSES)
    direct = {
        "psds1": psds_value(resampled, PSDS1, engine="sed_scores_eval")[0],
        "psds2": psds_value(resampled, PSDS2, engine="sed_scores_eval")[0],
        "intersection_f1": intersection_f1(resampled, engine="sed_scores_eval")[0],
        "collar_f1": collar_f1(resampled, engine="sed_scores_eval")[0],
    }
    for engine in ENGINES:  # the deltas of either engine
        deltas = metric_deltas(scored, engine=engine)
        for name in PSDS_METRICS:
            value = weighted_metric(scored, deltas[name], name, w[None, :])[0]
            assert value == pytest.approx(direct[name], abs=1e-12), (engine, name)


def test_psds_intervals_are_seeded_and_bracket_the_point():
    frame, ids, dur, ref = _case(2, n=16)
    run = lambda seed: psds_intervals(frame, ids, dur, ref, rng=np.random.default_rng(seed), n_resamples=40,
                                      hop_seconds=0.1, classes=CLASSES)
    a, b = run(5), run(5)
    assert a == b and a != run(6)
    m = psds_metrics(frame, ids, dur, ref, hop_seconds=0.1, classes=CLASSES)
    for name in PSDS_METRICS:
        iv = a[name]
        assert iv.point == pytest.approx(getattr(m, name), abs=1e-12)
        assert iv.low <= iv.point <= iv.high and iv.low < iv.high and iv.n_resamples == 40
    with pytest.raises(ConfigError, match="unknown"):
        psds_intervals(frame, ids, dur, ref, rng=np.random.default_rng(0), metrics=["psds3"], hop_seconds=0.1,
                       classes=CLASSES)


def test_event_f1_interval_point_and_a_replicate_match_event_based():
    frame, ids, dur, ref = _case(3)
    est = to_events(frame > 0.5, ids, 0.1, CLASSES, durations=dur)
    iv = event_f1_interval(ref, est, ids, rng=np.random.default_rng(0), n_resamples=300, classes=CLASSES)
    assert iv.point == pytest.approx(event_based(ref, est, ids, classes=CLASSES).macro_f1, abs=1e-12)
    assert iv.low <= iv.point <= iv.high and iv.n_resamples == 300
    # the first replicate, recomputed from renamed copies of the drawn clips
    w = resample_counts(len(ids), 300, np.random.default_rng(0))[0]
    copies = [(f"{j}-{clip_id}", clip_id) for clip_id, k in zip(ids, w, strict=True) for j in range(k)]
    rename = lambda df: pd.concat([df[df["filename"] == old].assign(filename=new) for new, old in copies])
    first = event_based(rename(ref), rename(est), [new for new, _ in copies], classes=CLASSES).macro_f1
    reps = event_f1_interval(ref, est, ids, rng=np.random.default_rng(0), n_resamples=1, classes=CLASSES)
    assert reps.low == pytest.approx(first, abs=1e-12)


def test_single_class_psds2_interval_is_undefined():
    frame, ids, dur, ref = _case(4)
    ref = ref[ref["event_label"] == "A"]
    out = psds_intervals(frame[:, :1], ids, dur, ref, rng=np.random.default_rng(0), n_resamples=5,
                         hop_seconds=0.1, classes=("A",))
    assert math.isnan(out["psds2"].point) and out["psds2"].n_resamples == 0
    assert 0 <= out["psds1"].point <= 1
