"""What makes two results the same (SPEC 5c): the content keys of every stage, in one place.

    data     -> TSV bytes and audio contents of every subset, and [data] classes when set (DATA_VERSION)
    features -> data's clips + the feature config + n_mels (FEATURES_VERSION)
    teacher  -> its config + seed + data + features config (TEACHER_VERSION), or a predictions file's sha256
    bundle   -> data + features config + teacher (BUNDLE_VERSION)
    job      -> the resolved method config without run-only fields + seed + its bundle's key (JOB_VERSION)

A key hashes everything that can change a stage's numbers and nothing else. Fields that only say where
or how a thing runs (RUN_ONLY_FIELDS) never enter a key, so `--set train.device=cpu` or another backend
reuses every finished job; settings that change numbers only in their last bits (threads, CPU, library
versions) are recorded with each result instead (harness.records.Provenance).

Each stage has a code version: bump it in any change that alters that stage's numbers, so results of the
older code are recomputed rather than mixed with new ones. Everything here is pure: the I/O that
produces the digests (hashing audio, reading TSVs) lives in the stages that own the files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping, Sequence

from harness.config import FeatureConfig, MethodConfig, TeacherConfig, to_dict

# 1: TSV bytes + audio digests of every subset.
DATA_VERSION = 1
# 2: the faster extraction of features/logmel.py (per-thread buffers, banded mel product) differs from 1 by
# up to ~2e-6 in log-mel, enough to change a teacher trained on it.
FEATURES_VERSION = 2
# 1: the CNN ensemble of harness/teacher/cnn.py.
TEACHER_VERSION = 1
# 2: paths relative to the bundle, checksums in the manifest, teacher scores outside the bundle.
BUNDLE_VERSION = 2
# 2: events end at each clip's real duration (no events in the padding frames of a short clip).
JOB_VERSION = 2

# Dotted config fields that cannot change a job's numbers: where it runs, what it keeps, which of two
# evaluators with identical results scores it, and where a teacher file lies (its content is keyed).
RUN_ONLY_FIELDS: tuple[str, ...] = (
    "train.device",
    "train.checkpoint",
    "train.energy_country",  # only codecarbon's CO2 figure depends on it, never a score
    "eval.evaluator",
    "teacher.predictions",
)


# Fields added after finished results existed, left out of every key at their default, which gives the
# numbers of the code before them: adding them made no finished job new. Any other value enters the key.
DEFAULT_OMITTED: dict[str, Any] = {
    "train.precision": "fp32",
    "student.model": "lstm",  # the paper's LSTM: its jobs keep the ids they had before models were chosen
}


def digest(*parts: Any, length: int = 16) -> str:
    """A stable hex digest of plain values and config dataclasses (keys sorted)."""
    payload = json.dumps([to_dict(p) if dataclasses.is_dataclass(p) else p for p in parts],
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def method_identity(config: MethodConfig) -> dict[str, Any]:
    """The resolved method config as data, without RUN_ONLY_FIELDS (nor DEFAULT_OMITTED fields at their default)."""
    data = to_dict(config)
    for dotted in RUN_ONLY_FIELDS:
        section, name = dotted.split(".")
        data[section].pop(name)
    for dotted, default in DEFAULT_OMITTED.items():
        section, name = dotted.split(".")
        if data[section][name] == default:
            data[section].pop(name)
    return data


def without_run_only(method_overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Nested method-config overrides (as `--set` gives them) less RUN_ONLY_FIELDS."""
    out = {section: dict(values) if isinstance(values, Mapping) else values
           for section, values in method_overrides.items()}
    for dotted in RUN_ONLY_FIELDS:
        section, name = dotted.split(".")
        if isinstance(out.get(section), dict):
            out[section].pop(name, None)
            if not out[section]:
                out.pop(section)
    return out


def config_key(config: MethodConfig, code: Sequence[tuple[str, str]] = ()) -> str:
    """Digest of a variant's resolved method config (run-only fields left out) and of the plugin code it runs
    (harness.plugins.code_of; none for built-ins, whose code is versioned here): one per table row."""
    if code:
        return digest(JOB_VERSION, method_identity(config), [list(c) for c in code], length=12)
    return digest(JOB_VERSION, method_identity(config), length=12)


def data_key(subsets: Mapping[str, tuple[str, Sequence[tuple[str, str]]]],
             classes: Sequence[str] | None = None) -> str:
    """The data's identity.

    Args:
        subsets: name -> (sha256 of the metadata TSV's bytes, [(clip id, audio digest)] in row order).
        classes: the study's classes when [data] classes sets them, else None: classes derived from the
            labels are a function of the TSV bytes already hashed, so they add nothing, and leaving them out
            keeps every key of data without the setting what it was.
    """
    payload = {n: [tsv, [list(c) for c in clips]] for n, (tsv, clips) in subsets.items()}
    if classes is None:
        return digest(DATA_VERSION, payload)
    return digest(DATA_VERSION, payload, {"classes": list(classes)})


def feature_key(cfg: FeatureConfig, n_mels: int, clip_digests: Sequence[tuple[str, str]]) -> str:
    """The features cache key: every feature field but the two bin counts, n_mels, and the clips.

    Args:
        cfg: the feature config (student_mels / teacher_mels are left out: n_mels says which).
        n_mels: mel bins of these features.
        clip_digests: (clip id, content digest of its audio) per clip, in row order.

    Returns:
        16 hex digits.
    """
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    fields.pop("student_mels")
    fields.pop("teacher_mels")
    payload = {"version": FEATURES_VERSION, "features": fields, "n_mels": n_mels, "clips": list(clip_digests)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def teacher_key(teacher: TeacherConfig, features: FeatureConfig, teacher_seed: int, data: str,
                predictions_sha256: str | None) -> str:
    """The teacher's identity: what it was trained on and how, or the content of its predictions file.

    Training epochs run on the same device-independent numbers up to their last bits, so the device is
    not part of it (it is recorded with each result).
    """
    if teacher.source == "file":
        if predictions_sha256 is None:
            raise ValueError("a file teacher is identified by its predictions file's sha256")
        return digest(TEACHER_VERSION, "file", predictions_sha256, data, features.n_frames)
    config = dataclasses.replace(teacher, predictions=None)
    return digest(TEACHER_VERSION, "train", config, teacher_seed, data, features)


def bundle_key(data: str, features: FeatureConfig, teacher: str) -> str:
    """The shared-stage bundle's identity: the data, the feature config and the teacher."""
    return digest(BUNDLE_VERSION, data, features, teacher)


def job_id(config: MethodConfig, seed: int, bundle: str, code: Sequence[tuple[str, str]] = (),
           streams: Mapping[str, int] | None = None) -> str:
    """A job's identity: its resolved method config (no run-only fields), its seed, its bundle, the code
    identity of the plugins it uses (an edited plugin is another job; built-ins only: the key as before), and
    the seeds of the streams that do not follow its seed (harness.streams; none: the key as before streams;
    the teacher stream is in the bundle)."""
    parts: list[Any] = [JOB_VERSION, method_identity(config), seed, bundle]
    if code:
        parts.append([list(c) for c in code])
    if streams:
        parts.append({"streams": dict(sorted(streams.items()))})
    return digest(*parts, length=12)
