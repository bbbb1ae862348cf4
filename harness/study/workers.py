"""The local backend's worker processes: one pool of loky processes, started before the parent plans.

Always processes, never the parent (joblib runs n_jobs=1 inline): a job that segfaults or meets the
out-of-memory killer takes down a worker, which the runner sees as a TerminatedWorkerError and
survives. Thread pools are sized by environment before the workers start. A worker outlives no driver: when
the driver dies (kill -9), its job stops at the next step with a checkpoint and the worker leaves (`_watch_driver`).

`warm_up` starts the workers and has them import the job code (torch, the method) while the parent
imports its own and checks the shared-stage cache: the two used to run one after the other, ~3 s of
a core each at the start of every study (benchmarks/bench_parallel.py). This module imports nothing
heavy, so that the warm-up begins before the parent's own imports.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import warnings
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
    return threads if threads is not None else 1  # at least 1: harness.ranges.FLAGS


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
        quiet_recycling()
        env = {name: str(threads) for name in THREAD_VARIABLES}
        _POOL.update(key=(workers, threads), executor=ProcessPoolExecutor(
            max_workers=workers, env=env, initializer=_worker_signals, initargs=(os.getpid(),)))
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


def _worker_signals(driver: int) -> None:
    """In each worker: Ctrl-C at a terminal reaches the whole process group; the driver alone decides what
    stops, so a worker never dies of SIGINT mid-write. On STOP_JOBS_SIGNAL (the driver's stop, `stop_jobs`)
    a job in flight writes a checkpoint at its next step and returns, and the worker stays until the driver
    ends it. On SIGTERM from elsewhere a worker with a job in flight has it do the same and then exits; an
    idle one exits at once. When the driver (pid `driver`) dies, the worker does the same (`_watch_driver`)."""
    _watch_driver(driver)  # first: the imports below take seconds, and a driver may die meanwhile
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
    quiet_recycling()
    _JOB_CODE.set()


def _import_job_code() -> None:
    import harness.study.job  # noqa: F401 - the import is the point


# Sent to a worker by the kernel when its parent dies (Linux: prctl PR_SET_PDEATHSIG); SIGUSR2 because nothing
# else signals a pool worker with it. A Slurm `--signal=USR2` reaching every process is checked and ignored.
DRIVER_GONE_SIGNAL = signal.SIGUSR2
DRIVER_POLL_SECONDS = 0.5  # the portable watch: how often a worker checks that its driver is still its parent
_PR_SET_PDEATHSIG = 1


def _watch_driver(driver: int) -> None:
    """Leave when the driver dies: a driver killed with kill -9 runs no cleanup, and its workers, re-parented,
    would otherwise finish their jobs and then wait forever, idle, or run a job beside the next run's.

    A loky worker is a direct child of the driver (no intermediate process): its parent's pid is the driver's
    while the driver lives. Two watches: the kernel's parent-death signal (Linux; it also fires when the
    driver thread that started the worker ends, hence the check of the parent in `_driver_gone`), and a
    thread that polls the parent's pid every DRIVER_POLL_SECONDS (everywhere; also covers a driver that died
    before the first watch was set).
    """
    signal.signal(DRIVER_GONE_SIGNAL, lambda signum, frame: _driver_gone(driver))
    _parent_death_signal(DRIVER_GONE_SIGNAL)
    threading.Thread(target=_poll_driver, args=(driver,), name="harness-driver-watch", daemon=True).start()


def _parent_death_signal(signum: int) -> None:
    """Have the kernel send `signum` to this process when its parent dies (Linux only; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl in this libc: the polling thread still watches
        pass


def _poll_driver(driver: int) -> None:
    while os.getppid() == driver:
        time.sleep(DRIVER_POLL_SECONDS)
    _driver_gone(driver)


def _driver_gone(driver: int) -> None:
    """The driver is dead: no one will read this worker's results or end it. A job in flight stops at its next
    step, writing its checkpoint (the next run resumes it), and the worker then leaves (harness.study.job's
    EXIT_ON_STOP); an idle worker, or one running a shared stage (cached atomically, under a lock), leaves at
    once. The job's lock goes with the worker."""
    if os.getppid() == driver or _GONE.is_set():  # a thread of the driver ended, or the other watch was first
        return
    _GONE.set()
    if not _JOB_CODE.is_set():  # still importing the job code: no job can be running
        os._exit(0)
    job = sys.modules["harness.study.job"]
    # In this order, so that one of the two leaves: execute's end clears RUNNING, then leaves if STOP is set
    # and HOLD clear. Either RUNNING reads clear below (this leaves) or that check comes after these two lines.
    job.HOLD.clear()  # no driver is left to end this worker after its job
    sys.modules["harness.method.train"].STOP.set()
    if not job.RUNNING.is_set():
        os._exit(0)
    logging.getLogger("harness.job").warning(
        "the driver (pid %d) is gone: this job stops at its next step, keeping its checkpoint, and its worker "
        "leaves; run the study again to resume it", driver)


_GONE = threading.Event()  # the driver's death was seen (by one of the two watches)
_JOB_CODE = threading.Event()  # this worker has imported the job code and set its signals (`_worker_signals`)


# loky's words when a worker leaves with work queued: it recycles a worker whose memory grew by 300 MB since
# its first task (joblib.externals.loky.process_executor, _process_worker's leak check) and starts another,
# which takes the queued tasks. Nothing is lost, so the user hears nothing of it.
_RECYCLED = r"A worker stopped while some jobs were given to the executor"
_LOKY_EXECUTOR = r"joblib\.externals\.loky\.process_executor"


# loky's resource tracker, a process of its own, unlinks the semaphores of a driver killed with kill -9 once
# the last worker has gone, and says so in a UserWarning ("resource_tracker: There appear to be 8 leaked
# semlock objects to clean up at shutdown") on the killed driver's terminal: the kill was the user's, nothing
# is left to do. Its filters come from the -W options loky gives it, those of this process (sys.warnoptions),
# whose message field cannot hold the ':' of the full text: every UserWarning of that module is filtered.
_TRACKER_WARNINGS = "ignore:resource_tracker:UserWarning:joblib.externals.loky.backend.resource_tracker"


def quiet_recycling() -> None:
    """Filter loky's UserWarning about a recycled worker, that one only (by its text and loky's module), and
    its resource tracker's (for a tracker started after this call: the driver calls it before its pool)."""
    warnings.filterwarnings("ignore", message=_RECYCLED, category=UserWarning, module=_LOKY_EXECUTOR)
    if _TRACKER_WARNINGS not in sys.warnoptions:
        sys.warnoptions.append(_TRACKER_WARNINGS)
