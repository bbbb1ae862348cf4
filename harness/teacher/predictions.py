"""Teacher predictions on disk: the file a user may supply instead of training a teacher.

Format: one NumPy ``.npz`` archive (``np.savez`` or ``np.savez_compressed``) with the arrays

- ``clip_ids``: [N] strings, the clip file names exactly as in the metadata TSV (e.g. ``Y00abc_30.000_40.000.wav``);
  no duplicates. Stored as a NumPy unicode array (not an object array: files are read with
  ``allow_pickle=False``).
- ``weak``: [N, C] float32 in [0, 1], the teacher's clip-level (audio tagging) probabilities t^w.
- ``strong``: [N, C, T] float32 in [0, 1], the teacher's frame-level probabilities t^s, T = features.n_frames
  frames of features.hop_seconds (DESED's paper protocol: 500 frames of 20 ms, frame i starts at i * 0.02 s),
  raw (no thresholding, no median filter).
- ``classes`` (optional): [C] strings; if present it must equal the study's class order (harness.data.vocabulary:
  the sorted labels of its strong training and weak TSVs, or [data] classes; for DESED Alarm_bell_ringing,
  Blender, Cat, Dishes, Dog, Electric_shaver_toothbrush, Frying, Running_water, Speech, Vacuum_cleaner).
  Without it that order is assumed.

Row i of ``weak`` and ``strong`` belongs to ``clip_ids[i]``; the order of the rows is free. The file may
hold more clips than a study needs; every clip the study needs must be in it.

Example:
    np.savez("teacher.npz", clip_ids=np.array(ids), weak=w.astype(np.float32),
             strong=s.astype(np.float32), classes=np.array(CLASSES))
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from harness.records import atomic_file
from harness.constants import CLASSES, N_FRAMES
from harness.errors import DataError, not_a_file

REQUIRED_KEYS: tuple[str, ...] = ("clip_ids", "weak", "strong")


def save_predictions(path: str | Path, clip_ids: Sequence[str], weak: np.ndarray, strong: np.ndarray,
                     classes: Sequence[str] = CLASSES) -> None:
    """Write teacher predictions in the documented format, atomically (temporary file, then rename).

    Args:
        path: the .npz file to write (parent directories must exist).
        clip_ids: [N] clip file names.
        weak: [N, C] clip probabilities.
        strong: [N, C, T] frame probabilities.
        classes: the C class names, in the order of the C axis (default: DESED's).

    Raises:
        DataError: the arrays do not follow the format (same checks as `load_predictions`).
    """
    path = Path(path)
    arrays = {
        "clip_ids": np.asarray(list(clip_ids), dtype=str),
        "weak": np.asarray(weak, dtype=np.float32),
        "strong": np.asarray(strong, dtype=np.float32),
        "classes": np.asarray(list(classes), dtype=str),
    }
    _check(arrays, f"teacher predictions to write to {path}", arrays["strong"].shape[-1], tuple(classes))
    with atomic_file(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
        np.savez(f, **arrays)


def load_predictions(
    path: str | Path, clip_ids_needed: Sequence[str] | None = None, n_frames: int = N_FRAMES,
    classes: Sequence[str] = CLASSES,
) -> tuple[np.ndarray, np.ndarray]:
    """Read and check a teacher predictions file.

    Args:
        path: the .npz file.
        clip_ids_needed: the clips to return, in this order; None = every clip in file order.
        n_frames: frames per clip of the study's frame geometry (features.n_frames).
        classes: the study's classes (harness.data.vocabulary; default DESED's): C and the order of the C axis.

    Returns:
        weak [N, C] and strong [N, C, T], float32, rows in the order of `clip_ids_needed`.

    Raises:
        DataError: the file is missing or unreadable, a key is missing, a shape is wrong, a value is
            NaN or outside [0, 1], the classes differ, or needed clips are absent (the message names the
            file, the count and the first few clips).
    """
    path = Path(path)
    arrays = _read(path)
    where = f"teacher predictions {path}"
    _check(arrays, where, n_frames, tuple(classes))
    if clip_ids_needed is None:
        return arrays["weak"], arrays["strong"]
    rows = _rows_of(arrays["clip_ids"], clip_ids_needed, where)
    return arrays["weak"][rows], arrays["strong"][rows]


def _read(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a predictions archive; errors name the file and the format, never what it holds."""
    expected = ("expected a .npz archive of plain arrays (clip_ids as strings, weak, strong), as np.savez writes; "
                "fix teacher.predictions or set teacher.source = \"train\"")
    if not path.is_file():
        raise not_a_file(path, "teacher predictions", expected)
    if not zipfile.is_zipfile(path):  # np.load would try it as a pickle, and tell the user about allow_pickle
        raise DataError(f"teacher predictions {path} is not a .npz archive; {expected}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as e:
        if "pickle" in str(e):  # an object array: pickled data, which is never loaded (numpy's hint not passed on)
            raise DataError(f"teacher predictions {path} holds an object array (pickled data), which is never "
                            "loaded; store clip_ids as a string array, e.g. np.array(ids, dtype=str)") from e
        raise DataError(f"teacher predictions {path} is damaged; {expected}") from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"teacher predictions {path} is damaged or unreadable; {expected}") from e


def _check(arrays: dict[str, np.ndarray], where: str, n_frames: int, classes: tuple[str, ...]) -> None:
    """Keys, shapes, value range and classes of a predictions archive."""
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)}; required: {', '.join(REQUIRED_KEYS)}")
    ids, weak, strong = arrays["clip_ids"], arrays["weak"], arrays["strong"]
    if ids.ndim != 1 or ids.dtype.kind not in "US":
        raise DataError(f"{where}: clip_ids must be a 1-d array of strings, got dtype {ids.dtype} shape {ids.shape}")
    n, c = len(ids), len(classes)
    if weak.shape != (n, c):
        raise DataError(f"{where}: weak has shape {weak.shape}, expected {(n, c)} (clips, the study's classes)")
    if strong.shape != (n, c, n_frames):
        raise DataError(
            f"{where}: strong has shape {strong.shape}, expected {(n, c, n_frames)} (clips, the study's classes, "
            "frames: features.n_frames)"
        )
    for key in ("weak", "strong"):
        _check_probabilities(arrays[key], key, where)
    if "classes" in arrays and tuple(str(name) for name in arrays["classes"]) != classes:
        raise DataError(
            f"{where}: classes {list(map(str, arrays['classes']))} differ from the harness order of the study's "
            f"classes {list(classes)}; reorder the columns or drop the classes key"
        )
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{where}: clip_ids has duplicates, e.g. {unique[counts > 1][:3].tolist()}")


def _check_probabilities(values: np.ndarray, key: str, where: str) -> None:
    if values.dtype.kind != "f":
        raise DataError(f"{where}: {key} must hold floats in [0, 1], got dtype {values.dtype}")
    bad = ~((values >= 0) & (values <= 1))  # NaN fails both comparisons
    if bad.any():
        first = np.argwhere(bad)[0]
        raise DataError(
            f"{where}: {key} has {int(bad.sum())} value(s) that are NaN or outside [0, 1], "
            f"the first at row {first[0]}: {values[tuple(first)]}"
        )


def _rows_of(ids: np.ndarray, needed: Sequence[str], where: str) -> np.ndarray:
    """Row of each needed clip id in `ids`; DataError listing the absent ones."""
    row_of = {str(clip): i for i, clip in enumerate(ids)}
    absent = [clip for clip in needed if clip not in row_of]
    if absent:
        raise DataError(
            f"{where}: {len(absent)} of {len(needed)} needed clips are absent, e.g. {absent[:5]}; "
            "predict them with the teacher or train the teacher (teacher.source = \"train\")"
        )
    return np.array([row_of[clip] for clip in needed], dtype=np.int64)
