"""The run directory's contract: the typed records that cross process and disk boundaries.

Every JSON file the harness writes and reads again is one of these frozen dataclasses, written and read
only through `write_record` / `read_record` (or the plain `write_json` / `read_json` underneath):

    runs/<run>/study.json                 StudyRecord   (with its Resolution)
    runs/<run>/tuning.json                TuningChoice
    runs/<run>/jobs/<job id>/job.json     JobRecord
    runs/<run>/jobs/<job id>/result.json  Result
    runs/<run>/jobs/<job id>/error.json   Failure
    <cache>/stages/<key>/manifest.json    BundleManifest

JSON is strict: NaN and infinities are written as null (a float field is `float | None`), never as the
bare `NaN` that other JSON readers reject, and a file holding one is refused on reading. A write goes
to a temporary file in the same folder, is flushed to disk, and is renamed into place, so a reader sees
the old file or the whole new one, never half. Every failure to read or write names the file and says
what to do, as a `RecordError`.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import types
import typing
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator, Literal, Mapping, TypeVar

from harness.errors import HarnessError, disk_full

T = TypeVar("T")


class RecordError(HarnessError):
    """A record file is unreadable, malformed, or cannot be written.

    `fact` says what is wrong (naming the file), `advice` what to do; the reader of one particular file may give
    its own advice for a damaged one, since what deleting a file loses differs from file to file.
    """

    def __init__(self, fact: str, advice: str = "") -> None:
        super().__init__(f"{fact}; {advice}" if advice else fact)
        self.fact, self.advice = fact, advice

    @property
    def damaged(self) -> bool:
        """Of an error reading a record: the file was read but is not a valid one (garbage, bad JSON, a key or
        value of the wrong shape; a value's error carries no advice), rather than missing or unreadable."""
        if self.advice:
            return self.advice in (DAMAGED_ADVICE, OTHER_VERSION_ADVICE)
        return not self.fact.endswith(": not found")


# What to do about a damaged record when its reader gives no advice of its own: right for a job's result.json
# (the job runs again), and for the derived records (tables, caches); study.json gives its own.
DAMAGED_ADVICE = "delete it and run again (a job's results are recomputed, nothing else is lost)"
OTHER_VERSION_ADVICE = "written by another harness version? Run the study again with this version"
READ_ADVICE = "check its permissions"


# --------------------------------------------------------------------------- atomic, strict JSON


def no_follow(path: str, flags: int) -> int:
    """An `opener` for open() that refuses a symbolic link at `path` (OSError ELOOP) instead of writing through
    it: whoever can write a run folder on a shared file system must not redirect the harness's writes. New
    files get mode 0o666 less the umask, like any file open() creates."""
    return os.open(path, flags | os.O_NOFOLLOW, 0o666)


def open_append(path: Path):
    """`path` opened to append text, never through a symbolic link (a job's log.txt).

    Raises:
        RecordError: `path` is a symbolic link, or cannot be opened (DiskFull: the disk is full).
    """
    try:
        return open(path, "a", encoding="utf-8", opener=no_follow)
    except OSError as e:
        raise write_error(Path(path), e) from e


def write_error(path: Path, error: OSError) -> HarnessError:
    """The error to raise for `error` writing `path`: it names the file and says what to do."""
    if error.errno == errno.ELOOP and Path(path).is_symlink():
        return RecordError(f"{path}: is a symbolic link, which the harness does not write through (it could point "
                           "anywhere)", "delete the link and run again")
    return disk_full(path, error) or RecordError(f"{path}: cannot write ({error.strerror or error})",
                                                 "check that the folder exists and is writable, then run again")


@contextmanager
def atomic_file(path: Path, tmp_name: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success it is flushed to disk and renamed to `path`.

    The one way the harness publishes a file: a reader sees the old file or the whole new one, never half;
    a failure leaves no temporary file behind. The temporary file is created here, exclusively and with
    mode 0o666 less the umask (as any file the harness writes: colleagues read what the umask lets them);
    the rename replaces a symbolic link at `path` rather than writing through it.

    `tmp_name`: the temporary file's name, for a writer whose partial writes a later process must find (a
    checkpoint's, after kill -9); by default a random one.

    Raises:
        DiskFull: the disk is full or over quota (the file is left as it was).
        RecordError: the folder is not writable, or a file is in the way of the temporary one (the file is left
            as it was).
    """
    path = Path(path)
    tmp = path.with_name(tmp_name or f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666))
        yield tmp
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        if e.filename not in (None, str(tmp), str(path)):  # another file's error (a read of the input): its own
            raise
        raise write_error(path, e) from e
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    """Write `data` as strict JSON to `path` atomically.

    Raises:
        RecordError: the folder is not writable or the disk is full (the file is left as it was).
    """
    text = json.dumps(_strict(data), indent=1, allow_nan=False)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: Path) -> Any:
    """Strict JSON from `path`.

    Raises:
        RecordError: missing, unreadable, not UTF-8 text, not valid JSON, or holding NaN/Infinity.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise RecordError(f"{path}: not found") from e
    except UnicodeDecodeError as e:  # binary garbage: the file is damaged, its permissions are fine
        raise RecordError(f"{path}: damaged, not UTF-8 text ({e})", DAMAGED_ADVICE) from e
    except OSError as e:
        raise RecordError(f"{path}: cannot read ({e.strerror or e})", READ_ADVICE) from e
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as e:
        raise RecordError(f"{path}: damaged or not valid JSON ({e})", DAMAGED_ADVICE) from e


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _strict(value: Any) -> Any:
    """A copy of plain data with non-finite floats as None and tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


# --------------------------------------------------------------------------- checksums

_CHUNK = 1 << 24


def file_checksum(path: Path) -> str:
    """"crc32:<8 hex>" of a file's bytes, for cached arrays: ~2.9 GB/s on this project's CPU, against ~1.6 for
    sha256. CRC-32 detects every burst error up to 32 bits and random damage but for 1 in 4e9; caches
    guard against damage, not against an adversary.

    Raises:
        RecordError: the file cannot be read.
    """
    crc = 0
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    try:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buffer):
                crc = zlib.crc32(view[:n], crc)
    except OSError as e:
        raise RecordError(f"{path}: cannot read ({e.strerror or e})") from e
    return f"crc32:{crc:08x}"


# --------------------------------------------------------------------------- typed records


def to_data(record: Any) -> dict[str, Any]:
    """A record as plain JSON-able data."""
    return _strict(dataclasses.asdict(record))


def from_data(cls: type[T], data: Any, where: str) -> T:
    """Build record `cls` from plain data, checking every field's presence and type.

    Raises:
        RecordError: a missing key, an unknown key, or a value of the wrong type (naming `where`).
    """
    if not isinstance(data, Mapping):
        raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecordError(f"{where}: unknown key {unknown[0]!r}", OTHER_VERSION_ADVICE)
    values = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise RecordError(f"{where}: missing key {name!r}", OTHER_VERSION_ADVICE)
        values[name] = _check(hints[name], data[name], f"{where}: {name}")
    return cls(**values)


def _check(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_data(hint, value, where)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in (o for o in options if o is not type(None)):
            try:
                return _check(option, value, where)
            except RecordError:
                continue
        raise RecordError(f"{where}: unexpected value {value!r}")
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise RecordError(f"{where}: {value!r} is not one of {typing.get_args(hint)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected a list, got {type(value).__name__}")
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        item = args[0] if args else Any
        out = [_check(item, v, where) for v in value]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
        item = typing.get_args(hint)[1] if typing.get_args(hint) else Any
        return {k: _check(item, v, f"{where}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint in (str, bool):
        if isinstance(value, hint):
            return value
    else:
        return value
    raise RecordError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def write_record(path: Path, record: Any) -> None:
    """Write a typed record atomically as strict JSON."""
    write_json(path, to_data(record))


def read_record(path: Path, cls: type[T]) -> T:
    """Read a typed record; any defect is a RecordError naming the file.

    The advice of a damaged record is the defaults' (DAMAGED_ADVICE, OTHER_VERSION_ADVICE), wrong for a file
    whose loss costs more than a job's: its reader replaces it (RecordError.damaged; rundir.read_study_record).
    """
    return from_data(cls, read_json(path), str(path))


# --------------------------------------------------------------------------- the records


@dataclass(frozen=True)
class Resolution:
    """How a study file became this run directory's plan: the same resolution, the same jobs.

    Two runs with different resolutions never share a run directory (see harness.study.rundir).
    """

    file: str  # the study file, absolute
    profile: str  # paper | quick | tiny | a [profiles.NAME] of the file
    overrides: tuple[str, ...]  # every --set, as given, in order
    overrides_key: str  # digest of the parsed overrides (the part of the resolution that is compared)
    data_root: str  # the data's folder, absolute
    data_digest: str  # content digest of the data (TSVs + audio) when the study was last run


@dataclass(frozen=True)
class Budget:
    """What a report header says of the compute behind its numbers."""

    steps: int
    hidden: int
    layers: int
    teacher_models: int
    teacher_channels: int
    teacher_source: str
    # train.precision of the student's training steps; records written before it existed were fp32
    precision: str = "fp32"
    features_hop: float = 0.02  # seconds between frames (features.hop_seconds)
    n_frames: int = 500  # frames a clip (features.n_frames)
    # student.model of the base config; hidden and layers are the LSTM's (0 for another model)
    student_model: str = "lstm"


@dataclass(frozen=True)
class VariantInfo:
    name: str
    factors: dict[str, Any]  # factor name -> level: the paper's four, then the study's other factors


@dataclass(frozen=True)
class FactorInfo:
    """A factor of the study as the report shows it (harness.plugins.FactorSpec, less what only names need)."""

    name: str  # its tidy-table column: the paper's short names, else the dotted config key
    key: str  # the dotted config key it sets
    label: str  # the tables' column header
    level_labels: dict[str, str] = field(default_factory=dict)  # level text (lower case) -> display


@dataclass(frozen=True)
class TableInfo:
    name: str
    caption: str
    variants: tuple[str, ...]


@dataclass(frozen=True)
class ComparisonInfo:
    label: str
    a: str
    b: str
    rope: float | None = None  # half-width of the region of practical equivalence (F1 points); None: default


@dataclass(frozen=True)
class ReferenceRow:
    """A row of reference scores in the report's tables (the teacher)."""

    name: str
    val_f1: float | None
    test_f1: float | None


@dataclass(frozen=True)
class PseudolabelRow:
    """A teacher's pseudolabels on the unlabeled clips scored against their truth (harness.study.pseudolabels):
    F1 in %, the AUC a fraction; None where undefined (no class counts)."""

    name: str  # the teacher's row name, as in Tables 1-3
    presence_threshold: float  # loss.presence_threshold: binarises the strong and the weak pseudolabels
    gated: bool  # event masking: the frame targets count only on the classes with t^w >= presence_threshold
    strong_event_f1: float | None
    strong_segment_f1: float | None
    weak_clip_f1: float | None
    weak_auc: float | None
    n_clips: int  # the unlabeled clips of known truth, those scored
    val_f1: float | None  # the teacher's own event F1 on validation and test (stages.teacher_scores)
    test_f1: float | None
    truth: str  # the truth TSV: relative to the data's root when inside it, else absolute


@dataclass(frozen=True)
class StudyRecord:
    """runs/<run>/study.json: the resolution, what the report needs, and the current plan's job ids."""

    name: str
    run_name: str
    description: str
    resolution: Resolution
    budget: Budget
    generation_epochs: int
    tables: tuple[TableInfo, ...]
    variants: tuple[VariantInfo, ...]
    comparisons: tuple[ComparisonInfo, ...]
    reference_rows: tuple[ReferenceRow, ...]
    seeds: tuple[int, ...]
    jobs: tuple[str, ...]  # replicate job ids of the current plan
    tune_jobs: tuple[str, ...] = ()  # tuning job ids
    git_commit: str = "unknown"
    paired: bool = False  # [study] paired: seed s of every variant is paired with seed s of the others
    sequential: dict[str, Any] | None = None  # the --until-decided design (looks, alpha, ...); None: fixed seeds
    # The factors its variants set, in column order; () in records written before any key could be a factor
    # (their reports show the paper's four).
    factors: tuple[FactorInfo, ...] = ()
    plugins: tuple[str, ...] = ()  # [study] plugins as loaded (modules; .py files by absolute path)
    # The design of seed streams (harness.streams): "crossed" or "nested" (outer to inner: teacher, init, order,
    # augment), "" when every stream follows the run's seed with one teacher; `streams` names the streams that
    # vary over a variant's runs (results.csv columns seed_<stream>), `teacher_seeds` the teachers' seeds.
    # With one seed per run and several teachers, the runs (all their streams together) nest in the teachers.
    streams_design: str = ""
    streams: tuple[str, ...] = ()
    teacher_seeds: tuple[int, ...] = ()
    # The teachers' pseudolabels scored against the truth of the unlabeled clips; () where it is not known.
    pseudolabel_rows: tuple[PseudolabelRow, ...] = ()


@dataclass(frozen=True)
class JobRecord:
    """runs/<run>/jobs/<id>/job.json: a job's identity and resolved config."""

    job_id: str
    study: str
    variant: str
    seed: int
    profile: str
    phase: Literal["replicate", "tune"]
    teacher_seed: int
    factors: dict[str, Any]
    config: dict[str, Any]
    data: dict[str, Any]
    bundle_key: str
    config_key: str
    streams: dict[str, int] = field(default_factory=dict)  # stream -> seed, as Result.streams


@dataclass(frozen=True)
class Provenance:
    """What can change a result's numbers in their last bits, or places it: recorded with every result."""

    bundle_key: str  # content key of the shared stages (data, features, teacher) it trained on
    data_digest: str  # content digest of the data (TSVs + audio)
    config_key: str  # digest of the resolved method config without run-only fields and seed
    threads: int  # torch intra-op threads of the job
    device: str  # e.g. "cpu", "cuda:0:NVIDIA H200"
    torch_version: str
    cuda_version: str | None  # torch.version.cuda; None for a CPU build
    harness_version: str
    git_commit: str
    # the CPU model and the instruction sets its kernels use (environment.cpu_description); "" in records
    # written before it was kept
    cpu: str = ""


@dataclass(frozen=True)
class Result:
    """runs/<run>/jobs/<id>/result.json: a finished job's scores (F1 in %)."""

    study: str
    job_id: str
    variant: str
    curriculum: str
    pseudolabels: str
    masking: str
    augmentation: str
    lambda1: float
    lambda2: float
    seed: int
    profile: str
    phase: Literal["replicate", "tune"]
    val_f1: float | None
    test_f1: float | None
    val_segment_f1: float | None
    test_segment_f1: float | None
    best_epoch: int
    steps: int
    wall_seconds: float
    train_seconds: float
    provenance: Provenance
    per_class: dict[str, dict[str, float | None]]  # split -> class -> event F1 (%)
    status: Literal["ok"] = "ok"
    # Threshold-independent and DCASE 2021+ metrics (%), from the raw frame probabilities of the best epoch
    # (harness.evaluation.psds); None where a split has no reference event or the result predates them.
    val_psds1: float | None = None
    val_psds2: float | None = None
    test_psds1: float | None = None
    test_psds2: float | None = None
    val_intersection_f1: float | None = None
    test_intersection_f1: float | None = None
    val_collar_f1: float | None = None
    test_collar_f1: float | None = None
    metric_versions: dict[str, str] = field(default_factory=dict)  # sed_scores_eval, sed_eval, psds_eval
    # Size and energy (DCASE 2024 Task 4 reports both); None in results that predate them or where not measured.
    params: int | None = None  # the student's trainable parameters (harness.model.size)
    macs_per_clip: int | None = None  # its multiply-accumulates for one 10-s clip (harness.model.size)
    train_kwh: float | None = None  # energy of training, this attempt (harness.evaluation.energy, codecarbon)
    eval_kwh: float | None = None  # energy of evaluating the best epoch on validation and test
    energy_estimate: str | None = None  # how codecarbon got its power figures, e.g. "CPU(Cpu Load) TDP 8 W; RAM()"
    # Where the job read its shared stages (a hint for rescore and the report; a moved cache is found by key).
    bundle_root: str | None = None
    # The study's factors beyond the paper's four: dotted key -> this job's level (a tidy-table column each).
    factors: dict[str, Any] = field(default_factory=dict)
    # Metrics of plugins (harness.plugins.MetricSpec with a compute): "val_<name>" / "test_<name>" -> value.
    metrics: dict[str, float | None] = field(default_factory=dict)
    # Seed of each stream (teacher, init, order, augment; harness.streams) when the study varies streams or
    # teachers, a results.csv column seed_<stream> each; {} when every stream followed `seed` (and in results
    # written before streams existed).
    streams: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RescoreRecord:
    """runs/<run>/rescore/<name>/settings.json: the settings a rescore table was computed under (harness.study.rescore)."""

    name: str
    key: str  # digest of the settings below (the default name)
    overrides: tuple[str, ...]  # every --set, as given
    method: dict[str, Any]  # the parsed method-config overrides (postprocess, eval, student.gate_threshold)
    psds_median_filter: bool  # threshold-free metrics on median-filtered scores (the DCASE 2023-2024 baselines)
    psds_drop_empty_clips: bool  # threshold-free metrics on clips with reference events only (DESED_task recipe)
    threshold_free: bool  # PSDS1/2 and the two F1s at 0.5 recomputed (False: those columns are empty)
    jobs: tuple[str, ...]  # the job ids rescored
    reference_rows: tuple[ReferenceRow, ...] = ()  # the teacher under the same post-processing
    harness_version: str = ""
    metric_versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IntervalRecord:
    """A clip-level bootstrap interval of one metric, in % (harness.evaluation.bootstrap.BootstrapInterval x 100)."""

    point: float | None
    low: float | None
    high: float | None
    std: float | None  # the bootstrap standard error
    confidence: float
    n_resamples: int


@dataclass(frozen=True)
class UncertaintyRecord:
    """runs/<run>/jobs/<id>/uncertainty-<key>.json: a job's clip-level bootstrap intervals and PSD-ROC, derived
    from its saved probabilities (harness.study.rescore.job_uncertainty); deleting it only costs the time to
    compute it again."""

    job_id: str
    key: str  # digest of the settings, metrics, resamples and seed it was computed with
    intervals: dict[str, IntervalRecord]  # results.csv column (val_f1, test_psds1, ...) -> interval
    roc_scenario: str  # "psds1" or "psds2"
    roc_grid: tuple[float, ...]  # eFPR per hour
    roc: dict[str, tuple[float, ...]]  # split -> eTPR at roc_grid


FailureKind = str  # "TrainingDiverged", "WorkerDied", an exception's class name, ...


@dataclass(frozen=True)
class Failure:
    """runs/<run>/jobs/<id>/error.json: why a job failed, and where its log is."""

    job_id: str
    error: FailureKind
    message: str
    log: str  # the job's log.txt
    traceback: str = ""
    status: Literal["failed"] = "failed"


@dataclass(frozen=True)
class ArrayEntry:
    """One file of a bundle: its path relative to the bundle folder, and a checksum of its bytes."""

    path: str
    checksum: str  # "crc32:<8 hex>" of the whole file
    size: int  # bytes


@dataclass(frozen=True)
class TeacherInfo:
    source: Literal["train", "file"]
    train_seconds: float
    key: str  # the teacher's identity (config + seed + data, or the predictions file's sha256)


@dataclass(frozen=True)
class BundleManifest:
    """<cache>/stages/<key>/manifest.json, written last: its presence marks a complete bundle."""

    key: str
    version: int
    created: str
    data_digest: str
    features_config: dict[str, Any]
    teacher_config: dict[str, Any]
    teacher_seed: int
    teacher: TeacherInfo
    frame_hop_seconds: float
    n_frames: int
    clip_ids: dict[str, list[str]]
    durations: dict[str, list[float]]  # seconds of audio of each clip, per evaluation subset
    norm_mean: list[float]
    norm_std: list[float]
    event_frames: dict[str, list[float]]  # "median" / "mean" -> [C] event length in frames
    arrays: dict[str, ArrayEntry]  # name -> file inside the bundle
    features: dict[str, ArrayEntry] = field(default_factory=dict)  # subset -> cached features file
    # The study's classes, the order of every [C] axis; () in a manifest written before they were recorded
    # (then DESED's, the only classes a study could have: harness.bundle.Bundle.classes).
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TuningChoice:
    """runs/<run>/tuning.json: per variant, the (lambda1, lambda2) with the best mean val F1."""

    chosen: dict[str, tuple[float, float]]
