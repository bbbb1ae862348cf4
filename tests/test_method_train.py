"""The training loop on the tiny corpus: every factor level trains, the curriculum selects as specified,
the same seed gives the same numbers, and the shared-stage bundle is reused."""

import dataclasses
import math

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.config import with_factors
from harness.method.train import train_student
from harness.bundle import Bundle
from harness.study.stages import prepare, teacher_scores

CPU = torch.device("cpu")


def config_of(job, steps: int, **factors):
    config = with_factors(job.config, factors)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, steps=steps))


def train(job, bundle_root, steps=9, seed=0, **factors):
    torch.set_num_threads(1)
    return train_student(config_of(job, steps, **factors), Bundle.open(bundle_root), seed, CPU)


def expected_unlabeled(schedule: str, generation: int, n_u: int) -> int:
    if generation == 1:
        return 0
    if schedule == "all" or generation > 3:
        return n_u
    return math.ceil(round((0.2, 0.4)[generation - 2] * n_u, 6))


@pytest.mark.parametrize("schedule", ["easier", "harder", "all"])
def test_curriculum_sizes_per_generation(tiny_study_job, tiny_bundle, schedule):
    bundle = Bundle.open(tiny_bundle)
    n_u, n_labeled = len(bundle.clip_ids("unlabeled")), len(bundle.clip_ids("synthetic")) + len(bundle.clip_ids("weak"))
    outcome = train(tiny_study_job, tiny_bundle, steps=9, curriculum=schedule)
    assert outcome.steps == 9
    for record in outcome.epochs:  # generation_epochs = 1 in the tiny profile: generation = epoch
        assert record.generation == record.epoch
        assert record.n_unlabeled == expected_unlabeled(schedule, record.generation, n_u)
        assert record.n_train == n_labeled + record.n_unlabeled
    # steps per epoch = ceil(clips in use / 16), cut at the budget
    steps = [r.step for r in outcome.epochs]
    sizes = [math.ceil(r.n_train / 16) for r in outcome.epochs]
    assert steps == list(np.minimum(np.cumsum(sizes), 9))


@pytest.mark.parametrize(
    "factors",
    [
        {"pseudolabels": "strong+weak", "masking": "event", "augmentation": "custom"},
        {"pseudolabels": "weak", "masking": "segment", "augmentation": "standard"},
        {"pseudolabels": "none", "masking": "none", "augmentation": "none"},
    ],
)
def test_every_factor_level_trains(tiny_study_job, tiny_bundle, factors):
    outcome = train(tiny_study_job, tiny_bundle, steps=6, curriculum="all", **factors)
    assert outcome.steps == 6 and 1 <= outcome.best_epoch <= len(outcome.epochs)
    for r in outcome.epochs:
        assert all(math.isfinite(v) for v in (r.loss_weak, r.loss_strong, r.loss_unlabeled, r.val_f1))
        assert 0 <= r.val_f1 <= 100
        if factors["pseudolabels"] == "none" or r.generation == 1:
            assert r.n_unlabeled == 0 and r.loss_unlabeled == 0
        else:
            assert r.loss_unlabeled > 0


def test_same_seed_same_model_other_seed_other_model(tiny_study_job, tiny_bundle):
    a = train(tiny_study_job, tiny_bundle, steps=5, seed=3)
    b = train(tiny_study_job, tiny_bundle, steps=5, seed=3)
    c = train(tiny_study_job, tiny_bundle, steps=5, seed=4)
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    assert [r.loss_total for r in a.epochs] == [r.loss_total for r in b.epochs]
    assert any(not torch.equal(v, c.model.state_dict()[k]) for k, v in a.model.state_dict().items())


def test_bundle_is_cached_and_complete(tiny_study_job, tiny_bundle):
    bundle = Bundle.open(tiny_bundle)
    assert prepare(tiny_study_job, tiny_bundle.parents[1], jobs=1) == tiny_bundle  # a hit, not a rebuild
    n_u = len(bundle.clip_ids("unlabeled"))
    strong, weak = bundle.array("teacher_unlabeled_strong"), bundle.array("teacher_unlabeled_weak")
    assert strong.shape == (n_u, 10, 500) and weak.shape == (n_u, 10)
    assert np.all((strong >= 0) & (strong <= 1)) and np.all((weak >= 0) & (weak <= 1))
    assert isinstance(bundle.features("unlabeled"), np.memmap)  # shared by mapping, never copied per job
    labels = bundle.array("synthetic_strong")
    np.testing.assert_array_equal(bundle.array("synthetic_weak"), labels.max(axis=2))
    scores = teacher_scores(tiny_bundle, tiny_study_job.config)
    assert 0 <= scores["validation"]["event_f1"] <= 100
    assert all(not Path(e.path).is_absolute() for e in bundle.manifest.features.values())  # a cache can move
