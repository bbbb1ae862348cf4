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
# The student models' configs live beside the models (torch-free); the LSTM's keeps its old name here too.
from harness.model.config import CRNNConfig, LSTMConfig, ModelConfig, StudentConfig  # noqa: F401


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
    # "bf16": the student's LSTM (the CRNN's convs and GRU) run under bfloat16 autocast in training steps (CPU
    # and GPU); its heads, the losses, the optimiser and every evaluation stay float32 (harness.method.train).
    # Changes numbers.
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
    student: ModelConfig = field(default_factory=StudentConfig)  # student.model chooses its class
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
    # The study's classes, in the order of every [C] vector; None = the sorted labels of the strong training
    # and weak TSVs (harness.data.vocabulary). Set it to fix another order or to name classes of no label.
    classes: tuple[str, ...] | None = None
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
    # The true events of the unlabeled clips (a strong TSV, relative to root), for the report's pseudolabel
    # quality only: no job reads it. None = the corpus's metadata/train/unlabel_in_domain_truth.tsv when it exists
    # (the synthetic corpus writes it), else none (harness.data.desed.unlabeled_truth).
    unlabeled_truth_tsv: str | None = None


# The paper's four factors: short name -> (section, field) in MethodConfig. Their descriptions (labels,
# abbreviations) are registered from these in harness.builtins; any other dotted key is a factor too.
FACTORS: dict[str, tuple[str, str]] = {
    "curriculum": ("curriculum", "schedule"),
    "pseudolabels": ("loss", "pseudolabels"),
    "masking": ("loss", "masking"),
    "augmentation": ("augment", "kind"),
}

def factor_levels(name: str) -> tuple[str, ...]:
    """The valid levels of one of the paper's factors, read from the Literal type of its field."""
    section, attr = FACTORS[name]
    section_cls = _field_types(MethodConfig)[section]
    return typing.get_args(_field_types(section_cls)[attr])


def factors_of(config: MethodConfig) -> dict[str, str]:
    """The paper's four factor levels of a config, e.g. {"curriculum": "easier", ...}."""
    return {name: getattr(getattr(config, sec), attr) for name, (sec, attr) in FACTORS.items()}


def factor_key(name: str) -> str:
    """The dotted config key a factor sets: a registered factor's (the paper's "masking" -> "loss.masking"),
    else the name itself."""
    from harness.plugins import factor_spec

    return factor_spec(name).key


def config_value(config: MethodConfig, key: str, missing: Any = dataclasses.MISSING) -> Any:
    """The value of a dotted key of a config, e.g. config_value(c, "student.hidden") -> 256.

    `missing` is returned for a key this config has not (a key of another student model); without it that
    is an AttributeError."""
    value: Any = config
    for part in key.split("."):
        if not hasattr(value, part) and missing is not dataclasses.MISSING:
            return missing
        value = getattr(value, part)
    return value


def with_factors(config: MethodConfig, factors: Mapping[str, Any], where: str = "factors") -> MethodConfig:
    """A copy of `config` with the given factor levels.

    A factor is one of the paper's four short names (curriculum, pseudolabels, masking, augmentation) or
    any dotted key of the method config ("student.hidden"); its level is checked like a `--set` value.

    Raises:
        ConfigError: an unknown factor or key (the valid ones listed), or a level of the wrong type.
    """
    merged: dict[str, Any] = {}
    for name, level in factors.items():
        check_factor_key(name, where)
        if name in FACTORS and level not in factor_levels(name):
            raise ConfigError(f"{where}.{name}: unknown level {level!r}; valid levels: "
                              f"{', '.join(factor_levels(name))}")
        _merge_into(merged, nest(factor_key(name).split("."), level))
    # One mapping for all: a section reads its keys together (student.model first, then that model's keys).
    return from_mapping(MethodConfig, merged, where, config) if merged else config


def _merge_into(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge_into(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def check_factor_key(name: str, where: str) -> None:
    """Refuse a name that is no factor: not one of the paper's four, not a dotted key of the method config,
    or a key that changes no number.

    Raises:
        ConfigError: naming the key and listing the valid ones.
    """
    if name in FACTORS:
        return
    if "." not in name:
        raise ConfigError(f"{where}: unknown key {name!r}: a factor is one of {', '.join(FACTORS)} or a "
                          f'dotted key of the method config in quotes, e.g. "student.hidden" = [64, 128] '
                          f"(sections: {', '.join(_field_types(MethodConfig))})")
    if name in _run_only_fields():
        raise ConfigError(f"{where}: {name!r} cannot be a factor: it says where or how a job runs and changes "
                          "no number; set it in [base] or with --set")
    cls: Any = MethodConfig
    parts = name.split(".")
    for i, part in enumerate(parts):
        hints = _section_keys(cls) if dataclasses.is_dataclass(cls) else {}
        if part not in hints:
            here = ".".join(parts[:i]) or "the method config"
            raise ConfigError(f"{where}: unknown key {name!r}: {here} has no {part!r}; valid keys: "
                              f"{', '.join(hints) or '(none: ' + here + ' is a value)'}")
        cls = hints[part]


def _section_keys(cls: type) -> dict[str, Any]:
    """A section's keys and types; the student section's are those of every registered model (which apply
    is known only once student.model is read)."""
    if not (isinstance(cls, type) and issubclass(cls, ModelConfig)):
        return _field_types(cls)
    from harness import plugins

    keys: dict[str, Any] = dict(_field_types(StudentConfig))
    for name in plugins.models.names():
        keys.update(_field_types(plugins.models.get(name).config))
    return keys


def _run_only_fields() -> tuple[str, ...]:
    """Keys that cannot be factors: they say where or how a job runs, never what it computes, so two levels
    would be two names for the same runs (kept in one place, harness.identity)."""
    from harness.identity import RUN_ONLY_FIELDS  # identity imports this module

    return RUN_ONLY_FIELDS


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
    if isinstance(cls, type) and issubclass(cls, ModelConfig):
        cls, base = _model_section(data, where, base)
    base = base if base is not None else cls()
    hints = _field_types(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; valid keys{_of_model(base)}: {', '.join(hints)}"
        )
    changes = {
        key: _convert(hints[key], value, f"{where}.{key}", getattr(base, key))
        for key, value in data.items()
    }
    return dataclasses.replace(base, **changes)


def _model_section(data: Mapping[str, Any], where: str, base: Any) -> tuple[type, Any]:
    """The config class and starting values of a `student` section: its `model` key is read first.

    A section that names another model than `base`'s starts from that model's defaults (the keys of one
    model mean nothing to another); one that names none, or the same, goes on from `base`.

    Raises:
        ConfigError: a model name that is not registered (the known ones are listed).
    """
    from harness import plugins  # imported here: the registry's built-ins import this module

    current = base if base is not None else StudentConfig()
    name = data.get("model", current.model)
    if not isinstance(name, str):
        raise ConfigError(f"{where}.model: expected the name of a model, got {name!r}; known models: "
                          f"{', '.join(plugins.models.names())}")
    spec = plugins.models.get(name, f"{where}.model")
    if type(current) is not spec.config:
        current = spec.config()
    return spec.config, current


def _of_model(config: Any) -> str:
    """" of model 'crnn' (...)" for the unknown-key message of a student section; "" for other sections."""
    if not isinstance(config, ModelConfig):
        return ""
    from harness import plugins

    others = [n for n in plugins.models.names() if n != config.model]
    return (f" of model {config.model!r} (student.model chooses the model{': also ' if others else ''}"
            f"{', '.join(others)})")


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

def check_method(config: MethodConfig, where: str) -> None:
    """Refuse a resolved config no job can run with, naming the key and what to do.

    Raises:
        ConfigError: a value out of range, or a file teacher without its file. Whether the frame geometry
            (features.n_frames x features.hop_seconds) covers the clips depends on the data: it is checked
            where the data is read (harness.study.stages.check_against_data).
    """
    ranges.check_fields(config, where)
    _check_model(config, where)
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
                          'weak [N, C], strong [N, C, T]; README "Teacher predictions from a file"), or set '
                          'teacher.source = "train"')


def _check_model(config: MethodConfig, where: str) -> None:
    """The student model's own check of its keys together (e.g. the CRNN's pooling against its blocks)."""
    from harness import plugins  # imported here: the registry's built-ins import this module

    spec = plugins.models.get(config.student.model, f"{where}: student.model")
    if spec.check is not None:
        spec.check(config.student, where)
