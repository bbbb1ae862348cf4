"""Log-mel spectrograms exactly as SPEC section 2, computed in batches.

The recipe is the one of the paper's teacher code (and of `librosa.feature.melspectrogram` with the
same parameters): a periodic Hann window of `round(win_seconds * sr)` samples centred in `n_fft`,
a hop of `round(hop_seconds * sr)`, frames centred on `t * hop` with reflect padding at both ends,
the *magnitude* spectrum (power 1), a Slaney mel filterbank with Slaney area normalisation over
fmin..fmax, and the natural log of (mel + log_eps). A clip yields `1 + n_samples // hop` frames
(501 for 10 s); the first `n_frames` are kept, and a shorter clip is padded with frames of digital
silence, i.e. log(log_eps) in every bin, which is exactly what its missing audio would give.

Speed: a batch of clips is framed through a strided view (no copy until the window is applied) and
transformed by one `scipy.fft.rfft` call over all frames of all clips in float32, and the mel
projection is a single matrix product. Only the `win` non-zero samples of each frame are taken and
they are zero-padded at the end instead of being centred: a shift in time changes only the phase
of the DFT, so the magnitude is the same as with the centred window.
"""

from __future__ import annotations

import functools
import math

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
        raise ConfigError(f"features.hop_seconds = {cfg.hop_seconds} is under one sample at {cfg.sample_rate} Hz")
    return win, hop


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
    n_frames, half = cfg.n_frames, cfg.n_fft // 2
    # Samples of the padded signal needed for n_frames frames; frame t spans [t*hop, t*hop + n_fft).
    span = (n_frames - 1) * hop + cfg.n_fft
    padded = np.zeros((len(audios), span), dtype=np.float32)  # [N, span]
    valid = np.zeros((len(audios), n_frames), dtype=bool)
    for i, audio in enumerate(audios):
        # Reflect-pad each clip on its own (as librosa does), so a short clip's last frames see its
        # own reflection rather than the zeros that fill the rest of the batch row.
        # Samples past `span` reach no kept frame; cropping first only changes the right-hand
        # reflection of a long clip, which lies past `span` too.
        row = np.pad(np.asarray(audio[:span], dtype=np.float32), (half, half), mode="reflect")
        padded[i, : min(len(row), span)] = row[:span]
        valid[i, : clip_frames(len(audio), hop)] = True
    # Only the `win` non-zero samples of the centred window, at offset (n_fft - win) // 2 in each
    # frame; they are windowed into the head of a zeroed n_fft buffer (the FFT's zero padding).
    lead = (cfg.n_fft - win) // 2
    frames = np.lib.stride_tricks.sliding_window_view(padded[:, lead:], win, axis=1)[:, ::hop][:, :n_frames]
    windowed = np.zeros((len(audios), n_frames, cfg.n_fft), dtype=np.float32)  # [N, T, n_fft]
    np.multiply(frames, _hann(win), out=windowed[:, :, :win])
    spectrum = scipy.fft.rfft(windowed, axis=-1, overwrite_x=True)  # [N, T, F] complex64
    magnitude = np.abs(spectrum).reshape(-1, spectrum.shape[-1])  # [N * T, F] float32
    # One 2-D product: numpy's 3-D matmul runs a slow batched loop over N.
    matrix = _mel_matrix(cfg.sample_rate, cfg.n_fft, n_mels, cfg.fmin, cfg.fmax)  # [F, n_mels]
    mel = (magnitude @ matrix).reshape(len(audios), n_frames, n_mels)  # [N, T, n_mels]
    mel[~valid] = 0.0
    return mel, valid


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
    return np.log(mel + np.float32(cfg.log_eps), out=mel)


def logmel(audio: np.ndarray, cfg: FeatureConfig, n_mels: int) -> np.ndarray:
    """Log-mel features of one clip: [n_samples] at cfg.sample_rate -> [cfg.n_frames, n_mels] float32."""
    return logmel_batch([audio], cfg, n_mels)[0]
