"""The student's training loop (SPEC 2 "Training"): generations, batches, losses, validation, best epoch.

`train_student` takes a shared-stage bundle (features, labels, teacher pseudolabels, all memory-mapped) and a
resolved config; it returns the best epoch's model and the per-epoch log. Nothing here knows about studies,
job directories or backends: `harness.study.job` wraps it.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch

from harness.config import MethodConfig
from harness.evaluation.metrics import EventScores, SegmentScores, event_based, segment_based
from harness.evaluation.postprocess import median_windows, postprocess
from harness.method.augment import spec_augment
from harness.method.curriculum import difficulty, generation_of, needs_difficulty, select_unlabeled
from harness.method.losses import Batch, check_finite, loss_terms
from harness.model.student import Student
from harness.bundle import Bundle

log = logging.getLogger("harness.train")

SOURCES = ("synthetic", "weak", "unlabeled")  # Batch.source codes 0, 1, 2


@dataclass
class Pool:
    """The training data of a job, memory-mapped: features and targets of L_S, L_W and U.

    Arrays: features[s] [N_s, T, F]; weak[s] [N_s, C]; strong[s] [N_s, C, T] (None for L_W: no strong labels).
    """

    features: dict[str, np.ndarray]
    weak: dict[str, np.ndarray]
    strong: dict[str, np.ndarray | None]
    mean: np.ndarray  # [F] per-bin normalisation
    std: np.ndarray  # [F]

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> "Pool":
        mean, std = bundle.norm
        return cls(
            features={s: bundle.features(s) for s in SOURCES},
            weak={"synthetic": bundle.array("synthetic_weak"), "weak": bundle.array("weak_weak"),
                  "unlabeled": bundle.array("teacher_unlabeled_weak")},
            strong={"synthetic": bundle.array("synthetic_strong"), "weak": None,
                    "unlabeled": bundle.array("teacher_unlabeled_strong")},
            mean=mean, std=std,
        )

    def size(self, source: str) -> int:
        return len(self.features[source])

    def batch(self, items: np.ndarray, device: torch.device) -> tuple[torch.Tensor, Batch]:
        """Gather a batch. items: [B, 2] rows of (source code, index). Returns x [B, T, F] and targets."""
        x = np.empty((len(items), *self.features["synthetic"].shape[1:]), np.float32)
        C, T = self.weak["synthetic"].shape[1], self.strong["synthetic"].shape[2]
        weak = np.zeros((len(items), C), np.float32)
        strong = np.zeros((len(items), C, T), np.float32)
        for code, source in enumerate(SOURCES):
            rows = np.flatnonzero(items[:, 0] == code)
            if rows.size == 0:
                continue
            idx = items[rows, 1]
            order = np.argsort(idx)  # memmaps read fastest in ascending order
            x[rows[order]] = self.features[source][idx[order]]
            weak[rows[order]] = self.weak[source][idx[order]]
            if self.strong[source] is not None:
                strong[rows[order]] = self.strong[source][idx[order]]
        x = (x - self.mean) / self.std
        batch = Batch(source=torch.from_numpy(items[:, 0].copy()).to(device),
                      weak=torch.from_numpy(weak).to(device), strong=torch.from_numpy(strong).to(device))
        return torch.from_numpy(x).to(device), batch


@dataclass
class EpochRecord:
    """One row of metrics.csv (see harness.schema.EPOCH_COLUMNS)."""

    epoch: int
    generation: int
    step: int
    n_train: int
    n_unlabeled: int
    loss_weak: float
    loss_strong: float
    loss_unlabeled: float
    loss_total: float
    val_f1: float
    val_segment_f1: float
    seconds: float


@dataclass
class TrainOutcome:
    """What training leaves: the best epoch's weights and the log of every epoch."""

    model: Student
    best_epoch: int
    best_val_f1: float
    steps: int
    epochs: list[EpochRecord] = field(default_factory=list)


@dataclass
class Evaluation:
    """Scores and outputs of a model on one evaluation subset."""

    events: EventScores
    segments: SegmentScores
    predictions: pd.DataFrame  # post-processed events (filename, onset, offset, event_label)
    frame: np.ndarray  # [N, C, T] raw frame probabilities (before gating)
    clip: np.ndarray  # [N, C] clip probabilities


def train_student(
    config: MethodConfig,
    bundle: Bundle,
    seed: int,
    device: torch.device,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainOutcome:
    """Train one student for `config.train.steps` optimiser steps; keep the best validation epoch.

    Deterministic on CPU for a given seed (and thread count): every random draw comes from generators
    seeded here.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    aug_gen = torch.Generator().manual_seed(seed)
    pool = Pool.from_bundle(bundle)
    model = Student(pool.features["synthetic"].shape[2], config.student).to(device)
    tc = config.train
    optimiser = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=tc.betas)
    median_frames = torch.as_tensor(bundle.event_frames["median"], dtype=torch.float32)
    use_u = config.loss.pseudolabels != "none"
    outcome = TrainOutcome(model=model, best_epoch=0, best_val_f1=-1.0, steps=0)
    best_state, selected, generation, epoch = None, np.empty(0, np.int64), 0, 0
    while outcome.steps < tc.steps:
        epoch += 1
        started = time.perf_counter()
        if generation_of(epoch, config.curriculum) != generation:
            generation = generation_of(epoch, config.curriculum)
            selected = _select(model, pool, config, generation, device) if use_u else selected
        items = _items(pool, selected, rng)
        sums = _run_epoch(model, optimiser, pool, items, config, median_frames, aug_gen, outcome, epoch, device)
        val = evaluate(model, bundle, "validation", config, device)
        record = EpochRecord(epoch, generation, outcome.steps, len(items), len(selected), *sums,
                             100 * val.events.macro_f1, 100 * val.segments.macro_f1,
                             time.perf_counter() - started)
        outcome.epochs.append(record)
        if record.val_f1 > outcome.best_val_f1:  # strictly better: ties keep the earlier epoch
            outcome.best_epoch, outcome.best_val_f1 = epoch, record.val_f1
            best_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(record)
    if best_state is not None:
        model.load_state_dict(best_state)
    return outcome


def _select(model: Student, pool: Pool, config: MethodConfig, generation: int, device: torch.device
            ) -> np.ndarray:
    """Indices of U in use this generation; scores difficulty with the current student only when needed."""
    mu = None
    if needs_difficulty(generation, config.curriculum):
        _, student_weak = predict(model, pool.features["unlabeled"], pool.mean, pool.std, device)
        mu = difficulty(np.asarray(pool.weak["unlabeled"]), student_weak)
    return np.asarray(select_unlabeled(mu, generation, config.curriculum, pool.size("unlabeled")), np.int64)


def _items(pool: Pool, selected_u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """All (source, index) pairs in use this epoch, shuffled. [N, 2] int64."""
    parts = [np.stack([np.zeros(pool.size("synthetic"), np.int64), np.arange(pool.size("synthetic"))], 1),
             np.stack([np.ones(pool.size("weak"), np.int64), np.arange(pool.size("weak"))], 1),
             np.stack([np.full(len(selected_u), 2, np.int64), selected_u], 1)]
    items = np.concatenate(parts)
    return items[rng.permutation(len(items))]


def _run_epoch(model, optimiser, pool, items, config, median_frames, aug_gen, outcome, epoch, device):
    """One epoch of optimiser steps; returns the mean of each loss term and of the total."""
    tc = config.train
    n_batches = math.ceil(len(items) / tc.batch_size) if tc.epoch_steps is None else tc.epoch_steps
    model.train()
    sums = np.zeros(4)
    done = 0
    for b in range(n_batches):
        if outcome.steps >= tc.steps:
            break
        # Wrap around the shuffled items so that a fixed `epoch_steps` still gives whole batches.
        rows = (b * tc.batch_size + np.arange(tc.batch_size)) % len(items)
        if tc.epoch_steps is None:
            rows = rows[: max(0, min(tc.batch_size, len(items) - b * tc.batch_size))]
        x, batch = pool.batch(items[rows], device)
        if config.augment.kind != "none":
            x = spec_augment(x.cpu(), batch.weak.cpu(), config.augment, median_frames, aug_gen).to(device)
        frame, clip = model(x)
        terms = loss_terms(frame, clip, batch, config.loss)
        check_finite(terms, epoch, outcome.steps + 1)
        total = terms.weak + terms.strong + terms.unlabeled
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        optimiser.step()
        outcome.steps += 1
        done += 1
        sums += [terms.weak.item(), terms.strong.item(), terms.unlabeled.item(), total.item()]
    return tuple(sums / max(done, 1))


@torch.no_grad()
def predict(model: Student, features: np.ndarray, mean: np.ndarray, std: np.ndarray, device: torch.device,
            batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Frame [N, C, T] and clip [N, C] probabilities of `model` on un-normalised features [N, T, F]."""
    was_training = model.training
    model.eval()
    frames, clips = [], []
    for start in range(0, len(features), batch_size):
        x = (np.asarray(features[start:start + batch_size], np.float32) - mean) / std
        frame, clip = model(torch.from_numpy(x).to(device))
        frames.append(frame.float().cpu().numpy())
        clips.append(clip.float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(frames), np.concatenate(clips)


def evaluate(model: Student, bundle: Bundle, subset: str, config: MethodConfig, device: torch.device
             ) -> Evaluation:
    """Post-processed events and event/segment F1 of `model` on validation or test."""
    mean, std = bundle.norm
    frame, clip = predict(model, bundle.features(subset), mean, std, device)
    return score(frame, clip, bundle, subset, config)


def score(frame: np.ndarray, clip: np.ndarray, bundle: Bundle, subset: str, config: MethodConfig) -> Evaluation:
    """Post-process probabilities and score them against the subset's reference (SPEC 2 Metric)."""
    ids = bundle.clip_ids(subset)
    windows = median_windows(bundle.event_frames[config.postprocess.window_statistic],
                             config.postprocess.window_fraction)
    # The bundle's frame hop, from the config it was built with: events at the right seconds at any hop.
    events = postprocess(frame, clip, ids, windows, config.postprocess, config.student.gate_threshold,
                         hop_seconds=bundle.hop_seconds)
    reference = bundle.reference(subset)
    ev = event_based(reference, events, ids, config.eval.t_collar, config.eval.percentage_of_length,
                     config.eval.evaluator)
    seg = segment_based(reference, events, ids, config.eval.segment_seconds, config.eval.evaluator)
    return Evaluation(events=ev, segments=seg, predictions=events, frame=frame, clip=clip)
