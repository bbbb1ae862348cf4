"""Curriculum over the pseudolabeled set U, in generations (SPEC 2, Curriculum; factor "curriculum").

Training runs in generations of cfg.generation_epochs epochs. Generation 1 uses labeled data only.
From generation 2, "all" uses all of U; "easier" uses, in generation g, the share cfg.fractions[g - 2]
of U with the lowest difficulty mu (the teacher and the student agree most), and all of U once the
fractions are exhausted; "harder" the same with the highest mu.
Difficulty mu(t, s) = max_c |t^w_c - s^w_c|, recomputed at the start of each generation that needs it.

Rounding: a share f of N clips is ceil(f * N) clips (f * N first rounded to 6 decimals so that float
noise such as 0.7 * 10 = 7.000000000000001 does not add a clip), capped at N. Ties in mu are broken by
the clip's index in U (stable sort): the lower index is taken first in both orders.
"""

from __future__ import annotations

import math

import numpy as np

from harness.config import CurriculumConfig
from harness.errors import ConfigError

SCHEDULES: tuple[str, ...] = ("easier", "harder", "all")


def generation_of(epoch: int, cfg: CurriculumConfig) -> int:
    """The 1-based generation of a 1-based epoch (epochs 1-5 -> 1, 6-10 -> 2 for 5 epochs a generation)."""
    if epoch < 1:
        raise ValueError(f"epochs are 1-based, got {epoch}")
    return (epoch - 1) // cfg.generation_epochs + 1


def difficulty(teacher_weak: np.ndarray, student_weak: np.ndarray) -> np.ndarray:
    """mu = max_c |t^w_c - s^w_c| per clip: teacher_weak, student_weak [N, C] -> [N]."""
    return np.abs(np.asarray(teacher_weak, np.float64) - np.asarray(student_weak, np.float64)).max(axis=1)


def _share(generation: int, cfg: CurriculumConfig) -> float | None:
    """The share of U a generation uses: 0 in gen 1, a fraction, or None for all of U."""
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"curriculum.schedule: unknown {cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if generation <= 1:
        return 0.0
    if cfg.schedule == "all" or generation - 2 >= len(cfg.fractions):
        return None
    return cfg.fractions[generation - 2]


def needs_difficulty(generation: int, cfg: CurriculumConfig) -> bool:
    """True when the generation uses part of U, so U must be scored with the current student first."""
    share = _share(generation, cfg)
    return share is not None and 0.0 < share < 1.0


def select_unlabeled(
    mu: np.ndarray | None, generation: int, cfg: CurriculumConfig, n_unlabeled: int | None = None
) -> np.ndarray:
    """The indices into U in use during a generation.

    Args:
        mu: [N] difficulty of every clip of U; may be None when `needs_difficulty` is False.
        generation: 1-based generation.
        cfg: schedule and fractions.
        n_unlabeled: N, needed only when mu is None.

    Returns:
        Sorted int64 indices into U (empty in generation 1).
    """
    n = len(mu) if mu is not None else n_unlabeled
    if n is None:
        raise ValueError("select_unlabeled needs mu or n_unlabeled")
    share = _share(generation, cfg)
    if share is None or share >= 1.0:
        return np.arange(n, dtype=np.int64)
    count = min(n, math.ceil(round(share * n, 6)))
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if mu is None:
        raise ValueError(f"generation {generation} of the {cfg.schedule!r} schedule needs the difficulty mu")
    mu = np.asarray(mu, dtype=np.float64)
    order = np.argsort(mu if cfg.schedule == "easier" else -mu, kind="stable")
    return np.sort(order[:count]).astype(np.int64)
