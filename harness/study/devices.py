"""GPU leases: with `device = "auto"` and CUDA present, each running job holds one slot of one GPU.

A slot is an exclusive `flock` on a host-local file, so two jobs never share a GPU by accident, whatever
process, backend or study started them; a killed job's lock goes with its process.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_DIR = Path(tempfile.gettempdir()) / f"harness-gpu-{os.getuid()}"


@contextmanager
def device_lease(requested: str, jobs_per_gpu: int = 1, poll_seconds: float = 1.0,
                 gpus: int | None = None) -> Iterator[str]:
    """Yield the device a job runs on: `requested` as is, or for "auto" with CUDA a free GPU slot.

    `gpus`: the GPUs to lease slots of (default: torch's CUDA device count, none without CUDA); the slots are
    host-wide locks whatever the count says, which lets a machine without a GPU test the leases.
    """
    if gpus is None:
        import torch  # here, not at the top: the driver and `status` import this module without needing torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested != "auto" or gpus == 0:
        yield "cpu" if requested == "auto" else requested
        return
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    while True:
        # Slot-major: with two GPUs, the first two jobs go to different GPUs rather than filling GPU 0 first.
        for slot in range(max(1, jobs_per_gpu)):
            for gpu in range(gpus):
                handle = open(LOCK_DIR / f"gpu{gpu}-slot{slot}.lock", "w")
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    continue
                try:
                    yield f"cuda:{gpu}"
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
                    handle.close()
                return
        time.sleep(poll_seconds)  # every slot busy: more workers than GPU slots; wait for one
