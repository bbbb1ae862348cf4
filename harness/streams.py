"""Seed streams (issue 24): a run's randomness as named streams, each with its own seed.

- `teacher`: which of the study's teachers the run distils from (its shared-stage bundle).
- `init`: the student's initial weights, and the dropout masks of a model that has dropout: both come
  from torch's global generator, seeded once before the model is built.
- `order`: the order of the batches of every epoch (the numpy Generator that shuffles the clips in use).
- `augment`: SpecAugment's masks and the custom kind's label noise (their own CPU torch.Generator).

The curriculum's ties are broken by clip index (harness.method.curriculum), never by a draw: no stream
holds them. By default every stream follows the run's seed, which is how every run was seeded before
streams existed, so such a run keeps its job id and its numbers. A study that names streams
(`[study] seeds = { init = 3, order = 3 }`) runs a design of them; harness.study.spec parses it and
harness.study.plan.study_runs expands it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Outer to inner: the order of a nested design (a teacher holds several inits, an init several orders), and
# the order of the results.csv columns seed_teacher, seed_init, seed_order, seed_augment.
STREAMS: tuple[str, ...] = ("teacher", "init", "order", "augment")
TRAINING_STREAMS: tuple[str, ...] = ("init", "order", "augment")  # the ones train_student draws from
Design = Literal["crossed", "nested"]
DESIGNS: tuple[str, ...] = ("crossed", "nested")


@dataclass(frozen=True)
class SeedStreams:
    """The seeds of the streams that training draws from (the teacher is chosen by the bundle)."""

    init: int
    order: int
    augment: int

    @classmethod
    def following(cls, seed: int) -> "SeedStreams":
        """Every stream at the run's seed: the seeding of every run before streams existed."""
        return cls(init=seed, order=seed, augment=seed)

    def differing(self, seed: int) -> dict[str, int]:
        """The streams whose seed is not `seed`, by name ({} when all follow it): what enters a job's id."""
        return {name: getattr(self, name) for name in TRAINING_STREAMS if getattr(self, name) != seed}


def column(stream: str) -> str:
    """The results.csv column of a stream's seed: "seed_init"."""
    return f"seed_{stream}"
