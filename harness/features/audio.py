"""Reading audio files as mono float32 at the configured sample rate."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import soundfile

from harness.errors import DataError

_WHAT_TO_DO = "re-download it, or remove it from its metadata TSV"
# int16 samples a thread's read buffer keeps between reads: 4 MB, ~24 s of 44.1-kHz stereo.
_PCM16_KEPT = 1 << 21
_THREAD = threading.local()  # .pcm16: this thread's int16 read buffer (see _pcm16_buffer)


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
        samples, file_rate, finite = _read_samples(path)
    except (soundfile.SoundFileError, RuntimeError, OSError, ValueError) as e:
        raise DataError(
            f"{path}: cannot read audio ({e}); the file is corrupt or not audio: {_WHAT_TO_DO}"
        ) from e
    if samples.size == 0:
        raise DataError(f"{path}: the audio file holds no samples; {_WHAT_TO_DO}")
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    if not finite and not np.isfinite(mono).all():
        raise DataError(f"{path}: the audio holds NaN or infinite samples; {_WHAT_TO_DO}")
    return np.ascontiguousarray(resample(mono, file_rate, sample_rate), dtype=np.float32)


def _read_samples(path: Path) -> tuple[np.ndarray, int, bool]:
    """([n, channels] float32 samples, sample rate, whether the samples are finite by construction).

    16-bit PCM (DESED's format) is read as int16 and scaled here: libsndfile's own conversion to
    float32 made the read ~5x slower (~1.5 vs ~0.3 ms a 10-s clip at 44.1 kHz), and it gives the same
    numbers, as x / 32768 is exact in float32. Such samples cannot be NaN or infinite either.
    """
    with soundfile.SoundFile(path) as f:
        if f.subtype == "PCM_16":
            pcm = f.read(out=_pcm16_buffer(f.frames, f.channels))
            return np.multiply(pcm, np.float32(1 / 32768), dtype=np.float32), f.samplerate, True
        return f.read(dtype="float32", always_2d=True), f.samplerate, False


def _pcm16_buffer(frames: int, channels: int) -> np.ndarray:
    """A [frames, channels] int16 buffer to read into: this thread's, kept between calls when small.

    A fresh buffer per file is page-faulted in again, and freeing it let the allocator hand the
    next clip's memory back to the system too: measured in the extraction workers, 460-870 page
    faults a 10-s clip without this buffer and none with it, at ~3 us a fault on the benchmarks' VM.
    Longer files get a buffer of their own, so that a thread never keeps more than _PCM16_KEPT samples.
    """
    size = frames * channels
    if size > _PCM16_KEPT:
        return np.empty((frames, channels), dtype=np.int16)
    buffer = getattr(_THREAD, "pcm16", None)
    if buffer is None or len(buffer) < size:
        buffer = _THREAD.pcm16 = np.empty(size, dtype=np.int16)
    return buffer[:size].reshape(frames, channels)


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
