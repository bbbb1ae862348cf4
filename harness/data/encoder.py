"""The one conversion between events in seconds and the 20 ms frame grid of the models.

Frame i covers [i * hop, (i + 1) * hop). An event [onset, offset) covers frames
round(onset / hop) .. round(offset / hop) (exclusive), clipped to [0, T]; rounding is half up,
so that 0.01 s lands on frame 1 whatever the floating-point error of the division.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from harness.constants import CLASSES, FRAME_HOP_SECONDS, N_FRAMES
from harness.data.desed import Event
from harness.errors import DataError

# Tolerance (in frames) of the half-up rounding: 0.03 / 0.02 = 1.4999999999999998 must round to 2.
_ROUND_TOL = 1e-6


def frames_needed(seconds: float, hop_seconds: float) -> int:
    """The frames of `hop_seconds` that cover `seconds`: features.n_frames for clips of that length (float noise
    such as 10 / 0.02 = 500.00000000000006 kept from adding a frame)."""
    return max(1, math.ceil(seconds / hop_seconds - _ROUND_TOL))


@dataclass(frozen=True)
class LabelEncoder:
    """Encodes events and clip labels as [C, T] / [C] targets and decodes binary activity to events.

    Attributes:
        n_frames: T, frames per clip (500 for 10 s at 20 ms).
        hop_seconds: frame hop in seconds.
        classes: the class order of the C rows.
    """

    n_frames: int = N_FRAMES
    hop_seconds: float = FRAME_HOP_SECONDS
    classes: tuple[str, ...] = CLASSES

    def __post_init__(self) -> None:
        if self.n_frames <= 0 or self.hop_seconds <= 0:
            raise DataError(
                f"LabelEncoder needs n_frames > 0 and hop_seconds > 0, got {self.n_frames}, {self.hop_seconds}"
            )

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def class_index(self, label: str) -> int:
        """Row of a class; unknown names raise DataError listing the valid ones."""
        try:
            return self.classes.index(label)
        except ValueError:
            raise DataError(f"unknown class {label!r}; valid classes: {', '.join(self.classes)}") from None

    def seconds_to_frame(self, seconds: float) -> int:
        """Nearest frame boundary of a time (half up), clipped to [0, T]."""
        frame = math.floor(seconds / self.hop_seconds + 0.5 + _ROUND_TOL)
        return min(max(frame, 0), self.n_frames)

    def frame_to_seconds(self, frame: int | np.ndarray) -> float | np.ndarray:
        """Start time in seconds of frame(s) `frame` (frame T is the clip's end)."""
        return frame * self.hop_seconds

    def encode_strong(self, events: Iterable[Event]) -> np.ndarray:
        """Frame targets of a clip's events.

        Returns:
            [C, T] float32, 1 where an event of the class covers the frame.
        """
        target = np.zeros((self.n_classes, self.n_frames), dtype=np.float32)
        for ev in events:
            row = self.class_index(ev.label)
            target[row, self.seconds_to_frame(ev.onset) : self.seconds_to_frame(ev.offset)] = 1.0
        return target

    def encode_weak(self, labels: Iterable[str]) -> np.ndarray:
        """Clip targets: [C] float32, 1 for each class in `labels`."""
        target = np.zeros(self.n_classes, dtype=np.float32)
        for label in labels:
            target[self.class_index(label)] = 1.0
        return target

    def decode_strong(self, activity: np.ndarray) -> list[Event]:
        """Events of a binary activity matrix: each contiguous active run [a, b) -> Event(a*hop, b*hop).

        Args:
            activity: [C, T] boolean (or 0/1) frame activity.

        Returns:
            Events ordered by class row, then onset.
        """
        activity = np.asarray(activity)
        if activity.ndim != 2 or activity.shape[0] != self.n_classes:
            raise DataError(f"decode_strong expects a [{self.n_classes}, T] matrix, got shape {activity.shape}")
        active = activity.astype(bool)
        # Pad with inactive frames so every run has a rising and a falling edge.
        edges = np.diff(np.pad(active, ((0, 0), (1, 1))).astype(np.int8), axis=1)
        events = []
        for row in range(self.n_classes):
            starts = np.flatnonzero(edges[row] == 1)
            ends = np.flatnonzero(edges[row] == -1)
            label = self.classes[row]
            events.extend(
                Event(float(a * self.hop_seconds), float(b * self.hop_seconds), label) for a, b in zip(starts, ends)
            )
        return events
