"""Ctrl-C and SIGTERM mid-study: a clean stop (exit code, no process left, tables, lock), then a resume that
runs only the unfinished work."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import alive_processes as _alive, warm_cache

STUDY = """
[study]
name = "sig"
seeds = 2

[[variant]]
name = "A"
curriculum = "all"

[[variant]]
name = "B"
curriculum = "easier"
"""


def _start(root: Path) -> subprocess.Popen:
    # 60 steps: each signal below lands at a point of the study (a job's start, a job's end), not at a step count;
    # the resume then runs every unfinished job to its end
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(root / "sig.toml"), "--profile", "tiny", "--runs",
         str(root / "runs"), "--cache", str(root / "cache"), "--jobs", "2", "--name", "sig", "--no-report",
         "--set", "train.steps=60"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)




def _wait_for(run_dir: Path, process: subprocess.Popen, results: int, started: int) -> None:
    deadline = time.time() + 300
    while time.time() < deadline:
        done = len(list(run_dir.glob("jobs/*/result.json")))
        running = sum(1 for p in run_dir.glob("jobs/*/started.json") if not (p.parent / "result.json").exists())
        if done >= results and running >= started:
            return
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.1)
    raise AssertionError("the study did not get that far in 300 s")


def _assert_checkpoint(job: Path, stderr: str) -> None:
    log = (job / "log.txt").read_text() if (job / "log.txt").exists() else "(no log)"
    assert (job / "checkpoint.pt").exists(), f"{job.name}: {sorted(p.name for p in job.iterdir())}\n{log[-1500:]}\n" \
                                             f"{stderr[-1500:]}"


# SIGINT once a job has finished; SIGTERM as the first two jobs begin, within their first step. Each job in
# flight must checkpoint: once a stopped worker left, loky took its pool for broken and killed the other
# workers at once, and a job not yet at its first step boundary kept nothing (one run in two at the SIGTERM
# timing, and the CI failure at the SIGINT one, before workers.stop_jobs).
@pytest.mark.parametrize("signum, code, results, started", [(signal.SIGINT, 130, 1, 1), (signal.SIGTERM, 143, 0, 2)])
def test_a_signal_stops_the_study_cleanly_and_the_same_command_resumes(tmp_path, tiny_corpus, tiny_stages, signum,
                                                                       code, results, started):
    warm_cache(tiny_stages, tmp_path)  # the stages are not what this is about
    (tmp_path / "sig.toml").write_text(STUDY + f'\n[data]\nroot = "{tiny_corpus}"\n')
    run_dir = tmp_path / "runs" / "sig"
    process = _start(tmp_path)
    _wait_for(run_dir, process, results=results, started=started)
    family = [process.pid, *(c.pid for c in psutil.Process(process.pid).children(recursive=True))]
    if signum == signal.SIGINT:
        process.send_signal(signum)  # Ctrl-C at a terminal reaches the whole group: see below
        for pid in family[1:]:
            try:
                psutil.Process(pid).send_signal(signum)
            except psutil.NoSuchProcess:
                pass
    else:
        process.send_signal(signum)  # `timeout`, Slurm and Kubernetes signal the driver
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr[-2000:]
    assert f"stopped by {signal.Signals(signum).name}" in stderr and "Traceback" not in stderr
    assert not _alive(family, within=10.0)  # a killed worker may take a moment to be reaped
    finished = {p.parent.name: p.read_bytes() for p in run_dir.glob("jobs/*/result.json")}
    assert results <= len(finished) < 4
    in_flight = [p.parent for p in run_dir.glob("jobs/*/started.json") if p.parent.name not in finished]
    if not results:  # both stopped within their first steps: neither could finish (with SIGINT a stop in a job's
        assert len(in_flight) == 2  # final evaluation lets it finish, so no job need be left in flight)
    for job in in_flight:  # each job in flight kept a checkpoint (written at its stop, or at its last epoch's end
        _assert_checkpoint(job, stderr)  # when the stop came during its final evaluation)
    assert len(pd.read_csv(run_dir / "results.csv")) == len(finished)  # the tables were rebuilt
    status = subprocess.run([sys.executable, "-m", "harness", "status", str(run_dir)], capture_output=True,
                            text=True, cwd=tmp_path).stdout
    assert f"{len(finished)} done, 0 running" in status  # the lock is released: nothing reads as running

    again = _start(tmp_path)
    stdout, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr[-2000:]
    assert (f"{len(finished)} of 4 already finished" in stdout) == bool(finished)
    for job_id, data in finished.items():  # never redone
        assert (run_dir / "jobs" / job_id / "result.json").read_bytes() == data
    assert len(pd.read_csv(run_dir / "results.csv")) == 4
    for job in in_flight:
        assert "resumed from checkpoint at epoch" in (job / "log.txt").read_text()

