"""Live training curves: a job's per-epoch log as TensorBoard event files, written as training goes.

Optional (`pip install 'harness[curves]'`): without tensorboard, `CurveWriter` writes nothing and says
nothing. Files go to `jobs/<id>/tensorboard/<variant>_seed<seed>/`, so

    tensorboard --logdir runs/<run>/jobs

lists one run per job, named by its id, variant and seed. Scalars, at the optimiser step that ends
each epoch (harness.method.train.EpochRecord): loss/weak, loss/strong, loss/unlabeled, loss/total,
val/f1, val/segment_f1, train/n_train, train/n_unlabeled, train/generation, train/epoch,
time/epoch_seconds.

A job that starts (or restarts from scratch) clears its folder; a job resumed from a checkpoint
rewrites the restored epochs first, so the folder always holds exactly the epochs of metrics.csv.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Iterable

from harness.method.train import EpochRecord

FOLDER = "tensorboard"

# tag -> EpochRecord field
SCALARS: dict[str, str] = {
    "loss/weak": "loss_weak",
    "loss/strong": "loss_strong",
    "loss/unlabeled": "loss_unlabeled",
    "loss/total": "loss_total",
    "val/f1": "val_f1",
    "val/segment_f1": "val_segment_f1",
    "train/n_train": "n_train",
    "train/n_unlabeled": "n_unlabeled",
    "train/generation": "generation",
    "train/epoch": "epoch",
    "time/epoch_seconds": "seconds",
}


def run_name(variant: str, seed: int) -> str:
    """The TensorBoard run folder of a job: its variant and seed ("EF+SW+EM+CS_seed3")."""
    return f"{variant.replace('/', '_')}_seed{seed}"


class CurveWriter:
    """TensorBoard scalars of one job's epochs; a no-op when tensorboard is not installed.

    Args:
        job_dir: the job's directory.
        variant, seed: name the run.
    """

    def __init__(self, job_dir: Path, variant: str, seed: int) -> None:
        self.path = Path(job_dir) / FOLDER / run_name(variant, seed)
        self._writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # the optional extra is not installed: no curves, silently
            return
        _remove(Path(job_dir) / FOLDER)  # a fresh start: no epochs of an older run
        try:
            self._writer = SummaryWriter(log_dir=str(self.path), flush_secs=3600)
        except OSError as e:  # curves are a by-product: a folder that cannot be written must not fail the job
            logging.getLogger("harness.curves").warning("no TensorBoard curves: %s", e)

    @property
    def active(self) -> bool:
        return self._writer is not None

    def add(self, record: EpochRecord) -> None:
        """Write one epoch's scalars and flush them, so a running TensorBoard shows the epoch at once."""
        if self._writer is None:
            return
        for tag, name in SCALARS.items():
            self._writer.add_scalar(tag, float(getattr(record, name)), global_step=record.step)
        self._writer.flush()

    def restart(self, records: Iterable[EpochRecord]) -> None:
        """After a resume: the folder holds exactly the restored epochs, then training goes on."""
        if self._writer is None:
            return
        log_dir = self._writer.log_dir
        self._writer.close()
        _remove(Path(log_dir))
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=log_dir, flush_secs=3600)
        for record in records:
            self.add(record)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _remove(folder: Path) -> None:
    """Delete a curves folder; a symbolic link in its place is removed itself, so that the event files are
    never written through it into a folder outside the job's (rmtree refuses links and would leave it)."""
    if folder.is_symlink():
        folder.unlink()
    else:
        shutil.rmtree(folder, ignore_errors=True)
