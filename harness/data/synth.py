"""The built-in synthetic corpus: DESED's layout, file names, TSV columns and quirks, no download (SPEC 4).

Each of the 10 classes is a procedurally synthesised sound with its own spectrum and temporal
pattern, and event durations drawn log-normally around DESED's medians. Like DESED there is a domain
gap: the strong "synthetic" subset has clean pink-noise backgrounds at high SNR, while weak,
unlabeled, validation and test are "real-like": brown noise, mains hum and muffled babble,
reverberation, a random microphone tilt and lower SNR.

Every clip is generated from its own seed (seed, subset, index), so the bytes written do not depend
on how clips are spread over workers. `out/.complete` is written last; its absence means that the
corpus is unfinished.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import soundfile as sf
from scipy import fft as sp_fft

from harness.filelock import locked
from harness.constants import CLASSES, CLIP_SECONDS, DESED_MEDIAN_SECONDS
from harness.data.desed import LAYOUT, UNLABELED_TRUTH_TSV
from harness.errors import DataError, full_disk_named

log = logging.getLogger("harness.data")

Size = Literal["tiny", "quick"]

# Clips per subset. Tiny has 10 strong synthetic clips so that every class leads one of them.
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"synthetic": 10, "weak": 8, "unlabeled": 16, "validation": 8, "test": 8},
    "quick": {"synthetic": 400, "weak": 300, "unlabeled": 1200, "validation": 300, "test": 300},
}
_SUBSET_CODE = {name: i for i, name in enumerate(SIZES["tiny"])}  # part of each clip's seed
MARKER = ".complete"
_IN_PROGRESS = ".generating"
_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_DURATION_SIGMA = 0.5  # log-normal spread of event durations around the class median
_EMPTY_EVERY = 8  # in real-like subsets but weak, clip index % 8 == 3 has no event


@dataclass(frozen=True)
class Domain:
    """Recording conditions of a subset."""

    real: bool  # real-like background, reverberation and microphone tilt
    snr_db: tuple[float, float]  # event-to-background SNR range (dB)


SYNTHETIC = Domain(real=False, snr_db=(8.0, 20.0))
REAL = Domain(real=True, snr_db=(0.0, 12.0))


# --------------------------------------------------------------------------- signal helpers


def _filter(x: np.ndarray, sr: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """x [n] filtered in the frequency domain by the zero-phase magnitude response gain(freqs in Hz)."""
    n = len(x)
    m = sp_fft.next_fast_len(n, real=True)  # event lengths can be prime: pad to a fast FFT size
    spectrum = sp_fft.rfft(x, m)
    spectrum *= gain(np.fft.rfftfreq(m, 1.0 / sr))
    return sp_fft.irfft(spectrum, m)[:n]


def _unit(x: np.ndarray) -> np.ndarray:
    """x scaled to unit RMS."""
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _shaped_noise(rng: np.random.Generator, n: int, sr: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Gaussian noise with magnitude spectrum gain(freqs in Hz); [n], unit RMS.

    The spectrum of white noise is itself complex Gaussian, so it is drawn directly in the frequency
    domain: one inverse FFT instead of a forward and an inverse one.
    """
    m = sp_fft.next_fast_len(n, real=True)
    k = m // 2 + 1
    spectrum = rng.standard_normal(k, dtype=np.float32) + 1j * rng.standard_normal(k, dtype=np.float32)
    spectrum *= gain(np.fft.rfftfreq(m, 1.0 / sr).astype(np.float32))
    return _unit(sp_fft.irfft(spectrum, m)[:n])


def _band(lo: float, hi: float, order: float = 4.0) -> Callable[[np.ndarray], np.ndarray]:
    """A smooth band-pass magnitude response between lo and hi Hz."""

    def gain(f: np.ndarray) -> np.ndarray:
        f = np.maximum(f, 0.01 * lo)  # keeps (lo / f) ** 8 finite in float32
        return 1.0 / np.sqrt((1 + (lo / f) ** (2 * order)) * (1 + (f / hi) ** (2 * order)))

    return gain


def _phase(f0: np.ndarray, sr: int) -> np.ndarray:
    """Instantaneous phase (radians) of a time-varying fundamental f0 [n] in Hz."""
    return 2 * np.pi * np.cumsum(f0) / sr


def _harmonics(phase: np.ndarray, amps: np.ndarray) -> np.ndarray:
    """Sum of harmonics k = 1..K of a phase track with amplitudes amps [K]."""
    out = np.zeros(len(phase), dtype=np.float32)
    for k, a in enumerate(amps, start=1):
        if a > 1e-3:  # inaudible harmonics are skipped: they cost as much as loud ones
            # Wrap in float64, then take the sine in float32 (half the cost, ample precision).
            out += np.float32(a) * np.sin(np.mod(k * phase, 2 * np.pi).astype(np.float32))
    return out


def _sawtooth(phase: np.ndarray) -> np.ndarray:
    """A naive sawtooth (all harmonics, 1/k): the cheap raw material of motor buzz."""
    return 2.0 * ((phase / (2 * np.pi)) % 1.0) - 1.0


def _fade(x: np.ndarray, sr: int, fade_in: float = 0.005, fade_out: float = 0.01) -> np.ndarray:
    """Raised-cosine fades so an event starts and ends without clicks."""
    n_in, n_out = min(int(fade_in * sr), len(x) // 2), min(int(fade_out * sr), len(x) // 2)
    if n_in > 0:
        x[:n_in] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(n_in) / n_in)
    if n_out > 0:
        x[-n_out:] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(n_out) / n_out)
    return x


def _burst_starts(n: int, burst: int, rng: np.random.Generator, gap: tuple[float, float]) -> list[int]:
    """Start samples of bursts of length `burst` filling [0, n): the first at 0, the last ending at n."""
    if n <= burst:
        return [0]
    period = burst * (1 + rng.uniform(*gap))
    count = max(2, int(round((n - burst) / period)) + 1)
    return [int(round(s)) for s in np.linspace(0, n - burst, count)]


def _time(n: int, sr: int) -> np.ndarray:
    return np.arange(n) / sr


# --------------------------------------------------------------------------- the 10 classes
# Each function returns an event of exactly n samples (before level scaling).


def _alarm(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Beeping tone bursts: a pure-ish tone at 1-3 kHz switched on and off."""
    f0 = rng.uniform(1000, 3000)
    burst = min(n, int(rng.uniform(0.06, 0.15) * sr))
    tone = np.sin(2 * np.pi * f0 * _time(n, sr)) + 0.3 * np.sin(4 * np.pi * f0 * _time(n, sr))
    gate = np.zeros(n)
    for s in _burst_starts(n, burst, rng, (0.4, 1.0)):
        gate[s : s + burst] = _fade(np.ones(min(burst, n - s)), sr, 0.003, 0.003)
    return tone * gate


def _blender(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Harmonic motor buzz with noise: a jittery sawtooth at 100-200 Hz, band-limited, plus hiss."""
    f0 = rng.uniform(100, 200) * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * _time(n, sr)))
    buzz = _sawtooth(_phase(f0, sr))
    buzz = _unit(_filter(buzz, sr, _band(150, 3000, 2)))
    return buzz + 0.6 * _shaped_noise(rng, n, sr, _band(800, 4000, 2))


def _cat(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Gliding harmonic meow: f0 rises then falls (400 -> 750 -> 450 Hz), a nasal formant near 1.5 kHz."""
    lo, hi, end = rng.uniform(350, 500), rng.uniform(650, 900), rng.uniform(350, 550)
    u = np.linspace(0, 1, n)
    f0 = np.where(u < 0.4, lo + (hi - lo) * u / 0.4, hi + (end - hi) * (u - 0.4) / 0.6)
    k = np.arange(1, 9)
    amps = np.exp(-(((k * f0.mean()) - rng.uniform(1200, 1800)) / 900.0) ** 2) + 0.3 / k
    env = np.sin(np.pi * u) ** 0.5
    return _harmonics(_phase(f0, sr), amps) * env


def _dishes(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Short metallic clinks: impacts of damped inharmonic partials at 2-7 kHz."""
    out = np.zeros(n)
    decay = rng.uniform(0.03, 0.08)
    clink = min(n, int(4 * decay * sr))
    t = _time(clink, sr)
    for s in _burst_starts(n, clink, rng, (0.2, 1.5)):
        partials = rng.uniform(2000, min(7000, 0.45 * sr), size=4)
        ring = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * np.exp(-t / (decay * rng.uniform(0.5, 1.0)))
                   for f in partials)
        out[s : s + clink] += ring[: n - s]
    return out


def _dog(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Short barks: noisy harmonic bursts (f0 300-600 Hz) through a formant at 0.6-1.4 kHz, fast decay."""
    out = np.zeros(n)
    bark = min(n, int(rng.uniform(0.12, 0.25) * sr))
    formant = rng.uniform(600, 1400)
    t = _time(bark, sr)
    env = (1 - np.exp(-t / 0.005)) * np.exp(-t / (0.35 * bark / sr))
    for s in _burst_starts(n, bark, rng, (0.5, 1.5)):
        f0 = rng.uniform(300, 600) * np.linspace(1.1, 0.85, bark)
        k = np.arange(1, 7)
        voiced = _harmonics(_phase(f0, sr), np.exp(-((k * f0.mean() - formant) / 700.0) ** 2))
        noisy = _shaped_noise(rng, bark, sr, _band(formant * 0.6, formant * 1.8, 2))
        out[s : s + bark] += (voiced / (np.abs(voiced).max() + 1e-9) + 0.5 * noisy) * env
    return out


def _shaver(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """High buzzing harmonic with amplitude modulation: a high-passed sawtooth at 180-300 Hz."""
    t = _time(n, sr)
    buzz = _sawtooth(_phase(np.full(n, rng.uniform(180, 300)), sr))
    buzz = _unit(_filter(buzz, sr, _band(2000, 7000, 2)))
    am = 1 + 0.4 * np.sin(2 * np.pi * rng.uniform(4, 12) * t)
    return buzz * am


def _frying(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Crackly sizzle: high-passed noise plus random clicks (30-80 a second)."""
    hiss = _shaped_noise(rng, n, sr, _band(3000, 0.49 * sr, 3))
    clicks = np.zeros(n)
    count = rng.poisson(rng.uniform(30, 80) * n / sr)
    clicks[rng.integers(0, n, size=count)] = rng.uniform(2, 8, size=count) * rng.choice([-1, 1], size=count)
    ringing = np.exp(-np.arange(int(0.002 * sr)) / (0.0004 * sr))
    return 0.5 * hiss + np.convolve(clicks, ringing)[:n]


def _water(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Running water: noise band-passed around 0.5-3 kHz with slow (1-4 Hz) level modulation."""
    lo = rng.uniform(400, 800)
    noise = _shaped_noise(rng, n, sr, _band(lo, lo * rng.uniform(3, 5), 2))
    t = _time(n, sr)
    mod = 1 + 0.35 * np.sin(2 * np.pi * rng.uniform(1, 4) * t + rng.uniform(0, 2 * np.pi))
    return noise * mod


def _speech(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Voiced syllables (0.12-0.3 s) with a falling pitch contour and per-syllable vowel formants."""
    out = np.zeros(n)
    base = rng.uniform(100, 230)
    start = 0
    while start < n:
        length = min(n - start, int(rng.uniform(0.12, 0.3) * sr))
        if n - start - length < int(0.06 * sr):
            length = n - start  # no sliver at the end: the last syllable reaches the offset
        u = np.linspace(0, 1, length)
        f0 = base * rng.uniform(0.9, 1.15) * (1 - 0.15 * u)
        k = np.arange(1, 25)
        f1, f2 = rng.uniform(300, 800), rng.uniform(900, 2400)
        amps = (np.exp(-((k * f0.mean() - f1) / 150.0) ** 2) + 0.6 * np.exp(-((k * f0.mean() - f2) / 250.0) ** 2)
                + 0.05 / k) * (k * f0.mean() < 0.45 * sr)
        out[start : start + length] = _harmonics(_phase(f0, sr), amps) * np.sin(np.pi * u) ** 0.7
        start += length + int(rng.uniform(0.0, 0.05) * sr)
    return out


def _vacuum(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Vacuum cleaner: broadband low-passed roar below ~2 kHz plus a motor hum at 80-150 Hz."""
    roar = _shaped_noise(rng, n, sr, _band(60, rng.uniform(1500, 2500), 2))
    hum = _harmonics(_phase(np.full(n, rng.uniform(80, 150)), sr), np.array([1.0, 0.6, 0.4, 0.25]))
    return roar + 0.5 * hum


SYNTHS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "Alarm_bell_ringing": _alarm,
    "Blender": _blender,
    "Cat": _cat,
    "Dishes": _dishes,
    "Dog": _dog,
    "Electric_shaver_toothbrush": _shaver,
    "Frying": _frying,
    "Running_water": _water,
    "Speech": _speech,
    "Vacuum_cleaner": _vacuum,
}


# --------------------------------------------------------------------------- backgrounds and rooms


def _clean_background(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Low-level pink noise (1/f power): the strong set's clean studio background. [n], unit RMS."""
    return _shaped_noise(rng, n, sr, lambda f: 1 / np.sqrt(np.maximum(f, 20.0)))


def _real_background(rng: np.random.Generator, n: int, sr: int, tilt_db: float) -> np.ndarray:
    """Brown noise + mains hum + muffled babble (band-limited noise with a syllabic envelope). [n], unit RMS.

    tilt_db: the microphone's spectral tilt (dB per octave around 1 kHz), folded into the noise spectra.
    """
    t = _time(n, sr)
    brown = _shaped_noise(rng, n, sr, lambda f: _tilt_gain(f, tilt_db) / np.maximum(f, 20.0))
    mains = rng.choice([50.0, 60.0])
    hum = _harmonics(2 * np.pi * mains * t, np.array([1.0, 0.5, 0.3]))
    # A 2-6 Hz syllabic envelope, drawn at 100 Hz and interpolated (cheaper than filtering at sr).
    slow = _shaped_noise(rng, int(CLIP_SECONDS * 100) + 1, 100, _band(2.0, 6.0, 2))
    envelope = np.clip(1 + np.interp(t, np.arange(len(slow)) / 100, slow), 0, None)
    babble = _shaped_noise(rng, n, sr, lambda f: _tilt_gain(f, tilt_db) * _band(300, 1500, 2)(f)) * envelope
    mix = brown + rng.uniform(0.05, 0.3) * hum + rng.uniform(0.2, 0.6) * babble
    return _unit(mix)


def _tilt_gain(f: np.ndarray, db_per_octave: float) -> np.ndarray:
    """A microphone's spectral tilt around 1 kHz: magnitude response at f (Hz)."""
    return 10 ** (db_per_octave * np.log2(np.maximum(f, 50.0) / 1000) / 20)


def _room(rng: np.random.Generator, sr: int, tilt_db: float) -> np.ndarray:
    """A synthetic room impulse response: direct path + exponentially decaying noise (RT60 0.2-0.7 s),
    coloured by the microphone tilt. [n_ir], unit energy."""
    rt60 = rng.uniform(0.2, 0.7)
    t = _time(int(rt60 * sr), sr)
    ir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60) * rng.uniform(0.1, 0.3)
    ir[0] = 1.0
    ir = _filter(np.concatenate([ir, np.zeros(int(0.01 * sr))]), sr, lambda f: _tilt_gain(f, tilt_db))
    return ir / np.sqrt(np.sum(ir**2))


# --------------------------------------------------------------------------- one clip


@dataclass(frozen=True)
class ClipSpec:
    """What to generate: one clip of one subset."""

    subset: str
    index: int
    seed: int
    sample_rate: int


def clip_rng(seed: int, subset: str, index: int) -> np.random.Generator:
    """The clip's own generator, from (seed, subset, index): independent of worker scheduling."""
    return np.random.default_rng([seed, _SUBSET_CODE[subset], index])


def _clip_name(rng: np.random.Generator, subset: str, index: int) -> str:
    """DESED-like names: "<index>.wav" in the synthetic set, YouTube id + segment times elsewhere."""
    if subset == "synthetic":
        return f"{index}.wav"
    ident = "".join(rng.choice(list(_NAME_CHARS), size=11))
    start = int(rng.integers(0, 600))
    return f"Y{ident}_{start:.3f}_{start + CLIP_SECONDS:.3f}.wav"


def _n_events(rng: np.random.Generator, subset: str, index: int) -> int:
    if subset in ("validation", "test", "unlabeled") and index % _EMPTY_EVERY == 3:
        return 0  # clips without events, like DESED's empty-label rows
    return int(rng.integers(1, 5))


def _duration(rng: np.random.Generator, label: str) -> float:
    """Event length in seconds: log-normal around DESED's median, clipped to [0.1, 10] s."""
    seconds = DESED_MEDIAN_SECONDS[label] * np.exp(_DURATION_SIGMA * rng.standard_normal())
    return float(np.clip(seconds, 0.1, CLIP_SECONDS))


def _draw_events(rng: np.random.Generator, subset: str, index: int) -> list[tuple[float, float, str]]:
    """(onset, offset, label) of a clip, rounded to ms; the first event's class rotates with the index
    so that every class leads as many clips; events of one class never overlap each other."""
    events: list[tuple[float, float, str]] = []
    for i in range(_n_events(rng, subset, index)):
        label = CLASSES[index % len(CLASSES)] if i == 0 else CLASSES[int(rng.integers(len(CLASSES)))]
        dur = _duration(rng, label)
        onset = round(float(rng.uniform(0, CLIP_SECONDS - dur)), 3)
        offset = round(min(onset + dur, CLIP_SECONDS), 3)
        if offset - onset < 0.05:
            continue
        if any(lab == label and on < offset and onset < off for on, off, lab in events):
            continue
        events.append((onset, offset, label))
    return sorted(events)


def _name_and_events(rng: np.random.Generator, spec: ClipSpec) -> tuple[str, list[tuple[float, float, str]]]:
    """The clip's file name and events: the first draws of its generator, before any of its audio."""
    return _clip_name(rng, spec.subset, spec.index), _draw_events(rng, spec.subset, spec.index)


def clip_events(spec: ClipSpec) -> tuple[str, list[tuple[float, float, str]]]:
    """(filename, events) of a clip exactly as render_clip draws them, without synthesising its audio."""
    return _name_and_events(clip_rng(spec.seed, spec.subset, spec.index), spec)


def render_clip(spec: ClipSpec, audio_dir: Path) -> tuple[str, list[tuple[float, float, str]]]:
    """Synthesise one clip, write it as 16-bit mono WAV into audio_dir, and return (filename, events)."""
    rng = clip_rng(spec.seed, spec.subset, spec.index)
    sr = spec.sample_rate
    n = int(CLIP_SECONDS * sr)
    name, events = _name_and_events(rng, spec)
    domain = SYNTHETIC if spec.subset == "synthetic" else REAL
    foreground = np.zeros(n)
    for onset, offset, label in events:
        a, b = int(round(onset * sr)), int(round(offset * sr))
        sound = _fade(SYNTHS[label](rng, b - a, sr), sr)
        sound *= 10 ** (rng.uniform(*domain.snr_db) / 20) / (np.sqrt(np.mean(sound**2)) + 1e-12)
        foreground[a:b] += sound
    if domain.real:
        tilt_db = rng.uniform(-3, 3)
        from scipy.signal import fftconvolve  # here, not at the top: scipy.signal costs every job ~1-3 s to import

        foreground = fftconvolve(foreground, _room(rng, sr, tilt_db))[:n]
        mix = foreground + _real_background(rng, n, sr, tilt_db)
    else:
        mix = foreground + _clean_background(rng, n, sr)
    # A random overall level (peak 0.3-0.9 of full scale), as recordings differ in gain.
    mix *= rng.uniform(0.3, 0.9) / (np.abs(mix).max() + 1e-12)
    pcm = np.round(mix * 32767).astype(np.int16)
    # Encoded in memory, written by Python: libsndfile reports a full disk as "System error." without a file
    # name, where a plain write raises ENOSPC, which full_disk_named turns into "<file>: the disk is full".
    wav = io.BytesIO()
    sf.write(wav, pcm, sr, subtype="PCM_16", format="WAV")
    with full_disk_named(audio_dir / name):
        (audio_dir / name).write_bytes(wav.getvalue())
    return name, events


# --------------------------------------------------------------------------- metadata


def _strong_tsv(rows: list[tuple[str, list[tuple[float, float, str]]]]) -> str:
    lines = ["filename\tonset\toffset\tevent_label"]
    for name, events in rows:
        if not events:
            lines.append(f"{name}\t\t\t")  # DESED's empty-label row: a clip without events
        lines.extend(f"{name}\t{on:.3f}\t{off:.3f}\t{label}" for on, off, label in events)
    return "\n".join(lines) + "\n"


def _weak_tsv(rows: list[tuple[str, list[tuple[float, float, str]]]]) -> str:
    lines = ["filename\tevent_labels"]
    for name, events in rows:
        present = {label for _, _, label in events}
        lines.append(f"{name}\t{','.join(c for c in CLASSES if c in present)}")
    return "\n".join(lines) + "\n"


def _unlabeled_tsv(rows: list[tuple[str, list[tuple[float, float, str]]]]) -> str:
    return "\n".join(["filename", *(name for name, _ in rows)]) + "\n"


_TSV_WRITERS = {"strong": _strong_tsv, "weak": _weak_tsv, "unlabeled": _unlabeled_tsv}


# --------------------------------------------------------------------------- the corpus


def _marker(size: str, seed: int, sample_rate: int, counts: dict[str, int]) -> dict:
    return {"size": size, "seed": seed, "sample_rate": sample_rate, "counts": counts}


def read_marker(out: Path) -> dict | None:
    """The parameters of a finished corpus at `out`, or None when it is absent or unfinished."""
    path = Path(out) / MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def _prepare(out: Path, size: str, seed: int, sample_rate: int) -> bool:
    """Make `out` ready for generation; True when a matching finished corpus is already there.

    Raises:
        DataError: `out` holds another corpus or files that are not an unfinished synthetic corpus.
    """
    marker = read_marker(out)
    if marker is not None:
        if (marker["size"], marker["seed"], marker["sample_rate"]) == (size, seed, sample_rate):
            return True
        raise DataError(
            f"{out} holds a synthetic corpus of size {marker['size']!r}, seed {marker['seed']}, "
            f"{marker['sample_rate']} Hz, not {size!r}/{seed}/{sample_rate}; choose another folder or delete it"
        )
    if (out / _IN_PROGRESS).exists():
        for sub in ("audio", "metadata"):  # the remains of an interrupted generation
            shutil.rmtree(out / sub, ignore_errors=True)
    elif out.exists() and any(out.iterdir()):
        raise DataError(f"{out} is not empty and is not a synthetic corpus; give an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / _IN_PROGRESS).write_text("")
    return False


def _render_all(specs: list[ClipSpec], out: Path, n_jobs: int) -> list[tuple[str, list]]:
    audio_dirs = [out / LAYOUT[s.subset][2] for s in specs]
    if n_jobs == 1:
        return [render_clip(s, d) for s, d in zip(specs, audio_dirs)]
    from joblib import Parallel, delayed
    from joblib.externals.loky import get_reusable_executor

    rendered = Parallel(n_jobs=n_jobs, batch_size=16)(delayed(render_clip)(s, d) for s, d in zip(specs, audio_dirs))
    # The corpus is generated inside a study's worker process (harness.study.stage_tasks). Left idle, joblib's
    # executor keeps its two processes for loky's 300-s idle timeout, and the worker cannot exit before
    # them: when loky recycled that worker after its first student job, the next jobs waited 2.5 minutes.
    get_reusable_executor().shutdown(wait=True)
    return rendered


def generate(
    out: Path | str, size: Size, seed: int = 0, sample_rate: int = 16000, n_jobs: int | None = None
) -> dict[str, int]:
    """Write the synthetic corpus in DESED's layout at `out`; returns the clip count of each subset.

    A finished corpus of the same parameters is left as it is. Files are written first and the
    `.complete` marker (JSON: size, seed, sample_rate, counts) last.

    Args:
        out: the corpus root (created if needed; must be empty, unfinished, or a matching corpus).
        size: "tiny" (about 8 clips a subset, for tests) or "quick" (2,500 clips).
        seed: the corpus seed; the same seed and size give byte-identical files.
        sample_rate: of the 16-bit mono WAV files (Hz).
        n_jobs: worker processes; None = 1 for tiny corpora, 2 otherwise.
    """
    if size not in SIZES:
        raise DataError(f"unknown synthetic corpus size {size!r}; valid sizes: {', '.join(SIZES)}")
    out = Path(out)
    # Two studies sharing a new cache: the second waits here, then finds the finished corpus.
    with locked(out, f"the synthetic corpus {out}"), full_disk_named(out):
        return _generate(out, size, seed, sample_rate, n_jobs)


def _generate(out: Path, size: Size, seed: int, sample_rate: int, n_jobs: int | None) -> dict[str, int]:
    counts = dict(SIZES[size])
    if _prepare(out, size, seed, sample_rate):
        _add_missing_truth(out, counts["unlabeled"], seed, sample_rate)
        return counts
    start = time.perf_counter()
    for subset in counts:
        _, tsv, audio = LAYOUT[subset]
        (out / audio).mkdir(parents=True, exist_ok=True)
        (out / tsv).parent.mkdir(parents=True, exist_ok=True)
    specs = [ClipSpec(sub, i, seed, sample_rate) for sub, count in counts.items() for i in range(count)]
    n_jobs = n_jobs if n_jobs is not None else (1 if len(specs) <= 100 else 2)
    rendered = _render_all(specs, out, n_jobs)
    names = [name for name, _ in rendered]
    if len(set(names)) != len(names):
        raise DataError(f"synthetic corpus seed {seed}: two clips drew the same file name; use another seed")
    _write_metadata(out, specs, rendered)
    (out / MARKER).write_text(json.dumps(_marker(size, seed, sample_rate, counts), sort_keys=True))
    (out / _IN_PROGRESS).unlink()
    log.info("synthetic corpus %s (%s, seed %d) written in %.1f s", out, size, seed, time.perf_counter() - start)
    return counts


def _write_metadata(out: Path, specs: list[ClipSpec], rendered: list[tuple[str, list]]) -> None:
    by_subset: dict[str, list] = {}
    for spec, row in zip(specs, rendered):
        by_subset.setdefault(spec.subset, []).append(row)
    for subset, rows in by_subset.items():
        kind, tsv, _ = LAYOUT[subset]
        (out / tsv).write_text(_TSV_WRITERS[kind](rows))
    # The unlabeled clips' true events, beside (never in) their TSV: the report scores the teacher's pseudolabels
    # against them, and the data's key, which hashes the subsets' TSVs only, stays what it was.
    (out / UNLABELED_TRUTH_TSV).write_text(_strong_tsv(by_subset.get("unlabeled", [])))


def _add_missing_truth(out: Path, n_unlabeled: int, seed: int, sample_rate: int) -> None:
    """Write the truth of the unlabeled clips into a finished corpus generated before it was written.

    Their events are the first draws of each clip's generator (clip_events), so this takes milliseconds and
    gives the bytes a new generation writes; no other file is touched. A corpus that cannot be written to
    (read-only) is left without it: the report then shows no pseudolabel quality.
    """
    path = out / UNLABELED_TRUTH_TSV
    if path.is_file():
        return
    rows = [clip_events(ClipSpec("unlabeled", i, seed, sample_rate)) for i in range(n_unlabeled)]
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(_strong_tsv(rows))
        tmp.replace(path)  # readers see the whole file or none
    except OSError as e:
        tmp.unlink(missing_ok=True)
        log.warning("synthetic corpus %s: cannot write the truth of its unlabeled clips (%s); the report will "
                    "show no pseudolabel quality", out, e)


def ensure_corpus(out: Path | str, size: Size = "quick", seed: int = 0, sample_rate: int = 16000) -> Path:
    """The root of a finished synthetic corpus at `out`, generating it first if needed."""
    generate(out, size, seed, sample_rate)
    return Path(out)
