"""A student training job's whole state on disk, so that a killed job resumes with bit-identical results.

`TrainState` holds everything the next optimiser step depends on: the model and optimiser state, every
random stream (torch's global CPU generator, the CUDA generators, the numpy Generator that shuffles each
epoch, the torch.Generator of SpecAugment), the curriculum (generation, selected clips of U), the epoch and
step counters, the per-epoch log, the best epoch so far and its weights, and, for a checkpoint taken in
the middle of an epoch, the position inside it (`EpochPosition`: the epoch's shuffled items, the next batch
index and the running loss sums).

`save_checkpoint` writes a temporary file in the same directory, flushes and fsyncs it, then renames it over
the checkpoint (`os.replace`, atomic on POSIX): a kill at any moment leaves either the previous checkpoint
or the new one, never half a file (only its temporary file, which `remove_partial_writes` deletes).
`load_checkpoint` returns None for a missing file, and also for a
damaged one (truncated, not a checkpoint, an unknown format version): it logs a warning naming the file
and training restarts from scratch, which gives the same results as a resume, only later.

The file is a `torch.save` archive of plain types only (tensors, numbers, strings, lists, dicts), read back
with `torch.load(weights_only=True)`: loading a checkpoint never runs pickled code.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.config import MethodConfig, config_hash
from harness.records import atomic_file

log = logging.getLogger("harness.train")

FORMAT = 1  # bumped when the layout of the file changes; other versions are read as damaged


@dataclass(frozen=True)
class EpochPosition:
    """Where a mid-epoch checkpoint stands inside its epoch."""

    items: np.ndarray  # [N, 2] int64 (source code, index): the epoch's shuffled items
    batch: int  # index of the next batch to run (0-based)
    sums: np.ndarray  # [4] float64 running sums of J_w, J_s, J_u and J over the batches done
    done: int  # batches done this epoch
    seconds: float  # wall time spent in the epoch so far (only for EpochRecord.seconds)


@dataclass(frozen=True)
class TrainState:
    """A training job's whole state at a step boundary (see the module docstring)."""

    fingerprint: str  # `fingerprint(config, seed)` of the job that wrote it
    epoch: int  # the last finished epoch, or the epoch in progress when `position` is set (1-based)
    step: int  # optimiser steps done
    generation: int  # current curriculum generation (0 before the first epoch)
    selected: np.ndarray  # [K] int64 indices of U in use this generation
    model: dict[str, torch.Tensor]  # the student model's state_dict()
    optimiser: dict[str, Any]  # Adam.state_dict()
    rng_torch: torch.Tensor  # torch.get_rng_state()
    rng_cuda: list[torch.Tensor]  # [torch.cuda.get_rng_state(device)] of the training GPU; [] on CPU
    rng_numpy: dict[str, Any]  # the shuffling Generator's bit_generator.state
    rng_augment: torch.Tensor  # the SpecAugment torch.Generator's get_state()
    epochs: tuple[dict[str, Any], ...]  # the per-epoch log so far, EpochRecord fields as dicts
    best_epoch: int  # 0 before the first epoch
    best_val_f1: float  # -1 before the first epoch
    best_model: dict[str, torch.Tensor] | None  # the best epoch's student state_dict()
    position: EpochPosition | None = None  # None: taken at the end of epoch `epoch`


def fingerprint(config: MethodConfig, seed: int, streams: dict[str, int] | None = None) -> str:
    """What a checkpoint must match to be resumed: the method config, the seed and the seeds of the streams
    that do not follow it (harness.streams.SeedStreams.differing; none: the fingerprint as before streams).

    The device and whether best.pt is kept cannot change the numbers, so they are left out.
    """
    train = dataclasses.replace(config.train, device="auto", checkpoint=True)
    if streams:
        return config_hash(dataclasses.replace(config, train=train), seed, dict(streams), length=16)
    return config_hash(dataclasses.replace(config, train=train), seed, length=16)


def save_checkpoint(path: Path, state: TrainState) -> None:
    """Write `state` to `path` atomically (records.atomic_file: temporary file, fsync, rename); the directory
    must exist.

    Raises:
        DiskFull, RecordError: the file cannot be written (the previous checkpoint is left as it was).
    """
    path = Path(path)
    # A name of this process's: `remove_partial_writes` finds what a kill mid-write left behind.
    with atomic_file(path, f".{path.name}.tmp{os.getpid()}") as tmp, open(tmp, "wb") as f:
        torch.save(_payload(state), f)
    _fsync_dir(path.parent)  # make the rename itself durable


def load_checkpoint(path: Path) -> TrainState | None:
    """The state saved at `path`; None when there is none or it cannot be read.

    A damaged file (truncated, not a checkpoint, another format version) is not an error: a warning names
    it and None is returned, so training restarts from scratch and overwrites it at its first checkpoint.
    Errors reading the file itself (e.g. permissions) are raised. Safe while another process saves to
    `path`: it reads the old file or the new one.
    """
    try:
        data = Path(path).read_bytes()  # errors reading the file are raised; errors parsing it mean damage
    except FileNotFoundError:
        return None
    try:
        return _state(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001 - torch raises OSError, RuntimeError, EOFError, UnpicklingError...
        log.warning("checkpoint %s is damaged (%s: %s); training restarts from scratch",
                    path, type(e).__name__, e)
        return None


def remove_partial_writes(path: Path) -> list[Path]:
    """Delete the temporary files that saves to `path` killed mid-write left behind; returns them.

    Only for the one process that owns `path` (a training job, at its start): it would also delete the
    temporary file of a save in progress in another process.
    """
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.tmp*"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _payload(state: TrainState) -> dict[str, Any]:
    """`state` as plain types that torch.load(weights_only=True) reads back."""
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    fields["selected"] = torch.from_numpy(np.ascontiguousarray(state.selected, np.int64))
    fields["epochs"] = _log_payload(state.epochs)
    pos = state.position
    fields["position"] = None if pos is None else {
        "items": torch.from_numpy(np.ascontiguousarray(pos.items, np.int64)), "batch": pos.batch,
        "sums": torch.from_numpy(np.asarray(pos.sums, np.float64).copy()), "done": pos.done,
        "seconds": pos.seconds}
    return {"format": FORMAT, **fields}


def _state(payload: dict[str, Any]) -> TrainState:
    """The inverse of `_payload`; raises ValueError or KeyError on anything else."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"not a format-{FORMAT} training checkpoint")
    pos = payload["position"]
    position = None if pos is None else EpochPosition(
        items=pos["items"].numpy(), batch=int(pos["batch"]), sums=pos["sums"].numpy(), done=int(pos["done"]),
        seconds=float(pos["seconds"]))
    names = [f.name for f in dataclasses.fields(TrainState)]
    values = {name: payload[name] for name in names}
    values.update(selected=payload["selected"].numpy(), epochs=_log_state(payload["epochs"]), position=position)
    return TrainState(**values)


def _log_payload(epochs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """The epoch log as one int64 and one float64 table (a few objects to pickle, not one per value)."""
    names = list(epochs[0]) if epochs else []
    ints = [n for n in names if isinstance(epochs[0][n], (int, np.integer))]
    floats = [n for n in names if n not in ints]
    return {"names": names, "int_names": ints, "float_names": floats,
            "ints": torch.tensor([[int(r[n]) for n in ints] for r in epochs], dtype=torch.int64),
            "floats": torch.tensor([[float(r[n]) for n in floats] for r in epochs], dtype=torch.float64)}


def _log_state(log: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """The inverse of `_log_payload`: one dict per epoch, keys in their original order."""
    ints, floats = log["ints"].tolist(), log["floats"].tolist()
    rows = []
    for i in range(len(ints)):
        values = {**dict(zip(log["int_names"], ints[i])), **dict(zip(log["float_names"], floats[i]))}
        rows.append({n: values[n] for n in log["names"]})
    return tuple(rows)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not every platform can open a directory
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
