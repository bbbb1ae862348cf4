"""TensorBoard curves of a job's epochs, read back with tensorboard's EventAccumulator."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from harness.method.train import EpochRecord
from harness.study.curves import FOLDER, SCALARS, CurveWriter, run_name

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    acc = event_accumulator.EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def record(epoch: int, val_f1: float) -> EpochRecord:
    return EpochRecord(epoch=epoch, generation=1, step=10 * epoch, n_train=50, n_unlabeled=20, loss_weak=0.5,
                       loss_strong=0.25, loss_unlabeled=0.125, loss_total=0.875, val_f1=val_f1,
                       val_segment_f1=2 * val_f1, seconds=1.5)


def test_a_job_writes_its_epochs_as_it_trains(tiny_study_job, tiny_bundle, tmp_path):
    from harness.study.job import run_job

    run_job(tiny_study_job, tiny_bundle, tmp_path)
    folder = tmp_path / FOLDER / run_name(tiny_study_job.variant, tiny_study_job.seed)
    assert folder.name == f"{tiny_study_job.variant}_seed{tiny_study_job.seed}"
    got = scalars(folder)
    assert set(got) == set(SCALARS)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    for tag, column in (("val/f1", "val_f1"), ("loss/total", "loss_total"), ("train/n_train", "n_train")):
        assert [s for s, _ in got[tag]] == metrics["step"].tolist()
        assert [v for _, v in got[tag]] == pytest.approx(metrics[column].tolist(), rel=1e-5, abs=1e-5)


def test_a_restart_clears_and_a_resume_rewrites(tmp_path):
    writer = CurveWriter(tmp_path, "EF+SW+EM+CS", 3)
    writer.add(record(1, 10.0))
    writer.add(record(2, 20.0))
    writer.close()
    folder = tmp_path / FOLDER / "EF+SW+EM+CS_seed3"
    assert scalars(folder)["val/f1"] == [(10, 10.0), (20, 20.0)]
    resumed = CurveWriter(tmp_path, "EF+SW+EM+CS", 3)  # a new attempt starts clean ...
    resumed.restart([record(1, 10.0)])  # ... and a resumed one holds exactly the restored epochs
    resumed.add(record(2, 25.0))
    resumed.close()
    assert scalars(folder)["val/f1"] == [(10, 10.0), (20, 25.0)]
    assert scalars(folder)["loss/strong"] == [(10, 0.25), (20, 0.25)]


def test_without_tensorboard_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    writer = CurveWriter(tmp_path, "v", 0)
    writer.add(record(1, 1.0))
    writer.close()
    assert not writer.active and not (tmp_path / FOLDER).exists()
