"""The executor interface (the submitit model: submit a task, wait for its outcome, cancel) and its records."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from harness.errors import ConfigError, InfrastructureFailure, Preempted, TimedOut


@dataclass(frozen=True)
class Task:
    """One piece of work: `fn(*args, **kwargs)` run by a worker.

    `key` is unique among the tasks of one executor (a job id, a stage's cache key); `kind` is "job" for a
    student job (whose return value is harness.study.job.execute's summary) or "stage" for a shared stage.
    """

    key: str
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    kind: str = "stage"
    label: str = ""

    def __call__(self) -> Any:
        return self.fn(*self.args, **self.kwargs)


@dataclass(frozen=True)
class Outcome:
    """How a task ended: its value, the exception it raised, or an infrastructure failure (never both)."""

    task: Task
    value: Any = None
    error: BaseException | None = None  # raised by the task itself (a stage's DataError, ...)
    failure: InfrastructureFailure | None = None  # the worker died, it was preempted or timed out

    @property
    def ok(self) -> bool:
        return self.error is None and self.failure is None


def job_outcome(task: Task, value: Any) -> Outcome:
    """A finished task's outcome; a job summary saying that the job stopped before its end is a failure.

    A job stops early for three reasons: the driver asked (the executor is cancelling, and no one reads the
    outcome), its time limit (TimedOut), or a signal from outside the harness, such as a scheduler's SIGTERM
    on preemption (Preempted). Both keep the job's checkpoint, so a retry resumes it. A job that another live
    process runs (harness.study.job.ELSEWHERE: its lock was held) is a value, never retried: the runner reports it.
    """
    if task.kind == "job" and isinstance(value, dict):
        if value.get("status") == "timed_out":
            return Outcome(task, failure=TimedOut(value.get("message", "timed out")))
        if value.get("status") == "stopped":
            return Outcome(task, failure=Preempted(f"stopped from outside the harness: {value.get('message', '')}"))
    return Outcome(task, value=value)


class Executor(ABC):
    """Runs tasks; yields each outcome once. Tasks may be submitted while outcomes are being read.

    `cancel` is the stop of a study: queued tasks never start, tasks in flight are asked to stop (a job writes
    its checkpoint) and are given `grace` seconds, then killed; no worker process of the executor's own is
    left. `close` releases the executor after its last outcome.
    """

    name = "executor"
    parallel = 1  # tasks in flight at once

    @abstractmethod
    def submit(self, task: Task) -> None: ...

    @abstractmethod
    def outcomes(self) -> Iterator[Outcome]:
        """Each submitted task's outcome, as tasks end, until none is outstanding."""

    @abstractmethod
    def cancel(self, grace: float) -> None: ...

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class ExecutorSettings:
    """What a backend needs: the parts of the run options that say where and how wide to run."""

    backend: str
    parallel: int
    threads: int
    scheduler: str | None = None
    dask_resources: str | None = None
    stop_file: str | None = None  # created on cancel: jobs on other machines poll it


def make_executor(settings: ExecutorSettings) -> Executor:
    """The executor of a registered backend (harness.plugins.executors; the built-ins in harness.builtins)."""
    from harness import plugins

    spec = plugins.executors.get(settings.backend, "--backend")
    if spec.make is None:
        waiting = [n for n in plugins.executors if plugins.executors.get(n).make is not None]
        raise ConfigError(f"--backend {settings.backend!r} submits the study and exits; a driver that waits needs "
                          f"one of {', '.join(waiting)}")
    return spec.make(settings)
