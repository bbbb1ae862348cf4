"""Reading audio files as mono float32 at the configured sample rate."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile

from harness.errors import DataError

_WHAT_TO_DO = "re-download it, or remove it from its metadata TSV"


def read_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Read an audio file, downmix it to mono and resample it to `sample_rate`.

    Resampling is polyphase (scipy.signal.resample_poly) by the exact rational ratio
    sample_rate / file rate, so 44.1 kHz -> 16 kHz is up 160, down 441, and the output has
    ceil(n * 160 / 441) samples.

    Args:
        path: an audio file soundfile can read (WAV, FLAC, OGG, ...).
        sample_rate: the rate to return (Hz).

    Returns:
        [n_samples] float32 mono samples at `sample_rate`.

    Raises:
        DataError: the file is missing, unreadable, corrupt, empty or holds non-finite samples;
            the message names the file and says what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_audio_error(path)
    try:
        samples, file_rate = soundfile.read(path, dtype="float32", always_2d=True)  # [n, channels]
    except (soundfile.SoundFileError, RuntimeError, OSError, ValueError) as e:
        raise DataError(
            f"{path}: cannot read audio ({e}); the file is corrupt or not audio: {_WHAT_TO_DO}"
        ) from e
    if samples.size == 0:
        raise DataError(f"{path}: the audio file holds no samples; {_WHAT_TO_DO}")
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if not np.isfinite(mono).all():
        raise DataError(f"{path}: the audio holds NaN or infinite samples; {_WHAT_TO_DO}")
    return np.ascontiguousarray(resample(mono, file_rate, sample_rate), dtype=np.float32)


def missing_audio_error(path: Path) -> DataError:
    """The error for an audio file listed but not on disk."""
    return DataError(
        f"{path}: audio file not found; {_WHAT_TO_DO} (or set data.skip_missing = true to skip missing files)"
    )


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling of [n] samples from `from_rate` to `to_rate` (Hz); a no-op when equal.

    Returns:
        [ceil(n * to_rate / from_rate)] samples, float32.
    """
    if from_rate == to_rate:
        return audio
    import scipy.signal  # here: importing it takes ~1 s, paid by every extraction worker otherwise

    common = math.gcd(int(from_rate), int(to_rate))
    up, down = int(to_rate) // common, int(from_rate) // common
    return scipy.signal.resample_poly(audio, up, down).astype(np.float32, copy=False)
