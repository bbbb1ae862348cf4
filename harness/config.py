"""Typed, frozen configuration of one training job (SPEC section 2), with the paper's values as defaults.

A `MethodConfig` is everything a job needs besides its data and seed. The four factors of the
ablation grid are plain fields of it (see `FACTORS`), so a variant is a config value, never code.
`from_mapping` builds any config dataclass from TOML-like data and rejects unknown keys and wrong
types with the valid choices listed; `with_overrides` applies `dotted.key=value` strings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from harness import ranges
from harness.errors import ConfigError


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel framing shared by the student (20 bins) and the teacher (64 bins)."""

    sample_rate: int = 44100  # audio is resampled to this rate before framing (DESED is 44.1 kHz)
    win_seconds: float = 0.04  # Hann window length: 1764 samples at 44.1 kHz
    hop_seconds: float = 0.02  # 20 ms hop: 882 samples at 44.1 kHz, 50 frames a second
    n_fft: int = 2048  # FFT size; the window is zero-padded to it
    n_frames: int = 500  # frames a clip; shorter clips are padded, longer cropped
    student_mels: int = 20  # mel bins of the student's input
    teacher_mels: int = 64  # mel bins of the teacher's input
    fmin: float = 0.0  # lowest mel frequency (Hz)
    fmax: float | None = None  # highest mel frequency (Hz); None = sample_rate / 2
    log_eps: float = 1e-8  # log(mel + eps), so silence stays finite


@dataclass(frozen=True)
class StudentConfig:
    """The 3-layer unidirectional LSTM student with attention pooling (SPEC 2, Student S)."""

    hidden: int = 256  # LSTM units per layer (h)
    layers: int = 3  # stacked unidirectional LSTM layers
    attention: Literal["time", "classes"] = "time"  # "time": softmax over frames; "classes": literal Eq. 1
    gate_threshold: float = 0.5  # clip gating at inference: frames of class c zeroed where clip_c < this


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher: an ensemble of CNNs trained once per study, or predictions read from a file."""

    source: Literal["train", "file"] = "train"  # "file" reads `predictions` instead of training
    predictions: str | None = None  # path of a teacher predictions .npz (see harness.teacher.predictions)
    n_models: int = 6  # CNNs in the ensemble (6 in the paper's teacher)
    channels: int = 64  # width of the CNN's convolution blocks
    epochs: int = 30  # training epochs over the labeled data, per CNN
    batch_size: int = 32  # teacher training batch size
    lr: float = 1e-3  # Adam learning rate of the teacher


@dataclass(frozen=True)
class LossConfig:
    """J = J_w + J_s(l1, l2, M) + J_u(l1, l2, M) (SPEC 2, Loss)."""

    lambda1: float = 1.0  # weight of the clip-level BCE in J_s and J_u
    lambda2: float = 1.0  # weight of the framewise BCE in J_s and J_u
    masking: Literal["event", "segment", "none"] = "event"  # factor "masking" (EM / SM / NM)
    pseudolabels: Literal["strong+weak", "weak", "none"] = "strong+weak"  # factor "pseudolabels" (SW / W / -)
    segment_buffer: int = 12  # frames added before and after each event by segment masking (0.24 s)
    presence_threshold: float = 0.5  # t^w_c >= this marks class c present in an unlabeled clip


@dataclass(frozen=True)
class AugmentConfig:
    """SpecAugment without time warping (SPEC 2, Augmentation)."""

    kind: Literal["custom", "standard", "none"] = "custom"  # factor "augmentation" (CS / SS / NS)
    p: float = 0.5  # probability that a training clip is augmented
    time_masks: int = 2  # standard: number of time masks
    time_mask_frames: int = 16  # standard: length of each time mask
    freq_masks: int = 1  # both: number of frequency masks (F)
    freq_mask_bins: int = 4  # both: length of each frequency mask (L_f)
    top_k: int = 2  # custom: one time mask for each of the top K classes of the noisy label
    gamma: float = 0.25  # custom: time mask length = gamma * median event length of the class
    label_noise_var: float = 1e-6  # custom: eps_c ~ N(0, var) breaks ties among equal labels


@dataclass(frozen=True)
class CurriculumConfig:
    """Generations over the pseudolabeled set U (SPEC 2, Curriculum)."""

    schedule: Literal["easier", "harder", "all"] = "easier"  # factor "curriculum" (EF / HF / all)
    generation_epochs: int = 5  # epochs per generation
    fractions: tuple[float, ...] = (0.2, 0.4)  # share of U in use in generations 2, 3, ...; then all


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and budget (SPEC 2, Training)."""

    batch_size: int = 16
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    steps: int = 48790  # fixed budget of optimiser steps per trial
    epoch_steps: int | None = None  # None: an epoch is one pass over the clips in use; else a fixed count
    device: str = "auto"  # "auto": CUDA when present, else CPU; or "cpu", "cuda", "cuda:1"
    # "bf16": the student's LSTM runs under bfloat16 autocast in training steps (CPU and GPU); its heads,
    # the losses, the optimiser and every evaluation stay float32 (harness.method.train). Changes numbers.
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint: bool = True  # keep the best epoch's weights in the job directory
    energy_country: str = "USA"  # ISO 3166 alpha-3 code for codecarbon's offline tracker (harness.evaluation.energy)


@dataclass(frozen=True)
class PostprocessConfig:
    """Frame probabilities -> events (SPEC 2, Post-processing)."""

    threshold: float = 0.5  # frame binarisation threshold
    window_statistic: Literal["median", "mean"] = "median"  # event-length statistic for the median filter
    window_fraction: float = 1 / 3  # median-filter window = fraction * statistic (frames)


@dataclass(frozen=True)
class EvalConfig:
    """Event-based metric settings (SPEC 2, Metric)."""

    t_collar: float = 0.2  # onset/offset collar (s)
    percentage_of_length: float = 0.2  # offset collar as a share of the reference event length
    segment_seconds: float = 1.0  # segment length of the segment-based F1
    evaluator: Literal["fast", "sed_eval"] = "fast"  # "fast": ours (same numbers); "sed_eval": the reference


@dataclass(frozen=True)
class MethodConfig:
    """Everything a student job needs besides its data and its seed."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass(frozen=True)
class DataConfig:
    """Where a study's data comes from: a DESED root on disk, or the built-in synthetic corpus."""

    kind: Literal["desed", "synthetic"] = "desed"  # "synthetic": generated on first use, cached
    root: str | None = None  # DESED root (SPEC 3); for "synthetic", None = inside the cache directory
    synth_size: Literal["tiny", "quick"] = "quick"  # size of the synthetic corpus
    synth_seed: int = 0  # seed of the synthetic corpus
    skip_missing: bool = False  # audio files listed but missing: skip them (logged) instead of failing
    # Per-subset overrides of the DESED layout, relative to root (or absolute); None = DESED's names.
    synthetic_tsv: str | None = None
    synthetic_audio: str | None = None
    weak_tsv: str | None = None
    weak_audio: str | None = None
    unlabeled_tsv: str | None = None
    unlabeled_audio: str | None = None
    validation_tsv: str | None = None
    validation_audio: str | None = None
    test_tsv: str | None = None
    test_audio: str | None = None


# The factors of the ablation grid: name -> (section, field) in MethodConfig, with their levels.
FACTORS: dict[str, tuple[str, str]] = {
    "curriculum": ("curriculum", "schedule"),
    "pseudolabels": ("loss", "pseudolabels"),
    "masking": ("loss", "masking"),
    "augmentation": ("augment", "kind"),
}


def factor_levels(name: str) -> tuple[str, ...]:
    """The valid levels of a factor, read from the Literal type of its field."""
    section, attr = FACTORS[name]
    section_cls = _field_types(MethodConfig)[section]
    return typing.get_args(_field_types(section_cls)[attr])


def factors_of(config: MethodConfig) -> dict[str, str]:
    """The factor levels of a config, e.g. {"curriculum": "easier", ...}."""
    return {name: getattr(getattr(config, sec), attr) for name, (sec, attr) in FACTORS.items()}


def with_factors(config: MethodConfig, factors: Mapping[str, str], where: str = "factors") -> MethodConfig:
    """A copy of `config` with the given factor levels; unknown factors or levels raise ConfigError."""
    for name, level in factors.items():
        if name not in FACTORS:
            raise ConfigError(f"{where}: unknown factor {name!r}; valid factors: {', '.join(FACTORS)}")
        if level not in factor_levels(name):
            raise ConfigError(
                f"{where}.{name}: unknown level {level!r}; valid levels: {', '.join(factor_levels(name))}"
            )
        section, attr = FACTORS[name]
        config = dataclasses.replace(
            config, **{section: dataclasses.replace(getattr(config, section), **{attr: level})}
        )
    return config


# --------------------------------------------------------------------------- building from data


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_mapping(cls: type, data: Mapping[str, Any], where: str, base: Any = None) -> Any:
    """Build dataclass `cls` from a mapping, starting from `base` (or the defaults).

    Args:
        cls: a frozen config dataclass.
        data: TOML-like values; nested mappings fill nested dataclasses.
        where: the file and key path, for error messages (e.g. "table2.toml: base.train").
        base: an instance of `cls` whose values the mapping overrides; None = defaults.

    Raises:
        ConfigError: an unknown key (the valid ones are listed) or a value of the wrong type.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table of keys, got {type(data).__name__} {data!r}")
    base = base if base is not None else cls()
    hints = _field_types(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(hints)}"
        )
    changes = {
        key: _convert(hints[key], value, f"{where}.{key}", getattr(base, key))
        for key, value in data.items()
    }
    return dataclasses.replace(base, **changes)


def _convert(hint: Any, value: Any, where: str, current: Any) -> Any:
    """Check and convert one value against its type hint."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where, current)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not valid; choose one of {', '.join(map(repr, choices))}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(option, value, where, current)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is tuple:
        return _convert_tuple(hint, value, where)
    return _convert_scalar(hint, value, where)


def _convert_tuple(hint: Any, value: Any, where: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    args = typing.get_args(hint)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v, f"{where}[{i}]", None) for i, v in enumerate(value))
    if len(args) != len(value):
        raise ConfigError(f"{where}: expected a list of {len(args)} values, got {len(value)}")
    return tuple(_convert(a, v, f"{where}[{i}]", None) for i, (a, v) in enumerate(zip(args, value)))


def _convert_scalar(hint: Any, value: Any, where: str) -> Any:
    # bool is a subclass of int in Python: refuse it where a number is expected, and vice versa.
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # TOML reads nan and inf as floats
                raise ConfigError(f"{where}: {value!r} is not a finite number; give a finite value")
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise ConfigError(f"{where}: unsupported config type {hint!r}")
    raise ConfigError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split "train.steps=200" into (["train", "steps"], 200), reading the value as TOML."""
    import tomllib

    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected dotted.key=value, e.g. --set train.steps=200")
    key, raw = (s.strip() for s in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word such as easier: read it as a string
    return key.split("."), value


def nest(path: list[str], value: Any) -> dict[str, Any]:
    """["a", "b"], 1 -> {"a": {"b": 1}}."""
    out: Any = value
    for part in reversed(path):
        out = {part: out}
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_hash(*parts: Any, length: int = 12) -> str:
    """A stable short hash of config dataclasses and plain values (order-independent keys)."""
    payload = json.dumps(
        [to_dict(p) if dataclasses.is_dataclass(p) else p for p in parts], sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


# --------------------------------------------------------------------------- ranges

CLIP_SECONDS = 10.0  # DESED clips; the frame geometry must cover them (see check_method)


def check_method(config: MethodConfig, where: str) -> None:
    """Refuse a resolved config no job can run with, naming the key and what to do.

    Raises:
        ConfigError: a value out of range, a file teacher without its file, or a frame geometry
            (features.n_frames x features.hop_seconds) that does not span a 10-s clip.
    """
    ranges.check_fields(config, where)
    precisions = typing.get_args(_field_types(TrainConfig)["precision"])
    if config.train.precision not in precisions:
        raise ConfigError(f"{where}: train.precision = {config.train.precision!r}; choose one of "
                          f"{', '.join(map(repr, precisions))}")
    features = config.features
    if features.fmax is not None and not features.fmin < features.fmax <= features.sample_rate / 2:
        raise ConfigError(f"{where}: features.fmax = {features.fmax:g}; it must lie above features.fmin "
                          f"({features.fmin:g}) and at most at half the sample rate ({features.sample_rate / 2:g})")
    if round(features.win_seconds * features.sample_rate) > features.n_fft:
        raise ConfigError(f"{where}: features.win_seconds = {features.win_seconds:g} is "
                          f"{round(features.win_seconds * features.sample_rate)} samples at {features.sample_rate} Hz, "
                          f"longer than features.n_fft = {features.n_fft}; raise n_fft or shorten the window")
    if config.teacher.source == "file" and not config.teacher.predictions:
        raise ConfigError(f'{where}: teacher.source = "file" needs teacher.predictions = PATH (an .npz of clip_ids, '
                          'weak [N, 10], strong [N, 10, T]; README "Teacher predictions from a file"), or set '
                          'teacher.source = "train"')
    span = config.features.n_frames * config.features.hop_seconds
    if abs(span - CLIP_SECONDS) > config.features.hop_seconds + 1e-9:
        frames = round(CLIP_SECONDS / config.features.hop_seconds)
        raise ConfigError(f"{where}: features.n_frames x features.hop_seconds = {config.features.n_frames} x "
                          f"{config.features.hop_seconds} = {span:g} s, but clips are {CLIP_SECONDS:g} s; set "
                          f"features.n_frames = {frames} for this hop")
