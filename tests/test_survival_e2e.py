"""Cluster life through the CLI: a time limit, an error in the worker before training, a stop on Dask
(tasks cancelled on the cluster), and the driver doing no heavy work while the stages run on Dask workers."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
from conftest import warm_cache

STUDY = """
[study]
name = "life"
seeds = 2

[[variant]]
name = "A"
curriculum = "all"

[[variant]]
name = "B"
curriculum = "easier"
"""


def _args(root: Path, *extra: str, name: str) -> list[str]:
    return [sys.executable, "-m", "harness", "run", str(root / "life.toml"), "--profile", "tiny", "--runs",
            str(root / "runs"), "--cache", str(root / "cache"), "--name", name, "--no-report", *extra]


def _study(root: Path, corpus: Path) -> None:
    (root / "life.toml").write_text(STUDY + f'\n[data]\nroot = "{corpus}"\n')


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_a_job_over_its_time_limit_is_recorded_timed_out_and_resumes_to_the_same_numbers(tmp_path, tiny_corpus,
                                                                                        tiny_stages):
    _study(tmp_path, tiny_corpus)
    warm_cache(tiny_stages, tmp_path)
    # 200 steps take over 4 s on any CPU (a job's set-up alone, torch.optim's first import included, ~3 s)
    steps = ("--set", "train.steps=200", "--set", "seeds=1", "--jobs", "2")  # 2 jobs, both in flight
    limited = _run(_args(tmp_path, *steps, "--job-timeout", "4", "--retries", "0", name="limited"), tmp_path)
    assert limited.returncode == 1, limited.stderr[-2000:]
    assert "2 jobs failed" in limited.stderr and "Traceback" not in limited.stderr
    for job in (tmp_path / "runs" / "limited" / "jobs").iterdir():
        error = json.loads((job / "error.json").read_text())
        assert error["error"] == "TimedOut" and "--job-timeout 4" in error["message"]
        assert (job / "checkpoint.pt").exists()  # kept: the next run resumes from it
        log = (job / "log.txt").read_text()
        assert "timed out" in log and "ended: TimedOut" in log
    resumed = _run(_args(tmp_path, *steps, "--rerun-failed", name="limited"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for job in (tmp_path / "runs" / "limited" / "jobs").iterdir():
        assert "resumed from checkpoint" in (job / "log.txt").read_text()
    whole = _run(_args(tmp_path, *steps, name="whole"), tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]
    cols = ["job_id", "val_f1", "test_f1", "best_epoch", "steps"]
    a = pd.read_csv(tmp_path / "runs" / "limited" / "results.csv")[cols]
    b = pd.read_csv(tmp_path / "runs" / "whole" / "results.csv")[cols]
    pd.testing.assert_frame_equal(a, b)


def test_an_error_in_the_worker_before_training_fails_that_job_only(tmp_path, tiny_corpus, tiny_stages):
    """The job's log cannot be opened (here: a folder in its place): the job is recorded failed with the
    reason, and the study goes on."""
    _study(tmp_path, tiny_corpus)
    warm_cache(tiny_stages, tmp_path)
    args = _args(tmp_path, "--set", "train.steps=20", "--jobs", "2", name="broken")
    plan = _run([sys.executable, "-m", "harness", "plan", str(tmp_path / "life.toml"), "--profile", "tiny",
                 "--runs", str(tmp_path / "runs"), "--cache", str(tmp_path / "cache"), "--set",
                 "train.steps=20", "--name", "broken"], tmp_path)
    assert plan.returncode == 0, plan.stderr[-2000:]
    job_id = _first_job_id(plan.stdout)
    (tmp_path / "runs" / "broken" / "jobs" / job_id / "log.txt").mkdir(parents=True)
    out = _run(args, tmp_path)
    assert out.returncode == 1 and "1 job failed" in out.stderr and "Traceback" not in out.stderr
    error = json.loads((tmp_path / "runs" / "broken" / "jobs" / job_id / "error.json").read_text())
    assert error["error"] == "RecordError" and "log.txt: cannot write (Is a directory)" in error["message"]
    assert len(pd.read_csv(tmp_path / "runs" / "broken" / "results.csv")) == 3


def _first_job_id(plan_text: str) -> str:
    """The first job id of `harness plan`'s table (12 hex digits at the start of a row)."""
    import re

    return re.search(r"^\s*([0-9a-f]{12})\s", plan_text, re.M)[1]


def _tree_cpu(pids) -> float:
    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            for p in [process, *process.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def test_on_dask_the_driver_only_orchestrates(tmp_path, tiny_corpus, dask_cluster):
    """A study with a teacher, from an empty cache, on a local Dask cluster: features, the teacher's
    members, the bundle and the jobs all run on the workers; the driver's CPU time stays a small share."""
    _study(tmp_path, tiny_corpus)
    workers_before = _tree_cpu(dask_cluster.pids[1:])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = _run(_args(tmp_path, "--backend", "dask", "--scheduler", dask_cluster.address, "--set",
                     "train.steps=150", name="dask"), tmp_path)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert out.returncode == 0, out.stderr[-2000:]
    driver = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    work = _tree_cpu(dask_cluster.pids[1:]) - workers_before
    assert "teacher: training member 1" in out.stderr and "features" in out.stdout  # done on the workers
    assert len(pd.read_csv(tmp_path / "runs" / "dask" / "results.csv")) == 4
    # The driver imports torch and the harness (~3 s of CPU) and waits; the workers do everything else.
    print(f"driver CPU {driver:.1f} s, workers CPU {work:.1f} s")
    assert driver < 0.25 * (driver + work), (driver, work)


def test_a_stop_on_dask_cancels_the_study_on_the_cluster_and_resumes(tmp_path, tiny_corpus, tiny_stages,
                                                                     dask_cluster):
    from distributed import Client

    _study(tmp_path, tiny_corpus)
    warm_cache(tiny_stages, tmp_path)
    args = _args(tmp_path, "--backend", "dask", "--scheduler", dask_cluster.address, "--set", "train.steps=200",
                 name="stopped")
    process = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jobs = tmp_path / "runs" / "stopped" / "jobs"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(jobs.glob("*/started.json"))) < 2:
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.2)
    time.sleep(3)  # inside training
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143 and "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    with Client(dask_cluster.address, timeout=30) as client:  # nothing of the study runs on the cluster
        deadline = time.time() + 15
        while time.time() < deadline and any(client.processing().values()):
            time.sleep(0.5)
        assert not any(client.processing().values())
    started = {p.parent for p in jobs.glob("*/started.json")}
    stopped = [j for j in started if not (j / "result.json").exists()]
    assert stopped and all((j / "checkpoint.pt").exists() for j in stopped)
    time.sleep(3)
    assert {p.parent for p in jobs.glob("*/started.json")} == started  # queued jobs never started
    again = _run(args, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(pd.read_csv(tmp_path / "runs" / "stopped" / "results.csv")) == 4
    for job in stopped:
        assert "resumed from checkpoint" in (job / "log.txt").read_text()
