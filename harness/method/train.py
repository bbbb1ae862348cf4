"""The student's training loop (SPEC 2 "Training"): generations, batches, losses, validation, best epoch.

`train_student` takes a shared-stage bundle (features, labels, teacher pseudolabels, all memory-mapped) and a
resolved config; it returns the best epoch's model and the per-epoch log. Nothing here knows about studies,
job directories or backends: `harness.study.job` wraps it. Given a checkpoint path, a killed run resumes
where its last checkpoint left it, with the same results as a run never killed (harness.method.checkpoint).
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from harness import plugins
from harness.config import MethodConfig
from harness.errors import ConfigError, JobStopped
from harness.evaluation.scoring import Evaluation, score
from harness.method.augment import spec_augment
from harness.method.checkpoint import (EpochPosition, TrainState, fingerprint, load_checkpoint,
                                       remove_partial_writes, save_checkpoint)
from harness.method.curriculum import difficulty, generation_of, needs_difficulty, select_unlabeled
from harness.method.losses import Batch, check_finite, loss_terms
from harness.bundle import Bundle
from harness.streams import SeedStreams

log = logging.getLogger("harness.train")

# Set by a job's worker when it is asked to stop (SIGTERM, a time limit): training then writes a checkpoint
# at the next step boundary and raises JobStopped, and the next run resumes from there.
STOP = threading.Event()


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The context of a training step's forward pass: bfloat16 autocast for train.precision = "bf16", none
    (float32) for "fp32".

    Only training steps use it. Validation, the test evaluation and the curriculum's difficulty scores run in
    float32 whatever the precision (`predict`), so that the scores and the best epoch they choose measure
    the trained weights, not the precision of one more forward pass, and compare with every fp32 job's.
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _stopping(stop: threading.Event | None) -> bool:
    return STOP.is_set() or (stop is not None and stop.is_set())

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

    model: torch.nn.Module  # the student (harness.plugins.models): features -> (frame, clip)
    best_epoch: int
    best_val_f1: float
    steps: int
    epochs: list[EpochRecord] = field(default_factory=list)  # every epoch, restored ones included
    resumed_from: tuple[int, int] | None = None  # (epoch, step) of the checkpoint resumed; None: not resumed


def train_student(
    config: MethodConfig,
    bundle: Bundle,
    seed: int,
    device: torch.device,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    *,
    checkpoint_path: Path | None = None,
    checkpoint_seconds: float = 300.0,
    on_resume: Callable[[list[EpochRecord]], None] | None = None,
    stop: threading.Event | None = None,
    streams: SeedStreams | None = None,
) -> TrainOutcome:
    """Train one student for `config.train.steps` optimiser steps; keep the best validation epoch.

    Deterministic on CPU for a given seed (and thread count): every random draw comes from generators
    seeded here.

    Args:
        config, bundle, seed, device: the method, its data, the run's seed, where to train.
        streams: the seed of each random stream (harness.streams): init (the initial weights and dropout:
            torch's global generator), order (the batch order: the numpy Generator), augment (SpecAugment
            and label noise: its own generator). None: every stream follows `seed`, as before streams existed.
        on_epoch: called with each epoch's record after the epoch (and after its checkpoint).
        checkpoint_path: where to keep the resumable state; None: no checkpoints. When the file holds a
            checkpoint of the same config and seed, training continues from it (a damaged one or another
            job's is ignored with a warning) and the outcome is the one of an uninterrupted run, bit for bit
            on CPU (EpochRecord.seconds, wall time, aside). A checkpoint is written at the end of every
            epoch and, inside an epoch, after a step once `checkpoint_seconds` have passed since the last.
        checkpoint_seconds: the most wall time between two checkpoints inside a long epoch.
        stop: this job's own stop request (a time limit, the study stopping), beside the process-wide STOP:
            jobs that share a process (Dask threads) stop one by one.
        on_resume: called once, after a resume and before training continues, with the epochs restored
            from the checkpoint; `on_epoch` is not called again for those (a caller that keeps a log
            rewrites it from them, as `outcome.epochs` will start with them too).
    """
    if config.train.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f'train.precision = "bf16": {torch.cuda.get_device_name(device)} has no bfloat16 '
                          'support; use train.precision = "fp32" on this GPU')
    # All streams at `seed` draws exactly what one seed drew before streams existed: same ids, same numbers.
    streams = streams or SeedStreams.following(seed)
    torch.manual_seed(streams.init)  # before the model is built: its initial weights, then its dropout
    rng = np.random.default_rng(streams.order)
    aug_gen = torch.Generator().manual_seed(streams.augment)
    pool = Pool.from_bundle(bundle)
    spec = plugins.models.get(config.student.model, "student.model")  # the LSTM, the CRNN or a plugin's
    model = spec.build(config.student, pool.features["synthetic"].shape[2], len(bundle.classes)).to(device)
    tc = config.train
    optimiser = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=tc.betas)
    median_frames = torch.as_tensor(bundle.event_frames["median"], dtype=torch.float32)
    use_u = config.loss.pseudolabels != "none"
    outcome = TrainOutcome(model=model, best_epoch=0, best_val_f1=-1.0, steps=0)
    loop = _Loop()
    saver = None if checkpoint_path is None else _Checkpointer(
        Path(checkpoint_path), checkpoint_seconds, fingerprint(config, seed, streams.differing(seed)), device,
        model, optimiser, rng, aug_gen, outcome, loop)
    position = saver.resume() if saver is not None else None
    if outcome.resumed_from is not None and on_resume is not None:
        on_resume(list(outcome.epochs))
    while outcome.steps < tc.steps:
        if position is None:  # a new epoch; else the one a mid-epoch checkpoint was taken in
            loop.epoch += 1
            loop.epoch_started = time.perf_counter()
            if generation_of(loop.epoch, config.curriculum) != loop.generation:
                loop.generation = generation_of(loop.epoch, config.curriculum)
                loop.selected = _select(model, pool, config, loop.generation, device) if use_u else loop.selected
            position = EpochPosition(_items(pool, loop.selected, rng), 0, np.zeros(4), 0, 0.0)
        else:
            loop.epoch_started = time.perf_counter() - position.seconds
        sums = _run_epoch(model, optimiser, pool, position.items, config, median_frames, aug_gen, outcome,
                          loop.epoch, device, start=position, saver=saver, stop=stop)
        val = evaluate(model, bundle, "validation", config, device)
        record = EpochRecord(loop.epoch, loop.generation, outcome.steps, len(position.items),
                             len(loop.selected), *map(float, sums), float(100 * val.events.macro_f1),
                             float(100 * val.segments.macro_f1), time.perf_counter() - loop.epoch_started)
        position = None
        outcome.epochs.append(record)
        if record.val_f1 > outcome.best_val_f1:  # strictly better: ties keep the earlier epoch
            outcome.best_epoch, outcome.best_val_f1 = loop.epoch, record.val_f1
            loop.best_state = copy.deepcopy(model.state_dict())
        if saver is not None:
            saver.save()
        if on_epoch is not None:
            on_epoch(record)
        if _stopping(stop) and outcome.steps < tc.steps:
            raise JobStopped(f"stopped after epoch {loop.epoch}, step {outcome.steps}")
    if loop.best_state is not None:
        model.load_state_dict(loop.best_state)
    return outcome


@dataclass
class _Loop:
    """train_student's own counters, beside the model, the optimiser, the generators and the outcome."""

    epoch: int = 0  # the current (or last finished) epoch, 1-based
    generation: int = 0  # the current curriculum generation, 1-based (0 before the first epoch)
    selected: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # [K] indices of U in use
    best_state: dict[str, torch.Tensor] | None = None  # the best epoch's weights
    epoch_started: float = 0.0  # perf_counter at the start of the epoch (moved back by a resumed epoch's time)


class _Checkpointer:
    """Saves and restores the whole state of one train_student call (harness.method.checkpoint)."""

    def __init__(self, path: Path, seconds: float, fingerprint: str, device: torch.device, model: torch.nn.Module,
                 optimiser: torch.optim.Optimizer, rng: np.random.Generator, aug_gen: torch.Generator,
                 outcome: TrainOutcome, loop: _Loop) -> None:
        self.path, self.seconds, self.fingerprint, self.device = path, seconds, fingerprint, device
        self.model, self.optimiser, self.rng, self.aug_gen = model, optimiser, rng, aug_gen
        self.outcome, self.loop = outcome, loop
        self.last = time.monotonic()

    def due(self) -> bool:
        """True once `seconds` of wall time have passed since the last checkpoint (or the start)."""
        return time.monotonic() - self.last >= self.seconds

    def save(self, position: EpochPosition | None = None) -> None:
        """Write the state now; `position` for a checkpoint inside the current epoch."""
        o, loop = self.outcome, self.loop
        # Only the training device's CUDA generator: get_rng_state_all would start a context on every GPU.
        cuda = [torch.cuda.get_rng_state(self.device)] if self.device.type == "cuda" else []
        save_checkpoint(self.path, TrainState(
            fingerprint=self.fingerprint, epoch=loop.epoch, step=o.steps, generation=loop.generation,
            selected=loop.selected, model=self.model.state_dict(), optimiser=self.optimiser.state_dict(),
            rng_torch=torch.get_rng_state(), rng_cuda=cuda, rng_numpy=self.rng.bit_generator.state,
            rng_augment=self.aug_gen.get_state(), epochs=tuple(dict(vars(r)) for r in o.epochs),
            best_epoch=o.best_epoch, best_val_f1=o.best_val_f1, best_model=loop.best_state, position=position))
        self.last = time.monotonic()

    def save_mid_epoch(self, items: np.ndarray, batch: int, sums: np.ndarray, done: int, now: bool = False
                       ) -> None:
        """A checkpoint before batch `batch` of the current epoch, once one is due (or `now`: a stop)."""
        if now or self.due():
            seconds = time.perf_counter() - self.loop.epoch_started
            self.save(EpochPosition(items=items, batch=batch, sums=sums.copy(), done=done, seconds=seconds))

    def resume(self) -> EpochPosition | None:
        """Restore the checkpoint, if there is a usable one; returns its position inside an epoch, if any."""
        for stale in remove_partial_writes(self.path):
            log.info("removed %s, the temporary file of a checkpoint write that was killed", stale)
        state = load_checkpoint(self.path)
        if state is None:
            return None
        if state.fingerprint != self.fingerprint:
            log.warning("checkpoint %s was written by another config or seed; training restarts from scratch",
                        self.path)
            return None
        self.model.load_state_dict(state.model)
        self.optimiser.load_state_dict(state.optimiser)
        torch.set_rng_state(state.rng_torch)
        if self.device.type == "cuda" and state.rng_cuda:
            torch.cuda.set_rng_state(state.rng_cuda[0], self.device)
        self.rng.bit_generator.state = state.rng_numpy
        self.aug_gen.set_state(state.rng_augment)
        o, loop = self.outcome, self.loop
        loop.epoch, loop.generation, loop.selected = state.epoch, state.generation, state.selected
        loop.best_state = state.best_model
        o.steps, o.best_epoch, o.best_val_f1 = state.step, state.best_epoch, state.best_val_f1
        o.epochs[:] = [EpochRecord(**r) for r in state.epochs]
        o.resumed_from = (state.epoch, state.step)
        where = "" if state.position is None else f" (inside it, after its batch {state.position.batch})"
        log.info("resumed from checkpoint at epoch %d, step %d%s: %s", state.epoch, state.step, where, self.path)
        self.last = time.monotonic()
        return state.position


def _select(model: torch.nn.Module, pool: Pool, config: MethodConfig, generation: int, device: torch.device
            ) -> np.ndarray:
    """Indices of U in use this generation; scores difficulty with the current student only when needed."""
    if pool.size("unlabeled") == 0:  # a dataset without unlabeled clips: nothing to select or score
        return np.empty(0, np.int64)
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


def _run_epoch(model, optimiser, pool, items, config, median_frames, aug_gen, outcome, epoch, device, *,
               start: EpochPosition | None = None, saver: _Checkpointer | None = None,
               stop: threading.Event | None = None):
    """One epoch of optimiser steps; returns the mean of each loss term and of the total.

    `start` continues an epoch from a mid-epoch checkpoint (its batch index and loss sums); `saver` writes
    mid-epoch checkpoints when they are due.
    """
    tc = config.train
    n_batches = math.ceil(len(items) / tc.batch_size) if tc.epoch_steps is None else tc.epoch_steps
    model.train()
    sums = np.zeros(4) if start is None else start.sums.copy()
    done = 0 if start is None else start.done
    for b in range(0 if start is None else start.batch, n_batches):
        if outcome.steps >= tc.steps:
            break
        # Wrap around the shuffled items so that a fixed `epoch_steps` still gives whole batches.
        rows = (b * tc.batch_size + np.arange(tc.batch_size)) % len(items)
        if tc.epoch_steps is None:
            rows = rows[: max(0, min(tc.batch_size, len(items) - b * tc.batch_size))]
        x, batch = pool.batch(items[rows], device)
        if config.augment.kind != "none":
            # The masks are drawn on the CPU (its generator); only they, not the batch, cross to the device.
            x = spec_augment(x, batch.weak.cpu(), config.augment, median_frames, aug_gen)
        with autocast(tc.precision, device):
            frame, clip = model(x)  # float32 outputs in either precision (harness.plugins.ModelSpec)
        terms = loss_terms(frame, clip, batch, config.loss)
        check_finite(terms, epoch, outcome.steps + 1)
        total = terms.weak + terms.strong + terms.unlabeled
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        optimiser.step()
        outcome.steps += 1
        done += 1
        sums += [terms.weak.item(), terms.strong.item(), terms.unlabeled.item(), total.item()]
        if saver is not None and b + 1 < n_batches and outcome.steps < tc.steps:  # else the epoch's own
            saver.save_mid_epoch(items, b + 1, sums, done, now=_stopping(stop))
        if _stopping(stop) and b + 1 < n_batches and outcome.steps < tc.steps:
            raise JobStopped(f"stopped at epoch {epoch}, step {outcome.steps}"
                             + (" (checkpoint written)" if saver is not None else ""))
    return tuple(sums / max(done, 1))


@torch.no_grad()
def predict(model: torch.nn.Module, features: np.ndarray, mean: np.ndarray, std: np.ndarray, device: torch.device,
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


def evaluate(model: torch.nn.Module, bundle: Bundle, subset: str, config: MethodConfig, device: torch.device
             ) -> Evaluation:
    """Post-processed events and event/segment F1 of `model` on validation or test."""
    return score(*predict_subset(model, bundle, subset, device), bundle, subset, config)


def predict_subset(model: torch.nn.Module, bundle: Bundle, subset: str, device: torch.device
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The model's frame [N, C, T] and clip [N, C] probabilities on a subset (the only part of an evaluation
    that needs the model's device; the scoring is CPU work)."""
    mean, std = bundle.norm
    return predict(model, bundle.features(subset), mean, std, device)


