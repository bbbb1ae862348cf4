"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of the tiny synthetic DESED-format corpus (seed 0), generated once per test session."""
    from harness.data.synth import generate

    root = tmp_path_factory.mktemp("tiny_corpus")
    generate(root, "tiny", seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_study_job(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    """A resolved job of the `tiny` profile on the tiny corpus (for stage and training tests)."""
    from harness.study.plan import resolve
    from harness.study.spec import parse_study

    spec = parse_study({"variant": [{"name": "base"}], "data": {"root": str(tiny_corpus)}},
                       tiny_corpus / "tiny.toml")
    from harness.study.plan import expand
    from harness.study.stages import StageKeys, read_data

    cache = tmp_path_factory.mktemp("digests")  # not inside the corpus, which other tests compare byte for byte
    study = resolve(spec, "tiny", cache)
    return expand(study, keys=StageKeys(read_data(study.data, cache, 1), 0))[0]


@pytest.fixture(scope="session")
def tiny_bundle(tiny_study_job, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared-stage bundle (features, teacher, pseudolabels) of the tiny corpus, built once."""
    from harness.study.stages import prepare

    return prepare(tiny_study_job, tmp_path_factory.mktemp("cache"), jobs=1)


@pytest.fixture(scope="session")
def tiny_stages(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache that holds the tiny corpus's shared stages (features, teacher, pseudolabels) of the `tiny`
    profile: a copy of the cache of `tiny_bundle`, whose stages `harness.study.stages.prepare` built once (the
    code that builds them for `harness run`; a run on a copy reads them as a verified cache hit). Tests about
    jobs (signals, limits, preemption) start from a copy (`warm_cache`) instead of building the stages again;
    tests about the stages start from an empty cache."""
    return Path(shutil.copytree(tiny_bundle.parents[1], tmp_path_factory.mktemp("tiny_stages") / "cache"))


def warm_cache(stages: Path, root: Path) -> Path:
    """root/cache: a copy of the `tiny_stages` cache, for one test alone."""
    return Path(shutil.copytree(stages, root / "cache"))


def alive_processes(pids: list[int], within: float) -> list[int]:
    """Those of `pids` still running (not zombies) after up to `within` seconds."""
    import psutil

    deadline = time.time() + within
    while True:
        left = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not left or time.time() > deadline:
            return left
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class DaskCluster:
    address: str
    pids: tuple[int, ...]  # the scheduler's, then the workers'


@pytest.fixture
def dask_cluster(tmp_path):
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1."""
    pytest.importorskip("distributed")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)]
    for _ in range(2):  # started beside the scheduler: a worker retries its connection until the scheduler is up
        procs.append(subprocess.Popen([str(bin_dir / "dask"), "worker", address, "--nthreads", "1",
                                       "--no-dashboard", "--host", "127.0.0.1"], cwd=tmp_path, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=120)
    yield DaskCluster(address, tuple(p.pid for p in procs))
    for p in reversed(procs):
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
