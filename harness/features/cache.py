"""Log-mel features computed once per (subset, feature config, audio content) and cached on disk.

Layout under `<cache_dir>/features/`:

    <subset>-<n_mels>-<key>.npy    [N, n_frames, n_mels] float32, opened memory-mapped
    <subset>-<n_mels>-<key>.json   sidecar: clip ids in row order, the feature config, creation time
    norm-<n_mels>-<hash>.json      per-bin mean / std of a group of feature sets
    audio-digests.json             content digest of each audio file, keyed by (path, size, mtime)

The key hashes the feature config, n_mels, and every clip's id and content digest, so a changed
config or a rewritten audio file gives a new key (and a recomputation) while an unchanged one is a
cache hit that never opens the audio. The digest index spares re-hashing gigabytes of audio on
every call: a file whose size and mtime are unchanged keeps its recorded digest.

Every file is written to a temporary name in the same directory and renamed into place, so a crash
or a bad audio file never leaves a half-written cache entry.
"""

from __future__ import annotations

import collections
import concurrent.futures
import datetime
import functools
import hashlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import joblib
import numpy as np

from harness.config import FeatureConfig, to_dict
from harness.errors import ConfigError, DataError
from harness.identity import FEATURES_VERSION, feature_key
from harness.records import RecordError, atomic_file, file_checksum, read_json, write_json
from harness.filelock import locked
from harness.features.audio import missing_audio_error, read_audio
from harness.features.logmel import check_config, logmel

log = logging.getLogger("harness.features")

# The computation's version is harness.identity.FEATURES_VERSION (part of every key).
FORMAT_VERSION = FEATURES_VERSION
DIGEST_INDEX = "audio-digests.json"
# Clips per extraction task, at most (see _chunks): ~30 ms of work for 10-s clips, so that workers
# finish together, against ~0.5 ms of loky overhead a task. A task holds one clip at a time.
CHUNK_CLIPS = 8
# Clips per chunk when accumulating normalisation statistics: ~32 MB of float64 for 64 bins.
STATS_CHUNK_CLIPS = 128
# joblib backend of extraction workers (see _compute for why processes).
BACKEND = "loky"
_SUBSET_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """The cached features of one subset at one number of mel bins.

    Attributes:
        clip_ids: the clips, in row order.
        features: [N, n_frames, n_mels] float32 log-mel features, a read-only memory map.
        path: the .npy file holding them.
        key: the cache key (hash of feature config, n_mels and the clips' ids and audio contents).
        checksum: of the .npy file, recorded when it was written and checked whenever it is reused.
    """

    clip_ids: tuple[str, ...]
    features: np.ndarray
    path: Path
    key: str
    checksum: str  # of the .npy file's bytes (harness.records.file_checksum), kept in its sidecar

    @property
    def n_mels(self) -> int:
        return int(self.features.shape[2])

    @functools.cached_property
    def rows(self) -> dict[str, int]:
        """Clip id -> row of `features`."""
        return {clip_id: i for i, clip_id in enumerate(self.clip_ids)}


# --------------------------------------------------------------------------- extraction


def extract(
    clips: Sequence[tuple[str, Path]],
    cfg: FeatureConfig,
    n_mels: int,
    cache_dir: Path,
    subset: str,
    jobs: int = 2,
    allow_empty: bool = False,
) -> FeatureSet:
    """Log-mel features of a subset's clips, read from the cache or computed and cached.

    Args:
        clips: (clip id, audio path) pairs, in the row order wanted.
        cfg: the feature config; audio is resampled to cfg.sample_rate.
        n_mels: mel bins (cfg.student_mels or cfg.teacher_mels).
        cache_dir: the study's cache directory; features go to its `features/` folder.
        subset: the subset's name, used in file names and log messages.
        jobs: worker processes for extraction (and threads for hashing audio).
        allow_empty: no clips give an empty [0, n_frames, n_mels] set (a dataset without weak or unlabeled
            clips) instead of an error.

    Returns:
        The FeatureSet, its features memory-mapped read-only from the cache.

    Raises:
        DataError: no clips (unless allow_empty), a clip listed twice, or an audio file missing, corrupt or
            unreadable (the message names it); nothing is left in the cache for this key.
        ConfigError: a subset name unfit for a file name, or a feature config that cannot give features.
    """
    clips = [(str(clip_id), Path(path)) for clip_id, path in clips]
    if not clips and not allow_empty:
        raise DataError(f"features: subset {subset!r} has no clips to extract; check its metadata TSV")
    if not _SUBSET_NAME.match(subset):
        raise ConfigError(f"features: subset name {subset!r} must use only letters, digits, '_', '-' and '.'")
    check_config(cfg, n_mels)  # a bad config fails here, before any audio is hashed
    duplicate = next((c for c, n in collections.Counter(c for c, _ in clips).items() if n > 1), None)
    if duplicate is not None:
        raise DataError(
            f"features: clip {duplicate!r} is listed twice in subset {subset!r}; list each clip once"
        )
    directory = Path(cache_dir) / "features"
    directory.mkdir(parents=True, exist_ok=True)
    digests = content_digests([path for _, path in clips], directory / DIGEST_INDEX, jobs)
    key = feature_key(cfg, n_mels, [(clip_id, d) for (clip_id, _), d in zip(clips, digests)])
    path = directory / f"{subset}-{n_mels}-{key}.npy"
    clip_ids = tuple(clip_id for clip_id, _ in clips)
    with locked(path, f"features {path.name}"):  # another study sharing the cache computes each file once
        cached = _open_cached(path, (len(clips), cfg.n_frames, n_mels))
        if cached is not None:
            log.info("features: %s %d bins: cache hit (checksum verified)", subset, n_mels)
            return FeatureSet(clip_ids, cached[0], path, key, cached[1])
        sidecar = {"subset": subset, "n_mels": n_mels, "key": key, "clip_ids": list(clip_ids)}
        parts = _complete_parts(path, (len(clips), cfg.n_frames, n_mels))
        if parts:
            log.info("features: %s %d bins: computing %d clips: assembling the %d parts computed by stage tasks",
                     subset, n_mels, len(clips), len(parts))
        else:
            log.info("features: %s %d bins: computing %d clips", subset, n_mels, len(clips))
        checksum = _compute(clips, cfg, n_mels, path, sidecar, jobs, parts)
        for part in path.parent.glob(f"parts/{path.stem}.*of*.npy"):
            part.unlink(missing_ok=True)
    return FeatureSet(clip_ids, np.load(path, mmap_mode="r"), path, key, checksum)


# --------------------------------------------------------------------------- parts (stage tasks)


def feature_path(cache_dir: Path, subset: str, cfg: FeatureConfig, n_mels: int,
                 clip_digests: Sequence[tuple[str, str]]) -> Path:
    """Where `extract` keeps a subset's features, from the clips' (id, audio digest) in row order."""
    return Path(cache_dir) / "features" / f"{subset}-{n_mels}-{feature_key(cfg, n_mels, clip_digests)}.npy"


def part_ranges(n_clips: int, parts: int) -> list[range]:
    """`parts` consecutive, near-equal ranges of clips (fewer when there are fewer clips)."""
    parts = max(1, min(parts, n_clips))
    bounds = [round(i * n_clips / parts) for i in range(parts + 1)]
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


def _part_path(path: Path, part: int, parts: int) -> Path:
    return path.parent / "parts" / f"{path.stem}.{part}of{parts}.npy"


def compute_part(clips: Sequence[tuple[str, Path]], cfg: FeatureConfig, n_mels: int, path: Path, part: int,
                 parts: int) -> str:
    """Stage task: the features of part `part` of `parts` of a subset (see `part_ranges`), kept beside the
    features file `path` it belongs to, for `extract` to assemble. Each part is one worker's share, so a
    subset's extraction spreads over a cluster; a part is written atomically and is computed again only
    when missing or of the wrong shape (extraction is deterministic)."""
    rows = part_ranges(len(clips), parts)[part]
    out = _part_path(path, part, len(part_ranges(len(clips), parts)))
    if path.is_file() or _part_ok(out, (len(rows), cfg.n_frames, n_mels)):
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp:
        blank = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(rows), cfg.n_frames, n_mels))
        offset = blank.offset
        del blank
        _fill_rows(tmp, offset, [Path(clips[i][1]) for i in rows], cfg, n_mels)
    return str(out)


def _part_ok(path: Path, shape: tuple[int, int, int]) -> bool:
    try:
        part = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return part.shape == shape and part.dtype == np.float32


def _complete_parts(path: Path, shape: tuple[int, int, int]) -> list[Path]:
    """A whole set of parts of the features file `path`, in row order, each of the right shape; [] if none."""
    found: dict[int, list[Path]] = {}
    for part in path.parent.glob(f"parts/{path.stem}.*of*.npy"):
        match = re.fullmatch(r"(\d+)of(\d+)", part.name[len(path.stem) + 1 : -len(".npy")])
        if match:
            found.setdefault(int(match[2]), []).append(part)
    for parts in sorted(found, reverse=True):
        ranges = part_ranges(shape[0], parts)
        paths = [_part_path(path, i, len(ranges)) for i in range(len(ranges))]
        if len(ranges) == parts and all(_part_ok(p, (len(r), *shape[1:])) for p, r in zip(paths, ranges)):
            return paths
    return []


def _open_cached(path: Path, shape: tuple[int, int, int]) -> tuple[np.ndarray, str] | None:
    """The cached features at `path` memory-mapped read-only with their checksum, or None when absent or
    unusable: unreadable, of another shape, or with bytes that no longer match the checksum recorded when
    they were written (a damaged disk block, a partial copy). Unusable files are recomputed, with a warning."""
    if not path.is_file():
        return None
    try:
        features = np.load(path, mmap_mode="r")
        recorded = read_json(path.with_suffix(".json")).get("checksum")
    except (OSError, ValueError, RecordError, AttributeError) as e:
        log.warning("features: %s is unreadable (%s); recomputing it", path, e)
        return None
    if features.shape != shape or features.dtype != np.float32:
        found = f"{features.shape} {features.dtype}"
        log.warning("features: %s holds %s, not %s float32; recomputing it", path, found, shape)
        return None
    actual = file_checksum(path)
    if recorded is None:
        log.warning("features: %s has no recorded checksum (an older harness wrote it); recomputing it", path)
        return None
    if actual != recorded:
        log.warning("features: %s is damaged (checksum %s, recorded %s); recomputing it", path, actual, recorded)
        return None
    return features, actual


def _compute(
    clips: list[tuple[str, Path]],
    cfg: FeatureConfig,
    n_mels: int,
    path: Path,
    sidecar: dict[str, Any],
    jobs: int,
    parts: Sequence[Path] = (),
) -> str:
    """Compute the features of `clips` into a temporary .npy, then rename it to `path`; returns its checksum.

    Workers write their chunks of rows straight into the temporary file, so neither they nor the
    parent ever hold the whole subset in memory; one fsync makes them all durable before the rename.
    """
    with atomic_file(path) as tmp:  # flushed to disk and renamed once the sidecar is written
        shape = (len(clips), cfg.n_frames, n_mels)
        blank = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        data_offset, row_bytes = blank.offset, blank.strides[0]  # strides: an empty set has no row 0
        del blank  # created at full size (header, then the rows); workers write into it
        if parts:  # computed by stage tasks (compute_part): copied in, row order kept
            _copy_parts(tmp, data_offset, parts)
        paths = [p for _, p in clips]
        tasks = [] if parts else [
            (tmp, data_offset + chunk.start * row_bytes, paths[chunk.start : chunk.stop], cfg, n_mels)
            for chunk in _chunks(len(clips), jobs)
        ]
        if jobs <= 1 or len(tasks) <= 1:
            for task in tasks:
                _fill_rows(*task)
        else:
            # Processes: reading WAVs and numpy's framing hold the GIL for part of each chunk; loky
            # also caps BLAS threads in its workers at cores // jobs, so they do not oversubscribe.
            # batch_size=1: joblib's automatic batching would group these short tasks unevenly.
            parallel = joblib.Parallel(n_jobs=min(jobs, len(tasks)), backend=BACKEND, batch_size=1)
            parallel(joblib.delayed(_fill_rows)(*task) for task in tasks)
        _fsync(tmp)  # the rows on the disk before the sidecar that vouches for them is
        checksum = file_checksum(tmp)
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        write_json(path.with_suffix(".json"), {**sidecar, "features": to_dict(cfg), "created": created,
                                                "checksum": checksum})
    return checksum


def _copy_parts(tmp: Path, offset: int, parts: Sequence[Path]) -> None:
    with open(tmp, "r+b") as f:
        f.seek(offset)
        for part in parts:
            f.write(np.ascontiguousarray(np.load(part, mmap_mode="r")).tobytes())


def _chunks(n_clips: int, jobs: int) -> list[range]:
    """Consecutive ranges of at most CHUNK_CLIPS clips, as equal as can be, in a multiple of `jobs`.

    So every worker gets the same share: 40 clips on 2 workers are 6 tasks of 6-7 clips rather than
    5 tasks of 8 (one worker computing 24 clips while the other computes 16). Up to CHUNK_CLIPS
    clips stay one task, which _compute runs in-process rather than starting workers for it.
    """
    n_tasks = max(1, math.ceil(n_clips / CHUNK_CLIPS))
    if n_tasks > 1 and jobs > 1:
        n_tasks = jobs * math.ceil(n_tasks / jobs)
    bounds = [round(i * n_clips / n_tasks) for i in range(n_tasks + 1)]
    return [range(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]  # none empty, even with many jobs


def _fill_rows(tmp: Path, offset: int, paths: list[Path], cfg: FeatureConfig, n_mels: int) -> None:
    """Read a chunk of clips and write their features, as raw rows, at byte `offset` of the .npy at `tmp`.

    One clip at a time, its row written as soon as computed, so that the next clip reuses the same
    memory (with the read buffer and log-mel workspace each thread keeps): reading the whole chunk
    first page-faulted 700-1100 times a clip in the workers, at ~3 us a fault on the benchmarks' VM;
    none now. Plain writes: memory-mapping the file and msync-ing every chunk took ~0.7 ms a clip,
    against ~0.15 for these and the single fsync in _compute.
    """
    with open(tmp, "r+b") as f:
        f.seek(offset)
        for path in paths:  # rows are consecutive: [n_frames, n_mels] float32 in native order
            f.write(logmel(read_audio(path, cfg.sample_rate), cfg, n_mels))


# --------------------------------------------------------------------------- content digests


def content_digests(paths: Sequence[Path], index_path: Path, jobs: int = 2) -> list[str]:
    """A digest of each file's bytes, re-hashing only files new to the index or changed since.

    Args:
        paths: audio files.
        index_path: the JSON digest index, {absolute path: {"size", "mtime_ns", "digest"}}.
        jobs: threads hashing files (hashlib releases the GIL on large buffers).

    Returns:
        One hex digest per path, in order.

    Raises:
        DataError: a file is missing.
    """
    index = _read_index(index_path)
    stats = [_file_stat(Path(p)) for p in paths]
    stale = sorted({name for name, size, mtime in stats if _recorded(index, name, size, mtime) is None})
    if stale:
        with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
            fresh = dict(zip(stale, pool.map(_hash_file, stale)))
        for name, size, mtime in stats:
            if name in fresh:
                index[name] = {"size": size, "mtime_ns": mtime, "digest": fresh[name]}
        # Another process may have added entries meanwhile: merge ours into the file's latest state.
        index_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(index_path, {**_read_index(index_path), **{n: index[n] for n in fresh}})
    return [index[name]["digest"] for name, _, _ in stats]


def _file_stat(path: Path) -> tuple[str, int, int]:
    """(absolute path, size in bytes, mtime in ns) of an existing file."""
    try:
        st = path.stat()
    except FileNotFoundError as e:
        raise missing_audio_error(path) from e
    if not path.is_file():
        raise missing_audio_error(path)
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def _recorded(index: dict[str, Any], name: str, size: int, mtime: int) -> str | None:
    entry = index.get(name)
    if isinstance(entry, dict) and entry.get("size") == size and entry.get("mtime_ns") == mtime:
        return entry.get("digest")
    return None


def _hash_file(name: str) -> str:
    try:
        with open(name, "rb") as f:
            # sha256 rather than blake2b: about twice as fast where the CPU has SHA instructions.
            return hashlib.file_digest(f, "sha256").hexdigest()[:32]
    except OSError as e:
        raise DataError(
            f"{name}: cannot read the audio file ({e}); re-download it, or remove it from its metadata TSV"
        ) from e


def _read_index(index_path: Path) -> dict[str, Any]:
    """The digest index, or an empty one when absent or damaged (digests are then recomputed)."""
    try:
        index = json.loads(index_path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("features: digest index %s is unreadable (%s); re-hashing audio", index_path, e)
        return {}
    return index if isinstance(index, dict) else {}


# --------------------------------------------------------------------------- normalisation


def normalization(sets: Sequence[FeatureSet], cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and standard deviation over every frame of every clip of `sets`.

    Accumulated in float64 chunk by chunk over the memory maps (Chan et al.'s pairwise update of
    mean and sum of squared deviations), and cached beside the features keyed by the sets' keys.
    Padding frames of short clips (log(log_eps)) count like any other frame.

    Args:
        sets: the training subsets' features, all with the same n_mels.
        cache_dir: the study's cache directory.

    Returns:
        mean: [n_mels] float32.
        std: [n_mels] float32 population standard deviation, floored at 1e-8.

    Raises:
        DataError: no sets, or sets with different numbers of mel bins.
    """
    if not sets:
        raise DataError("features: normalisation needs at least one training feature set")
    n_mels = {s.n_mels for s in sets}
    if len(n_mels) != 1:
        raise DataError(
            f"features: cannot normalise feature sets of different mel bins {sorted(n_mels)} together"
        )
    keys = sorted(s.key for s in sets)
    digest = hashlib.sha256(" ".join(keys).encode()).hexdigest()[:16]
    path = Path(cache_dir) / "features" / f"norm-{sets[0].n_mels}-{digest}.json"
    cached = _read_stats(path, keys)
    if cached is None:
        count, mean, m2 = _accumulate(sets)
        std = np.maximum(np.sqrt(m2 / count), 1e-8)
        write_json(path, {"keys": keys, "frames": count, "mean": mean.tolist(), "std": std.tolist()})
        cached = mean, std
    return cached[0].astype(np.float32), cached[1].astype(np.float32)


def _accumulate(sets: Sequence[FeatureSet]) -> tuple[int, np.ndarray, np.ndarray]:
    """(frames, mean [M], sum of squared deviations [M]) over all frames of all sets, in float64."""
    count, mean, m2 = 0, np.zeros(sets[0].n_mels), np.zeros(sets[0].n_mels)
    for s in sets:
        for start in range(0, len(s.clip_ids), STATS_CHUNK_CLIPS):
            chunk = np.asarray(s.features[start : start + STATS_CHUNK_CLIPS], dtype=np.float64)
            chunk = chunk.reshape(-1, chunk.shape[-1])  # [frames, M]
            n, chunk_mean = len(chunk), chunk.mean(axis=0)
            chunk_m2 = ((chunk - chunk_mean) ** 2).sum(axis=0)
            delta, total = chunk_mean - mean, count + n
            mean = mean + delta * (n / total)
            m2 = m2 + chunk_m2 + delta**2 * (count * n / total)
            count = total
    return count, mean, m2


def _read_stats(path: Path, keys: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("keys") != keys:
        return None
    return np.asarray(data["mean"], dtype=np.float64), np.asarray(data["std"], dtype=np.float64)


# --------------------------------------------------------------------------- atomic files


def _fsync(path: Path) -> None:
    """Flush a file to disk, so the rename that publishes it never exposes unwritten pages."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
