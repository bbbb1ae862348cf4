"""harness.data.encoder: frames checked by hand, and round trips."""

from __future__ import annotations

import numpy as np
import pytest

from harness.constants import CLASSES
from harness.data.desed import Event
from harness.data.encoder import LabelEncoder
from harness.errors import DataError


def test_encode_strong_hand_checked_frames() -> None:
    enc = LabelEncoder()
    target = enc.encode_strong([Event(0.1, 0.25, "Dog"), Event(9.9, 12.0, "Cat"), Event(0.03, 0.05, "Dog")])
    assert target.shape == (10, 500) and target.dtype == np.float32
    dog, cat = CLASSES.index("Dog"), CLASSES.index("Cat")
    # 0.1 / 0.02 = 5, 0.25 / 0.02 = 12.5 -> 13 (half up); 0.03 -> 1.5 -> 2, 0.05 -> 2.5 -> 3.
    assert np.flatnonzero(target[dog]).tolist() == [2, *range(5, 13)]
    # 9.9 -> 495; 12 s is past the clip: clipped to frame 500.
    assert np.flatnonzero(target[cat]).tolist() == list(range(495, 500))
    assert target.sum() == 1 + 8 + 5


def test_seconds_frames_helpers() -> None:
    enc = LabelEncoder(n_frames=10, hop_seconds=0.1)
    assert enc.seconds_to_frame(0.05) == 1  # half up
    assert enc.seconds_to_frame(0.3) == 3  # 0.3 / 0.1 = 2.9999999999999996
    assert enc.seconds_to_frame(-1.0) == 0 and enc.seconds_to_frame(5.0) == 10
    assert enc.frame_to_seconds(7) == pytest.approx(0.7)


def test_encode_weak_and_unknown_labels() -> None:
    enc = LabelEncoder()
    weak = enc.encode_weak(["Speech", "Alarm_bell_ringing", "Speech"])
    assert weak.tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    with pytest.raises(DataError, match="unknown class 'Parrot'"):
        enc.encode_weak(["Parrot"])
    with pytest.raises(DataError, match="valid classes: Alarm_bell_ringing"):
        enc.encode_strong([Event(0, 1, "Parrot")])


def test_decode_hand_checked() -> None:
    enc = LabelEncoder(n_frames=6, hop_seconds=0.5, classes=("a", "b"))
    activity = np.array([[1, 1, 0, 0, 1, 1], [0, 1, 1, 1, 0, 0]], dtype=bool)
    assert enc.decode_strong(activity) == [Event(0.0, 1.0, "a"), Event(2.0, 3.0, "a"), Event(0.5, 2.0, "b")]
    assert enc.decode_strong(np.zeros((2, 6), dtype=bool)) == []
    with pytest.raises(DataError, match="expects a \\[2, T\\] matrix"):
        enc.decode_strong(np.zeros((3, 6)))


def test_decode_encode_round_trip_random_matrices() -> None:
    rng = np.random.default_rng(0)
    enc = LabelEncoder()
    for density in (0.05, 0.5, 0.95):
        activity = rng.random((10, 500)) < density
        back = enc.encode_strong(enc.decode_strong(activity))
        np.testing.assert_array_equal(back, activity.astype(np.float32))


def test_encode_decode_round_trip_grid_aligned_events() -> None:
    rng = np.random.default_rng(1)
    enc = LabelEncoder()
    for _ in range(50):
        events = []
        for label in CLASSES:
            # Distinct sorted boundaries: runs of one class that neither overlap nor touch.
            edges = np.sort(rng.choice(np.arange(0, 501), size=2 * int(rng.integers(0, 4)), replace=False))
            for a, b in zip(edges[::2], edges[1::2]):
                events.append(Event(float(a * 0.02), float(b * 0.02), label))
        decoded = enc.decode_strong(enc.encode_strong(events))
        key = lambda e: (e.label, e.onset)  # noqa: E731
        assert sorted(decoded, key=key) == sorted(events, key=key)

