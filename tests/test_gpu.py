"""CUDA end to end, through the CLI: `device = "auto"`, the per-GPU slot leases, the same numbers twice.

Every test is marked `gpu` and skipped without CUDA (`python -m pytest -q -m gpu tests/test_gpu.py` on a GPU
machine; benchmarks/gpu_device_run.sh runs them with the GPU benchmark).

- A tiny study (`--profile tiny`) with `--set train.device=auto --jobs 4 --jobs-per-gpu 4`: every job's
  provenance says cuda:0, results, tables and the report are written, and at most 4 jobs held a GPU slot at
  once.
- A short paper-shaped study (h = 256, 200 steps, T = 500) with `--jobs 4 --jobs-per-gpu 2`: 4 worker
  processes but 2 slots, so the lease, not the pool, is what limits the jobs on the GPU.
- The same seed twice on the GPU gives the same numbers (F1s, per-epoch losses, the saved probabilities bit
  for bit) with the deterministic settings (CUBLAS_WORKSPACE_CONFIG=:4096:8, cudnn.deterministic,
  torch.use_deterministic_algorithms), which the harness does not set itself: the CLI runs in-process
  (`--backend inprocess`) inside a Python that sets them first.

How slots are observed: a slot is an exclusive flock on `$TMPDIR/harness-gpu-<uid>/gpu<g>-slot<k>.lock`
(harness/study/devices.py). Each CLI run gets a TMPDIR of its own, so its lock files are the only ones in that
folder; a thread of the test reads /proc/locks every 20 ms and counts the lock files of that folder held at
the same moment (reading /proc/locks takes no lock, so it cannot delay a job's lease). Without a readable
/proc/locks (gVisor) that count is skipped; the names of the lock files, slot indices below the limit only,
are checked either way.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device (torch.cuda.is_available())")]
EXPECTED_DEVICE = "cuda:0"

STUDY = """
[study]
name = "gputiny"
description = "2 variants x 2 seeds on the GPU"
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

# The settings deterministic CUDA training needs; the harness sets none of them (see the module docstring).
DETERMINISTIC_MAIN = """
import sys
import torch
torch.backends.cudnn.deterministic = True
torch.backends.cudnn.benchmark = False
torch.use_deterministic_algorithms(True, warn_only=True)  # the teacher's linear interpolate has no deterministic
from harness.cli import main                               # CUDA backward: it warns (the teacher is cached anyway)
sys.exit(main(sys.argv[1:]))
"""
DETERMINISTIC_ENV = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
# h = 256 (T = 500, batch 16 as in every profile); fixed 50-step epochs: 4 validations, not the 67 of 3-step
# epochs on the tiny corpus, whose per-epoch work (validation, checkpoint) would dominate the test's time.
PAPER_SHAPED = ("--set", "student.hidden=256", "--set", "train.steps=200", "--set", "train.epoch_steps=50")
SCORE_COLUMNS = ("val_f1", "test_f1", "val_segment_f1", "test_segment_f1", "best_epoch", "steps")


class LeaseMonitor:
    """Counts the GPU slot lock files of one folder held at the same moment, from /proc/locks."""

    def __init__(self, lock_dir: Path, interval: float = 0.02) -> None:
        self.lock_dir, self.interval = lock_dir, interval
        self.max_held, self.held_ever, self.samples = 0, set(), 0
        self.readable = Path("/proc/locks").exists()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "LeaseMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _files(self) -> dict[tuple[str, int], str]:
        out = {}
        for path in self.lock_dir.glob("*.lock") if self.lock_dir.is_dir() else ():
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out[(f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}", st.st_ino)] = path.name
        return out

    def _run(self) -> None:
        pattern = re.compile(r"\b([0-9a-f]+:[0-9a-f]+):(\d+)\b")
        while not self._stop.wait(self.interval):
            files = self._files()
            try:
                text = Path("/proc/locks").read_text()
            except OSError:
                self.readable = False
                return
            held = set()
            for line in text.splitlines():
                if "FLOCK" not in line or "->" in line:
                    continue
                match = pattern.search(line)
                if match:
                    name = files.get((match.group(1), int(match.group(2))))
                    if name is not None:
                        held.add(name)
            self.samples += 1
            self.held_ever |= held
            self.max_held = max(self.max_held, len(held))


def cli(*args: str, cwd: Path, env: dict[str, str], deterministic: bool = False, timeout: float = 420
        ) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", DETERMINISTIC_MAIN] if deterministic else [sys.executable, "-m", "harness"]
    result = subprocess.run([*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"harness {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
    return result


def run_dir_of(out: subprocess.CompletedProcess) -> Path:
    """The run directory, from the `results: .../<name>/results.csv` line of `harness run`."""
    line = next(line for line in out.stdout.splitlines() if line.startswith("results:"))
    return Path(line.split()[1]).parent


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_corpus) -> Path:
    root = tmp_path_factory.mktemp("gpu")
    (root / "gputiny.toml").write_text(STUDY + f'\n[data]\nroot = "{tiny_corpus}"\n')
    return root


def environment(workdir: Path, name: str, **extra: str) -> tuple[dict[str, str], Path]:
    """The CLI's environment with a TMPDIR of its own; returns it and the folder of its GPU slot locks."""
    tmp = workdir / f"tmp-{name}"
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1", **extra}
    return env, tmp / f"harness-gpu-{os.getuid()}"


def run_study(workdir: Path, name: str, *extra: str, deterministic: bool = False, backend: str = "local"
              ) -> tuple[Path, LeaseMonitor, subprocess.CompletedProcess]:
    env, lock_dir = environment(workdir, name, **(DETERMINISTIC_ENV if deterministic else {}))
    args = ["run", str(workdir / "gputiny.toml"), "--profile", "tiny", "--runs", str(workdir / f"runs-{name}"),
            "--cache", str(workdir / "cache"), "--reports", str(workdir / f"reports-{name}"),
            "--set", "train.device=auto", "--backend", backend, *extra]
    with LeaseMonitor(lock_dir) as monitor:
        out = cli(*args, cwd=workdir, env=env, deterministic=deterministic)
    return run_dir_of(out), monitor, out


def check_on_gpu(run_dir: Path, n_jobs: int) -> pd.DataFrame:
    """results.csv and every job's result.json say cuda:0; the outputs of every job are there."""
    table = pd.read_csv(run_dir / "results.csv")
    assert len(table) == n_jobs, table
    assert table["device"].astype(str).str.startswith(EXPECTED_DEVICE).all(), table["device"].tolist()
    assert table["cuda_version"].notna().all()
    for job_id in table["job_id"]:
        job = run_dir / "jobs" / job_id
        result = json.loads((job / "result.json").read_text())
        assert result["provenance"]["device"].startswith(EXPECTED_DEVICE), result["provenance"]
        for name in ("metrics.csv", "best.pt", "probabilities_validation.npz", "probabilities_test.npz",
                     "predictions_test.tsv", "log.txt"):
            assert (job / name).exists(), (job, name)
    environment_json = json.loads((run_dir / "environment.json").read_text())
    assert environment_json["cuda_available"] is True
    return table


def check_slots(monitor: LeaseMonitor, limit: int) -> None:
    """Only slots 0..limit-1 of GPU 0 were ever made, and at most `limit` were held at once."""
    names = sorted(p.name for p in monitor.lock_dir.glob("*.lock"))
    allowed = {f"gpu0-slot{k}.lock" for k in range(limit)}
    assert names and set(names) <= allowed, names
    if monitor.readable and monitor.samples:
        print(f"slots held at once: at most {monitor.max_held} (limit {limit}); held at some time: "
              f"{sorted(monitor.held_ever)}; {monitor.samples} samples of /proc/locks")
        assert 1 <= monitor.max_held <= limit, monitor.max_held


def test_tiny_study_runs_every_job_on_cuda0_within_the_slot_limit(workdir):
    run_dir, monitor, out = run_study(workdir, "tiny", "--jobs", "4", "--jobs-per-gpu", "4")
    table = check_on_gpu(run_dir, 4)
    assert (table["steps"] == 12).all()
    assert table["val_f1"].between(0, 100).all() and table["test_f1"].between(0, 100).all()
    assert (run_dir / "results_per_class.csv").exists() and (run_dir / "study.json").exists()
    report = workdir / "reports-tiny" / run_dir.name
    assert (report / "report.md").exists(), sorted(p.name for p in report.parent.glob("*"))
    check_slots(monitor, 4)


def test_paper_shaped_study_on_cuda_leases_limit_jobs_per_gpu(workdir):
    run_dir, monitor, _ = run_study(workdir, "paper", *PAPER_SHAPED, "--jobs", "4", "--jobs-per-gpu", "2",
                                    "--no-report")
    table = check_on_gpu(run_dir, 4)
    assert (table["steps"] == 200).all()
    job = json.loads((run_dir / "jobs" / table["job_id"][0] / "job.json").read_text())
    assert job["config"]["student"]["hidden"] == 256 and job["config"]["features"]["n_frames"] == 500
    check_slots(monitor, 2)


def test_same_seed_twice_on_the_gpu_gives_the_same_numbers(workdir):
    extra = ("--set", "student.hidden=256", "--set", "train.steps=100", "--set", "train.epoch_steps=25",
             "--set", "seeds=1", "--no-report")
    runs = [run_study(workdir, f"det-{k}", *extra, deterministic=True, backend="inprocess")[0] for k in "ab"]
    a, b = (check_on_gpu(r, 2).sort_values("job_id").reset_index(drop=True) for r in runs)
    assert a["job_id"].tolist() == b["job_id"].tolist()
    pd.testing.assert_frame_equal(a[list(SCORE_COLUMNS)], b[list(SCORE_COLUMNS)])
    for job_id in a["job_id"]:
        ma, mb = (pd.read_csv(r / "jobs" / job_id / "metrics.csv").drop(columns=["seconds"]) for r in runs)
        pd.testing.assert_frame_equal(ma, mb, check_exact=True)
        for subset in ("validation", "test"):
            with np.load(runs[0] / "jobs" / job_id / f"probabilities_{subset}.npz") as pa, \
                    np.load(runs[1] / "jobs" / job_id / f"probabilities_{subset}.npz") as pb:
                for key in ("frame", "clip"):
                    assert np.array_equal(pa[key], pb[key]), (job_id, subset, key)
