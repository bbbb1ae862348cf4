"""Log-mel spectrograms exactly as SPEC section 2, computed in batches.

The recipe is the one of the paper's teacher code (and of `librosa.feature.melspectrogram` with the
same parameters): a periodic Hann window of `round(win_seconds * sr)` samples centred in `n_fft`,
a hop of `round(hop_seconds * sr)`, frames centred on `t * hop` with reflect padding at both ends,
the *magnitude* spectrum (power 1), a Slaney mel filterbank with Slaney area normalisation over
fmin..fmax, and the natural log of (mel + log_eps). A clip yields `1 + n_samples // hop` frames
(501 for 10 s); the first `n_frames` are kept, and a shorter clip is padded with frames of digital
silence, i.e. log(log_eps) in every bin, which is exactly what its missing audio would give.

Speed: each clip is reflect-padded by slicing into a buffer and framed through a strided view, so
no frame is copied before the window is applied. Only the `win` non-zero samples of each frame are
windowed, and they are zero-padded at the end instead of being centred: a shift in time changes
only the phase of the DFT, so the magnitude is the same as with the centred window. Frames then go
BLOCK_FRAMES at a time through the window, one float32 `scipy.fft.rfft` call, `np.abs` and a banded
mel product (each filter spans a few neighbouring bins: ~97 % of the dense [bins x n_mels] matrix
is zeros at 64 bins); no Python loop runs over single frames. Every work buffer belongs to a
per-thread workspace kept between calls, as a page fault costs ~3 us a 4 KB page on the
benchmarks' VM. Measured there (one core, 10-s clips, 64 bins, CPU time), against batches of 2
clips on buffers allocated per call, np.pad and a dense product: 4.6 -> 2.8 ms a clip at 16 kHz
and 5.8 -> 3.2 ms at 44.1 kHz, of which the FFT is now ~1.8 ms, np.abs ~0.35 and the mel product
~0.3; the rest had gone to page faults, the dense product's zeros and whole-clip copies.
"""

from __future__ import annotations

import functools
import math
import threading

import numpy as np
import scipy.fft

from harness.config import FeatureConfig
from harness.errors import ConfigError

# Slaney's mel scale (Auditory Toolbox): linear below 1 kHz at 3 mels per 200 Hz, logarithmic above,
# with a step of log(6.4) / 27 per mel. These constants are the published definition of the scale.
_F_SP = 200.0 / 3.0  # Hz per mel on the linear part
_MIN_LOG_HZ = 1000.0  # where the scale turns logarithmic
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # = 15 mels
_LOG_STEP = math.log(6.4) / 27.0  # log-Hz per mel on the logarithmic part

# Frames per FFT call. The block's spectrum (complex64, 1 MB at 128 frames) is the one buffer made
# per call, as scipy.fft has no `out`. Measured on 10-s clips: blocks of 128 to 500 frames run
# equally fast (~2.7 ms a clip at 16 kHz), blocks of 64 ~5 % slower.
BLOCK_FRAMES = 128
# Mel filters per band of the banded filterbank product (see `_mel_bands`). Measured at 64 bins:
# 8 a band took the log-mel from 3.2 ms a clip (the dense product) to 2.7 at 16 kHz; 4 or 16 a band
# are no faster.
BAND_MELS = 8

# The banded filterbank: (rfft bins, mel filters, [bins, filters] weights) per band; see `_mel_bands`.
_Bands = tuple[tuple[slice, slice, np.ndarray], ...]


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Frequencies (Hz, any shape) -> Slaney mels (same shape, float64)."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    # np.maximum keeps log() away from 0 Hz; where() then picks the linear branch there anyway.
    logarithmic = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return np.where(hz >= _MIN_LOG_HZ, logarithmic, linear)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Slaney mels (any shape) -> frequencies in Hz (same shape, float64); the inverse of hz_to_mel."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _F_SP
    logarithmic = _MIN_LOG_HZ * np.exp(_LOG_STEP * (mel - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, logarithmic, linear)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Triangular mel filters on the rfft bins, Slaney scale and Slaney area normalisation.

    The same matrix as `librosa.filters.mel` with its defaults (htk=False, norm="slaney").
    The n_mels + 2 band edges are equally spaced in mels between fmin and fmax; filter i rises
    linearly from edge i to edge i+1 and falls to edge i+2, and is scaled by 2 / (width in Hz), so
    every filter has the same area.

    Args:
        sample_rate: audio sample rate (Hz).
        n_fft: FFT size (samples).
        n_mels: number of filters.
        fmin: lowest band edge (Hz).
        fmax: highest band edge (Hz); None = sample_rate / 2.

    Returns:
        [n_mels, n_fft // 2 + 1] float64 filter weights.
    """
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)  # [F] centre of each rfft bin
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))  # [n_mels + 2]
    widths = np.diff(edges_hz)  # [n_mels + 1]
    offsets = edges_hz[:, None] - fft_hz[None, :]  # [n_mels + 2, F] edge minus bin frequency
    rising = -offsets[:-2] / widths[:-1, None]  # [n_mels, F] 0 at the lower edge, 1 at the centre
    falling = offsets[2:] / widths[1:, None]  # [n_mels, F] 1 at the centre, 0 at the upper edge
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]


@functools.lru_cache(maxsize=16)
def _mel_matrix(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """[n_fft // 2 + 1, n_mels] float32 filterbank, transposed for `magnitudes @ matrix`; read-only."""
    matrix = np.ascontiguousarray(mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax).T, dtype=np.float32)
    matrix.setflags(write=False)
    return matrix


@functools.lru_cache(maxsize=16)
def _mel_bands(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> _Bands:
    """The filterbank as bands of BAND_MELS consecutive filters: (bins, filters, weights) per band.

    `bins` spans the rfft bins where any filter of the band is non-zero (empty when none is), so
    `magnitudes[:, bins] @ weights` gives the dense product's columns `filters` without its
    multiplications by zero. weights: [bins, filters] float32, read-only.
    """
    matrix = _mel_matrix(sample_rate, n_fft, n_mels, fmin, fmax)  # [F, n_mels]
    bands = []
    for first in range(0, n_mels, BAND_MELS):
        filters = slice(first, min(first + BAND_MELS, n_mels))
        covered = np.flatnonzero(matrix[:, filters].any(axis=1))
        bins = slice(covered[0], covered[-1] + 1) if len(covered) else slice(0, 0)
        weights = np.ascontiguousarray(matrix[bins, filters])
        weights.setflags(write=False)
        bands.append((bins, filters, weights))
    return tuple(bands)


@functools.lru_cache(maxsize=16)
def _hann(win: int) -> np.ndarray:
    """[win] float32 periodic Hann window (the DFT-even form: 0.5 - 0.5 cos(2 pi n / win))."""
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win) / win)).astype(np.float32)
    window.setflags(write=False)
    return window


def framing(cfg: FeatureConfig) -> tuple[int, int]:
    """(window, hop) in samples at cfg.sample_rate, checked against n_fft.

    Raises:
        ConfigError: a window longer than n_fft, or a window or hop under one sample.
    """
    win = round(cfg.win_seconds * cfg.sample_rate)
    hop = round(cfg.hop_seconds * cfg.sample_rate)
    if not 1 <= win <= cfg.n_fft:
        raise ConfigError(
            f"features.win_seconds = {cfg.win_seconds} gives a window of {win} samples at "
            f"{cfg.sample_rate} Hz; it must be between 1 and features.n_fft = {cfg.n_fft}"
        )
    if hop < 1:
        raise ConfigError(
            f"features.hop_seconds = {cfg.hop_seconds} is under one sample at {cfg.sample_rate} Hz"
        )
    return win, hop


def check_config(cfg: FeatureConfig, n_mels: int) -> None:
    """Fail early on a feature config that cannot give features (see `framing`, `mel_filterbank`).

    Raises:
        ConfigError: a bad framing, fewer than one mel bin or frame, log_eps <= 0, or a mel band
            outside 0..sample_rate / 2.
    """
    framing(cfg)
    if n_mels < 1 or cfg.n_frames < 1:
        raise ConfigError(f"features: n_mels = {n_mels}, n_frames = {cfg.n_frames}; both must be at least 1")
    if not cfg.log_eps > 0:
        raise ConfigError(f"features.log_eps = {cfg.log_eps}; it must be > 0 (silence needs a finite log)")
    nyquist = cfg.sample_rate / 2
    fmax = nyquist if cfg.fmax is None else cfg.fmax
    if not 0 <= cfg.fmin < fmax <= nyquist:
        raise ConfigError(
            f"features: the mel band fmin = {cfg.fmin} Hz .. fmax = {cfg.fmax} Hz must satisfy "
            f"0 <= fmin < fmax <= sample_rate / 2 = {nyquist} Hz "
            "(leave features.fmax unset for sample_rate / 2)"
        )


def clip_frames(n_samples: int, hop: int) -> int:
    """Frames of a clip of n_samples with centred framing: 1 + n_samples // hop (501 for 10 s)."""
    return 1 + n_samples // hop


def mel_batch(audios: list[np.ndarray], cfg: FeatureConfig, n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    """Mel magnitudes (before the log) of a batch of clips, and which frames hold audio.

    Args:
        audios: N mono clips, each [n_samples_i] at cfg.sample_rate (float; any lengths).
        cfg: the framing.
        n_mels: number of mel bins.

    Returns:
        mel: [N, cfg.n_frames, n_mels] float32 mel magnitudes; 0 in frames past a clip's end.
        valid: [N, cfg.n_frames] bool, True where the frame lies within the clip.
    """
    win, hop = framing(cfg)
    workspace = _workspace(cfg.n_fft, win, hop, cfg.n_frames)
    bands = _mel_bands(cfg.sample_rate, cfg.n_fft, n_mels, cfg.fmin, cfg.fmax)
    mel = np.empty((len(audios), cfg.n_frames, n_mels), dtype=np.float32)
    valid = np.zeros((len(audios), cfg.n_frames), dtype=bool)
    for i, audio in enumerate(audios):
        n_valid = min(clip_frames(len(audio), hop), cfg.n_frames)
        valid[i, :n_valid] = True
        workspace.project(audio, bands, out=mel[i, :n_valid])
        mel[i, n_valid:] = 0.0  # frames past the clip's end: digital silence
    return mel, valid


_THREAD = threading.local()  # .workspace: this thread's _Workspace (see _workspace)


def _workspace(n_fft: int, win: int, hop: int, n_frames: int) -> _Workspace:
    """This thread's work buffers for a framing, made on first use and kept for the next calls.

    Kept because fresh multi-MB buffers are page-faulted in again on every call (~3 us a 4-KB page on
    the benchmarks' VM, ~0.8 ms per MB). Per thread, so that threads computing features at the same
    time never share buffers; ~3.3 MB each at 44.1 kHz with the SPEC's framing.
    """
    workspace = getattr(_THREAD, "workspace", None)
    if workspace is None or workspace.framing != (n_fft, win, hop, n_frames):
        workspace = _THREAD.workspace = _Workspace(n_fft, win, hop, n_frames)
    return workspace


class _Workspace:
    """A padded clip, its frames (a strided view of it), and one block's windowed frames and magnitudes."""

    def __init__(self, n_fft: int, win: int, hop: int, n_frames: int) -> None:
        self.framing = (n_fft, win, hop, n_frames)
        self.half = n_fft // 2  # reflect padding at each end, so that frame t is centred on sample t * hop
        # Samples of the padded signal needed for n_frames frames; frame t spans [t*hop, t*hop + n_fft).
        self.padded = np.empty((n_frames - 1) * hop + n_fft, dtype=np.float32)
        lead = (n_fft - win) // 2  # where the window's non-zero samples start within a frame
        frames = np.lib.stride_tricks.sliding_window_view(self.padded[lead:], win)
        self.frames = frames[::hop][:n_frames]  # [n_frames, win] view: the non-zero span of each frame
        self.window = _hann(win)
        self.windowed = np.zeros((BLOCK_FRAMES, n_fft), dtype=np.float32)  # columns win.. stay 0
        self.magnitude = np.empty((BLOCK_FRAMES, n_fft // 2 + 1), dtype=np.float32)

    def project(self, audio: np.ndarray, bands: _Bands, out: np.ndarray) -> None:
        """Mel magnitudes of the first len(out) frames of `audio` into out [frames, n_mels] float32."""
        _reflect_pad_into(self.padded, audio, self.half)
        win = len(self.window)
        for start in range(0, len(out), BLOCK_FRAMES):
            rows = out[start : start + BLOCK_FRAMES]
            windowed, magnitude = self.windowed[: len(rows)], self.magnitude[: len(rows)]
            np.multiply(self.frames[start : start + len(rows)], self.window, out=windowed[:, :win])
            np.abs(scipy.fft.rfft(windowed, axis=-1), out=magnitude)  # rfft of float32 is complex64
            for bins, filters, weights in bands:
                np.matmul(magnitude[:, bins], weights, out=rows[:, filters])


def _reflect_pad_into(row: np.ndarray, audio: np.ndarray, half: int) -> None:
    """Write `audio` reflect-padded by `half` samples at both ends into `row` [span], cropped or zero-filled.

    Each clip is padded on its own (as librosa does), so a short clip's last frames see its own
    reflection rather than the zeros after it. Samples past `span` reach no kept frame and are
    dropped. The reflections are copied straight from the clip: np.pad would build a padded copy.
    """
    if len(audio) == 0:  # read_audio refuses empty files; in-memory callers get silence
        row[:] = 0.0
        return
    if len(audio) > half:
        # Left: audio[half], ..., audio[1]; right: audio[-2], ..., audio[-half - 1] (edges not repeated).
        pieces = (audio[1 : half + 1][::-1], audio, audio[-half - 1 : -1][::-1])
    else:  # a clip shorter than the padding is reflected back and forth; np.pad does that (as librosa)
        pieces = (np.pad(np.asarray(audio, dtype=np.float32), (half, half), mode="reflect"),)
    filled = 0
    for piece in pieces:
        take = min(len(piece), len(row) - filled)
        row[filled : filled + take] = piece[:take]
        filled += take
    row[filled:] = 0.0


def logmel_batch(audios: list[np.ndarray], cfg: FeatureConfig, n_mels: int) -> np.ndarray:
    """Log-mel features of a batch of clips (the fast path; see the module docstring).

    Args:
        audios: N mono clips, each [n_samples_i] at cfg.sample_rate.
        cfg: the framing.
        n_mels: number of mel bins (20 for the student, 64 for the teacher).

    Returns:
        [N, cfg.n_frames, n_mels] float32 natural log of (mel magnitude + cfg.log_eps); frames past a
        clip's end hold log(cfg.log_eps).
    """
    mel, _ = mel_batch(audios, cfg, n_mels)
    np.add(mel, np.float32(cfg.log_eps), out=mel)  # in place: no temporary of the whole batch
    return np.log(mel, out=mel)


def logmel(audio: np.ndarray, cfg: FeatureConfig, n_mels: int) -> np.ndarray:
    """Log-mel features of one clip: [n_samples] at cfg.sample_rate -> [cfg.n_frames, n_mels] float32."""
    return logmel_batch([audio], cfg, n_mels)[0]
