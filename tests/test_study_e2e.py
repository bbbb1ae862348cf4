"""A tiny study for real: local backend, resume after kill -9, a failing job, and a Dask cluster on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import warm_cache
from harness.schema import PER_CLASS_COLUMNS, RESULTS_COLUMNS

STUDY = """
[study]
name = "tiny"
description = "2 variants x 2 seeds, a few steps"
seeds = 2

[[variant]]
name = "EF+SW+EM+CS"
curriculum = "easier"
pseudolabels = "strong+weak"
masking = "event"
augmentation = "custom"

[[variant]]
name = "SW+NM+NS"
curriculum = "all"
pseudolabels = "strong+weak"
masking = "none"
augmentation = "none"

[[comparison]]
label = "Event mask vs none"
a = "EF+SW+EM+CS"
b = "SW+NM+NS"
"""


def harness(*args: str, cwd: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"harness {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_corpus, tiny_stages):
    """A study file and a cache whose synthetic corpus is the session's tiny corpus (generated once), the cache a
    copy of the prebuilt shared stages (conftest's `tiny_stages`): the stages are not what this is about."""
    root = tmp_path_factory.mktemp("study")
    (root / "tiny.toml").write_text(STUDY + f'\n[data]\nroot = "{tiny_corpus}"\n')
    warm_cache(tiny_stages, root)
    return root


def run_args(workdir: Path, *extra: str, runs: str = "runs") -> list[str]:
    return ["run", str(workdir / "tiny.toml"), "--profile", "tiny", "--runs", str(workdir / runs),
            "--cache", str(workdir / "cache"), "--reports", str(workdir / "reports"), *extra]


def results(workdir: Path, name: str = "tiny-tiny", runs: str = "runs") -> pd.DataFrame:
    return pd.read_csv(workdir / runs / name / "results.csv")


STEPS40 = ("--threads", "1", "--set", "train.steps=40", "--no-report")


@pytest.fixture(scope="module")
def local40(workdir) -> pd.DataFrame:
    """The 40-step study run once on the local backend, in its own runs folder: the numbers to match."""
    out = harness(*run_args(workdir, "--jobs", "2", *STEPS40, runs="runs-local40"), cwd=workdir)
    return results(workdir, run_name_of(out), "runs-local40")


def run_name_of(out: subprocess.CompletedProcess) -> str:
    """The run directory's name, from the `results: .../<name>/results.csv` line of `harness run`."""
    line = next(line for line in out.stdout.splitlines() if line.startswith("results:"))
    return Path(line.split()[1]).parent.name


@pytest.fixture(scope="module")
def finished(workdir) -> tuple[Path, subprocess.CompletedProcess]:
    """The study run once to the end on the local backend, in runs/tiny-tiny."""
    return workdir / "runs" / "tiny-tiny", harness(*run_args(workdir, "--jobs", "2"), cwd=workdir)


def test_local_run_writes_tidy_tables_and_skips_finished_jobs(workdir, finished):
    run_dir, out = finished
    table = results(workdir)
    assert list(table.columns) == list(RESULTS_COLUMNS)
    assert len(table) == 4 and sorted(table["seed"]) == [0, 0, 1, 1]
    assert table["val_f1"].between(0, 100).all() and table["test_f1"].between(0, 100).all()
    assert (table["steps"] == 12).all()
    per_class = pd.read_csv(run_dir / "results_per_class.csv")
    assert list(per_class.columns) == list(PER_CLASS_COLUMNS) and len(per_class) == 4 * 2 * 10
    for job_id in table["job_id"]:
        job = run_dir / "jobs" / job_id
        for name in ("job.json", "log.txt", "metrics.csv", "result.json", "best.pt",
                     "predictions_validation.tsv", "predictions_test.tsv", "probabilities_test.npz"):
            assert (job / name).exists(), (job, name)
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["packages"]["torch"]
    # The CPU that picked the kernels, with every result: its model as /proc/cpuinfo names it and the
    # instruction sets that change which oneDNN kernels run (bf16 is native with avx512_bf16 only).
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    cpu = table["cpu"].unique().tolist()
    assert cpu == [env["cpu"]] and env["cpu"].startswith(env["processor"] + "; torch ")
    assert ("avx512_bf16" in cpu[0]) == ("avx512_bf16" in flags) and ("avx2" in cpu[0]) == ("avx2" in flags)
    assert (workdir / "reports" / "tiny-tiny" / "report.md").exists()
    assert "4 total" in out.stderr

    before = {p: p.stat().st_mtime_ns for p in run_dir.glob("jobs/*/result.json")}
    again = harness(*run_args(workdir, "--jobs", "2"), cwd=workdir)
    assert "4 of 4 already finished" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in run_dir.glob("jobs/*/result.json")} == before
    pd.testing.assert_frame_equal(results(workdir), table)


def test_plan_and_status_show_each_job(workdir, finished):
    out = harness("plan", str(workdir / "tiny.toml"), "--profile", "tiny", "--runs", str(workdir / "runs"),
                  "--cache", str(workdir / "cache"), cwd=workdir).stdout
    lines = [line for line in out.splitlines() if "replicate" in line]
    assert len(lines) == 4 and all(line.rstrip().endswith("done") for line in lines)
    status = harness("status", str(workdir / "tiny.toml"), "--profile", "tiny", "--runs", str(workdir / "runs"),
                     "--cache", str(workdir / "cache"), cwd=workdir).stdout
    assert "4 done, 0 running, 0 failed, 0 interrupted, 0 damaged, 0 pending of 4" in status
    recorded = harness("status", str(workdir / "runs" / "tiny-tiny"), cwd=workdir).stdout  # no flag to repeat
    assert "4 done" in recorded and "of 4" in recorded


def test_same_seed_same_numbers_inprocess(workdir, local40):
    """Determinism: the same jobs run again in this process reproduce the local backend's numbers exactly."""
    table = local40
    out = harness(*run_args(workdir, "--backend", "inprocess", *STEPS40, runs="runs-inprocess"), cwd=workdir)
    again = results(workdir, run_name_of(out), "runs-inprocess")
    cols = ["job_id", "val_f1", "test_f1", "val_segment_f1", "test_segment_f1", "best_epoch", "steps"]
    pd.testing.assert_frame_equal(again[cols], table[cols])


def test_kill_and_resume_loses_only_running_jobs(workdir, local40):
    args = run_args(workdir, "--jobs", "1", *STEPS40, runs="runs-kill")
    run_dir = workdir / "runs-kill" / local40_name(workdir)
    process = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=workdir, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 300
    known = {p.parent.name for p in run_dir.glob("jobs/*/result.json")}
    while time.time() < deadline:
        new = {p.parent.name for p in run_dir.glob("jobs/*/result.json")} - known
        if new:
            break
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the runner and its workers, mid-study
    process.wait()
    finished = {p.parent.name: p.read_bytes() for p in run_dir.glob("jobs/*/result.json")}
    new_ids = set(finished) - known
    assert 1 <= len(new_ids) < 4

    out = harness(*args, cwd=workdir)
    assert f"{len(new_ids)} of 4 already finished" in out.stdout
    for job_id in new_ids:  # never redone, never lost
        assert (run_dir / "jobs" / job_id / "result.json").read_bytes() == finished[job_id]
    steps40 = pd.read_csv(run_dir / "results.csv")
    assert len(steps40) == 4 and (steps40["steps"] == 40).all()
    cols = ["job_id", "val_f1", "test_f1", "best_epoch"]
    pd.testing.assert_frame_equal(steps40[cols], local40[cols])


def local40_name(workdir: Path) -> str:
    return next(p.parent.name for p in (workdir / "runs-local40").glob("*/study.json"))


def _started(job_dir: Path) -> dict | None:
    try:
        return json.loads((job_dir / "started.json").read_text())
    except (OSError, ValueError):
        return None


def _kill_worker_of_first_started(run_dir: Path, process: subprocess.Popen, not_pid: int | None = None,
                                  job: Path | None = None) -> tuple[Path, int]:
    """SIGKILL the worker process of a running job (the first to start, or `job` once it has a new pid)."""
    deadline = time.time() + 300
    while time.time() < deadline:
        for directory in ([job] if job else sorted(run_dir.glob("jobs/*"))):
            started = _started(directory)
            if started and started["pid"] != not_pid and not (directory / "result.json").exists():
                time.sleep(0.5)  # well inside training: the job has set up and is taking steps
                os.kill(started["pid"], signal.SIGKILL)
                return directory, started["pid"]
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.05)
    raise AssertionError("no job started within 300 s")


def test_killed_worker_costs_one_failed_job_not_the_study(workdir):
    """kill -9 of a job's worker (what the OOM killer does): its job runs again alone; killed again, with no
    retry left (--retries 0) it is recorded failed with a message that says what to do, and every other job
    still finishes."""
    # 40 steps, as in the retry test below: each kill, 0.5 s after its job started, lands long before its end
    args = run_args(workdir, "--jobs", "2", "--set", "train.steps=40", "--no-report", "--name", "killed",
                    "--retries", "0", runs="runs-killed")
    run_dir = workdir / "runs-killed" / "killed"
    process = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=workdir, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    victim, pid = _kill_worker_of_first_started(run_dir, process)
    _kill_worker_of_first_started(run_dir, process, not_pid=pid, job=victim)  # again, now alone
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 1, stderr[-2000:]
    assert "1 job failed" in stderr and "WorkerDied" in stderr
    error = json.loads((victim / "error.json").read_text())
    assert error["error"] == "WorkerDied" and "--rerun-failed" in error["message"]
    assert "ended: WorkerDied" in (victim / "log.txt").read_text()  # the reason is in the log too
    done = sorted(p.parent for p in run_dir.glob("jobs/*/result.json"))
    assert len(done) == 3 and victim not in done
    assert len(pd.read_csv(run_dir / "results.csv")) == 3


def test_a_worker_death_is_retried_and_the_job_resumes(workdir, local40):
    """With the default --retries 1, a job whose worker is killed (twice: once beside the other job, once
    alone) is run again, resumes from its checkpoint and ends with the numbers of an undisturbed run."""
    args = run_args(workdir, "--jobs", "2", *STEPS40, "--name", "retried", runs="runs-retried")
    run_dir = workdir / "runs-retried" / "retried"
    process = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=workdir, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    victim, pid = _kill_worker_of_first_started(run_dir, process)
    _kill_worker_of_first_started(run_dir, process, not_pid=pid, job=victim)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-2000:]
    assert "WorkerDied; running it again (retry 1 of 1)" in stdout
    log = (victim / "log.txt").read_text()
    assert "ended: WorkerDied" in log and "==== attempt 3 of job" in log
    table = pd.read_csv(run_dir / "results.csv")
    cols = ["job_id", "val_f1", "test_f1", "best_epoch"]
    pd.testing.assert_frame_equal(table[cols], local40[cols])
    status = harness("status", str(run_dir), cwd=workdir).stdout
    assert "3 attempts" in status


def test_failed_job_is_recorded_and_named(workdir):
    (workdir / "bad.toml").write_text((workdir / "tiny.toml").read_text().replace('name = "tiny"', 'name = "bad"')
                                      .replace('augmentation = "none"\n',
                                               'augmentation = "none"\nset = { "loss.lambda1" = 1e308 }\n'))
    args = ["run", str(workdir / "bad.toml"), "--profile", "tiny", "--runs", str(workdir / "runs"), "--cache",
            str(workdir / "cache"), "--jobs", "2", "--no-report"]
    out = harness(*args, cwd=workdir, check=False)
    assert out.returncode == 1
    assert "2 jobs failed" in out.stderr and "SW+NM+NS seed 0" in out.stderr and "log.txt" in out.stderr
    table = pd.read_csv(workdir / "runs" / "bad-tiny" / "results.csv")
    assert sorted(table["variant"]) == ["EF+SW+EM+CS", "EF+SW+EM+CS"]  # the study went on
    errors = list((workdir / "runs" / "bad-tiny").glob("jobs/*/error.json"))
    assert len(errors) == 2
    record = json.loads(errors[0].read_text())
    assert "J_s is inf at epoch 1, step 1" in record["message"] and "Traceback" in record["traceback"]
    assert record["error"] == "TrainingDiverged" and record["log"].endswith("log.txt")
    assert "TrainingDiverged" in (Path(record["log"])).read_text()  # the reason is in the log, not only here
    again = harness(*args, cwd=workdir, check=False)
    # failed jobs are kept, not run again, and still fail the study: exit 1 until they succeed
    assert again.returncode == 1 and "4 of 4 already finished or failed before" in again.stdout
    assert "2 jobs failed (2 in an earlier run, not run again)" in again.stderr
    rerun = harness(*args, "--rerun-failed", cwd=workdir, check=False)
    assert rerun.returncode == 1 and "running 2" in rerun.stdout
    log = Path(record["log"]).read_text()  # every attempt in the job's log, with a separator
    assert "==== attempt 1 of job" in log and "==== attempt 2 of job" in log


def test_dask_backend_gives_the_local_numbers(workdir, dask_cluster, local40):
    local = local40
    args = run_args(workdir, "--backend", "dask", "--scheduler", dask_cluster.address, *STEPS40, runs="runs-dask")
    out = harness(*args, cwd=workdir)
    assert "running 4 on the dask backend" in out.stdout
    table = pd.read_csv(workdir / "runs-dask" / run_name_of(out) / "results.csv")
    assert len(table) == 4
    cols = ["job_id", "val_f1", "test_f1", "best_epoch", "steps"]
    pd.testing.assert_frame_equal(table[cols].reset_index(drop=True), local[cols].reset_index(drop=True))


def test_plan_power_reads_the_finished_runs(workdir, finished):
    run_dir, _ = finished
    out = harness("plan", str(run_dir), "--power", cwd=workdir).stdout
    assert "Seeds per arm for 80% power" in out and "| Event mask vs none | 2 / 2 |" in out
    assert "Seeds/arm at α = 0.05" in out


def test_until_decided_runs_rounds_and_records_its_design(workdir):
    args = run_args(workdir, "--until-decided", "--looks", "2,3", "--set", "train.steps=6", "--no-report",
                    "--name", "sequential", runs="runs-sequential")
    out = harness(*args, cwd=workdir).stdout
    assert "until decided: round with seeds per variant {'EF+SW+EM+CS': 2, 'SW+NM+NS': 2}" in out
    run_dir = workdir / "runs-sequential" / "sequential"
    study = json.loads((run_dir / "study.json").read_text())
    assert study["sequential"]["looks"] == [2, 3] and study["sequential"]["spending"] == "kim-demets"
    table = pd.read_csv(run_dir / "results.csv")
    decided_at_first = "Event mask vs none: continue" not in out
    assert len(table) == (4 if decided_at_first else 6)  # a second round only while the comparison is open
    again = harness(*args, cwd=workdir).stdout  # resumes: decisions recomputed from the finished runs
    assert "already finished" in again and len(pd.read_csv(run_dir / "results.csv")) == len(table)


def test_a_job_killed_at_several_points_resumes_to_the_same_numbers(workdir, local40):
    """kill -9 of the whole study (driver and workers) at several points of one job's training; each run
    resumes from the job's last checkpoint, and the end is bit-identical to the uninterrupted run."""
    args = run_args(workdir, "--jobs", "1", *STEPS40, "--set", "seeds=[0]", runs="runs-resume")
    reference = local40[local40["seed"] == 0].reset_index(drop=True)
    kills = 0
    for _ in range(3):
        process = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=workdir, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            checkpoints = list((workdir / "runs-resume").glob("*/jobs/*/checkpoint.pt"))
            if checkpoints and checkpoints[0].stat().st_mtime > time.time() - 5:
                time.sleep(0.3 * (kills + 1))  # a little later each time: another point of training
                break
            time.sleep(0.05)
        if process.poll() is not None:
            break  # finished before the kill point
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
    assert kills >= 1
    harness(*args, cwd=workdir)
    run_dir = next((workdir / "runs-resume").glob("*/study.json")).parent
    table = pd.read_csv(run_dir / "results.csv").reset_index(drop=True)
    cols = ["job_id", "val_f1", "test_f1", "val_segment_f1", "test_segment_f1", "best_epoch", "steps"]
    pd.testing.assert_frame_equal(table[cols], reference[[c for c in cols]])
    logs = "".join(p.read_text() for p in run_dir.glob("jobs/*/log.txt"))
    assert "resumed from checkpoint at epoch" in logs
    job = run_dir / "jobs" / table["job_id"][0]
    twin = workdir / "runs-local40" / local40_name(workdir) / "jobs" / table["job_id"][0]
    for name in ("predictions_validation.tsv", "predictions_test.tsv"):
        assert (job / name).read_bytes() == (twin / name).read_bytes()
    import torch

    ours, theirs = torch.load(job / "best.pt"), torch.load(twin / "best.pt")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert not (job / "checkpoint.pt").exists()  # removed once the result is written
