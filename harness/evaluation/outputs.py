"""Prediction files: DCASE event TSVs and frame/clip probabilities (.npz). Writes are atomic."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.constants import CLASSES
from harness.errors import DataError, not_a_file
from harness.records import atomic_file

EVENT_COLUMNS: tuple[str, ...] = ("filename", "onset", "offset", "event_label")
_NPZ_KEYS: tuple[str, ...] = ("clip_ids", "frame", "clip", "classes")


@dataclass(frozen=True)
class Probabilities:
    """Model outputs of a set of clips.

    Attributes:
        clip_ids: N clip file names.
        frame: [N, C, T] frame probabilities.
        clip: [N, C] clip probabilities.
        classes: C class names, the order of the C axis.
        durations: [N] real clip durations (s), or None in files written without them.
    """

    clip_ids: tuple[str, ...]
    frame: np.ndarray
    clip: np.ndarray
    classes: tuple[str, ...]
    durations: np.ndarray | None = None


def _atomic_write(path: Path, write) -> None:
    """Call write(file object) on a temporary file beside path, then rename it onto path (records.atomic_file:
    flushed to disk, mode from the umask, nothing left behind on failure)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        write(fh)


def write_dcase_tsv(events: pd.DataFrame, path: Path) -> None:
    """Write events as a DCASE TSV: filename, onset, offset, event_label; times with 3 decimals.

    Rows are sorted by filename then onset (then offset, label, for a stable file).

    Args:
        events: DataFrame with the four columns (times in seconds).
        path: destination .tsv, replaced atomically.
    """
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise DataError(f"cannot write {path}: events lack column(s) {missing}")
    table = events.loc[:, list(EVENT_COLUMNS)].sort_values(list(EVENT_COLUMNS), kind="stable")
    text = table.to_csv(sep="\t", index=False, float_format="%.3f", lineterminator="\n")
    _atomic_write(Path(path), lambda fh: fh.write(text.encode("utf-8")))


def read_dcase_tsv(path: Path) -> pd.DataFrame:
    """Read a DCASE event TSV (filename, onset, offset, event_label).

    Rows of empty clips (empty onset/offset/label, as in DESED's validation.tsv) are kept with NaN.

    Raises:
        DataError: the file is missing or its columns are not exactly the four expected ones.
    """
    path = Path(path)
    if not path.is_file():
        raise not_a_file(path, "event file", f"expected a TSV with the columns {list(EVENT_COLUMNS)}")
    try:
        table = pd.read_csv(path, sep="\t", dtype={"filename": str, "event_label": str})
    except (ValueError, OSError) as e:  # a parser's message may quote the file: only its name is shown
        raise DataError(f"{path}: not a readable TSV; expected the tab-separated columns {list(EVENT_COLUMNS)}") from e
    if tuple(table.columns) != EVENT_COLUMNS:
        raise DataError(f"{path}: {len(table.columns)} column(s) that are not the expected {list(EVENT_COLUMNS)} "
                        "(tab-separated)")
    table["onset"] = table["onset"].astype(float)
    table["offset"] = table["offset"].astype(float)
    return table


def write_probabilities(
    path: Path,
    clip_ids: Sequence[str],
    frame_probs: np.ndarray,
    clip_probs: np.ndarray,
    classes: Sequence[str] = CLASSES,
    *,
    durations: Sequence[float] | None = None,
) -> None:
    """Save probabilities to .npz with keys clip_ids, frame [N, C, T], clip [N, C], classes.

    With durations, a key durations [N] (s) is added, so the file can be re-scored (PSDS) without
    the audio. Strings are stored as unicode arrays, so reading needs no pickle.
    """
    frame_probs, clip_probs = np.asarray(frame_probs), np.asarray(clip_probs)
    n, c = len(clip_ids), len(classes)
    if frame_probs.ndim != 3 or frame_probs.shape[:2] != (n, c) or clip_probs.shape != (n, c):
        raise DataError(
            f"cannot write {path}: frame {frame_probs.shape} / clip {clip_probs.shape} do not match "
            f"{n} clips x {c} classes"
        )
    arrays = {
        "clip_ids": np.asarray(list(clip_ids), dtype=str),
        "frame": frame_probs,
        "clip": clip_probs,
        "classes": np.asarray(list(classes), dtype=str),
    }
    if durations is not None:
        durations = np.asarray(durations, dtype=np.float64)
        if durations.shape != (n,):
            raise DataError(f"cannot write {path}: {durations.shape} durations for {n} clips")
        arrays["durations"] = durations
    _atomic_write(Path(path), lambda fh: np.savez_compressed(fh, **arrays))


def read_probabilities(path: Path) -> Probabilities:
    """Load a file written by write_probabilities.

    Raises:
        DataError: missing file, missing keys or inconsistent shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise not_a_file(path, "probability file", "run the job again to write it")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in _NPZ_KEYS if k not in data.files]
        if missing:
            raise DataError(f"{path}: missing key(s) {missing}; expected {list(_NPZ_KEYS)}")
        probs = Probabilities(
            clip_ids=tuple(str(s) for s in data["clip_ids"]),
            frame=data["frame"],
            clip=data["clip"],
            classes=tuple(str(s) for s in data["classes"]),
            durations=data["durations"] if "durations" in data.files else None,
        )
    n, c = len(probs.clip_ids), len(probs.classes)
    if probs.frame.ndim != 3 or probs.frame.shape[:2] != (n, c) or probs.clip.shape != (n, c):
        raise DataError(f"{path}: frame {probs.frame.shape} / clip {probs.clip.shape} do not match {n} x {c}")
    if probs.durations is not None and probs.durations.shape != (n,):
        raise DataError(f"{path}: durations {probs.durations.shape} do not match {n} clips")
    return probs
