"""Curriculum: generations, difficulty, and the selected clips of U for each schedule."""

import numpy as np
import pytest

from harness.config import CurriculumConfig
from harness.method.curriculum import difficulty, generation_of, needs_difficulty, select_unlabeled

# Hand-made difficulties of 10 clips; clips 2 and 7 tie at 0.3.
MU = np.array([0.9, 0.1, 0.3, 0.8, 0.05, 0.6, 0.7, 0.3, 0.95, 0.2])


def test_generation_of_epochs():
    cfg = CurriculumConfig(generation_epochs=5)
    assert [generation_of(e, cfg) for e in (1, 5, 6, 10, 11, 16)] == [1, 1, 2, 2, 3, 4]
    with pytest.raises(ValueError):
        generation_of(0, cfg)


def test_difficulty_is_max_abs_difference():
    t = np.array([[0.9, 0.1], [0.5, 0.5]])
    s = np.array([[0.4, 0.3], [0.45, 0.9]])
    assert difficulty(t, s) == pytest.approx([0.5, 0.4])


def test_easier_first_selection():
    cfg = CurriculumConfig(schedule="easier", fractions=(0.2, 0.4))
    assert select_unlabeled(MU, 1, cfg).tolist() == []
    assert select_unlabeled(MU, 2, cfg).tolist() == [1, 4]  # mu 0.1, 0.05
    # 40 %: 0.05, 0.1, 0.2, then the tie at 0.3 goes to the lower index (2).
    assert select_unlabeled(MU, 3, cfg).tolist() == [1, 2, 4, 9]
    assert select_unlabeled(MU, 4, cfg).tolist() == list(range(10))
    assert select_unlabeled(None, 5, cfg, n_unlabeled=10).tolist() == list(range(10))


def test_harder_first_selection():
    cfg = CurriculumConfig(schedule="harder", fractions=(0.2, 0.4))
    assert select_unlabeled(MU, 1, cfg).tolist() == []
    assert select_unlabeled(MU, 2, cfg).tolist() == [0, 8]  # mu 0.95, 0.9
    assert select_unlabeled(MU, 3, cfg).tolist() == [0, 3, 6, 8]  # + 0.8, 0.7
    assert select_unlabeled(MU, 4, cfg).tolist() == list(range(10))


def test_harder_first_tie_goes_to_lower_index():
    cfg = CurriculumConfig(schedule="harder", fractions=(0.1,))
    mu = np.array([0.2, 0.5, 0.5, 0.1])
    assert select_unlabeled(mu, 2, cfg).tolist() == [1]  # ceil(0.4) = 1 clip; 1 and 2 tie


def test_all_schedule_selection():
    cfg = CurriculumConfig(schedule="all")
    assert select_unlabeled(None, 1, cfg, n_unlabeled=10).tolist() == []
    for generation in (2, 3, 4):
        assert select_unlabeled(None, generation, cfg, n_unlabeled=10).tolist() == list(range(10))


def test_rounding_is_ceil_without_float_noise():
    cfg = CurriculumConfig(schedule="easier", fractions=(0.7, 0.25))
    mu = np.arange(10, dtype=float)
    assert len(select_unlabeled(mu, 2, cfg)) == 7  # 0.7 * 10 = 7.000000000000001 -> 7, not 8
    assert len(select_unlabeled(mu, 3, cfg)) == 3  # ceil(2.5) = 3


def test_needs_difficulty_only_for_partial_generations():
    easier = CurriculumConfig(schedule="easier", fractions=(0.2, 0.4))
    assert [needs_difficulty(g, easier) for g in (1, 2, 3, 4)] == [False, True, True, False]
    every = CurriculumConfig(schedule="all")
    assert [needs_difficulty(g, every) for g in (1, 2, 3)] == [False, False, False]
    with pytest.raises(ValueError):
        select_unlabeled(None, 2, easier, n_unlabeled=10)
