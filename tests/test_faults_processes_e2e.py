"""Faults of the processes of a study (issue 27): the driver killed alone with kill -9, a double Ctrl-C, and
loky's warning about a recycled worker.

Through the CLI on the tiny profile, from a copy of the prebuilt shared stages (conftest's `tiny_stages`).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
from conftest import alive_processes as _alive, warm_cache

STUDY = """
[study]
name = "faults"
seeds = 2

[[variant]]
name = "A"
"""

JOB_LOCK = ".running.lock"  # a job's lock file (harness.study.lock.JOB_LOCK), held by whoever runs the job


def _write_study(root: Path, corpus: Path) -> None:
    (root / "faults.toml").write_text(STUDY + f'\n[data]\nroot = "{corpus}"\n')


def _start(root: Path, steps: int = 200) -> subprocess.Popen:
    # A session of its own, as after `setsid`: signals reach the driver alone, and its children are found by
    # psutil while it lives.
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(root / "faults.toml"), "--profile", "tiny", "--runs",
         str(root / "runs"), "--cache", str(root / "cache"), "--jobs", "2", "--name", "faults", "--no-report",
         "--set", f"train.steps={steps}"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)




# The kill lands at the jobs' first epoch (step 2); the driver's death reaches its workers at once (PR_SET_PDEATHSIG),
# so a job of 100 steps is stopped long before its end on any CPU; every run of the test resumes the same jobs.
KILL9_STEPS = 100


def _wait_for_epochs(run_dir: Path, process: subprocess.Popen, jobs: int = 2) -> list[Path]:
    """The job folders once `jobs` of them have logged a finished epoch (each has written a checkpoint)."""
    deadline = time.time() + 300
    while time.time() < deadline:
        busy = [p.parent for p in run_dir.glob("jobs/*/log.txt") if " epoch " in p.read_text()
                and not (p.parent / "result.json").exists()]
        if len(busy) >= jobs:
            return sorted(busy)
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.1)
    raise AssertionError("the jobs did not reach their first epoch in 300 s")


def _seed(job: Path) -> int:
    return json.loads((job / "job.json").read_text())["seed"]


def _attempts(log: str) -> list[int]:
    return [int(line.split("==== attempt ")[1].split()[0]) for line in log.splitlines() if "==== attempt " in line
            and " ended" not in line]


def test_kill_9_of_the_driver_alone_leaves_no_process_and_a_rerun_never_runs_a_job_twice(tmp_path, tiny_corpus,
                                                                                       tiny_stages):
    warm_cache(tiny_stages, tmp_path)
    _write_study(tmp_path, tiny_corpus)
    run_dir = tmp_path / "runs" / "faults"
    driver = _start(tmp_path, KILL9_STEPS)
    jobs = _wait_for_epochs(run_dir, driver)
    family = [c.pid for c in psutil.Process(driver.pid).children(recursive=True)]
    assert len(family) >= 2  # the pool's two workers, and loky's resource trackers
    driver.kill()  # SIGKILL to the driver alone: no handler of its own runs

    # every worker notices, stops its job at the next step with a checkpoint, and leaves (they used to stay,
    # idle and re-parented, for good); loky's resource tracker follows them, quietly
    assert not _alive(family, within=5.0), [psutil.Process(p).cmdline() for p in _alive(family, 0)]
    _, stderr = driver.communicate(timeout=30)  # the killed driver's terminal, written to by those it left
    assert "Warning" not in stderr and "leaked" not in stderr and "Traceback" not in stderr, stderr[-2000:]
    for job in jobs:
        log = (job / "log.txt").read_text()
        assert "the driver (pid" in log and "is gone" in log, log[-1500:]
        assert (job / "checkpoint.pt").exists() or (job / "result.json").exists(), sorted(os.listdir(job))

    # another process runs seed 0's job (it holds the job's lock): a rerun started at once leaves it alone
    held = next(j for j in jobs if _seed(j) == 0)
    other = next(j for j in jobs if j != held)
    lock = open(held / JOB_LOCK, "a+")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free at once: no process of the killed run holds it
    lock.truncate(0)
    lock.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    lock.flush()
    before = {name: (held / name).read_bytes() for name in ("log.txt", "started.json", "checkpoint.pt")
              if (held / name).exists()}
    try:
        rerun = _start(tmp_path, KILL9_STEPS)
        stdout, stderr = rerun.communicate(timeout=600)
        assert rerun.returncode == 3, stderr[-2000:]  # not a success, not a failure: running elsewhere
        assert "Traceback" not in stderr
        assert "1 job not run here: another process is running it" in stderr, stderr[-2000:]
        assert f"A seed 0: {held} (pid {os.getpid()} on {socket.gethostname()}" in stderr, stderr[-2000:]
        assert "run the same command again" in stderr
        assert "ELSEWHERE" in stderr and "FAILED" not in stderr
        assert "(2 jobs: 1 ran, 0 kept from before, 0 failed, 1 running in another process)" in stdout, stdout[-1500:]
        # nothing of the held job was touched: no attempt, no log line, no record
        assert {name: (held / name).read_bytes() for name in before} == before
        assert not (held / "result.json").exists() and not (held / "error.json").exists()
        assert "resumed from checkpoint" in (other / "log.txt").read_text()
        assert (other / "result.json").exists()
        status = subprocess.run([sys.executable, "-m", "harness", "status", str(run_dir)], capture_output=True,
                                text=True, cwd=tmp_path).stdout
        assert "1 done, 1 running" in status, status  # its lock says it is running
    finally:
        lock.close()

    # once that process has gone, the same command resumes the job: one attempt after the other, never two at once
    again = _start(tmp_path, KILL9_STEPS)
    stdout, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr[-2000:]
    log = (held / "log.txt").read_text()
    assert log.startswith(before["log.txt"].decode())  # nothing of an earlier attempt was written after it
    assert "resumed from checkpoint" in log
    assert _attempts(log) == [1, 2]
    assert (held / "result.json").exists()


def test_a_second_ctrl_c_says_that_it_killed_every_process(tmp_path, tiny_corpus, tiny_stages):
    warm_cache(tiny_stages, tmp_path)
    _write_study(tmp_path, tiny_corpus)
    driver = _start(tmp_path)
    _wait_for_epochs(tmp_path / "runs" / "faults", driver)
    family = [c.pid for c in psutil.Process(driver.pid).children(recursive=True)]
    # Ctrl-C, then again while the first stop waits for the jobs to checkpoint: signals sent 20 ms apart until
    # the driver ends, so that one lands during that stop however the machine schedules the driver
    for _ in range(500):
        try:
            driver.send_signal(signal.SIGINT)
        except ProcessLookupError:
            break
        if driver.poll() is not None:
            break
        time.sleep(0.02)
    _, stderr = driver.communicate(timeout=60)
    assert driver.returncode == 130, stderr[-2000:]
    assert ("harness: second SIGINT: killed every process of the study at once; jobs in flight lost their work "
            "since their last checkpoint; finished jobs are kept: run the same command again to resume") in stderr
    assert "Traceback" not in stderr
    assert not _alive(family, within=5.0)


# A driver that recycles a worker with tasks queued, as loky does after its memory-leak check: the limit is
# lowered in the worker so that the check, after a task that ends a second past the last one, always fires.
RECYCLE = textwrap.dedent("""
    import os, sys, time

    def lower_leak_limit():
        from joblib.externals.loky import process_executor
        process_executor._MAX_MEMORY_LEAK_SIZE = -1
        return os.getpid()

    def nap():
        time.sleep(1.2)
        return os.getpid()

    if __name__ == "__main__":
        if sys.argv[1] == "harness":
            from harness.study import workers
            pool = workers.pool(1, 1)
        else:
            from joblib.externals.loky import ProcessPoolExecutor
            pool = ProcessPoolExecutor(max_workers=1)
        first = pool.submit(lower_leak_limit).result()
        naps = [pool.submit(nap) for _ in range(3)]
        pids = {f.result(timeout=120) for f in naps}
        print("recycled" if pids - {first} else "not recycled")
        pool.shutdown(wait=True)
""")


def test_loky_warning_about_a_recycled_worker_never_reaches_the_terminal(tmp_path):
    script = tmp_path / "recycle.py"
    script.write_text(RECYCLE)

    def run(pool: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), pool], capture_output=True, text=True, timeout=300)

    bare = run("loky")  # the real warning, as loky emits it (were it gone, the check below would prove nothing)
    assert "recycled" in bare.stdout.split() and "A worker stopped while some jobs were given" in bare.stderr
    ours = run("harness")
    assert ours.returncode == 0, ours.stderr[-2000:]
    assert ours.stdout.split() == ["recycled"]  # recycled all the same, every task done
    assert "A worker stopped" not in ours.stderr and "UserWarning" not in ours.stderr, ours.stderr[-2000:]


def test_a_job_lock_held_by_another_process_is_waited_for_briefly_then_reported(tmp_path):
    """The lock of a job, held by another live process: a short wait covers a worker of a killed driver that
    is still checkpointing; past it, the job is reported running elsewhere, naming that process."""
    from harness.errors import JobRunningElsewhere
    from harness.study.lock import JobLock

    hold = (f"import time; from harness.study.lock import JobLock; lock = JobLock({str(tmp_path)!r}).acquire(); "
            "print('held', flush=True); time.sleep(2)")
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    try:
        JobLock(tmp_path).acquire(wait=0.3)
        raise AssertionError("the lock of a live process was taken")
    except JobRunningElsewhere as e:
        assert f"pid {holder.pid} on {socket.gethostname()}" in str(e) and e.holder.startswith(f"pid {holder.pid}")
    lock = JobLock(tmp_path).acquire(wait=10)  # its holder leaves within the wait: the job is this process's
    assert lock.waited and holder.wait(timeout=10) == 0
    lock.release()


def _hold_then(directory: Path, seconds: float, then: str = "") -> subprocess.Popen:
    """A process that holds a job's lock for `seconds`, runs `then` (Python) and leaves."""
    code = (f"import time, pathlib; from harness.study.lock import JobLock; lock = JobLock({str(directory)!r})"
            f".acquire(); print('held', flush=True); time.sleep({seconds}); {then or 'pass'}")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_job_whose_lock_is_released_within_the_wait_runs_or_is_taken_as_finished(tiny_study_job, tiny_bundle,
                                                                                     tmp_path):
    """execute() waits out a lock released within the wait: the job then runs here; when the lock's holder
    finished the job meanwhile (its result.json appeared), that result is taken and the job is not run again."""
    from harness.study.job import execute

    directory = tmp_path / "job"
    directory.mkdir()
    holder = _hold_then(directory, 1.0)
    first = execute(tiny_study_job, str(tiny_bundle), str(directory), threads=1)
    assert holder.wait(timeout=30) == 0
    assert first["status"] == "ok" and (directory / "result.json").is_file(), first
    result = (directory / "result.json").read_bytes()
    log = (directory / "log.txt").read_text()
    (directory / "result.json").unlink()
    holder = _hold_then(directory, 1.0, f"pathlib.Path({str(directory / 'result.json')!r}).write_bytes({result!r})")
    second = execute(tiny_study_job, str(tiny_bundle), str(directory), threads=1)
    assert holder.wait(timeout=30) == 0
    assert second["status"] == "ok" and second["val_f1"] == first["val_f1"], second
    assert (directory / "log.txt").read_text() == log  # not run again: no attempt, no line
