"""Shared stages: dataset -> features -> teacher -> pseudolabels, run once and cached by content key.

`read_data` reads the data as it is on disk now and gives it its identity (TSV bytes and audio digests;
harness.identity.data_key). `StageKeys` turns a config into its bundle's key without running anything, so
a plan knows every job id before any work. `prepare` returns a verified bundle for a key: reused when
its checksums hold, repaired when a cached features file was damaged, built otherwise. Jobs get only the
bundle's path, so the same bundle serves local processes and Dask workers that share the file system.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from harness import identity
from harness.bundle import MANIFEST, Bundle, CacheCorrupt
from harness.config import DataConfig, FeatureConfig, MethodConfig, to_dict
from harness.constants import SUBSETS
from harness.data.desed import OPTIONAL_SUBSETS, Clip, Subset, check_audio_against_labels, load_dataset
from harness.data.encoder import LabelEncoder, frames_needed
from harness.data.synth import ensure_corpus
from harness.data.vocabulary import study_classes
from harness.errors import ConfigError, DataError, full_disk_named
from harness.evaluation.postprocess import event_length_frames
from harness.filelock import locked
from harness.features.cache import DIGEST_INDEX, FeatureSet, content_digests, extract, normalization
from harness.records import (
    ArrayEntry,
    BundleManifest,
    RecordError,
    TeacherInfo,
    atomic_file,
    file_checksum,
    read_json,
    write_json,
    write_record,
)
from harness.study.plan import JobSpec

if TYPE_CHECKING:  # torch is imported where a teacher is trained or run: the driver never imports it
    import torch
from harness.teacher.predictions import load_predictions

log = logging.getLogger("harness.stages")

TRAIN_SUBSETS = ("synthetic", "weak", "unlabeled")
EVAL_SUBSETS = ("validation", "test")
TEACHER_SUBSETS = ("unlabeled", *EVAL_SUBSETS)
STRONG_SUBSETS = ("synthetic", *EVAL_SUBSETS)


# --------------------------------------------------------------------------- the data and its identity


@dataclass(frozen=True)
class DataState:
    """The data as read now: every subset, each clip's audio digest, the study's classes, the content key."""

    config: DataConfig
    subsets: dict[str, Subset]
    clip_digests: dict[str, tuple[tuple[str, str], ...]]  # subset -> (clip id, audio digest) in row order
    key: str
    classes: tuple[str, ...]  # the study's classes, the order of every [C] axis (harness.data.vocabulary)

    @functools.cached_property
    def longest_strong_clip(self) -> tuple[Clip, float]:
        """The longest clip of the strongly labelled subsets and its length (s): what the frames must cover.

        Reads the audio headers once (the clips cache their duration); `check_durations` reads the same.
        """
        clips = [c for n in STRONG_SUBSETS for c in self.subsets[n].clips]
        if not clips:
            raise DataError("the strong subsets (synthetic, validation, test) have no clips; check the data root")
        longest = max(clips, key=lambda c: c.duration)
        return longest, longest.duration


def read_data(data: DataConfig, cache_dir: Path, jobs: int = 2) -> DataState:
    """Read every subset, hash what changed since last time, and key the data by its content.

    Audio digests are kept in `<cache>/features/audio-digests.json` against each file's (size, mtime), so
    an unchanged file is not read again; a new, rewritten or touched one is hashed.

    Raises:
        DataError: a missing or malformed TSV, a missing audio file (see data.skip_missing).
    """
    if data.kind == "synthetic":
        ensure_corpus(Path(data.root), data.synth_size, data.synth_seed)
    classes = study_classes(data, Path(data.root))
    subsets = load_dataset(data, Path(data.root), classes=classes)
    index = Path(cache_dir) / "features" / DIGEST_INDEX
    index.parent.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, subset in subsets.items():
        found = content_digests([c.path for c in subset.clips], index, jobs)
        digests[name] = tuple(zip(subset.clip_ids, found))
    # data.classes enters the key only when set: derived classes are a function of the TSVs hashed here.
    key = identity.data_key({n: (_tsv_digest(s), digests[n]) for n, s in subsets.items()}, data.classes)
    return DataState(config=data, subsets=subsets, clip_digests=digests, key=key, classes=classes)


def _tsv_digest(subset: Subset) -> str:
    if not subset.tsv.exists() and not subset.clips:
        return "absent"  # an optional subset the dataset lacks (harness.data.desed.subset_absent)
    try:
        return hashlib.sha256(subset.tsv.read_bytes()).hexdigest()[:32]
    except OSError as e:
        raise DataError(f"{subset.tsv}: cannot read the metadata TSV ({e})") from e


class StageKeys:
    """Bundle keys of configs over one DataState; each teacher predictions file is read and checked once."""

    def __init__(self, data: DataState, teacher_seed: int) -> None:
        self.data, self.teacher_seed = data, teacher_seed
        self._files: dict[tuple[str, int], str] = {}

    def teacher(self, config: MethodConfig, teacher_seed: int | None = None) -> str:
        """The key of `config`'s teacher of seed `teacher_seed` (None: the one given at construction)."""
        sha = None
        if config.teacher.source == "file":
            sha = self._predictions_sha(Path(config.teacher.predictions), config.features.n_frames)
        seed = self.teacher_seed if teacher_seed is None else teacher_seed
        return identity.teacher_key(config.teacher, config.features, seed, self.data.key, sha)

    def __call__(self, config: MethodConfig, where: str = "config", teacher_seed: int | None = None) -> str:
        """The bundle key of `config` with the teacher of seed `teacher_seed` (None: the one given at
        construction), once it is checked against the data (before any work).

        Raises:
            ConfigError: frames that do not cover the clips, or a variant needing a subset the data lacks.
        """
        check_against_data(config, self.data, where)
        return identity.bundle_key(self.data.key, config.features, self.teacher(config, teacher_seed))

    def _predictions_sha(self, path: Path, n_frames: int) -> str:
        """sha256 of a teacher file, checked in full against the clips it must cover (before any work)."""
        cache_key = (str(path.absolute()), n_frames)
        if cache_key not in self._files:
            needed = [c for n in TEACHER_SUBSETS for c in self.data.subsets[n].clip_ids]
            # DataError naming the file and what is wrong
            load_predictions(path, needed, n_frames=n_frames, classes=self.data.classes)
            with open(path, "rb") as f:
                self._files[cache_key] = hashlib.file_digest(f, "sha256").hexdigest()
        return self._files[cache_key]


def check_against_data(config: MethodConfig, data: DataState, where: str) -> None:
    """Refuse a config the data cannot run, naming `where` (the variant) and what to set.

    Raises:
        ConfigError: features.n_frames x features.hop_seconds short of the longest strong clip by more than a
            hop, or pseudolabels that need unlabeled clips the data lacks.
    """
    check_frames_cover(config.features, data, where)
    unlabeled = data.subsets["unlabeled"]
    if config.loss.pseudolabels != "none" and not unlabeled.clips:
        raise ConfigError(
            f"{where}: factor pseudolabels = {config.loss.pseudolabels!r} (loss.pseudolabels) needs the unlabeled "
            f"subset, but the data has no unlabeled clips ({unlabeled.tsv} is absent or lists none); add them "
            '(data.unlabeled_tsv, data.unlabeled_audio), or use pseudolabels = "none" for this variant')


def check_frames_cover(features: FeatureConfig, data: DataState, where: str) -> None:
    """The frame geometry must span the longest strong clip (to within one hop): frames past a clip's end are
    padding, but a clip longer than the frames would lose its end, labels and all.

    Raises:
        ConfigError: naming the clip, its length and the features.n_frames to set.
    """
    clip, seconds = data.longest_strong_clip
    span = features.n_frames * features.hop_seconds
    if span + features.hop_seconds + 1e-9 >= seconds:
        return
    needed = frames_needed(seconds, features.hop_seconds)
    raise ConfigError(f"{where}: features.n_frames x features.hop_seconds = {features.n_frames} x "
                      f"{features.hop_seconds:g} = {span:g} s does not cover the longest clip, {clip.path} "
                      f"({seconds:.2f} s); set features.n_frames = {needed} for this hop")


# --------------------------------------------------------------------------- bundles


def prepare(job: JobSpec, cache_dir: Path, jobs: int = 2, data: DataState | None = None) -> Path:
    """A verified bundle for `job`'s shared stages (reused, repaired or built); returns its directory.

    Any job of the study can be passed: only its data, features and teacher settings count. Without `data`
    the data is read here (and its digests checked against the index).
    """
    cache_dir = Path(cache_dir)
    data = data if data is not None else read_data(job.data, cache_dir, jobs)
    teacher_key = StageKeys(data, job.teacher_seed).teacher(job.config)
    key = identity.bundle_key(data.key, job.config.features, teacher_key)
    if job.bundle_key and job.bundle_key != key:
        raise DataError(f"the data or teacher changed while the study was planned (bundle {job.bundle_key} is "
                        f"now {key}); run the study again")
    root = cache_dir / "stages" / key
    with locked(root, f"the shared stages {root}"):  # two studies on one cache build a bundle once
        if (root / MANIFEST).exists():
            if _usable(root, job, data, cache_dir, jobs):
                log.info("shared stages: cache hit %s (checksums verified)", root)
                return root
            log.info("shared stages: rebuilding %s", root)
            shutil.rmtree(root, ignore_errors=True)
        _build(job, data, key, teacher_key, cache_dir, root, jobs)
    return root


def _usable(root: Path, job: JobSpec, data: DataState, cache_dir: Path, jobs: int) -> bool:
    """Whether a finished bundle can be used; a damaged features file is recomputed in place."""
    try:
        Bundle.open(root, verify=True)
        return True
    except RecordError as e:
        log.warning("shared stages: %s; rebuilding the bundle", e)
        return False
    except CacheCorrupt as e:
        log.warning("shared stages: %s; recomputing it", e)
        if e.part != "features":
            return False
    # Features are a pure function of the audio: recomputed, they must give the recorded bytes again.
    fcfg = job.config.features
    for name in TRAIN_SUBSETS + EVAL_SUBSETS:
        _features(data, name, fcfg, fcfg.student_mels, cache_dir, jobs)
    try:
        Bundle.open(root, verify=True)
        return True
    except (CacheCorrupt, RecordError) as e:
        log.warning("shared stages: %s after recomputing the features; rebuilding the bundle", e)
        return False


def _build(job: JobSpec, data: DataState, key: str, teacher_key: str, cache_dir: Path, root: Path, jobs: int
           ) -> None:
    """Build the bundle in a temporary folder beside `root`, manifest last, then rename it into place."""
    durations = check_durations(data)
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # A folder, published whole by one rename (records.atomic_file publishes a file): its files are written in
    # this private temporary folder, so none needs a rename of its own; like every file they follow the umask.
    try:
        with full_disk_named(root):  # np.save and to_csv say "No space left" without naming the file
            manifest = _contents(job, data, key, teacher_key, cache_dir, tmp, root, jobs, durations)
            write_record(tmp / MANIFEST, manifest)
        if root.exists():  # a finished bundle written meanwhile by another process: keep that one
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_durations(data: DataState) -> dict[str, list[float]]:
    """Each strongly labelled clip's audio length, checked against its events; durations of val and test.

    Raises:
        DataError: a clip whose audio ends before one of its events starts (a truncated or wrong file).
    """
    out = check_audio_against_labels({n: data.subsets[n] for n in STRONG_SUBSETS})  # as `data check` does
    return {n: out[n] for n in EVAL_SUBSETS}


def _features(data: DataState, name: str, fcfg, n_mels: int, cache_dir: Path, jobs: int) -> FeatureSet:
    clips = [(c.clip_id, c.path) for c in data.subsets[name].clips]
    # Only the optional subsets may be empty: a dataset without weak or unlabeled clips (harness.data.desed).
    return extract(clips, fcfg, n_mels, cache_dir, name, jobs=jobs, allow_empty=name in OPTIONAL_SUBSETS)


def _contents(job: JobSpec, data: DataState, key: str, teacher_key: str, cache_dir: Path, out: Path, root: Path,
              jobs: int, durations: dict[str, list[float]]) -> BundleManifest:
    config = job.config
    fcfg = config.features
    subsets = data.subsets
    encoder = LabelEncoder(n_frames=fcfg.n_frames, hop_seconds=fcfg.hop_seconds, classes=data.classes)
    student = {n: _features(data, n, fcfg, fcfg.student_mels, cache_dir, jobs) for n in SUBSETS}
    arrays: dict[str, ArrayEntry] = {}

    def save(name: str, value: np.ndarray) -> None:
        np.save(out / f"{name}.npy", value)
        arrays[name] = _entry(out / f"{name}.npy", f"{name}.npy")

    strong = strong_targets(encoder, subsets["synthetic"].clips).astype(np.uint8)
    save("synthetic_strong", strong)
    save("synthetic_weak", strong.max(axis=2).astype(np.float32))
    save("weak_weak", weak_targets(encoder, subsets["weak"].clips))
    for name in EVAL_SUBSETS:
        subsets[name].reference_events().to_csv(out / f"{name}_reference.tsv", sep="\t", index=False)
        arrays[f"{name}_reference"] = _entry(out / f"{name}_reference.tsv", f"{name}_reference.tsv")
    synth_events = subsets["synthetic"].reference_events()
    lengths = {stat: class_event_frames(synth_events, stat, fcfg.hop_seconds, data.classes)
               for stat in ("median", "mean")}
    mean, std = normalization([student[n] for n in TRAIN_SUBSETS], cache_dir)
    teacher_arrays, seconds = _teacher(job, data, cache_dir, jobs)
    for name, value in teacher_arrays.items():
        save(name, value)
    return BundleManifest(
        key=key,
        version=identity.BUNDLE_VERSION,
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        data_digest=data.key,
        features_config=to_dict(fcfg),
        teacher_config=to_dict(dataclasses.replace(config.teacher, predictions=None)),
        teacher_seed=job.teacher_seed,
        teacher=TeacherInfo(source=config.teacher.source, train_seconds=round(seconds, 1), key=teacher_key),
        frame_hop_seconds=fcfg.hop_seconds,
        n_frames=fcfg.n_frames,
        clip_ids={k: list(v.clip_ids) for k, v in student.items()},
        durations=durations,
        norm_mean=np.asarray(mean, np.float64).tolist(),
        norm_std=np.asarray(std, np.float64).tolist(),
        event_frames=lengths,
        arrays=arrays,
        # Relative to the bundle's final folder (two levels under the cache), so a moved cache still works.
        features={k: ArrayEntry(os.path.relpath(v.path, root), v.checksum, v.path.stat().st_size)
                  for k, v in student.items()},
        classes=data.classes,
    )


def strong_targets(encoder: LabelEncoder, clips: Sequence[Clip]) -> np.ndarray:
    """[N, C, T] frame targets of strongly labelled clips ([0, C, T] for none)."""
    if not clips:
        return np.zeros((0, encoder.n_classes, encoder.n_frames), np.float32)
    return np.stack([encoder.encode_strong(c.events or ()) for c in clips])


def weak_targets(encoder: LabelEncoder, clips: Sequence[Clip]) -> np.ndarray:
    """[N, C] clip targets of weakly labelled clips ([0, C] for a dataset without weak clips)."""
    if not clips:
        return np.zeros((0, encoder.n_classes), np.float32)
    return np.stack([encoder.encode_weak(c.weak or ()) for c in clips])


def class_event_frames(events, statistic: str, hop_seconds: float, classes: Sequence[str]) -> list[float]:
    """The median or mean event length (frames) of every class, measured on the strong training labels.

    A class without a strong training event (known from weak labels only, or named in [data] classes) gets
    the statistic over every strong training event, of all classes: its median-filter window and custom
    time masks then have a typical event's length rather than none (logged, naming the classes).

    Raises:
        DataError: the strong training labels hold no event at all.
    """
    if not events["event_label"].notna().any():
        raise DataError("the strong training labels (synthetic) hold no event: the median filter and the custom "
                        "time masks cannot be sized; label events in the strong training TSV")
    present = [c for c in classes if (events["event_label"] == c).any()]
    lengths = dict(zip(present, event_length_frames(events, statistic, hop_seconds, present).tolist()))
    missing = [c for c in classes if c not in lengths]
    if missing:
        every = events.dropna(subset=["event_label"]).assign(event_label="*")  # one class of all events
        pooled = event_length_frames(every, statistic, hop_seconds, ["*"])[0]
        log.warning("no strong training event of class(es) %s: their %s event length is that of all strong "
                    "training events, %.1f frames", ", ".join(missing), statistic, pooled)
        lengths.update({c: float(pooled) for c in missing})
    return [lengths[c] for c in classes]


def _entry(path: Path, relative: str) -> ArrayEntry:
    return ArrayEntry(path=relative, checksum=file_checksum(path), size=path.stat().st_size)


def _teacher(job: JobSpec, data: DataState, cache_dir: Path, jobs: int) -> tuple[dict[str, np.ndarray], float]:
    """Teacher predictions (weak [N,C], strong [N,C,T]) on U, validation and test; seconds of training."""
    tcfg = job.config.teacher
    ids = {n: list(data.subsets[n].clip_ids) for n in TEACHER_SUBSETS}
    if tcfg.source == "file":
        n_frames = job.config.features.n_frames
        preds = {n: load_predictions(Path(tcfg.predictions), ids[n], n_frames=n_frames,
                                     classes=data.classes)[::-1] for n in ids}
        seconds = 0.0
    else:
        preds, seconds = _train_teacher(job, data, cache_dir, jobs)
    arrays = {}
    for n, (frame, clip) in preds.items():
        arrays[f"teacher_{n}_strong"] = np.asarray(frame, np.float32)
        arrays[f"teacher_{n}_weak"] = np.asarray(clip, np.float32)
    return arrays, seconds


@dataclass(frozen=True)
class _TeacherInputs:
    """The teacher's normalised training data and its normaliser, from the teacher-resolution features."""

    features: dict[str, FeatureSet]
    mean: np.ndarray
    std: np.ndarray
    strong_y: np.ndarray
    weak_y: np.ndarray

    def norm(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float32) - self.mean) / self.std).astype(np.float32)


def _teacher_inputs(job: JobSpec, data: DataState, cache_dir: Path, jobs: int) -> _TeacherInputs:
    fcfg = job.config.features
    feats = {n: _features(data, n, fcfg, fcfg.teacher_mels, cache_dir, jobs) for n in SUBSETS}
    mean, std = normalization([feats[n] for n in TRAIN_SUBSETS], cache_dir)
    encoder = LabelEncoder(n_frames=fcfg.n_frames, hop_seconds=fcfg.hop_seconds, classes=data.classes)
    strong_y = strong_targets(encoder, data.subsets["synthetic"].clips)
    weak_y = weak_targets(encoder, data.subsets["weak"].clips)
    return _TeacherInputs(feats, mean, std, strong_y, weak_y)


def member_path(cache_dir: Path, teacher_key: str, member: int) -> Path:
    """Where member `member` of the teacher `teacher_key` is kept (its weights; keyed like the teacher)."""
    return Path(cache_dir) / "teachers" / teacher_key / f"member-{member}.pt"


def member_task(job: JobSpec, data: DataState, cache_dir: Path, member: int, jobs: int = 1) -> str:
    """Stage task: train one member of `job`'s teacher and cache its weights (once, under a lock); the
    members of a teacher are independent (each from its own seed), so they train in parallel."""
    from harness.study.devices import device_lease

    teacher_key = StageKeys(data, job.teacher_seed).teacher(job.config)
    path = member_path(cache_dir, teacher_key, member)
    with locked(path, f"teacher member {path}"):
        if _load_member(path, job, len(data.classes)) is None:
            with device_lease(job.config.train.device) as device:  # a GPU slot of its own, like a job
                _fit_member(job, _teacher_inputs(job, data, cache_dir, jobs), member, path, device)
    return str(path)


def _fit_member(job: JobSpec, inputs: _TeacherInputs, member: int, path: Path, device: str | None = None
                ) -> torch.nn.Module:
    import torch

    from harness.teacher.cnn import train_member

    device = resolve_device(device or job.config.train.device)
    log.info("teacher: training member %d of %d on %d strong + %d weak clips (%s)", member + 1,
             job.config.teacher.n_models, len(inputs.strong_y), len(inputs.weak_y), device)
    # One thread, whatever --threads the study runs with: a convolution's last bits depend on the thread count,
    # and a cached teacher must be the same whichever study trained it (its key has no thread count).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = train_member(inputs.norm(inputs.features["synthetic"].features), inputs.strong_y,
                             inputs.norm(inputs.features["weak"].features), inputs.weak_y, job.config.teacher,
                             seed=job.teacher_seed, member=member, device=device, on_epoch=_log_teacher_epoch)
    finally:
        torch.set_num_threads(threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        torch.save(model.state_dict(), tmp)
    return model


def _load_member(path: Path, job: JobSpec, n_classes: int) -> torch.nn.Module | None:
    """A cached member, or None when absent or unreadable (then it is trained again)."""
    if not path.is_file():
        return None
    import torch

    from harness.teacher.cnn import new_member

    model = new_member(job.config.features.teacher_mels, job.config.teacher, n_classes)
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, ValueError, EOFError) as e:  # a torn or foreign file: train it again
        log.warning("teacher: %s is unreadable (%s); training that member again", path, e)
        return None
    return model.to(resolve_device(job.config.train.device)).eval()


def _train_teacher(job: JobSpec, data: DataState, cache_dir: Path, jobs: int):
    """Every member of the teacher (the cached ones loaded, the others trained here), then its predictions."""
    import torch

    from harness.teacher.cnn import predict_ensemble

    inputs = _teacher_inputs(job, data, cache_dir, jobs)
    teacher_key = StageKeys(data, job.teacher_seed).teacher(job.config)
    start = time.perf_counter()
    models = []
    for member in range(job.config.teacher.n_models):
        path = member_path(cache_dir, teacher_key, member)
        with locked(path, f"teacher member {path}"):
            model = _load_member(path, job, len(data.classes))
            models.append(model if model is not None else _fit_member(job, inputs, member, path))
    device = resolve_device(job.config.train.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the members were trained (see _fit_member): pseudolabels independent of --threads
    try:
        preds = {n: predict_ensemble(models, inputs.norm(inputs.features[n].features), device=device)
                 for n in TEACHER_SUBSETS}
    finally:
        torch.set_num_threads(threads)
    return preds, time.perf_counter() - start


def _log_teacher_epoch(member: int, epoch: int, loss: float) -> None:
    log.info("teacher: member %d epoch %d: loss %.4f", member + 1, epoch, loss)


# --------------------------------------------------------------------------- the teacher's own scores


def teacher_scores(bundle_root: Path, config: MethodConfig) -> dict:
    """The teacher's event F1 (%) on validation and test under `config`'s post-processing and metric.

    Cheap (post-processing and scoring of saved predictions), and cached beside the bundle per
    post-processing setting, so a change of post-processing never retrains the teacher.
    """
    from harness.evaluation.scoring import score  # the students' own scoring, so both are scored alike

    settings = identity.digest(config.postprocess, dataclasses.replace(config.eval, evaluator="fast"),
                               config.student.gate_threshold)
    path = Path(bundle_root) / f"teacher-scores-{settings}.json"
    try:
        return read_json(path)
    except RecordError:
        pass
    bundle = Bundle.open(bundle_root, verify=False)
    scores: dict = {"source": bundle.manifest.teacher.source, "train_seconds": bundle.manifest.teacher.train_seconds}
    for n in EVAL_SUBSETS:
        ev = score(np.asarray(bundle.array(f"teacher_{n}_strong")), np.asarray(bundle.array(f"teacher_{n}_weak")),
                   bundle, n, config)
        scores[n] = {"event_f1": 100 * ev.events.macro_f1, "segment_f1": 100 * ev.segments.macro_f1,
                     "per_class": {c: 100 * ev.events.per_class_f1[c] for c in bundle.classes}}
    write_json(path, scores)
    return scores


def resolve_device(name: str) -> torch.device:
    """"auto" -> the first CUDA device when present, else the CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
