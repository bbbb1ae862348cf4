"""Benchmark 3: log-mel feature extraction, `harness.features.cache.extract` against librosa.

Run from the repository root: /work/venv/bin/python -m benchmarks.bench_features [--quick]

Fresh 10-s WAV files (16-bit PCM, noise plus a tone) are written at 16 kHz and 44.1 kHz. Timed, like for
like (the same number of processes on each side, with the same BLAS threads in each):

- harness: `extract(clips, FeatureConfig(sample_rate=sr), 64, cache, ...)` into an empty cache, so
  the timing includes hashing the audio, reading it, the log-mel and writing the memory-mapped .npy;
- librosa (the baseline): soundfile.read + librosa.feature.melspectrogram with the same parameters (n_fft,
  Hann window of win_seconds, hop, centre + reflect padding, power=1, Slaney mel) + log(mel + 1e-8), first
  500 frames, the arrays returned (no hashing, no file written);
- one process each: `extract(..., jobs=1)` (in-process) against librosa in this process, both under
  threadpool_limits(1);
- two processes each: `extract(..., jobs=2)` (two loky workers) against librosa over two loky workers
  (joblib, the same chunks of clips as extract's); loky caps each worker's BLAS at cores // 2 threads;
- information: extract jobs=2 against jobs=1 (how extract scales with processes), and librosa with its
  default thread pools in one process (the baseline of earlier versions of this benchmark, which compared
  it with extract in two processes: not like for like).

Each timing is the best of `repeats`, after one warm-up of each (librosa's filterbank cache, the loky
workers). Agreement: the largest |log-mel difference| over bins within 100 dB of the clip's maximum,
which is the relative difference of the mel magnitudes (log(a) - log(b) ~ (a - b) / b).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import joblib
import librosa
import numpy as np
import soundfile as sf
from threadpoolctl import threadpool_limits

from harness.config import FeatureConfig
from harness.features.cache import CHUNK_CLIPS, _chunks, extract

N_MELS = 64
SECONDS = 10


def write_clips(directory: Path, n: int, sr: int, seed: int = 0) -> list[tuple[str, Path]]:
    """n fresh 10-s 16-bit WAVs (white noise + a tone) at sr; returns (clip id, path) pairs."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    t = np.arange(SECONDS * sr) / sr
    clips = []
    for i in range(n):
        audio = 0.1 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t)
        path = directory / f"c{i:04d}.wav"
        sf.write(path, audio.astype(np.float32), sr, subtype="PCM_16")
        clips.append((f"c{i:04d}", path))
    return clips


def librosa_logmel(path: Path, cfg: FeatureConfig) -> np.ndarray:
    """[frames, n_mels] log-mel of one file, the librosa way."""
    y, sr = sf.read(path, dtype="float32")
    mel = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=cfg.n_fft, hop_length=round(cfg.hop_seconds * sr), win_length=round(cfg.win_seconds * sr),
        window="hann", center=True, pad_mode="reflect", power=1.0, n_mels=N_MELS, fmin=cfg.fmin, fmax=cfg.fmax)
    return np.log(mel + cfg.log_eps).T[: cfg.n_frames]


def _best(repeats: int, fn) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _extract_cold(clips, cfg: FeatureConfig, root: Path, jobs: int) -> np.ndarray:
    """extract into a fresh cache directory; returns the features (copied out before the cache goes)."""
    cache = Path(tempfile.mkdtemp(dir=root))
    try:
        return np.array(extract(clips, cfg, N_MELS, cache, "bench", jobs=jobs).features)
    finally:
        shutil.rmtree(cache)


def max_relative_difference(ours: np.ndarray, ref: np.ndarray, floor_db: float = 100.0) -> float:
    """Largest |log-mel difference| over bins within floor_db of each clip's maximum. ours, ref: [N, T, M]."""
    worst = 0.0
    floor = floor_db / 20 * np.log(10)
    for a, b in zip(ours, ref):
        keep = b > b.max() - floor
        worst = max(worst, float(np.abs(a - b)[keep].max()))
    return worst


def _librosa_chunk(paths: list[Path], cfg: FeatureConfig) -> np.ndarray:
    return np.stack([librosa_logmel(p, cfg) for p in paths])


def librosa_processes(clips, cfg: FeatureConfig, jobs: int) -> np.ndarray:
    """librosa's log-mel of `clips` over `jobs` loky workers, in the chunks extract would use."""
    paths = [p for _, p in clips]
    chunks = [paths[c.start:c.stop] for c in _chunks(len(paths), jobs)]
    parallel = joblib.Parallel(n_jobs=jobs, backend="loky", batch_size=1)
    return np.concatenate(parallel(joblib.delayed(_librosa_chunk)(chunk, cfg) for chunk in chunks))


def measure_rate(sr: int, n: int, repeats: int, root: Path) -> dict:
    """Clips per second of each contender at sample rate sr, and the agreement with librosa."""
    cfg = FeatureConfig(sample_rate=sr)
    clips = write_clips(root / f"wav{sr}", n, sr)
    librosa_all = lambda: np.stack([librosa_logmel(p, cfg) for _, p in clips])  # noqa: E731
    librosa_logmel(clips[0][1], cfg)  # warm-up: filterbank cache, imports
    # Warm-up of both loky workers (the executor is shared): 16 clips are 2 tasks, one a worker.
    _extract_cold(clips[: 2 * CHUNK_CLIPS], cfg, root, 2)
    librosa_processes(clips[: 2 * CHUNK_CLIPS], cfg, 2)
    seconds = {"librosa_default_threads": _best(repeats, librosa_all)}
    with threadpool_limits(1):
        seconds["librosa_1proc"] = _best(repeats, librosa_all)
        seconds["extract_1proc"] = _best(repeats, lambda: _extract_cold(clips, cfg, root, 1))
    seconds["librosa_2proc"] = _best(repeats, lambda: librosa_processes(clips, cfg, 2))
    seconds["extract_2proc"] = _best(repeats, lambda: _extract_cold(clips, cfg, root, 2))
    diff = max_relative_difference(_extract_cold(clips, cfg, root, 2), librosa_all())
    return {"sr": sr, "n": n, "rate": {k: n / v for k, v in seconds.items()}, "max_rel_diff": diff}


def measure(quick: bool = False) -> list[dict]:
    n, repeats = (40, 1) if quick else (200, 2)
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        return [measure_rate(sr, n, repeats, Path(tmp)) for sr in (16000, 44100)]


def _row(figure: str, measured: float, baseline: float, target: float | None) -> dict:
    ratio = measured / baseline
    return {"figure": figure, "measured": f"{measured:.1f} clips/s", "baseline": f"{baseline:.1f}", "ratio": ratio,
            "target": f">= {target:g}" if target else "(info)", "met": ratio >= target if target else None}


def rows_from(measured: list[dict]) -> list[dict]:
    rows = []
    for m in measured:
        rate, sr, n = m["rate"], f"{m['sr'] / 1000:g} kHz", m["n"]
        rows += [
            _row(f"features {sr}, {n} clips, 1 process each (1 BLAS thread): extract vs librosa",
                 rate["extract_1proc"], rate["librosa_1proc"], 3.0),
            _row(f"features {sr}, {n} clips, 2 processes each: extract jobs=2 vs librosa in 2 loky workers",
                 rate["extract_2proc"], rate["librosa_2proc"], 3.0),
            _row(f"features {sr}: extract jobs=2 vs extract jobs=1 (scaling with processes)",
                 rate["extract_2proc"], rate["extract_1proc"], None),
            _row(f"features {sr}: librosa in 1 process, default BLAS threads vs 1 thread",
                 rate["librosa_default_threads"], rate["librosa_1proc"], None),
        ]
        rows.append({"figure": f"features {sr}: max relative difference to librosa",
                     "measured": f"{m['max_rel_diff']:.1e}", "baseline": "", "ratio": None, "target": "< 1e-3",
                     "met": m["max_rel_diff"] < 1e-3})
    return rows


def run(quick: bool = False) -> list[dict]:
    """Benchmark 3 as table rows."""
    return rows_from(measure(quick))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 clips instead of 200, one repeat")
    args = parser.parse_args()
    from benchmarks.run import print_table

    print_table(run(args.quick))


if __name__ == "__main__":
    main()
