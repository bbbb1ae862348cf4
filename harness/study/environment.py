"""The study's environment, recorded once per run: versions, devices, git commit and dirtiness."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

from harness import __version__

PACKAGES = ("torch", "numpy", "scipy", "pandas", "statsmodels", "joblib", "matplotlib", "sed_eval",
            "soundfile", "dask", "distributed")
_SOURCE = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(_SOURCE), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the harness source tree ('+dirty' if it has changes), or 'unknown' outside git."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return "unknown"
    return commit[:12] + ("+dirty" if _git("status", "--porcelain", "--untracked-files=no") else "")


def environment() -> dict:
    """Everything needed to say on what a study ran."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cuda = torch.cuda.is_available()
    return {
        "harness_version": __version__,
        "git_commit": git_commit(),
        "git_dirty": git_commit().endswith("+dirty"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": __import__("os").cpu_count(),
        "packages": versions,
        "torch_cuda": torch.version.cuda,
        "cuda_available": cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else ["cpu"],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
