"""Tests of harness.features: log-mel parity with librosa, audio reading, the feature cache."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib
import json
import math
import os
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile

from harness.config import FeatureConfig
from harness.errors import ConfigError, DataError
from harness.features import (
    FeatureSet,
    extract,
    logmel,
    logmel_batch,
    mel_filterbank,
    normalization,
    read_audio,
)
from harness.features.logmel import mel_batch

SMALL = FeatureConfig(sample_rate=16000, n_frames=100)  # 2 s of frames: keeps the cache tests fast


def _test_signal(seconds: float, sr: int, seed: int) -> np.ndarray:
    """A 440 Hz tone in white noise: every mel bin well above zero, so relative errors are meaningful."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(len(t))).astype(np.float32)


def _librosa_mel(y: np.ndarray, cfg: FeatureConfig, n_mels: int) -> np.ndarray:
    """[frames, n_mels] mel magnitudes from librosa with the SPEC's parameters."""
    sr = cfg.sample_rate
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=sr,
        n_fft=cfg.n_fft,
        hop_length=round(cfg.hop_seconds * sr),
        win_length=round(cfg.win_seconds * sr),
        window="hann",
        center=True,
        pad_mode="reflect",
        power=1.0,
        n_mels=n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
    )
    return mel.T


def _write(path: Path, audio: np.ndarray, sr: int) -> Path:
    soundfile.write(path, audio, sr, subtype="FLOAT")
    return path


def _clips(tmp_path: Path, seconds: list[float], sr: int = 16000, seed: int = 0) -> list[tuple[str, Path]]:
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    return [
        (f"clip{i}", _write(audio_dir / f"clip{i}.wav", _test_signal(s, sr, seed + i), sr))
        for i, s in enumerate(seconds)
    ]


# --------------------------------------------------------------------------- log-mel vs librosa


@pytest.mark.parametrize("sr", [44100, 16000])
@pytest.mark.parametrize("n_mels", [20, 64])
@pytest.mark.parametrize("fmin, fmax", [(0.0, None), (50.0, 7000.0)])
def test_filterbank_matches_librosa(sr: int, n_mels: int, fmin: float, fmax: float | None) -> None:
    ours = mel_filterbank(sr, 2048, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=sr, n_fft=2048, n_mels=n_mels, fmin=fmin, fmax=fmax, dtype=np.float64)
    assert ours.shape == (n_mels, 1025)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("sr", [44100, 16000])
@pytest.mark.parametrize("n_mels", [20, 64])
def test_logmel_matches_librosa_short_and_long_clips(sr: int, n_mels: int) -> None:
    cfg = FeatureConfig(sample_rate=sr)
    short, long = _test_signal(7.3, sr, seed=1), _test_signal(10.5, sr, seed=2)
    mel, valid = mel_batch([short, long], cfg, n_mels)  # one batch of two lengths
    features = logmel_batch([short, long], cfg, n_mels)
    assert features.shape == (2, 500, n_mels) and features.dtype == np.float32

    # The short clip: 1 + 7.3 s / 20 ms = 366 frames of audio, then padding frames of log(eps).
    ref_short = _librosa_mel(short, cfg, n_mels)
    assert ref_short.shape[0] == 366 and valid[0].sum() == 366
    np.testing.assert_allclose(mel[0, :366], ref_short, rtol=1e-4)
    # A relative error r on the mel is an absolute error of about r on its log.
    np.testing.assert_allclose(features[0, :366], np.log(ref_short + cfg.log_eps), rtol=0, atol=1e-4)
    np.testing.assert_array_equal(features[0, 366:], np.float32(np.log(np.float32(cfg.log_eps))))

    # The long clip: 526 frames, cropped to the first 500.
    ref_long = _librosa_mel(long, cfg, n_mels)
    assert ref_long.shape[0] == 526 and valid[1].all()
    np.testing.assert_allclose(mel[1], ref_long[:500], rtol=1e-4)
    np.testing.assert_allclose(features[1], np.log(ref_long[:500] + cfg.log_eps), rtol=0, atol=1e-4)

    # One clip alone gives the same rows as within the batch (up to float32 rounding in the BLAS).
    np.testing.assert_allclose(logmel(short, cfg, n_mels), features[0], rtol=0, atol=1e-5)


def test_batch_rows_equal_single_clips_across_sub_batches() -> None:
    # Long clips then short ones, so later clips reuse work buffers that held longer audio.
    cfg = FeatureConfig(sample_rate=16000)
    clips = [_test_signal(s, 16000, seed=i) for i, s in enumerate([10.4, 9.9, 3.1, 0.7, 6.2])]
    batch = logmel_batch(clips, cfg, 20)
    for clip, row in zip(clips, batch):
        np.testing.assert_allclose(row, logmel(clip, cfg, 20), rtol=0, atol=1e-5)
    assert (batch[3, 36:] == np.float32(np.log(np.float32(cfg.log_eps)))).all()  # 0.7 s: 36 frames


def test_ten_second_clip_gives_501_frames_cropped_to_500() -> None:
    cfg = FeatureConfig()  # 44.1 kHz, the paper's framing
    clip = _test_signal(10.0, cfg.sample_rate, seed=3)
    ref = _librosa_mel(clip, cfg, 64)
    assert ref.shape == (501, 64)
    np.testing.assert_allclose(logmel(clip, cfg, 64), np.log(ref[:500] + cfg.log_eps), rtol=0, atol=1e-4)


def _plain_mel(audio: np.ndarray, cfg: FeatureConfig, n_mels: int) -> np.ndarray:
    """[frames, n_mels] mel magnitudes by the recipe written plainly: np.pad, the window centred in
    n_fft, one float64 FFT per frame and the dense filterbank; all frames of the clip."""
    sr, n_fft = cfg.sample_rate, cfg.n_fft
    win, hop = round(cfg.win_seconds * sr), round(cfg.hop_seconds * sr)
    window = np.zeros(n_fft)
    window[(n_fft - win) // 2 :][:win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    padded = np.pad(audio.astype(np.float64), n_fft // 2, mode="reflect")
    frames = np.stack([padded[t * hop : t * hop + n_fft] for t in range(1 + len(audio) // hop)])
    filterbank = mel_filterbank(sr, n_fft, n_mels, cfg.fmin, cfg.fmax)  # [n_mels, F]
    return np.abs(np.fft.rfft(frames * window, axis=1)) @ filterbank.T


@pytest.mark.parametrize(
    "cfg, n_mels",
    [
        (FeatureConfig(sample_rate=16000, n_frames=60), 64),
        # Filters that hold no FFT bin are empty: 7 of these 64, and all of a 2.5-Hz band.
        (FeatureConfig(sample_rate=16000, n_fft=128, win_seconds=0.008, n_frames=60), 64),
        (FeatureConfig(sample_rate=16000, n_frames=60, fmin=1000.5, fmax=1003.0), 20),
    ],
)
def test_mel_batch_equals_the_plain_recipe_at_edge_lengths(cfg: FeatureConfig, n_mels: int) -> None:
    # Around the reflect padding (n_fft // 2 samples), and past n_frames frames, where the clip is cropped.
    half, hop = cfg.n_fft // 2, round(cfg.hop_seconds * cfg.sample_rate)
    lengths = [1, 2, half - 1, half, half + 1, half + 2, 3 * half, (cfg.n_frames - 1) * hop, 70 * hop + 5]
    clips = [_test_signal(n / cfg.sample_rate, cfg.sample_rate, seed=n) for n in lengths]
    mel, valid = mel_batch(clips, cfg, n_mels)
    for clip, row, row_valid in zip(clips, mel, valid):
        ref = _plain_mel(clip, cfg, n_mels)[: cfg.n_frames]
        assert row_valid.sum() == len(ref) and row_valid[: len(ref)].all()
        np.testing.assert_allclose(row[: len(ref)], ref, rtol=1e-4, atol=1e-6 * max(ref.max(), 1e-6))
        assert (row[len(ref) :] == 0).all()


def test_logmel_from_threads_equals_one_thread() -> None:
    # Each thread keeps its own work buffers; threads of different framings and clip lengths at once.
    cfgs = [FeatureConfig(sample_rate=16000), FeatureConfig(sample_rate=44100), SMALL]
    work = [
        (cfgs[i % 3], _test_signal(0.3 + 0.9 * i, cfgs[i % 3].sample_rate, seed=i), (20, 64)[i % 2])
        for i in range(12)
    ]
    expected = [logmel(clip, cfg, n_mels) for cfg, clip, n_mels in work]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for _ in range(2):
            for got, want in zip(pool.map(lambda w: logmel(w[1], w[0], w[2]), work), expected):
                np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- reading audio


def test_resampling_22050_to_16000_keeps_length_and_pitch(tmp_path: Path) -> None:
    t = np.arange(2 * 22050) / 22050
    path = _write(tmp_path / "tone.wav", (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), 22050)
    audio = read_audio(path, 16000)
    assert audio.shape == (32000,) and audio.dtype == np.float32
    # Away from the edges (filter transients) the samples are those of the same tone sampled at 16 kHz.
    expected = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(32000) / 16000)
    np.testing.assert_allclose(audio[1000:-1000], expected[1000:-1000], atol=2e-3)
    # The loudest mel bin is the filter that peaks nearest 1 kHz (rfft bin 1000 / (16000 / 2048) = 128).
    cfg = FeatureConfig(sample_rate=16000, n_frames=100)
    loudest = np.argmax(logmel(audio, cfg, 64)[10:90], axis=1)
    expected_bin = np.argmax(librosa.filters.mel(sr=16000, n_fft=2048, n_mels=64)[:, 128])
    assert np.all(loudest == expected_bin)


def test_read_audio_downmixes_stereo(tmp_path: Path) -> None:
    left, right = _test_signal(0.5, 16000, seed=4), _test_signal(0.5, 16000, seed=5)
    path = _write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 16000)
    np.testing.assert_allclose(read_audio(path, 16000), (left + right) / 2, atol=1e-7)


def test_read_audio_pcm16_equals_libsndfile_float(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 16-bit PCM is read as int16 and scaled by 1 / 32768, as libsndfile does: the same float32 values.
    rng = np.random.default_rng(6)
    pcm = rng.integers(-32768, 32768, size=(16000, 2)).astype(np.int16)
    pcm[:2] = [[-32768, 32767], [32767, -32768]]  # both ends of the range
    mono, stereo = tmp_path / "mono.wav", tmp_path / "stereo.wav"
    soundfile.write(mono, pcm[:, 0], 16000, subtype="PCM_16")
    soundfile.write(stereo, pcm, 16000, subtype="PCM_16")
    ref_mono = soundfile.read(mono, dtype="float32")[0]
    ref_stereo = soundfile.read(stereo, dtype="float32", always_2d=True)[0].mean(axis=1, dtype=np.float32)
    first = read_audio(mono, 16000)
    np.testing.assert_array_equal(first, ref_mono)
    np.testing.assert_array_equal(read_audio(stereo, 16000), ref_stereo)  # reuses the thread's read buffer
    np.testing.assert_array_equal(first, ref_mono)  # ...and the first array returned is still its own
    # A file over the kept buffer size is read into a buffer of its own.
    monkeypatch.setattr(importlib.import_module("harness.features.audio"), "_PCM16_KEPT", 1000)
    np.testing.assert_array_equal(read_audio(stereo, 16000), ref_stereo)


def test_read_audio_errors_name_the_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    empty = _write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    for path in (tmp_path / "missing.wav", corrupt, empty):
        with pytest.raises(DataError, match=path.name) as err:
            read_audio(path, 16000)
        assert "re-download" in str(err.value)


# --------------------------------------------------------------------------- the cache


def _feature_files(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in (cache_dir / "features").iterdir() if p.suffix in (".npy", ".tmp"))


def test_extract_miss_then_hit_without_reading_audio(tmp_path: Path) -> None:
    clips = _clips(tmp_path, [1.3, 2.0, 2.6])
    cache_dir = tmp_path / "cache"
    first = extract(clips, SMALL, 20, cache_dir, "weak", jobs=1)
    assert isinstance(first, FeatureSet) and first.clip_ids == ("clip0", "clip1", "clip2")
    assert first.features.shape == (3, 100, 20) and not first.features.flags.writeable
    assert isinstance(first.features, np.memmap) and first.rows == {"clip0": 0, "clip1": 1, "clip2": 2}
    assert first.path == cache_dir / "features" / f"weak-20-{first.key}.npy"
    for (clip_id, path), row in zip(clips, first.features):
        np.testing.assert_allclose(row, logmel(read_audio(path, 16000), SMALL, 20), rtol=0, atol=1e-5)
    sidecar = json.loads(first.path.with_suffix(".json").read_text())
    assert sidecar["clip_ids"] == ["clip0", "clip1", "clip2"] and sidecar["features"]["sample_rate"] == 16000

    # Overwrite every audio file with garbage of the same size and restore its mtime: only a hit
    # that never opens the audio can still succeed.
    for _, path in clips:
        st = path.stat()
        path.write_bytes(b"\xff" * st.st_size)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = extract(clips, SMALL, 20, cache_dir, "weak", jobs=1)
    assert (second.key, second.path) == (first.key, first.path)
    np.testing.assert_array_equal(second.features, first.features)
    # The same garbage with a new mtime is rehashed, misses, and fails on reading the audio.
    os.utime(clips[0][1], ns=(0, clips[0][1].stat().st_mtime_ns + 10**9))
    with pytest.raises(DataError, match="clip0.wav"):
        extract(clips, SMALL, 20, cache_dir, "weak", jobs=1)


def test_changed_config_or_bins_gives_a_new_key(tmp_path: Path) -> None:
    clips = _clips(tmp_path, [1.0, 1.5])
    cache_dir = tmp_path / "cache"
    base = extract(clips, SMALL, 20, cache_dir, "weak", jobs=1)
    other_eps = extract(clips, dataclasses.replace(SMALL, log_eps=1e-6), 20, cache_dir, "weak", jobs=1)
    other_bins = extract(clips, SMALL, 64, cache_dir, "weak", jobs=1)
    assert len({base.key, other_eps.key, other_bins.key}) == 3
    assert other_bins.features.shape == (2, 100, 64)
    # The padding frames of the 1 s clip follow log_eps: proof the second set was recomputed.
    assert other_eps.features[0, -1, 0] == pytest.approx(math.log(1e-6), rel=1e-6)
    assert base.features[0, -1, 0] == pytest.approx(math.log(1e-8), rel=1e-6)
    # The bin count not in use is no part of the 20-bin features' key.
    same = extract(clips, dataclasses.replace(SMALL, teacher_mels=128), 20, cache_dir, "weak", jobs=1)
    assert same.key == base.key
    assert len(_feature_files(cache_dir)) == 3


def test_rewritten_audio_gives_a_new_key(tmp_path: Path) -> None:
    clips = _clips(tmp_path, [1.0, 1.5])
    cache_dir = tmp_path / "cache"
    before = extract(clips, SMALL, 20, cache_dir, "weak", jobs=1)
    _write(clips[1][1], _test_signal(1.5, 16000, seed=99), 16000)  # same length, other content
    after = extract(clips, SMALL, 20, cache_dir, "weak", jobs=1)
    assert after.key != before.key
    np.testing.assert_array_equal(after.features[0], before.features[0])
    expected = logmel(_test_signal(1.5, 16000, seed=99), SMALL, 20)
    np.testing.assert_allclose(after.features[1], expected, rtol=0, atol=1e-5)


def test_parallel_extraction_equals_serial_and_corrupt_audio_leaves_no_cache(tmp_path: Path) -> None:
    # 11 clips: two chunks of work, so jobs=2 really runs in worker processes.
    clips = _clips(tmp_path, [0.5 + 0.1 * i for i in range(11)])
    serial = extract(clips, SMALL, 20, tmp_path / "serial", "unlabeled", jobs=1)
    parallel = extract(clips, SMALL, 20, tmp_path / "parallel", "unlabeled", jobs=2)
    np.testing.assert_allclose(parallel.features, serial.features, rtol=0, atol=1e-5)

    bad = clips[9][1]
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage garbage garbage")
    cache_dir = tmp_path / "broken"
    with pytest.raises(DataError, match=bad.name):
        extract(clips, SMALL, 20, cache_dir, "unlabeled", jobs=2)
    assert _feature_files(cache_dir) == []
    assert not list((cache_dir / "features").glob("unlabeled-*.json"))

    bad.unlink()
    with pytest.raises(DataError, match=f"{bad.name}: audio file not found"):
        extract(clips, SMALL, 20, cache_dir, "unlabeled", jobs=2)
    assert _feature_files(cache_dir) == []


def test_chunks_split_clips_evenly_over_workers() -> None:
    from harness.features.cache import CHUNK_CLIPS, _chunks

    assert [len(c) for c in _chunks(40, 2)] == [7, 6, 7, 7, 6, 7]  # 3 tasks of 20 clips a worker
    assert _chunks(CHUNK_CLIPS, 2) == [range(CHUNK_CLIPS)]  # one task: computed in-process
    for n_clips, jobs in [(1, 2), (3, 2), (11, 2), (17, 2), (200, 2), (9, 1), (5, 4), (33, 4), (9, 16)]:
        chunks = _chunks(n_clips, jobs)
        assert [i for c in chunks for i in c] == list(range(n_clips))
        assert max(len(c) for c in chunks) <= CHUNK_CLIPS
        assert max(len(c) for c in chunks) - min(len(c) for c in chunks) <= 1


def test_normalization_equals_numpy_over_all_frames(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    synthetic_clips = _clips(tmp_path / "a", [2.0, 1.2, 0.7], seed=10)
    synthetic = extract(synthetic_clips, SMALL, 20, cache_dir, "synthetic", jobs=1)
    weak = extract(_clips(tmp_path / "b", [1.7, 2.2], seed=20), SMALL, 20, cache_dir, "weak", jobs=1)
    frames = np.concatenate([synthetic.features, weak.features]).reshape(-1, 20).astype(np.float64)
    mean, std = normalization([synthetic, weak], cache_dir)
    assert mean.shape == std.shape == (20,) and mean.dtype == std.dtype == np.float32
    np.testing.assert_allclose(mean, frames.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, frames.std(axis=0), rtol=1e-6)

    # Cached beside the features, and the same whatever the order of the sets.
    stats_files = list((cache_dir / "features").glob("norm-20-*.json"))
    assert len(stats_files) == 1
    again_mean, again_std = normalization([weak, synthetic], cache_dir)
    np.testing.assert_array_equal(again_mean, mean)
    np.testing.assert_array_equal(again_std, std)

    teacher = extract(_clips(tmp_path / "c", [1.0], seed=30), SMALL, 64, cache_dir, "weak", jobs=1)
    with pytest.raises(DataError, match="different mel bins"):
        normalization([synthetic, teacher], cache_dir)


def test_harness_features_do_not_import_librosa() -> None:
    package = Path(__file__).resolve().parents[1] / "harness"
    offenders = [
        p.name
        for p in package.rglob("*.py")
        for line in p.read_text().splitlines()
        if line.lstrip().startswith(("import librosa", "from librosa"))
    ]
    assert offenders == []


def test_extract_rejects_bad_configs_and_clip_lists_before_any_work(tmp_path: Path) -> None:
    clips = _clips(tmp_path, [0.5, 0.6])
    cache_dir = tmp_path / "cache"
    with pytest.raises(ConfigError, match="fmax"):
        extract(clips, dataclasses.replace(SMALL, fmax=11025.0), 20, cache_dir, "weak", jobs=1)
    with pytest.raises(ConfigError, match="n_fft"):
        extract(clips, dataclasses.replace(SMALL, win_seconds=0.2), 20, cache_dir, "weak", jobs=1)
    with pytest.raises(DataError, match="'clip0' is listed twice"):
        extract([clips[0], clips[1], clips[0]], SMALL, 20, cache_dir, "weak", jobs=1)
    with pytest.raises(DataError, match="no clips"):
        extract([], SMALL, 20, cache_dir, "weak", jobs=1)
    assert not (cache_dir / "features").exists() or _feature_files(cache_dir) == []
