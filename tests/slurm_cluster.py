"""A real single-node Slurm for tests: the session fixture `slurm` and helpers that poll job states.

Use it from a conftest (``pytest_plugins = ["slurm_cluster"]``, or ``from slurm_cluster import slurm``) or a
test module, then ask for the fixture::

    def test_something(slurm, tmp_path):
        job = sbatch("--wrap", "true", "-o", str(tmp_path / "out"))
        assert wait_for([job], FINISHED)[job] == "COMPLETED"

The fixture yields when ``sinfo`` shows the node up; otherwise, as root, it runs ``.ci/slurm.sh`` (installs
Debian's slurm-wlm and munge if needed, starts the daemons: a few seconds when installed, ~10-60 s with the apt
install); when Slurm still cannot be reached it skips, with the script's last lines as the reason.

There is no accounting on this cluster (``sacct`` fails: "Slurm accounting storage is disabled"): states come from
``squeue -t all`` / ``scontrol show job``, which know a finished job for MinJobAge (300 s) after it ended. A job id
slurmctld no longer knows has the state `GONE`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "slurm.sh"
PARTITION = "debug"

GONE = "GONE"  # slurmctld no longer knows the job (finished more than MinJobAge ago, or never existed)
ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
                    "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"})
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
                      "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED", GONE})
_UP_STATES = ("idle", "mixed", "allocated", "completing")


@dataclass(frozen=True)
class SlurmCluster:
    """What the `slurm` fixture yields."""

    partition: str
    node: str
    cpus: int


def _run(*cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def node_up() -> SlurmCluster | None:
    """The cluster when `sinfo` answers and its node of partition `debug` is up, else None."""
    if shutil.which("sinfo") is None or shutil.which("scontrol") is None:
        return None
    try:
        # `scontrol ping` answers at once when slurmctld is down; sinfo would retry for ~10 s.
        if " is UP" not in _run("scontrol", "ping", timeout=15).stdout:
            return None
        res = _run("sinfo", "-h", "-N", "-p", PARTITION, "-o", "%N|%T|%c", timeout=15)
    except subprocess.TimeoutExpired:
        return None
    for line in res.stdout.splitlines() if res.returncode == 0 else ():
        node, state, cpus = line.strip().split("|")
        if state.strip().lower() in _UP_STATES:  # "idle*" (not responding), "drained"... are not up
            return SlurmCluster(PARTITION, node, int(cpus))
    return None


_REASON: list[str] = []  # why Slurm is not here, once found out (one try per session)


def ensure_slurm() -> SlurmCluster | None:
    """The running cluster, starting it with .ci/slurm.sh (as root) when it is not up; None when it cannot be had."""
    cluster = node_up()
    if cluster is not None or _REASON:
        return cluster
    if os.geteuid() != 0:
        _REASON.append("Slurm is not running and starting it (.ci/slurm.sh) needs root")
    elif not SCRIPT.is_file():
        _REASON.append(f"Slurm is not running and {SCRIPT} is missing")
    else:
        try:
            res = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=300, check=False,
                                 stdin=subprocess.DEVNULL)
            out = (res.stdout + res.stderr).strip().splitlines()
            cluster = node_up()
            if cluster is None:
                tail = " | ".join(out[-6:]) or f"exit {res.returncode}"
                _REASON.append(f".ci/slurm.sh did not bring Slurm up (exit {res.returncode}): {tail}")
        except subprocess.TimeoutExpired as exc:
            out = ((exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes)
                   else (exc.stdout or "")).strip().splitlines()
            _REASON.append(".ci/slurm.sh timed out after 300 s: " + " | ".join(out[-6:]))
    return cluster


@pytest.fixture(scope="session")
def slurm() -> Iterable[SlurmCluster]:
    """A running single-node Slurm (partition `debug`); skips the test when there is none to be had."""
    cluster = ensure_slurm()
    if cluster is None:
        pytest.skip(_REASON[0] if _REASON else "Slurm is not reachable")
    yield cluster


def sbatch(*args: str, cwd: str | Path | None = None) -> str:
    """Submit with `sbatch --parsable ARGS...`; the job id (for an array, the array's job id)."""
    res = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, timeout=30, cwd=cwd,
                         check=False)
    if res.returncode != 0:
        raise RuntimeError(f"sbatch {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout.strip().split(";")[0]


def job_states(job_ids: Iterable[str | int]) -> dict[str, str]:
    """The state of each job id (`squeue -t all` names: PENDING, RUNNING, COMPLETED, CANCELLED...; GONE when
    slurmctld no longer knows it). Array tasks are `ID_N` (pending ones too: `squeue -r`); a bare array job id
    has an active state while any task is active, else the state of one of its tasks."""
    ids = [str(j) for j in job_ids]
    res = _run("squeue", "-h", "-r", "-t", "all", "-o", "%i|%A|%T", timeout=15)
    if res.returncode != 0:
        raise RuntimeError(f"squeue failed ({res.returncode}): {res.stderr.strip()}")
    known: dict[str, str] = {}
    for line in res.stdout.splitlines():
        if line.count("|") == 2:
            job, array_job, state = line.strip().split("|")
            known[job] = state
            if array_job != job and (array_job not in known or state in ACTIVE):
                known[array_job] = state  # an array: active while any of its tasks is
    return {j: known.get(j, GONE) for j in ids}


def job_info(job_id: str | int) -> dict[str, str]:
    """`scontrol show job -o ID` as a dict (JobState, Reason, ExitCode, Restarts, RunTime...); {} when unknown."""
    res = _run("scontrol", "show", "job", "-o", str(job_id), timeout=15)
    if res.returncode != 0 or not res.stdout.strip():
        return {}
    first = res.stdout.strip().splitlines()[0]
    return dict(tok.split("=", 1) for tok in first.split() if "=" in tok)


def wait_for(job_ids: Iterable[str | int], states: Iterable[str] = FINISHED, timeout: float = 30,
             interval: float = 0.2) -> dict[str, str]:
    """Poll until every job's state is one of `states` (default: finished or GONE); the states then.

    Raises TimeoutError, naming the states the jobs were in, when that has not happened within `timeout` s."""
    ids, wanted = [str(j) for j in job_ids], set(states)
    deadline = time.monotonic() + timeout
    while True:
        now = job_states(ids)
        if all(s in wanted for s in now.values()):
            return now
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs not in {sorted(wanted)} after {timeout} s: {now}")
        time.sleep(interval)
