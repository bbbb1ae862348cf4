"""The exception hierarchy. Every error a user can cause derives from HarnessError.

Messages name the file, key or clip at fault and say what to do about it.
"""


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
