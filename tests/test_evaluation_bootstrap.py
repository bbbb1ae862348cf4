"""Clip-level bootstrap: seeded, exact re-weighting (checked against direct recomputation)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import uniform_filter1d

from harness.errors import ConfigError
from harness.evaluation import bootstrap
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


def _realistic(seed: int, n: int = 16, n_classes: int = 10, t: int = 250, hop: float = 0.04):
    """n clips x n_classes x t frames: 0-4 reference events per clip (some clips empty), lengths
    lognormal around 0.5-5 s; scores of a fair model: jittered boundaries, misses, holes, false
    alarms, frame noise; a few clips shorter than t frames."""
    rng = np.random.default_rng(seed)
    classes = tuple(f"k{c}" for c in range(n_classes))
    ids = [f"r{i}.wav" for i in range(n)]
    dur = np.where(np.arange(n) % 5 == 4, (t - 11.5) * hop, t * hop)
    rows, target = [], np.zeros((n, n_classes, t))
    for i in range(n):
        for _ in range(0 if rng.random() < 0.15 else int(rng.integers(1, 5))):
            c = int(rng.integers(n_classes))
            length = min(dur[i], (0.5 + 4.5 * c / max(n_classes - 1, 1)) * float(rng.lognormal(0.0, 0.6)))
            onset = float(rng.uniform(0, dur[i] - length))
            rows.append((ids[i], round(onset, 3), round(onset + length, 3), classes[c]))
            if rng.random() < 0.15:  # missed
                continue
            a, b = np.clip((np.array([onset, onset + length]) + rng.normal(0, 0.1, 2)) / hop, 0, t).astype(int)
            target[i, c, a : max(b, a + 1)] = 1.0
            if b - a > 20 and rng.random() < 0.3:  # a hole
                hole = int(rng.integers(a + 5, b - 5))
                target[i, c, hole : hole + int(rng.integers(2, 8))] = 0.0
    for _ in range(n // 2):  # false alarms
        a = int(rng.integers(0, t - 10))
        target[rng.integers(n), rng.integers(n_classes), a : a + int(rng.integers(3, 60))] = 1.0
    frame = 0.75 * uniform_filter1d(target, 3, axis=2) + 0.1 + rng.normal(0.0, 0.12, target.shape)
    ref = pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"])
    return np.clip(frame, 0, 1).astype(np.float32), ids, dur, ref, hop, classes


def _weights(n: int, seed: int) -> np.ndarray:
    """Bootstrap counts, the all-ones row, and rows drawing one clip only (n times: on such a row a
    class ROC often has a single eFPR, 0, where the PSDS takes the reference's own steps)."""
    one_clip = n * np.eye(n)[:: max(n // 6, 1)]
    draws = resample_counts(n, 37, np.random.default_rng(seed))
    return np.concatenate([draws, np.ones((1, n)), one_clip]).astype(float)


@pytest.mark.parametrize(("seed", "n_classes"), [(0, 10), (1, 10), (2, 3), (3, 1), (4, 10)])
def test_reweighting_equals_the_reference_bit_for_bit(seed, n_classes):
    # the re-weighting (weights @ per-clip statistics at the thresholds that can be on an ROC) against
    # the previous implementation (prefix sums over every change point, one ROC at a time), from the
    # fast engine's changes and from either engine's deltas
    frame, ids, dur, ref, hop, classes = _realistic(seed, n_classes=n_classes)
    scored = score_set(frame, ids, dur, ref, hop_seconds=hop, classes=classes)
    weights = _weights(len(ids), seed)
    metrics = [name for name in PSDS_METRICS if name != "psds2" or len(scored.classes) > 1]
    fast = bootstrap._metric_statistics(scored, metrics, "fast")
    for engine in ENGINES:
        deltas = metric_deltas(scored, metrics, engine=engine)
        for name in metrics:
            expected = bootstrap._reference_weighted_metric(scored, deltas[name], name, weights)
            assert np.array_equal(weighted_metric(scored, deltas[name], name, weights), expected, equal_nan=True), name
            if engine == "fast":
                got = bootstrap._weighted(scored, fast[name], name, [weights[:5], weights[5:]])
                assert np.array_equal(np.concatenate(got), expected, equal_nan=True), name


def test_single_efpr_rows_are_exercised():
    # a row drawing one clip only: every class ROC has eFPR 0 only (the clip's FPs alone exceed
    # e_max), the case where numpy sums the classes pairwise, which the new code leaves to the reference
    frame, ids, dur, ref, hop, classes = _realistic(0)
    scored = score_set(frame, ids, dur, ref, hop_seconds=hop, classes=classes)
    weights = _weights(len(ids), 0)[-3:]
    stats = bootstrap._ReferenceStats.collect(scored, metric_deltas(scored, ["psds1"])["psds1"])
    rocs = [bootstrap._reference_class_rocs(stats, name, scored.classes, PSDS1, weights) for name in scored.classes]
    assert any(len(np.unique(np.concatenate([roc[b][1] for roc in rocs]))) == 1 for b in range(len(weights)))


@pytest.mark.parametrize("seed", [5, 6])
def test_psds_intervals_equal_the_reference_intervals(seed):
    frame, ids, dur, ref, hop, classes = _realistic(seed, n=24, n_classes=4)
    scored = score_set(frame, ids, dur, ref, hop_seconds=hop, classes=classes)
    weights = resample_counts(len(ids), 50, np.random.default_rng(seed))
    expected = bootstrap._reference_intervals(scored, metric_deltas(scored), weights)
    for engine in ENGINES:
        got = psds_intervals(frame, ids, dur, ref, rng=np.random.default_rng(seed), n_resamples=50, hop_seconds=hop,
                             classes=classes, engine=engine)
        assert got == expected, engine


def test_weights_must_be_non_negative():
    frame, ids, dur, ref = _case()
    scored = score_set(frame, ids, dur, ref, hop_seconds=0.1, classes=CLASSES)
    deltas = metric_deltas(scored, ["psds1"])["psds1"]
    with pytest.raises(ConfigError, match="non-negative"):
        weighted_metric(scored, deltas, "psds1", -np.ones((1, len(ids))))


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
    fast = bootstrap._metric_statistics(scored, PSDS_METRICS, "fast")  # the fast engine's changes (psds_intervals)
    for name in PSDS_METRICS:
        value = bootstrap._weighted(scored, fast[name], name, [w[None, :].astype(float)])[0][0]
        assert value == pytest.approx(direct[name], abs=1e-12), name


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
