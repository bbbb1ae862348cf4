"""The report's names of teacher rows (harness.study.runner.teacher_names): teachers of other settings are named
by the settings that differ, several seeds of one teacher by their seed, one teacher as "Teacher (ours)"."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from harness.config import MethodConfig
from harness.study.runner import teacher_names


def _job(bundle: str, seed: int = 0, **teacher) -> SimpleNamespace:
    config = MethodConfig()
    config = dataclasses.replace(config, teacher=dataclasses.replace(config.teacher, **teacher))
    return SimpleNamespace(bundle_key=bundle, teacher_seed=seed, config=config)


def test_teachers_of_other_settings_are_named_by_what_differs():
    jobs = [_job("a", channels=8, epochs=3), _job("a", channels=8, epochs=3), _job("b", channels=48, epochs=30),
            _job("c", channels=48, epochs=10)]
    assert teacher_names(jobs, 3, 1) == {"a": "Teacher (channels 8, epochs 3)", "b": "Teacher (channels 48, epochs 30)",
                                         "c": "Teacher (channels 48, epochs 10)"}


def test_seeds_of_one_teacher_and_a_single_teacher_keep_their_names():
    assert teacher_names([_job("a", 0), _job("b", 1)], 2, 2) == {"a": "Teacher (seed 0)", "b": "Teacher (seed 1)"}
    assert teacher_names([_job("a"), _job("a")], 1, 1) == {"a": "Teacher (ours)"}


def test_bundles_of_the_same_teacher_settings_are_told_apart_by_their_keys():
    # same teacher config, other features or data: the settings cannot name them
    assert teacher_names([_job("k1"), _job("k2")], 2, 1) == {"k1": "Teacher (k1)", "k2": "Teacher (k2)"}
