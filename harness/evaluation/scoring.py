"""A model's outputs on one evaluation subset scored as the paper scores them: post-processing, then the
event- and segment-based F1 (SPEC 2, Metric). Torch-free: the driver scores a teacher's saved predictions,
rescore scores saved probabilities, and a job its own, all through `score`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.bundle import Bundle
from harness.config import MethodConfig
from harness.evaluation.metrics import EventScores, SegmentScores, event_based, segment_based
from harness.evaluation.postprocess import median_windows, postprocess


@dataclass
class Evaluation:
    """Scores and outputs of a model on one evaluation subset."""

    events: EventScores
    segments: SegmentScores
    predictions: pd.DataFrame  # post-processed events (filename, onset, offset, event_label)
    frame: np.ndarray  # [N, C, T] raw frame probabilities (before gating)
    clip: np.ndarray  # [N, C] clip probabilities



def score(frame: np.ndarray, clip: np.ndarray, bundle: Bundle, subset: str, config: MethodConfig) -> Evaluation:
    """Post-process probabilities and score them against the subset's reference (SPEC 2 Metric)."""
    ids = bundle.clip_ids(subset)
    windows = median_windows(bundle.event_frames[config.postprocess.window_statistic],
                             config.postprocess.window_fraction)
    # The bundle's frame hop, from the config it was built with: events at the right seconds at any hop.
    events = postprocess(frame, clip, ids, windows, config.postprocess, config.student.gate_threshold,
                         hop_seconds=bundle.hop_seconds, classes=bundle.classes, durations=bundle.durations(subset))
    reference = bundle.reference(subset)
    ev = event_based(reference, events, ids, config.eval.t_collar, config.eval.percentage_of_length,
                     config.eval.evaluator, classes=bundle.classes)
    seg = segment_based(reference, events, ids, config.eval.segment_seconds, config.eval.evaluator,
                        classes=bundle.classes)
    return Evaluation(events=ev, segments=seg, predictions=events, frame=frame, clip=clip)
