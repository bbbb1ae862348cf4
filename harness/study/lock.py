"""One run of a study at a time: an exclusive flock on runs/<study>/.lock, holder written inside; one process
at a time on a job: the same on runs/<study>/jobs/<id>/.running.lock (`JobLock`)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from harness.errors import HarnessError, JobRunningElsewhere, StudyLocked
from harness.records import no_follow


class StudyLock:
    """Context manager; the lock dies with its process (kill -9 included), so no stale lock remains."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self.handle = None

    def __enter__(self) -> "StudyLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", opener=no_follow)  # the holder is written: never through a link
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise StudyLocked(
                f"{self.path.parent}: another run of this study is in progress ({holder}); wait for it to "
                "finish or stop it, then run again (finished jobs are kept)"
            ) from None
        _write_holder(handle)
        self.handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


# A job whose lock is held is waited for this long before it is reported running elsewhere: a worker whose
# driver was killed (kill -9) notices within a second, stops at its next step and leaves, so that a run
# started at once after the kill takes the job over rather than reporting it.
JOB_LOCK_WAIT_SECONDS = 5.0
JOB_LOCK = ".running.lock"


class JobLock:
    """The lock of one job's directory, held by the process that runs the job for the job's whole life, so
    that no two processes ever run the same job (one writing log.txt and checkpoint.pt under the other).

    A flock, like the study lock: it dies with its process, so a killed job leaves no stale lock. It is the
    job's own, not the study's: a worker left behind by a killed driver, a second driver on a copy of the
    study or a Dask or Slurm task of another run all hold it while they run the job.
    """

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / JOB_LOCK
        self.handle = None
        self.waited = False  # another process held the lock when this one asked (it may have finished the job)

    def acquire(self, wait: float = JOB_LOCK_WAIT_SECONDS) -> "JobLock":
        """Take the lock, trying for up to `wait` seconds.

        Raises:
            JobRunningElsewhere: another live process still holds it (the message names it and what to do).
        """
        handle = _open_lock(self.path)
        deadline = time.monotonic() + wait
        while not _try_flock(handle):
            self.waited = True
            if time.monotonic() >= deadline:
                holder = _holder(handle)
                handle.close()
                raise JobRunningElsewhere(
                    f"{self.path.parent}: this job is running in another process ({holder}); it was not run "
                    "here. Let that process finish (or stop it), then run the same command again: it keeps what "
                    "that process finished and resumes the rest", holder)
            time.sleep(0.2)
        _write_holder(handle)
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


def _open_lock(path: Path):
    # Never through a symbolic link: whoever can write a run folder must not redirect the harness's writes.
    try:
        return open(path, "a+", encoding="utf-8", opener=no_follow)
    except OSError as e:
        raise HarnessError(f"{path}: cannot open the job's lock file ({e.strerror or e}); check that the job's "
                           "folder is writable and that the file is no symbolic link, then run again") from e


def _try_flock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(handle) -> str:
    """The holder a lock file names ("pid 123 on node7 since ..."), or "unknown"."""
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
        return f"pid {holder['pid']} on {holder['host']} since {holder['started']}"
    except (ValueError, KeyError, TypeError):
        return "unknown"


def is_locked(run_dir: Path) -> bool:
    """True while some process holds the study's lock (a run is in progress)."""
    return _held(Path(run_dir) / ".lock")


def job_is_locked(directory: Path) -> bool:
    """True while some process runs the job in `directory` (holds its JobLock)."""
    return _held(Path(directory) / JOB_LOCK)


def _held(path: Path) -> bool:
    try:  # to read: flock needs no write access, and `status` reads run folders it may not write
        handle = open(path, opener=no_follow)
    except OSError:  # no lock file (never locked), or none to open: no lock to see
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _write_holder(handle) -> None:
    """Who holds a lock (this process), inside its file, for the message of the process that finds it held."""
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
    handle.flush()
