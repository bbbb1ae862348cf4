"""Benchmark: post-processing + event-based F1 on a DESED-validation-sized set, fast vs sed_eval.

Run from the repository root: /work/venv/bin/python -m benchmarks.bench_eval

1,168 clips of 500 frames. The reference events are drawn around the DESED median durations;
the predicted frame probabilities are a noisy version of the reference activity with jittered
boundaries, split events (holes), missed events and false alarms, so that the post-processing and
the matching see plausible inputs. Timing is best of `repeats`.
"""

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from harness.config import PostprocessConfig
from harness.constants import CLASSES, DESED_MEDIAN_SECONDS, FRAME_HOP_SECONDS, N_FRAMES
from harness.evaluation.metrics import event_based
from harness.evaluation.postprocess import median_windows, postprocess

N_VALIDATION_CLIPS = 1168


def make_reference(
    rng: np.random.Generator, n_clips: int, clip_seconds: float = N_FRAMES * FRAME_HOP_SECONDS
) -> tuple[list[str], pd.DataFrame]:
    """Random strong labels: 0..4 events per clip (10% of clips empty), lengths lognormal around
    the DESED medians, inside the clip (10 s by default)."""
    ids = [f"clip_{i:05d}.wav" for i in range(n_clips)]
    rows = []
    for clip in ids:
        n_events = 0 if rng.random() < 0.1 else int(rng.integers(1, 5))
        for _ in range(n_events):
            label = CLASSES[rng.integers(len(CLASSES))]
            length = min(clip_seconds, DESED_MEDIAN_SECONDS[label] * float(rng.lognormal(0.0, 0.6)))
            onset = float(rng.uniform(0, clip_seconds - length))
            rows.append((clip, round(onset, 3), round(onset + length, 3), label))
    return ids, pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"])


def make_predictions(
    rng: np.random.Generator,
    ids: list[str],
    reference: pd.DataFrame,
    n_frames: int = N_FRAMES,
    hop_seconds: float = FRAME_HOP_SECONDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Frame [N, C, n_frames] and clip [N, C] probabilities imitating a fair model on the reference
    (frames of hop_seconds; boundary jitter, holes and false alarms scale with the frame rate)."""
    n, c = len(ids), len(CLASSES)
    scale = lambda k: max(1, round(k * FRAME_HOP_SECONDS / hop_seconds))  # noqa: E731 (frames at 50 Hz -> here)
    target = np.zeros((n, c, n_frames))
    index = {clip: i for i, clip in enumerate(ids)}
    for clip, onset, offset, label in reference.itertuples(index=False):
        if rng.random() < 0.15:  # missed event
            continue
        jitter = rng.normal(0.0, 0.1, size=2)  # boundary error (s)
        first = int(np.clip((onset + jitter[0]) / hop_seconds, 0, n_frames - 1))
        stop = int(np.clip((offset + jitter[1]) / hop_seconds, first + 1, n_frames))
        target[index[clip], CLASSES.index(label), first:stop] = 1.0
        if stop - first > scale(20) and rng.random() < 0.2:  # split the event with a hole
            hole = int(rng.integers(first + scale(5), stop - scale(5)))
            target[index[clip], CLASSES.index(label), hole : hole + scale(int(rng.integers(2, 12)))] = 0.0
    for _ in range(n // 3):  # false alarms
        first = int(rng.integers(0, n_frames - scale(10)))
        target[rng.integers(n), rng.integers(c), first : first + scale(int(rng.integers(5, 100)))] = 1.0
    frame = np.clip(0.8 * target + 0.1 + rng.normal(0.0, 0.15, size=target.shape), 0.0, 1.0)
    clip_probs = np.clip(frame.max(axis=2) - rng.uniform(0.0, 0.3, size=(n, c)), 0.0, 1.0)
    return frame.astype(np.float32), clip_probs.astype(np.float32)


def _best_of(repeats: int, fn: Callable[[], float]) -> tuple[float, float]:
    """(best wall seconds, value returned) over repeats calls."""
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def run(n_clips: int = N_VALIDATION_CLIPS, seed: int = 0, repeats: int = 3) -> list[dict]:
    """Time post-processing + event-based macro F1 with each evaluator.

    Returns:
        One dict per evaluator: evaluator, n_clips, n_events_estimated, seconds (post-processing + F1,
        best of repeats), speedup (sed_eval seconds / this evaluator's seconds), f1_seconds and
        f1_speedup (the F1 alone), macro_f1, f1_equal (|F - F_sed_eval| < 1e-12).
    """
    rng = np.random.default_rng(seed)
    ids, reference = make_reference(rng, n_clips)
    frame, clip = make_predictions(rng, ids, reference)
    windows = median_windows(np.array([DESED_MEDIAN_SECONDS[c] / FRAME_HOP_SECONDS for c in CLASSES]))
    cfg = PostprocessConfig()
    estimated_once = postprocess(frame, clip, ids, windows, cfg)

    def pipeline(evaluator: str) -> Callable[[], float]:
        def once() -> float:
            estimated = postprocess(frame, clip, ids, windows, cfg)
            return event_based(reference, estimated, ids, evaluator=evaluator).macro_f1

        return once

    def metric_only(evaluator: str) -> Callable[[], float]:
        return lambda: event_based(reference, estimated_once, ids, evaluator=evaluator).macro_f1

    names = ("fast", "sed_eval")
    timings = {name: _best_of(repeats, pipeline(name)) for name in names}
    f1_seconds = {name: _best_of(repeats, metric_only(name))[0] for name in names}
    base_seconds, base_f1 = timings["sed_eval"]
    return [
        {
            "evaluator": name,
            "n_clips": n_clips,
            "n_events_estimated": len(estimated_once),
            "seconds": seconds,
            "speedup": base_seconds / seconds,
            "f1_seconds": f1_seconds[name],
            "f1_speedup": f1_seconds["sed_eval"] / f1_seconds[name],
            "macro_f1": f1,
            "f1_equal": abs(f1 - base_f1) < 1e-12,
        }
        for name, (seconds, f1) in timings.items()
    ]


def main() -> None:
    rows = run()
    first = rows[0]
    print(f"post-processing + event-based F1, {first['n_clips']} clips, {first['n_events_estimated']} estimated events")
    print(f"{'evaluator':<10} {'seconds':>9} {'speed-up':>9} {'F1 only s':>10} {'speed-up':>9} {'macro F1':>10}  equal")
    for row in rows:
        print(
            f"{row['evaluator']:<10} {row['seconds']:>9.4f} {row['speedup']:>8.1f}x {row['f1_seconds']:>10.4f} "
            f"{row['f1_speedup']:>8.1f}x {row['macro_f1']:>10.6f}  {row['f1_equal']}"
        )


if __name__ == "__main__":
    main()
