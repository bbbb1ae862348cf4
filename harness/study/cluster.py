"""The `[cluster]` table of a study file and its flags: the resources of each task on a Slurm cluster.

Used by `--backend slurm` (submitit) and `--backend dask --cluster slurm` (dask-jobqueue). None of it
changes a number, so it is no part of any key: the same study on other resources is the same study.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from harness import ranges
from harness.errors import ConfigError


@dataclass(frozen=True)
class ClusterConfig:
    """Per task: where it queues and what it gets. `time` is Slurm's [D-]HH:MM[:SS] or minutes."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus: int = 0  # GPUs per student job and teacher member (stages of features and bundles get none)
    cpus: int = 1  # CPUs per task
    mem_gb: float = 4.0  # memory per task
    time: str = "4:00:00"  # time limit per task; a job past it is requeued and resumes from its checkpoint
    array_parallelism: int = 64  # the most tasks of one array running at once
    signal_delay_s: int = 120  # seconds before the time limit when Slurm warns the task (it checkpoints)
    extra: tuple[str, ...] = ()  # further sbatch options, e.g. ("--constraint=a100", "--exclude=node3")

    @property
    def minutes(self) -> int:
        return time_minutes(self.time)


KEYS = tuple(f.name for f in fields(ClusterConfig))


def parse_cluster(raw: Mapping[str, Any] | None, where: str) -> ClusterConfig:
    """The [cluster] table, checked: unknown keys are refused with the valid ones listed."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ConfigError(f"{where}: [cluster] unknown key {unknown[0]!r}; valid keys: {', '.join(KEYS)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        values[key] = _value(key, value, f"{where}: [cluster] {key}")
    config = ClusterConfig(**values)
    time_minutes(config.time, f"{where}: [cluster] time")
    return config


def with_flags(config: ClusterConfig, flags: Mapping[str, Any], where: str = "flag") -> ClusterConfig:
    """`config` with the command line's cluster flags (those not None) in force."""
    given = {k: _value(k, v, f"{where} --{k.replace('_', '-')}") for k, v in flags.items() if v is not None}
    config = replace(config, **given)
    time_minutes(config.time, f"{where} --time")
    return config


def _value(key: str, value: Any, where: str) -> Any:
    if key in ("partition", "account", "qos"):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a name, got {value!r}")
        return value
    if key in ("gpus", "cpus", "array_parallelism", "signal_delay_s"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        ranges.CLUSTER[key].check(value, where)
        return value
    if key == "mem_gb":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number of GB, got {value!r}")
        ranges.CLUSTER[key].check(value, where)
        return float(value)
    if key == "time":
        return str(value)
    if key == "extra":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) and i.startswith("--") for i in items):
            raise ConfigError(f"{where}: expected sbatch options such as [\"--constraint=a100\"], got {value!r}")
        return tuple(items)
    raise ConfigError(f"{where}: unknown key; valid keys: {', '.join(KEYS)}")


_TIME = re.compile(r"(?:(\d+)-)?(\d+):(\d{1,2})(?::(\d{1,2}))?")


def time_minutes(text: str, where: str = "[cluster] time") -> int:
    """Slurm's time formats used here: minutes ("90"), HH:MM[:SS], D-HH:MM[:SS]; whole minutes, rounded up."""
    text = str(text).strip()
    if text.isdigit():
        minutes = int(text)
    else:
        match = _TIME.fullmatch(text)
        if not match:
            raise ConfigError(f"{where}: {text!r} is not a time limit; use minutes (\"90\"), \"HH:MM:SS\" or "
                              "\"D-HH:MM:SS\"")
        days, hours, mins, secs = (int(g) if g else 0 for g in match.groups())
        minutes = days * 1440 + hours * 60 + mins + (1 if secs else 0)
    if minutes < 1:
        raise ConfigError(f"{where}: the time limit must be at least one minute, got {text!r}")
    return minutes
