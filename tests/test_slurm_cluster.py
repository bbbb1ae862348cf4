"""The single-node Slurm of .ci/slurm.sh runs batch jobs and delivers signals to their processes.

Skipped where Slurm cannot be had (not root and not running). See .ci/SLURM-NOTES.md.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from slurm_cluster import FINISHED, job_info, sbatch, slurm, wait_for  # noqa: F401  (slurm: the fixture)

_TRAP = """\
import pathlib, signal, sys, time
out = pathlib.Path(sys.argv[1])
def on_term(signum, frame):
    out.write_text("got TERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
out.with_suffix(".started").touch()
time.sleep(60)
out.write_text("no signal")
"""


def _wait_file(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.1)


def test_sbatch_wrap_writes_a_file(slurm, tmp_path: Path) -> None:
    out = tmp_path / "hello.txt"
    job = sbatch("-p", slurm.partition, "-c", "1", "-t", "1", "-o", str(tmp_path / "slurm-%j.out"),
                 "--wrap", f"echo hello from $SLURM_JOB_ID > {out}")
    states = wait_for([job], FINISHED, timeout=30)
    assert states[job] in ("COMPLETED", "GONE")
    assert out.read_text() == f"hello from {job}\n"
    info = job_info(job)
    assert info.get("JobState", "COMPLETED") == "COMPLETED" and info.get("ExitCode", "0:0") == "0:0"


def test_scancel_full_signal_term_reaches_python_in_batch_script(slurm, tmp_path: Path) -> None:
    # `scancel --signal=TERM ID` alone signals job steps only (a batch job without srun has none: nothing
    # happens); `--batch` signals the batch shell alone (bash defers it while python runs in the foreground);
    # `--full` signals every process of the batch step, the python child included.
    (tmp_path / "trap.py").write_text(_TRAP)
    out = tmp_path / "term.txt"
    job = sbatch("-p", slurm.partition, "-c", "1", "-t", "2", "-o", str(tmp_path / "slurm-%j.out"),
                 "--wrap", f"{sys.executable} {tmp_path / 'trap.py'} {out}; echo python exited $?")
    _wait_file(out.with_suffix(".started"), timeout=20)
    subprocess.run(["scancel", "--full", "--signal=TERM", job], check=True, timeout=15)
    wait_for([job], FINISHED, timeout=20)
    assert out.read_text() == "got TERM"
