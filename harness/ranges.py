"""The valid range of every number a user can give: each method-config field and each numeric flag.

One table each, so that a value no job can run with (`--threads 0`, `postprocess.threshold = 7`) is
refused before any work, with the key and its range named, whatever command reads it (`plan`, `run`,
`rescore`). tests/test_ranges.py checks that every numeric field of the configs and every numeric flag
of the command line has its entry here, so a new one cannot be added without a range.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from harness.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """An interval of the real line; None is unbounded on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: `low` itself is outside
    high_open: bool = False  # True: `high` itself is outside

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def describe(self) -> str:
        """In words, as the error messages say it: "greater than 0", "between 0 and 1", ..."""
        low = None if self.low is None else f"{'greater than' if self.low_open else 'at least'} {self.low:g}"
        high = None if self.high is None else f"{'less than' if self.high_open else 'at most'} {self.high:g}"
        if low and high and not self.low_open and not self.high_open:
            return f"between {self.low:g} and {self.high:g}"
        return " and ".join(part for part in (low, high) if part) or "any number"

    def check(self, value: float, where: str) -> None:
        """Raise ConfigError naming `where` when `value` is outside."""
        if value not in self:
            raise ConfigError(f"{where} = {value!r}; it must be {self.describe()}")


POSITIVE = Range(0, low_open=True)
AT_LEAST_ONE = Range(1)
NON_NEGATIVE = Range(0)
UNIT = Range(0, 1)  # probabilities, thresholds on probabilities, shares

# Every numeric field of harness.config's MethodConfig (section.field) and DataConfig (data.field). A
# tuple field's range holds for each of its items; an optional field's for its value when it is set.
METHOD: dict[str, Range] = {
    "features.sample_rate": AT_LEAST_ONE, "features.win_seconds": POSITIVE, "features.hop_seconds": POSITIVE,
    "features.n_fft": AT_LEAST_ONE, "features.n_frames": AT_LEAST_ONE, "features.student_mels": AT_LEAST_ONE,
    "features.teacher_mels": AT_LEAST_ONE, "features.fmin": NON_NEGATIVE, "features.fmax": POSITIVE,
    "features.log_eps": POSITIVE,
    "student.hidden": AT_LEAST_ONE, "student.layers": AT_LEAST_ONE, "student.gate_threshold": UNIT,
    # the CRNN's (harness.config.CRNNConfig); a key the chosen model lacks is skipped
    "student.cnn_channels": AT_LEAST_ONE, "student.cnn_layers": AT_LEAST_ONE, "student.time_pooling": AT_LEAST_ONE,
    "student.rnn_hidden": AT_LEAST_ONE, "student.rnn_layers": AT_LEAST_ONE,
    "student.dropout": Range(0, 1, high_open=True),
    "teacher.n_models": AT_LEAST_ONE, "teacher.channels": AT_LEAST_ONE, "teacher.epochs": AT_LEAST_ONE,
    "teacher.batch_size": AT_LEAST_ONE, "teacher.lr": POSITIVE,
    "loss.lambda1": NON_NEGATIVE, "loss.lambda2": NON_NEGATIVE, "loss.segment_buffer": NON_NEGATIVE,
    "loss.presence_threshold": UNIT,
    "augment.p": UNIT, "augment.time_masks": NON_NEGATIVE, "augment.time_mask_frames": NON_NEGATIVE,
    "augment.freq_masks": NON_NEGATIVE, "augment.freq_mask_bins": NON_NEGATIVE, "augment.top_k": NON_NEGATIVE,
    "augment.gamma": NON_NEGATIVE, "augment.label_noise_var": NON_NEGATIVE,
    "curriculum.generation_epochs": AT_LEAST_ONE, "curriculum.fractions": UNIT,
    "train.batch_size": AT_LEAST_ONE, "train.lr": POSITIVE, "train.betas": Range(0, 1, high_open=True),
    "train.steps": AT_LEAST_ONE, "train.epoch_steps": AT_LEAST_ONE,
    "postprocess.threshold": UNIT, "postprocess.window_fraction": NON_NEGATIVE,
    "eval.t_collar": NON_NEGATIVE, "eval.percentage_of_length": NON_NEGATIVE, "eval.segment_seconds": POSITIVE,
    "data.synth_seed": NON_NEGATIVE,
}

# Every numeric key of a study's [cluster] table (harness.study.cluster).
CLUSTER: dict[str, Range] = {
    "gpus": NON_NEGATIVE, "cpus": AT_LEAST_ONE, "mem_gb": POSITIVE, "array_parallelism": AT_LEAST_ONE,
    "signal_delay_s": AT_LEAST_ONE,
}

# Every numeric flag of the command line (harness.cli), by its option string.
FLAGS: dict[str, Range] = {
    "--jobs": AT_LEAST_ONE, "--threads": AT_LEAST_ONE, "--jobs-per-gpu": AT_LEAST_ONE,
    "--max-seeds": Range(2), "--job-timeout": POSITIVE, "--retries": NON_NEGATIVE, "--max-steps": AT_LEAST_ONE,
    "--seed": NON_NEGATIVE, "--gpus-per-job": CLUSTER["gpus"], "--cpus-per-job": CLUSTER["cpus"],
    "--mem-gb": CLUSTER["mem_gb"],
}


def check_fields(config, where: str, prefix: str = "") -> None:
    """Check every numeric field of a config dataclass that has a range in METHOD.

    Args:
        config: a MethodConfig (fields checked as section.field) or a section of one.
        where: the file or command, for the message.
        prefix: the section name when `config` is a section, e.g. "data".

    Raises:
        ConfigError: the first field out of its range, named with its value and its range.
    """
    for dotted, bounds in METHOD.items():
        section, name = dotted.split(".")
        if prefix:
            owner = config if section == prefix else None
        else:
            owner = getattr(config, section, None)
        if owner is None or not hasattr(owner, name):
            continue
        value = getattr(owner, name)
        for item in value if isinstance(value, tuple) else (value,):
            if item is not None:
                bounds.check(item, f"{where}: {dotted}")


def flag_type(option: str, kind: type = int):
    """An argparse `type` that reads `option`'s value as `kind` and refuses it outside FLAGS[option]."""
    bounds = FLAGS[option]

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if value not in bounds:
            raise argparse.ArgumentTypeError(f"{value!r} is out of range: it must be {bounds.describe()}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse
