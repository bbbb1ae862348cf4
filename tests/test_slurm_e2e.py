"""A tiny study on a real single-node Slurm: submit and exit, a preemption mid-job, status, cancel, report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import warm_cache
from slurm_cluster import slurm  # noqa: F401 - the fixture

pytest.importorskip("submitit")

STUDY = """
[study]
name = "onslurm"
seeds = 2

[[variant]]
name = "A"
curriculum = "all"

[[variant]]
name = "B"
curriculum = "easier"

[cluster]
mem_gb = 1
time = "15"
"""

STEPS = ("--set", "train.steps=150", "--no-report")


def _harness(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def _run(root: Path, *extra: str, name: str) -> list[str]:
    return ["run", str(root / "s.toml"), "--profile", "tiny", "--runs", str(root / "runs"), "--cache",
            str(root / "cache"), "--name", name, *STEPS, *extra]


def _study(root: Path, corpus: Path) -> None:
    (root / "s.toml").write_text(STUDY + f'\n[data]\nroot = "{corpus}"\n')


def _slurm_id(run_dir: Path, job_id: str) -> str:
    return json.loads((run_dir / "slurm" / "submissions.json").read_text())["tasks"][job_id]["id"]


def _active(run_dir: Path) -> list[str]:
    """The run's Slurm tasks still queued or running: every one it submitted (submissions.json, read again each
    time: a `continue` job adds the waves it submits before it ends), the `finish` job included."""
    from slurm_cluster import ACTIVE, job_states

    ids = [t["id"] for t in json.loads((run_dir / "slurm" / "submissions.json").read_text())["tasks"].values()]
    return [i for i, state in job_states(ids).items() if state in ACTIVE]


def _wait_done(root: Path, run_dir: Path, n: int, timeout: float = 300) -> str:
    """`harness status` once every Slurm task of the run has ended (its jobs, then the finish job that rebuilds
    the tables after the last of them); asserts that all `n` jobs are done."""
    deadline = time.time() + timeout
    while _active(run_dir) and time.time() < deadline:
        time.sleep(0.5)  # squeue, not a `harness status` each time: the jobs have the CPUs
    status = _harness("status", str(run_dir), cwd=root).stdout
    counts = re.search(r"(\d+) done, \d+ running, (\d+) failed", status)
    assert not _active(run_dir), f"not done within {timeout} s:\n{status}\n{_logs(run_dir)}"
    assert counts and int(counts[1]) == n, f"{status}\n{_logs(run_dir)}"
    return status


def _logs(run_dir: Path) -> str:
    return "\n".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in sorted(run_dir.glob("slurm/logs/*/*.out"))[-4:])


def _preempt(slurm_id: str) -> None:
    """One SIGTERM to the job's processes, as a preemption sends. (scancel retries a signal that Slurm answers
    "try again later", here while the job is being requeued: it would reach the requeued attempt too.)"""
    try:
        subprocess.run(["scancel", "--signal=TERM", slurm_id], timeout=2)
    except subprocess.TimeoutExpired:
        pass


def test_a_study_submitted_to_slurm_runs_unattended_survives_a_preemption_and_matches_local(
        slurm, tmp_path, tiny_corpus, tiny_stages):
    _study(tmp_path, tiny_corpus)
    warm_cache(tiny_stages, tmp_path)  # the stages as Slurm jobs: test_a_study_with_a_tuning_stage_...
    local = _harness(*_run(tmp_path, "--jobs", "2", name="local"), cwd=tmp_path)
    assert local.returncode == 0, local.stderr[-2000:]

    started = time.time()
    submit = _harness(*_run(tmp_path, "--backend", "slurm", name="slurm"), cwd=tmp_path)
    assert submit.returncode == 0, submit.stderr[-2000:]
    assert "slurm: jobs: 4 submitted as" in submit.stdout and "harness status" in submit.stdout
    assert time.time() - started < 60  # it submits and exits; nothing waits for the cluster
    run_dir = tmp_path / "runs" / "slurm"

    victim = None  # the first job to take steps is preempted (scancel --signal=TERM, as preemption does)
    deadline = time.time() + 300
    while victim is None and time.time() < deadline:
        for metrics in run_dir.glob("jobs/*/metrics.csv"):
            victim = metrics.parent
            break
        time.sleep(0.2)
    assert victim is not None, _logs(run_dir)
    _preempt(_slurm_id(run_dir, victim.name))

    status = _wait_done(tmp_path, run_dir, 4)
    assert "slurm:" in status  # Slurm's state beside the harness's own
    log = (victim / "log.txt").read_text()
    assert "ended: Preempted" in log and "requeued" in log and "resumed from checkpoint" in log
    cols = ["job_id", "val_f1", "test_f1", "best_epoch", "steps"]
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "results.csv")[cols],
                                  pd.read_csv(tmp_path / "runs" / "local" / "results.csv")[cols])
    report = _harness("report", str(run_dir), "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    again = _harness(*_run(tmp_path, "--backend", "slurm", name="slurm"), cwd=tmp_path)
    assert again.returncode == 0 and "nothing to submit" in again.stdout


def test_cancel_stops_every_slurm_job_of_the_study(slurm, tmp_path, tiny_corpus, tiny_stages):
    from slurm_cluster import job_states

    _study(tmp_path, tiny_corpus)
    warm_cache(tiny_stages, tmp_path)
    submit = _harness(*_run(tmp_path, "--backend", "slurm", name="c"), cwd=tmp_path)
    assert submit.returncode == 0, submit.stderr[-2000:]
    run_dir = tmp_path / "runs" / "c"
    cancel = _harness("cancel", str(run_dir), cwd=tmp_path)
    assert cancel.returncode == 0 and "cancelled" in cancel.stdout, cancel.stderr
    ids = [t["id"] for t in json.loads((run_dir / "slurm" / "submissions.json").read_text())["tasks"].values()]
    def live() -> list[str]:
        return [s for s in job_states(ids).values() if s in ("PENDING", "RUNNING", "CONFIGURING")]

    deadline = time.time() + 3  # within 3 s of the cancel
    while live() and time.time() < deadline:
        time.sleep(0.2)
    assert not live()


def test_an_unknown_cluster_key_is_refused_with_the_valid_ones(tmp_path, tiny_corpus):
    (tmp_path / "s.toml").write_text(STUDY.replace("mem_gb = 1", "memory = 1") + f'\n[data]\nroot = "{tiny_corpus}"\n')
    out = _harness("run", str(tmp_path / "s.toml"), "--profile", "tiny", "--runs", str(tmp_path / "runs"), "--cache",
                   str(tmp_path / "cache"), "--backend", "slurm", cwd=tmp_path)
    assert out.returncode == 2 and "unknown key 'memory'" in out.stderr and "mem_gb" in out.stderr
    assert "Traceback" not in out.stderr


TUNED = """
[study]
name = "tuned"
seeds = 1

[[variant]]
name = "A"
curriculum = "all"

[tune]
lambda1 = [0.5, 1.0]
lambda2 = [1.0]
seeds = 1

[cluster]
mem_gb = 1
time = "15"
"""


def test_a_study_with_a_tuning_stage_runs_unattended_on_slurm(slurm, tmp_path, tiny_corpus):
    """The first submission runs the tuning jobs and a `continue` job after them, which chooses the lambdas from
    them and submits the rest, all with no command waiting."""
    from harness.study.runner import choose_lambdas
    from harness.study.table import read_results

    (tmp_path / "s.toml").write_text(TUNED + f'\n[data]\nroot = "{tiny_corpus}"\n')
    common = ["--set", "train.steps=30", "--no-report"]
    submit = _harness("run", str(tmp_path / "s.toml"), "--profile", "tiny", "--runs", str(tmp_path / "runs"),
                      "--cache", str(tmp_path / "cache"), "--name", "slurm", "--backend", "slurm", *common,
                      cwd=tmp_path)
    assert submit.returncode == 0, submit.stderr[-2000:]
    assert "slurm: tuning: 2 submitted" in submit.stdout and "slurm: continue: 1 submitted" in submit.stdout
    run_dir = tmp_path / "runs" / "slurm"
    deadline = time.time() + 300
    while time.time() < deadline and not (run_dir / "results.csv").exists():
        time.sleep(0.5)
    _wait_done(tmp_path, run_dir, 1)
    chosen = choose_lambdas(read_results(run_dir / "jobs", phase="tune"))  # the choice from the tuning jobs
    assert len(read_results(run_dir / "jobs", phase="tune")) == 2
    recorded = json.loads((run_dir / "tuning.json").read_text())["chosen"]
    assert {v: tuple(p) for v, p in recorded.items()} == chosen
    table = pd.read_csv(run_dir / "results.csv")
    assert len(table) == 1 and (table["lambda1"].iloc[0], table["lambda2"].iloc[0]) == chosen["A"]


def test_dask_workers_as_slurm_jobs_give_the_local_numbers(slurm, tmp_path, tiny_corpus, tiny_stages):
    pytest.importorskip("dask_jobqueue")
    _study(tmp_path, tiny_corpus)
    warm_cache(tiny_stages, tmp_path)  # the stages as Slurm jobs: test_a_study_with_a_tuning_stage_...
    steps = ("--set", "train.steps=30", "--no-report")
    local = _harness("run", str(tmp_path / "s.toml"), "--profile", "tiny", "--runs", str(tmp_path / "runs"), "--cache",
                     str(tmp_path / "cache"), "--name", "local", "--jobs", "2", *steps, cwd=tmp_path)
    assert local.returncode == 0, local.stderr[-2000:]
    out = _harness("run", str(tmp_path / "s.toml"), "--profile", "tiny", "--runs", str(tmp_path / "runs"), "--cache",
                   str(tmp_path / "cache"), "--name", "dask", "--backend", "dask", "--cluster", "slurm", "--jobs", "1", "--mem-gb", "3",
                   *steps, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    cols = ["job_id", "val_f1", "test_f1", "best_epoch"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "runs" / "dask" / "results.csv")[cols],
                                  pd.read_csv(tmp_path / "runs" / "local" / "results.csv")[cols])
