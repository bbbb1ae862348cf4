"""Size (parameters, MACs per clip) counted from the config, and energy per job with codecarbon."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest
import torch

from harness.config import FeatureConfig, StudentConfig
from harness.evaluation.energy import NOT_INSTALLED, EnergyMeter
from harness.model.size import student_size
from harness.model.student import Student
from harness.records import Result, from_data, read_record
from harness.study.table import result_row


@pytest.mark.parametrize("mels, hidden, layers", [(20, 256, 3), (20, 16, 3), (5, 7, 1), (64, 32, 2)])
def test_parameter_count_is_torchs(mels, hidden, layers):
    model = Student(mels, StudentConfig(hidden=hidden, layers=layers))
    size = student_size(StudentConfig(hidden=hidden, layers=layers), FeatureConfig(student_mels=mels))
    assert size.params == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_macs_by_hand():
    # h = 16, F = 20, 3 layers, C = 10, T = 500 frames:
    # layer 1: 4*16*(20+16) = 2304; layers 2, 3: 4*16*(16+16) = 2048 each; heads 2*16*10 = 320; pooling 10
    size = student_size(StudentConfig(hidden=16, layers=3), FeatureConfig(student_mels=20, n_frames=500))
    assert size.macs_per_frame == 2304 + 2 * 2048 + 320 + 10 == 6730
    assert size.macs_per_clip == 6730 * 500
    paper = student_size(StudentConfig(), FeatureConfig())  # h = 256: the paper's student
    assert paper.params == 1_342_484
    assert paper.macs_per_clip == (4 * 256 * (20 + 256) + 2 * 4 * 256 * 512 + 2 * 256 * 10 + 10) * 500


def test_energy_is_measured_with_codecarbon():
    pytest.importorskip("codecarbon")
    meter = EnergyMeter().start()
    x = torch.randn(400, 400)
    for _ in range(200):
        x = torch.tanh(x @ x)
    reading = meter.stop()
    assert reading.kwh is not None and reading.kwh > 0 and reading.seconds > 0
    assert "CPU" in reading.estimate and "RAM" in reading.estimate


def test_without_codecarbon_energy_is_not_measured(monkeypatch):
    monkeypatch.setitem(sys.modules, "codecarbon", None)  # import codecarbon now raises ImportError
    with EnergyMeter() as meter:
        reading = meter.stop()
    assert reading.kwh is None and reading.estimate == NOT_INSTALLED


@pytest.fixture(scope="module")
def finished_job(tiny_study_job, tiny_bundle, tmp_path_factory):
    from harness.study.job import run_job

    job_dir = tmp_path_factory.mktemp("job")
    return run_job(tiny_study_job, tiny_bundle, job_dir), job_dir


def test_a_job_records_its_size_and_energy(finished_job, tiny_study_job):
    result, job_dir = finished_job
    weights = torch.load(job_dir / "best.pt")
    assert result.params == sum(t.numel() for t in weights.values())
    assert result.macs_per_clip == student_size(tiny_study_job.config.student,
                                                tiny_study_job.config.features).macs_per_clip
    if _installed("codecarbon"):
        assert result.train_kwh > 0 and result.eval_kwh > 0 and "CPU" in result.energy_estimate
    else:
        assert result.train_kwh is None and result.energy_estimate == NOT_INSTALLED
    row = result_row(read_record(job_dir / "result.json", Result))
    assert row["params"] == result.params and row["train_kwh"] == result.train_kwh


def test_a_result_written_before_size_and_energy_still_reads(finished_job):
    _, job_dir = finished_job
    data = json.loads((job_dir / "result.json").read_text())
    for name in ("params", "macs_per_clip", "train_kwh", "eval_kwh", "energy_estimate", "bundle_root"):
        data.pop(name)
    old = from_data(Result, data, "old result.json")
    assert old.params is None and old.train_kwh is None
    assert result_row(old)["train_kwh"] is None
    assert dataclasses.replace(old, params=1).params == 1


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_the_energy_country_never_changes_a_job(tiny_study_job):
    from harness.identity import config_key, job_id

    other = dataclasses.replace(tiny_study_job.config,
                                train=dataclasses.replace(tiny_study_job.config.train, energy_country="FRA"))
    assert job_id(other, 0, "b") == job_id(tiny_study_job.config, 0, "b")
    assert config_key(other) == config_key(tiny_study_job.config)
