"""Tasks as Slurm jobs through submitit: submitted as arrays with dependencies, then left to the cluster.

Unlike the other backends nothing waits here: `harness run --backend slurm` submits and exits
(harness.study.slurm_run). This module holds the two ends of that: `submit_array` on the submitting side,
and `student_job` / `stage_job`, what runs inside each Slurm job.

A student job stops cleanly on SIGTERM (scancel, preemption) and on SIGUSR2 (sent `signal_delay_s` before
its time limit): it writes its checkpoint at the next step, then requeues itself (`scontrol requeue`), so
Slurm runs it again and it resumes, up to --retries times; past them it is recorded failed (Preempted or
TimedOut) with its checkpoint kept. State comes from `squeue` while Slurm remembers the job and from the
harness's own records after, so no accounting database (sacct) is needed.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.errors import ConfigError, HarnessError
from harness.study.cluster import ClusterConfig
from harness.study.executors.base import Task

log = logging.getLogger("harness.slurm")


def check_slurm() -> None:
    """Slurm's commands and submitit are at hand, or a ConfigError saying what to install."""
    missing = [c for c in ("sbatch", "squeue", "scancel", "scontrol") if shutil.which(c) is None]
    if missing:
        raise ConfigError(f"--backend slurm: {', '.join(missing)} not found; run on a machine where Slurm's "
                          "commands work (a login node), or use --backend local / dask")
    try:
        import submitit  # noqa: F401
    except ImportError as e:
        raise ConfigError("--backend slurm needs submitit: pip install 'harness[slurm]'") from e


def submit_array(tasks: Sequence[Task], cluster: ClusterConfig, folder: Path, name: str, after: Sequence[str] = (),
                 after_kind: str = "afterok", gpus: bool = False) -> list[str]:
    """Submit `tasks` as one Slurm array (one task each), starting once every job of `after` has ended
    (`afterok`: successfully; `afterany`: in any way). Returns the Slurm id of each task ("123_4")."""
    import submitit

    if not tasks:
        return []
    executor = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster="slurm")
    extra: dict[str, Any] = {}
    for option in cluster.extra:
        key, _, value = option[2:].partition("=")
        extra[key] = value or True
    if after:
        extra["dependency"] = f"{after_kind}:" + ":".join(after)
        extra["kill-on-invalid-dep"] = "yes"  # a failed stage cancels its dependants instead of stranding them
    params: dict[str, Any] = dict(name=name, timeout_min=cluster.minutes, cpus_per_task=cluster.cpus,
                                  mem_gb=cluster.mem_gb, slurm_array_parallelism=cluster.array_parallelism,
                                  slurm_signal_delay_s=cluster.signal_delay_s, slurm_additional_parameters=extra)
    if gpus and cluster.gpus:
        params["gpus_per_node"] = cluster.gpus
    for key in ("partition", "account", "qos"):
        if getattr(cluster, key):
            params[f"slurm_{key}"] = getattr(cluster, key)
    executor.update_parameters(**params)
    try:
        with executor.batch():
            jobs = [executor.submit(task.fn, *task.args, **task.kwargs) for task in tasks]
    except Exception as e:  # noqa: BLE001 - sbatch's refusal (bad partition, account...) as submitit reports it
        raise HarnessError(f"sbatch refused the {name} jobs: {str(e).strip().splitlines()[-1] if str(e) else e}; "
                           "check the [cluster] table or its flags") from e
    return [str(j.job_id) for j in jobs]


@dataclass(frozen=True)
class SlurmState:
    state: str  # squeue's: PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, ...
    reason: str = ""


def states(ids: Sequence[str]) -> dict[str, SlurmState]:
    """The state of every job of `ids` that Slurm still knows (queued, running, or recently ended).

    Raises:
        HarnessError: squeue failed three times for another reason than jobs Slurm has forgotten (a busy or
            unreachable slurmctld): never read as "no job left", which would resubmit or leave running jobs.
    """
    if not ids:
        return {}
    out = _squeue(_base(ids))
    found = {}
    for line in out.splitlines():
        job, _, rest = line.partition("|")
        state, _, reason = rest.partition("|")
        found[job.strip()] = SlurmState(state.strip(), reason.strip())
    return {i: found[i] for i in ids if i in found}


def _squeue(base_ids: list[str], tries: int = 3) -> str:
    """squeue's lines for these job ids; "Invalid job id" (every one forgotten by Slurm) is no job, not an error."""
    command = ["squeue", "-h", "-t", "all", "-r", "-o", "%i|%T|%r", "-j", ",".join(base_ids)]
    for attempt in range(tries):
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise HarnessError(f"squeue: {e}; is Slurm reachable from here?") from e
        if out.returncode == 0 or "invalid job id" in out.stderr.lower():
            return out.stdout
        time.sleep(1 + attempt)  # slurmctld busy: its own message says to try again
    why = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
    raise HarnessError(f"squeue failed ({why}); is Slurm reachable from here? Run the command again")


def _base(ids: Sequence[str]) -> list[str]:
    return sorted({i.split("_")[0] for i in ids})


ACTIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
          "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT")


def cancel(ids: Sequence[str], wait_seconds: float = 30.0) -> None:
    """scancel `ids` and wait until Slurm holds none of them active (scancel again meanwhile: a busy slurmctld
    may drop a request).

    Raises:
        HarnessError: some are still queued or running after `wait_seconds` (named, with what to do).
    """
    deadline = time.monotonic() + wait_seconds
    active = list(ids)
    while active:
        subprocess.run(["scancel", *active], capture_output=True, text=True, timeout=60)
        time.sleep(0.5)
        known = states(active)
        active = [i for i in active if i in known and known[i].state in ACTIVE]
        if active and time.monotonic() > deadline:
            raise HarnessError(f"Slurm still holds {' '.join(active)} after scancel; run the same cancel command "
                               f"again, or `scancel {' '.join(active)}`")


# --------------------------------------------------------------------------- inside a Slurm job


def _own_id() -> str:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "")


def student_job(job, bundle_root: str, job_dir: str, threads: int, jobs_per_gpu: int, retries: int,
                run_dir: str) -> dict:
    """A student job inside Slurm: run it; if stopped by a signal, requeue it (it resumes) while retries
    are left; rebuild the study's tables when it ends."""
    from harness.method import train
    from harness.study import job as jobmod
    from harness.study import runner

    why: list[str] = []

    def stop(signum, frame):
        why.append("TimedOut" if signum == signal.SIGUSR2 else "Preempted")
        train.STOP.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR2, stop)
    summary = jobmod.execute(job, bundle_root, job_dir, threads, jobs_per_gpu)
    if summary["status"] == "stopped":
        kind = why[0] if why else "Preempted"
        tried = jobmod.attempts(Path(job_dir))
        runner._append_log(Path(run_dir), job, f"==== attempt {tried} ended: {kind}: stopped by a signal, "
                                               "checkpoint kept ====")
        if tried <= retries:
            runner._append_log(Path(run_dir), job, f"requeued (retry {tried} of {retries}); it resumes from its "
                                                   "checkpoint")
            _requeue()
        cause = "its time limit" if kind == "TimedOut" else "a signal: scancel or preemption"
        summary = runner._record_failure(job, Path(run_dir), kind, f"stopped by Slurm ({cause}) after {tried} attempt(s) (--retries "
                        f"{retries}); its checkpoint is kept: run the study again with --rerun-failed to resume it")
    _tables(Path(run_dir))
    return summary


def _requeue() -> None:
    """Ask Slurm to run this job again, then wait to be ended by it (this attempt's result is not the job's)."""
    result = subprocess.run(["scontrol", "requeue", _own_id()], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        log.error("scontrol requeue %s failed: %s", _own_id(), result.stderr.strip())
        return
    # Leave at once, with no result for this attempt: a step left to Slurm to end lingers for up to KillWait,
    # and its srun, ending it, would then end the requeued attempt too (it reuses the step's id).
    logging.shutdown()
    os._exit(1)


def _tables(run_dir: Path) -> None:
    from harness.study.runner import rebuild_tables

    try:
        rebuild_tables(run_dir)
    except HarnessError as e:  # a table is rebuilt again by the next job, `status` and `report`
        log.warning("tables not rebuilt: %s", e)


def stage_job(fn, *args) -> Any:
    """A shared stage inside Slurm: its log lines go to the job's output file."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return fn(*args)
