"""The exception hierarchy. Every error a user can cause derives from HarnessError.

Messages name the file, key or clip at fault and say what to do about it.
"""

import errno
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""


class ConfigError(HarnessError):
    """A study file, an override or a config value is wrong."""


class DataError(HarnessError):
    """A dataset, a metadata TSV, an audio file or a predictions file is wrong or missing."""


class JobFailed(HarnessError):
    """A training job could not finish (diverged, crashed); the study goes on without it."""


class TrainingDiverged(JobFailed):
    """A loss became NaN or infinite."""


class StudyLocked(HarnessError):
    """Another run of the same study holds its lock."""


class JobRunningElsewhere(HarnessError):
    """Another live process runs this job (holds its lock): it is neither run here nor counted as failed."""

    def __init__(self, message: str, holder: str = "unknown") -> None:
        super().__init__(message)
        self.holder = holder  # "pid 123 on node7 since 2026-01-02 10:00:00"


class Interrupted(BaseException):
    """SIGINT or SIGTERM reached the driver: stop cleanly (a BaseException, like KeyboardInterrupt, so that no
    `except Exception` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class JobStopped(BaseException):
    """A job's worker was asked to stop (SIGTERM from the driver, a scheduler, preemption): it stops without
    recording a failure; its checkpoint is kept and the next run resumes it."""


class InfrastructureFailure(JobFailed):
    """A task ended for a reason outside its own computation: its worker died, the scheduler preempted it, or
    it ran past its time limit. Such a task is run again (`--retries`) and resumes from its checkpoint; a
    deterministic failure (a diverged loss, a bad config) never is."""


class WorkerDied(InfrastructureFailure):
    """The process running a task died under it (the out-of-memory killer, kill -9, a lost node)."""


class Preempted(InfrastructureFailure):
    """The task was stopped from outside the harness (SIGTERM from a scheduler, preemption, a retired
    worker); its checkpoint was kept."""


class TimedOut(InfrastructureFailure):
    """The task ran past its time limit (`--job-timeout`) and was stopped; its checkpoint was kept."""


class DiskFull(HarnessError):
    """A write failed because the disk holding the file is full or its quota is exceeded (ENOSPC, EDQUOT)."""


_FULL = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}


def disk_full(path, error: BaseException) -> DiskFull | None:
    """A DiskFull naming the file the error names, else `path` (None: no file), when `error` is a full disk or
    quota; None for any other error."""
    if not isinstance(error, OSError) or error.errno not in _FULL:
        return None
    where = error.filename or path
    prefix = f"{where}: " if where else ""
    # The reason right after the file: a job's failure is shown cut to a line's length.
    return DiskFull(f"{prefix}{_FULL[error.errno]} ({error.strerror}); free space on that disk "
                    "(or write elsewhere: --runs, --cache, --reports), then run again (finished jobs and stages are "
                    "kept)")


@contextmanager
def full_disk_named(path) -> Iterator[None]:
    """Writes under `path`: a full disk or quota becomes a DiskFull naming the file; other errors pass as they are."""
    try:
        yield
    except OSError as e:
        full = disk_full(path, e)
        if full is None:
            raise
        raise full from e


def not_a_file(path, what: str, fix: str, kind: type[HarnessError] = DataError) -> HarnessError:
    """The error for a file the user named that is not there to read: a folder is called one, not "missing"."""
    state = "is a directory, not a file" if Path(path).is_dir() else "does not exist"
    return kind(f"{what} {path} {state}; {fix}")
