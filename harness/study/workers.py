"""The local backend's worker processes: one pool of loky processes, started before the parent plans.

Always processes, never the parent (joblib runs n_jobs=1 inline): a job that segfaults or meets the
out-of-memory killer takes down a worker, which the runner sees as a TerminatedWorkerError and
survives. Thread pools are sized by environment before the workers start.

`warm_up` starts the workers and has them import the job code (torch, the method) while the parent
imports its own and checks the shared-stage cache: the two used to run one after the other, ~3 s of
a core each at the start of every study (benchmarks/bench_parallel.py). This module imports nothing
heavy, so that the warm-up begins before the parent's own imports.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

# Thread-pool sizes a worker process inherits: OpenMP (torch), OpenBLAS, MKL, BLIS, Accelerate, numexpr.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def default_workers(jobs: int | None) -> int:
    """--jobs, or one per CPU core."""
    return jobs if jobs is not None else (os.cpu_count() or 1)


def default_threads(threads: int | None) -> int:
    # One thread per job by default: a small LSTM step gains little from a second thread, and a study with
    # `--jobs 1 --threads 2` measured >3x slower than with one thread (benchmarks/RESULTS.md). Parallelism
    # comes from running jobs side by side (`--jobs`, default one per core).
    return max(1, threads) if threads is not None else 1


# Seconds a stopping job may take to checkpoint and return before it is killed.
STOP_GRACE_SECONDS = 30.0
# What the driver sends its workers when the study stops (`stop_jobs`); SIGTERM from elsewhere (a user, a
# scheduler signalling every process) stops the worker's job and then the worker.
STOP_JOBS_SIGNAL = signal.SIGUSR1

_POOL: dict[str, Any] = {}  # "key": (workers, threads), "executor": the pool of this process (see `pool`)


def pool(workers: int, threads: int):
    """The pool of `workers` loky processes with `threads` threads each: the same one while the arguments
    stay the same, a new one after they change or after `discard`.

    A pool of its own, not loky's global reusable executor: joblib (the feature stage) takes that one
    over with its own settings, and would find ours of the wrong kind.
    """
    from joblib.externals.loky import ProcessPoolExecutor

    if _POOL.get("key") != (workers, threads):
        discard()
        env = {name: str(threads) for name in THREAD_VARIABLES}
        _POOL.update(key=(workers, threads), executor=ProcessPoolExecutor(max_workers=workers, env=env,
                                                                          initializer=_worker_signals))
    return _POOL["executor"]


def discard(grace_seconds: float = 0.0) -> None:
    """Stop the pool's workers; none is left when this returns (a dead worker breaks a loky pool for good).

    Each worker gets SIGTERM first, then SIGKILL after `grace_seconds`. Queued tasks never start: the pool
    is shut down with them. A study that stops lets its jobs checkpoint first (`stop_jobs`, then this).
    """
    executor = _POOL.pop("executor", None)
    _POOL.pop("key", None)
    if executor is None:
        return
    processes = _processes(executor)
    for process in processes:
        _signal(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            _signal(process.pid, signal.SIGKILL)
            process.join(timeout=5)
    executor.shutdown(wait=False, kill_workers=True)


def stop_jobs() -> None:
    """The study is stopping: each worker's job in flight stops at its next step, writing its checkpoint,
    and returns; a job handed to a worker after this returns at once, not started. No worker exits: loky
    answers the exit of one worker by killing all the others at once (the pool is broken), which would kill
    a job that had not yet reached its next step, with no checkpoint. `discard` then ends the workers."""
    executor = _POOL.get("executor")
    for process in _processes(executor) if executor is not None else []:
        _signal(process.pid, STOP_JOBS_SIGNAL)


def _processes(executor) -> list:
    return list((getattr(executor, "_processes", None) or {}).values())


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def warm_up(workers: int, threads: int) -> None:
    """Start the pool and let every worker import the job code; returns at once."""
    executor = pool(workers, threads)
    for _ in range(workers):
        executor.submit(_import_job_code)


def _worker_signals() -> None:
    """In each worker: Ctrl-C at a terminal reaches the whole process group; the driver alone decides what
    stops, so a worker never dies of SIGINT mid-write. On STOP_JOBS_SIGNAL (the driver's stop, `stop_jobs`)
    a job in flight writes a checkpoint at its next step and returns, and the worker stays until the driver
    ends it. On SIGTERM from elsewhere a worker with a job in flight has it do the same and then exits; an
    idle one exits at once."""
    from harness.method import train
    from harness.study import job

    def stop(signum, frame):
        if not job.RUNNING.is_set() and not job.HOLD.is_set():
            os._exit(0)
        train.STOP.set()

    def hold(signum, frame):
        job.HOLD.set()
        train.STOP.set()

    job.EXIT_ON_STOP = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(STOP_JOBS_SIGNAL, hold)


def _import_job_code() -> None:
    import harness.study.job  # noqa: F401 - the import is the point
