"""The study's environment, recorded once per run: versions, devices, git commit and dirtiness."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path


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
    import torch  # here: the driver imports this module for git_commit; a worker describes the devices

    cuda = torch.cuda.is_available()
    return {
        "harness_version": __version__,
        "git_commit": git_commit(),
        "git_dirty": git_commit().endswith("+dirty"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": cpu_model(),
        "cpu": cpu_description(),
        "cpu_count": __import__("os").cpu_count(),
        "packages": versions,
        "torch_cuda": torch.version.cuda,
        "cuda_available": cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else ["cpu"],
    }


# Instruction-set extensions that decide which kernels oneDNN and ATen pick on a CPU. Machines sold as one
# kind differ in them (one had avx512_bf16 and amx, the next only avx512f): there bf16 autocast was 1.4x
# faster than fp32, here 1.7x slower (benchmarks/RESULTS-step.md), and other kernels round differently.
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpu_features() -> tuple[str, ...]:
    """Those of CPU_FEATURES that /proc/cpuinfo lists (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return tuple(f for f in CPU_FEATURES if f in flags)


def cpu_description() -> str:
    """The CPU as a result records it, e.g. 'Intel(R) Xeon(R) Processor; torch AVX512; avx2 avx512f'."""
    import torch

    features = " ".join(cpu_features()) or "features unknown"
    return f"{cpu_model()}; torch {torch.backends.cpu.get_cpu_capability()}; {features}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
