"""A job's files in its run directory and the state they spell: light to import (no torch).

`harness status`, `plan` and `cancel` read only these files, so a status poll on a login node (or in a test
loop) costs a fraction of a second rather than the seconds torch takes to import.
"""

from __future__ import annotations

from pathlib import Path

from harness.config import to_dict
from harness.errors import HarnessError
from harness.records import Failure, JobRecord, RecordError, Result, read_json, read_record
from harness.study.executors.slurm import ACTIVE, cancel, states
from harness.study.lock import is_locked, job_is_locked

RESULT = "result.json"
REPLACED_RESULT = "result.replaced.json"  # the result of an earlier run of a job whose --force rerun failed
ERROR = "error.json"
STARTED = "started.json"
LOG = "log.txt"
CHECKPOINT = "checkpoint.pt"  # the whole training state, rewritten every epoch (harness.method.checkpoint)
SUBMISSIONS = Path("slurm") / "submissions.json"  # each task's Slurm id, for runs submitted with --backend slurm
ELSEWHERE = "running_elsewhere"  # execute's status for a job another live process runs (its lock is held)


def job_record(job) -> JobRecord:
    """The job's identity and resolved config (a harness.study.plan.JobSpec), as written to job.json."""
    return JobRecord(job_id=job.job_id, study=job.study, variant=job.variant, seed=job.seed, profile=job.profile,
                     phase=job.phase, teacher_seed=job.teacher_seed, factors=job.factors,
                     config=to_dict(job.config), data=to_dict(job.data), bundle_key=job.bundle_key,
                     config_key=job.config_key, streams=dict(job.streams))


def job_dir(run_dir: Path, job) -> Path:
    """runs/<run>/jobs/<job id>; `job` is a job id or anything with a `job_id` (a JobSpec)."""
    return Path(run_dir) / "jobs" / (job if isinstance(job, str) else job.job_id)


def status_of(run_dir: Path, job) -> str:
    """done | failed | running | interrupted | damaged | pending.

    "done" only for a result.json that reads as a whole, valid Result; "damaged" (an unreadable result or
    error record) runs again like "pending".
    """
    directory = job_dir(run_dir, job)
    for name, record, state in ((RESULT, Result, "done"), (ERROR, Failure, "failed")):
        if (directory / name).exists():
            try:
                read_record(directory / name, record)
            except RecordError:
                return "damaged"
            return state
    if (directory / STARTED).exists():
        # a job's own lock: a process left by a killed driver, or another run's task, may still run it
        return "running" if is_locked(run_dir) or job_is_locked(directory) else "interrupted"
    return "pending"


def failure_reason(run_dir: Path, job) -> str:
    """Why a failed job failed, as its error.json says ("TrainingDiverged: J_s is inf at ..."), on one line."""
    path = job_dir(run_dir, job) / ERROR
    try:
        failure = read_record(path, Failure)
    except RecordError as e:
        return f"no readable reason ({e.fact})"
    return " ".join(f"{failure.error}: {failure.message}".split())


def attempts(directory: Path) -> int:
    """How many times the job in `directory` has been started (0 when never)."""
    try:
        return int(read_json(Path(directory) / STARTED).get("attempt", 1))
    except (HarnessError, AttributeError, TypeError, ValueError):
        return 0


def read_submissions(run_dir: Path) -> dict[str, dict]:
    path = Path(run_dir) / SUBMISSIONS
    return read_json(path)["tasks"] if path.exists() else {}


def slurm_states(run_dir: Path) -> dict[str, tuple[str, str]]:
    """Task key -> (Slurm id, Slurm state) for the run's submitted tasks; "gone" once Slurm forgot a job."""
    entries = read_submissions(run_dir)
    known = states([e["id"] for e in entries.values()])
    return {key: (e["id"], known[e["id"]].state if e["id"] in known else "gone") for key, e in entries.items()}


def cancel_run(run_dir: Path) -> list[str]:
    """scancel every task of the run that Slurm still holds; returns their ids."""
    ids = [i for i, state in slurm_states(run_dir).values() if state in ACTIVE]
    cancel(ids)
    return ids
