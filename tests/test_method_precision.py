"""train.precision: bfloat16 autocast of the student's LSTM in training steps (harness.method.train)."""

import dataclasses
import math

import pytest
import torch

from harness.bundle import Bundle
from harness.config import MethodConfig, TrainConfig, check_method, from_mapping
from harness.errors import ConfigError
from harness.identity import config_key, job_id, method_identity
from harness.method.train import autocast, train_student
from harness.model.student import Student

CPU = torch.device("cpu")


def with_precision(config: MethodConfig, precision: str, steps: int = 8) -> MethodConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, steps=steps, precision=precision))


def train(job, bundle_root, precision: str, seed: int = 0):
    torch.set_num_threads(1)
    return train_student(with_precision(job.config, precision), Bundle.open(bundle_root), seed, CPU)


def weights(outcome) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in outcome.model.state_dict().items()}


def test_bf16_trains_finite_deterministic_and_differs_from_fp32(tiny_study_job, tiny_bundle):
    bf16, again, fp32 = (train(tiny_study_job, tiny_bundle, p) for p in ("bf16", "bf16", "fp32"))
    assert bf16.steps == fp32.steps == 8
    losses = [v for r in bf16.epochs for v in (r.loss_weak, r.loss_strong, r.loss_unlabeled, r.loss_total)]
    assert losses and all(math.isfinite(v) for v in losses)
    assert all(math.isfinite(r.val_f1) for r in bf16.epochs)
    # Same seed twice: the same numbers, bit for bit.
    assert [r.loss_total for r in bf16.epochs] == [r.loss_total for r in again.epochs]
    a, b = weights(bf16), weights(again)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Other arithmetic: other losses and weights than fp32, but close (the first step's loss to ~1 %).
    assert [r.loss_total for r in bf16.epochs] != [r.loss_total for r in fp32.epochs]
    f = weights(fp32)
    assert any(not torch.equal(a[k], f[k]) for k in a)
    assert bf16.epochs[0].loss_total == pytest.approx(fp32.epochs[0].loss_total, rel=0.05)
    assert all(v.dtype == torch.float32 for v in a.values())  # autocast keeps float32 weights


def test_only_the_lstm_runs_in_bf16_and_fp32_is_unchanged():
    torch.manual_seed(0)
    model = Student(20)
    x = torch.randn(2, 50, 20)
    with autocast("bf16", CPU):
        hidden, _ = model.lstm(x)
        frame, clip = model(x)
    assert hidden.dtype == torch.bfloat16  # oneDNN's bf16 LSTM
    assert frame.dtype == clip.dtype == torch.float32  # heads and pooling in float32
    # fp32: the very numbers of the model without any autocast context.
    with autocast("fp32", CPU):
        frame32, clip32 = model(x)
    plain_hidden, _ = model.lstm(x)
    plain_frame = torch.sigmoid(model.frame_head(plain_hidden))
    assert torch.equal(frame32, plain_frame.transpose(1, 2))
    assert torch.equal(frame32, model(x)[0]) and torch.equal(clip32, model(x)[1])
    assert (frame - frame32).abs().max() < 0.05  # bf16's 8 significant bits, through 3 layers


def test_precision_is_checked_and_is_part_of_the_job_identity():
    with pytest.raises(ConfigError, match="choose one of 'fp32', 'bf16'"):
        from_mapping(TrainConfig, {"precision": "fp16"}, "study.toml: base.train")
    bad = dataclasses.replace(MethodConfig(), train=dataclasses.replace(TrainConfig(), precision="fp16"))
    with pytest.raises(ConfigError, match=r"train.precision = 'fp16'; choose one of 'fp32', 'bf16'"):
        check_method(bad, "x")
    base = MethodConfig()
    bf16 = with_precision(base, "bf16", steps=base.train.steps)
    check_method(bf16, "x")
    assert config_key(bf16) != config_key(base) and job_id(bf16, 0, "b") != job_id(base, 0, "b")
    assert method_identity(bf16)["train"]["precision"] == "bf16"
    # At its default the field is left out of the keys, so jobs finished before it existed keep their ids.
    assert "precision" not in method_identity(base)["train"]
