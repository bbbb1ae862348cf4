"""Post-processing: windows, gating, median filter, runs -> events; and the prediction files."""

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import median_filter

from harness.config import PostprocessConfig
from harness.constants import CLASSES, DESED_MEAN_SECONDS, DESED_MEDIAN_SECONDS
from harness.errors import DataError
from harness.evaluation.outputs import read_dcase_tsv, read_probabilities, write_dcase_tsv, write_probabilities
from harness.evaluation.postprocess import (
    binarize_and_filter,
    event_length_frames,
    gate,
    median_windows,
    postprocess,
    real_frames,
    to_events,
)


def _strong(durations: dict[str, list[float]]) -> pd.DataFrame:
    rows = [("c.wav", 1.0, 1.0 + d, name) for name, ds in durations.items() for d in ds]
    return pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"])


def test_event_length_frames_median_and_mean_by_hand():
    classes = ("A", "B")
    events = _strong({"A": [0.2, 0.4, 1.0], "B": [2.0, 3.0]})
    events.loc[len(events)] = ["empty.wav", np.nan, np.nan, np.nan]  # DESED empty-clip row: ignored
    np.testing.assert_allclose(event_length_frames(events, "median", 0.02, classes), [20.0, 125.0])
    np.testing.assert_allclose(event_length_frames(events, "mean", 0.02, classes), [80 / 3 * 1.0, 125.0])


def test_event_length_frames_missing_class_is_a_data_error():
    with pytest.raises(DataError, match="B"):
        event_length_frames(_strong({"A": [0.5]}), "median", 0.02, ("A", "B"))


def test_median_windows_desed_by_hand():
    median = np.array([DESED_MEDIAN_SECONDS[c] / 0.02 for c in CLASSES])
    mean = np.array([DESED_MEAN_SECONDS[c] / 0.02 for c in CLASSES])
    # Alarm: 0.38 s = 19 frames -> 19/3 = 6.33 -> 6 ; mean 1.07 s = 53.5 frames -> 17.83 -> 17
    # Dishes: 0.37 s = 18.5 frames -> 6.17 -> 6 ; Vacuum 5.30 s = 265 frames -> 88.3 -> 88
    assert median_windows(median)[0] == 6
    assert median_windows(mean)[0] == 17
    assert median_windows(median)[CLASSES.index("Dishes")] == 6
    assert median_windows(median)[CLASSES.index("Vacuum_cleaner")] == 88
    # exact multiples are not lost to float noise (18 * (1/3) = 5.999...), tiny lengths give 1
    np.testing.assert_array_equal(median_windows(np.array([18.0, 0.5, 2.9, 3.0])), [6, 1, 1, 1])


def test_gate_zeroes_classes_below_clip_threshold():
    frames = np.full((2, 2, 3), 0.9)
    clip = np.array([[0.5, 0.49], [0.1, 0.8]])
    gated = gate(frames, clip, 0.5)
    np.testing.assert_array_equal(gated[:, :, 0], [[0.9, 0.0], [0.0, 0.9]])
    assert gated.shape == frames.shape


def test_binarize_and_filter_hand_made():
    probs = np.array([[0.2, 0.6, 0.7, 0.1, 0.8, 0.9, 0.51, 0.5, 0.3, 0.6]])[:, None, :].repeat(2, axis=1)
    out = binarize_and_filter(probs, np.array([1, 3]), threshold=0.5)
    # window 1: plain threshold (0.5 itself is not active)
    np.testing.assert_array_equal(out[0, 0], [0, 1, 1, 0, 1, 1, 1, 0, 0, 1])
    # window 3: the single-frame hole at 3 is filled, the lone frame 9 kept by the "nearest" edge
    np.testing.assert_array_equal(out[0, 1], [0, 1, 1, 1, 1, 1, 1, 0, 0, 1])


def test_binarize_and_filter_equals_scipy_median_filter_nearest():
    rng = np.random.default_rng(0)
    windows = np.array([1, 2, 3, 4, 6, 7, 27, 88, 120, 500])  # even, odd, longer than the clip
    for p_active in (0.2, 0.5, 0.8):
        probs = (rng.random((6, len(windows), 100)) < p_active) * 0.9
        out = binarize_and_filter(probs, windows)
        for c, w in enumerate(windows):
            expected = median_filter((probs[:, c] > 0.5).astype(np.uint8), size=(1, w), mode="nearest")
            np.testing.assert_array_equal(out[:, c], expected.astype(bool), err_msg=f"window {w}")


def test_to_events_runs_touching_both_edges():
    binary = np.zeros((2, 2, 10), dtype=bool)
    binary[0, 0, 0:3] = True  # starts at frame 0
    binary[0, 0, 5:6] = True  # one frame
    binary[0, 1, 7:10] = True  # ends at frame T
    binary[1, 1, :] = True  # the whole clip
    events = to_events(binary, ["x.wav", "y.wav"], 0.02, ("A", "B"))
    expected = pd.DataFrame(
        [
            ("x.wav", 0.0, 0.06, "A"),
            ("x.wav", 0.10, 0.12, "A"),
            ("x.wav", 0.14, 0.20, "B"),
            ("y.wav", 0.0, 0.20, "B"),
        ],
        columns=["filename", "onset", "offset", "event_label"],
    )
    pd.testing.assert_frame_equal(events, expected)


def test_to_events_empty():
    events = to_events(np.zeros((1, 2, 5), dtype=bool), ["x.wav"], 0.02, ("A", "B"))
    assert list(events.columns) == ["filename", "onset", "offset", "event_label"] and len(events) == 0


def test_postprocess_composes_gate_threshold_filter():
    frames = np.zeros((1, 2, 10))
    frames[0, 0, 2:7] = 0.9
    frames[0, 0, 4] = 0.2  # hole filled by the window of 3
    frames[0, 1, 2:6] = 0.9  # gated away
    clip = np.array([[0.7, 0.3]])
    events = postprocess(frames, clip, ["x.wav"], np.array([3, 3]), PostprocessConfig(), classes=("A", "B"))
    assert events.values.tolist() == [["x.wav", pytest.approx(0.04), pytest.approx(0.14), "A"]]


def test_dcase_tsv_round_trip_sorted(tmp_path):
    events = pd.DataFrame(
        [("b.wav", 1.23456, 2.0, "Dog"), ("a.wav", 3.0, 4.0, "Cat"), ("a.wav", 0.5, 1.0, "Dog")],
        columns=["filename", "onset", "offset", "event_label"],
    )
    path = tmp_path / "sub" / "pred.tsv"
    write_dcase_tsv(events, path)
    lines = path.read_text().splitlines()
    assert lines[0] == "filename\tonset\toffset\tevent_label"
    assert lines[1:] == ["a.wav\t0.500\t1.000\tDog", "a.wav\t3.000\t4.000\tCat", "b.wav\t1.235\t2.000\tDog"]
    back = read_dcase_tsv(path)
    assert back["onset"].tolist() == [0.5, 3.0, 1.235]
    assert [p.name for p in path.parent.iterdir()] == ["pred.tsv"]  # no temporary left behind


def test_read_dcase_tsv_wrong_columns_names_the_file(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("filename\tstart\tend\tlabel\nx.wav\t0\t1\tDog\n")
    with pytest.raises(DataError, match="bad.tsv"):
        read_dcase_tsv(path)


def test_probabilities_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    frame, clip = rng.random((3, 10, 5)).astype(np.float32), rng.random((3, 10))
    path = tmp_path / "p.npz"
    write_probabilities(path, ["a", "b", "c"], frame, clip)
    probs = read_probabilities(path)
    assert probs.clip_ids == ("a", "b", "c") and probs.classes == CLASSES
    np.testing.assert_array_equal(probs.frame, frame)
    np.testing.assert_array_equal(probs.clip, clip)
    with pytest.raises(DataError, match="2 clips"):
        write_probabilities(path, ["a", "b"], frame, clip)


def test_real_frames_by_hand():
    # 9.1 / 0.02 is 454.99999999999994 in floats: still 455 frames; a hair over 10 s is not 501.
    np.testing.assert_array_equal(real_frames([9.1, 10.0, 10.0000001, 12.0, 0.001, 9.105], 500),
                                  [455, 500, 500, 500, 1, 456])
    with pytest.raises(DataError, match="clip #1"):
        real_frames([10.0, 0.0], 500)


def test_to_events_end_at_the_clips_duration():
    binary = np.zeros((2, 1, 500), dtype=bool)
    binary[0, 0, 400:] = True  # from 8.0 s into the padding of a 9.1 s clip
    binary[1, 0, 490:] = True  # to the end of a full clip
    events = to_events(binary, ["short.wav", "full.wav"], classes=("A",), durations=[9.1, 10.0])
    assert events[["filename", "onset", "offset"]].values.tolist() == [["short.wav", 8.0, 9.1], ["full.wav", 9.8, 10.0]]
    assert to_events(binary, ["short.wav", "full.wav"], classes=("A",))["offset"].max() == 10.0  # no durations
    padding_only = np.zeros((1, 1, 500), dtype=bool)
    padding_only[0, 0, 470:480] = True
    assert to_events(padding_only, ["short.wav"], classes=("A",), durations=[9.1]).empty


def test_postprocess_with_durations_equals_the_clip_cut_to_its_real_frames():
    # Padding frames (model output on padded features) must neither become events nor shift the
    # median filter at the clip's real end: the result is that of the clip's 455 real frames alone.
    rng = np.random.default_rng(0)
    frame = rng.uniform(0, 1, (3, len(CLASSES), 500))
    clip = np.ones((3, len(CLASSES)))
    frame[0, :, 455:] = 1.0 - frame[0, :, 455:]  # garbage padding of the 9.1 s clip
    windows = np.full(len(CLASSES), 7)
    cfg, ids = PostprocessConfig(), ["short.wav", "full.wav", "other.wav"]
    events = postprocess(frame, clip, ids, windows, cfg, durations=[9.1, 10.0, 10.0])
    assert events["offset"].max() <= 10.0
    short = events[events["filename"] == "short.wav"].reset_index(drop=True)
    assert short["offset"].max() <= 9.1
    alone = postprocess(frame[:1, :, :455], clip[:1], ids[:1], windows, cfg)
    alone["offset"] = np.minimum(alone["offset"], 9.1)  # 455 * 0.02 = 9.1 up to float noise
    pd.testing.assert_frame_equal(short, alone)
    rest = events[events["filename"] != "short.wav"].reset_index(drop=True)
    pd.testing.assert_frame_equal(rest, postprocess(frame[1:], clip[1:], ids[1:], windows, cfg))
    with pytest.raises(DataError, match="one duration per clip"):
        postprocess(frame, clip, ids, windows, cfg, durations=[9.1])


def test_probabilities_round_trip_with_durations(tmp_path):
    frame, clip = np.zeros((2, len(CLASSES), 5), np.float32), np.zeros((2, len(CLASSES)), np.float32)
    write_probabilities(tmp_path / "p.npz", ["a", "b"], frame, clip, durations=[9.1, 10.0])
    np.testing.assert_array_equal(read_probabilities(tmp_path / "p.npz").durations, [9.1, 10.0])
    write_probabilities(tmp_path / "q.npz", ["a", "b"], frame, clip)
    assert read_probabilities(tmp_path / "q.npz").durations is None
    with pytest.raises(DataError, match="durations for 2 clips"):
        write_probabilities(tmp_path / "r.npz", ["a", "b"], frame, clip, durations=[9.1])
