"""Checkpoints of a student training job: written atomically (a kill -9 mid-write leaves the previous one),
damaged files ignored, and a job killed at any point resumes to the same outcome, bit for bit on CPU, as a
job never killed: the same epoch log (wall time aside), best epoch, steps, best weights, and the same last
weights, optimiser state and random states in the final checkpoint."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import random
import signal
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.bundle import Bundle
from harness.config import with_factors
from harness.method.checkpoint import (EpochPosition, TrainState, load_checkpoint, remove_partial_writes,
                                       save_checkpoint)
from harness.method.train import TrainOutcome, train_student

CPU = torch.device("cpu")
# Custom SpecAugment and the easier-first curriculum: every random stream is drawn from, and generations
# 2 and 3 (one epoch each in the tiny profile) rescore U's difficulty with the current student.
FACTORS = {"curriculum": "easier", "augmentation": "custom", "pseudolabels": "strong+weak", "masking": "event"}
STEPS = 14  # 6 epochs of 2, 2, 2, 3, 3 and (cut by the budget) 2 of 3 steps


def start_process(target, *args) -> multiprocessing.Process:
    """Start `target(*args)` in a new process, forked from a clean forkserver: a process forked from pytest
    itself can hang in its first parallel torch op when pytest's OpenMP pool was already in use."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "torch._dynamo", "harness.method.train", "harness.study.plan",
                                     "test_method_checkpoint"])
    process = context.Process(target=target, args=args)
    process.start()
    return process


class Killed(Exception):
    """Stands in for a kill in the in-process tests."""


def config_of(job, steps: int = STEPS):
    config = with_factors(job.config, FACTORS)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, steps=steps))


def run(job, bundle_root: Path, **kwargs) -> TrainOutcome:
    torch.set_num_threads(1)  # bit-identical needs the same thread count on both sides
    return train_student(config_of(job), Bundle.open(bundle_root), 0, CPU, **kwargs)


def without_seconds(outcome: TrainOutcome) -> list[dict]:
    return [{k: v for k, v in asdict(r).items() if k != "seconds"} for r in outcome.epochs]


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_same_final_state(a: TrainState, b: TrainState) -> None:
    """The last weights, optimiser state and random states: a divergence after the best epoch shows here."""
    assert_same_tensors(a.model, b.model)
    assert a.optimiser["param_groups"] == b.optimiser["param_groups"]
    for i, s in a.optimiser["state"].items():
        assert_same_tensors(s, b.optimiser["state"][i])
    assert torch.equal(a.rng_torch, b.rng_torch) and torch.equal(a.rng_augment, b.rng_augment)
    assert a.rng_numpy == b.rng_numpy
    assert (a.epoch, a.step, a.generation, a.position) == (b.epoch, b.step, b.generation, None)
    np.testing.assert_array_equal(a.selected, b.selected)


def assert_same_outcome(outcome: TrainOutcome, reference: TrainOutcome) -> None:
    assert outcome.steps == reference.steps == STEPS
    assert (outcome.best_epoch, outcome.best_val_f1) == (reference.best_epoch, reference.best_val_f1)
    assert without_seconds(outcome) == without_seconds(reference)
    assert_same_tensors(outcome.model.state_dict(), reference.model.state_dict())


@pytest.fixture(scope="module")
def reference(tiny_study_job, tiny_bundle, tmp_path_factory) -> tuple[TrainOutcome, TrainState]:
    """An uninterrupted run (checkpointing after every step) and its final checkpoint."""
    path = tmp_path_factory.mktemp("reference") / "checkpoint.pt"
    outcome = run(tiny_study_job, tiny_bundle, checkpoint_path=path, checkpoint_seconds=0.0)
    assert outcome.resumed_from is None and len(outcome.epochs) == 6
    return outcome, load_checkpoint(path)


# --------------------------------------------------------------------------- the file


def small_state(counter: int, size: int = 10) -> TrainState:
    """A hand-made state whose every field depends on `counter`."""
    rng = np.random.default_rng(counter)
    rng.permutation(5)
    gen = torch.Generator().manual_seed(counter)
    weights = {"w": torch.full((size,), float(counter)), "b": torch.arange(3)}
    return TrainState(
        fingerprint="f", epoch=counter, step=10 * counter, generation=2, selected=np.array([1, 4], np.int64),
        model=weights, optimiser={"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 0.1}]},
        rng_torch=torch.get_rng_state(), rng_cuda=[], rng_numpy=rng.bit_generator.state,
        rng_augment=gen.get_state(), epochs=({"epoch": 1, "val_f1": 12.5},), best_epoch=1, best_val_f1=12.5,
        best_model={k: v.clone() for k, v in weights.items()},
        position=EpochPosition(items=np.arange(8, dtype=np.int64).reshape(4, 2), batch=1,
                               sums=np.array([0.1, 0.2, 0.3, 0.6]), done=1, seconds=2.5))


def test_save_and_load_give_back_every_field(tmp_path):
    state = small_state(7)
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left
    loaded = load_checkpoint(tmp_path / "checkpoint.pt")
    assert_same_tensors(loaded.model, state.model)
    assert_same_tensors(loaded.best_model, state.best_model)
    assert torch.equal(loaded.rng_torch, state.rng_torch) and torch.equal(loaded.rng_augment, state.rng_augment)
    assert loaded.rng_numpy == state.rng_numpy
    assert (loaded.epoch, loaded.step, loaded.epochs, loaded.best_val_f1) == (7, 70, state.epochs, 12.5)
    np.testing.assert_array_equal(loaded.selected, [1, 4])
    np.testing.assert_array_equal(loaded.position.items, state.position.items)
    np.testing.assert_array_equal(loaded.position.sums, [0.1, 0.2, 0.3, 0.6])
    assert (loaded.position.batch, loaded.position.done, loaded.position.seconds) == (1, 1, 2.5)


def test_missing_file_is_none_and_damaged_files_are_ignored_with_a_warning(tmp_path, caplog):
    path = tmp_path / "checkpoint.pt"
    assert load_checkpoint(path) is None
    save_checkpoint(path, small_state(1))
    whole = path.read_bytes()
    for damaged in (whole[: len(whole) // 2], b"not a checkpoint", b""):
        path.write_bytes(damaged)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="harness.train"):
            assert load_checkpoint(path) is None
        assert str(path) in caplog.text and "from scratch" in caplog.text
    torch.save({"format": 999}, path)  # another format version
    assert load_checkpoint(path) is None


def _save_forever(path: Path, size: int) -> None:
    torch.set_num_threads(1)
    for counter in range(1, 10**6):
        save_checkpoint(path, small_state(counter, size))


def test_kill_during_a_write_leaves_the_previous_checkpoint(tmp_path):
    path, size = tmp_path / "checkpoint.pt", 1_000_000  # 4 MB: a write takes long enough to be caught
    for _ in range(3):
        child = start_process(_save_forever, path, size)
        tmp = path.with_name(f".{path.name}.tmp{child.pid}")
        deadline = time.monotonic() + 20
        while not (path.exists() and tmp.exists()) and time.monotonic() < deadline:
            time.sleep(0.0005)
        os.kill(child.pid, signal.SIGKILL)  # while the next checkpoint is being written
        child.join()
        assert child.exitcode == -signal.SIGKILL, f"the saving process failed (exit code {child.exitcode})"
        assert tmp.exists(), "the kill did not land inside a write"
        state = load_checkpoint(path)  # the previous checkpoint, whole
        assert state is not None
        assert remove_partial_writes(path) == [tmp] and not tmp.exists()
        assert torch.equal(state.model["w"], torch.full((size,), float(state.epoch)))


# --------------------------------------------------------------------------- resuming training


def test_checkpointing_does_not_change_the_outcome(tiny_study_job, tiny_bundle, reference):
    assert_same_outcome(run(tiny_study_job, tiny_bundle), reference[0])


@pytest.mark.parametrize("kill_after_epoch", [1, 3])
def test_resume_after_an_epoch_is_bit_identical(tiny_study_job, tiny_bundle, tmp_path, reference,
                                                kill_after_epoch, caplog):
    path = tmp_path / "checkpoint.pt"

    def on_epoch(record):
        if record.epoch == kill_after_epoch:  # its checkpoint is written before on_epoch is called
            raise Killed

    with pytest.raises(Killed):
        run(tiny_study_job, tiny_bundle, on_epoch=on_epoch, checkpoint_path=path)
    restored, seen = [], []
    with caplog.at_level(logging.INFO, logger="harness.train"):
        outcome = run(tiny_study_job, tiny_bundle, on_epoch=seen.append, on_resume=restored.extend,
                      checkpoint_path=path)
    step = reference[0].epochs[kill_after_epoch - 1].step
    assert outcome.resumed_from == (kill_after_epoch, step)
    assert f"resumed from checkpoint at epoch {kill_after_epoch}, step {step}" in caplog.text
    assert [r.epoch for r in restored] == list(range(1, kill_after_epoch + 1))  # on_resume: the restored log
    assert [r.epoch for r in seen] == list(range(kill_after_epoch + 1, 7))  # on_epoch: only the new epochs
    assert_same_outcome(outcome, reference[0])
    assert_same_final_state(load_checkpoint(path), reference[1])


def test_checkpoint_of_another_seed_is_ignored(tiny_study_job, tiny_bundle, tmp_path, reference, caplog):
    path = tmp_path / "checkpoint.pt"
    torch.set_num_threads(1)
    train_student(config_of(tiny_study_job, steps=4), Bundle.open(tiny_bundle), 1, CPU, checkpoint_path=path)
    with caplog.at_level(logging.WARNING, logger="harness.train"):
        outcome = run(tiny_study_job, tiny_bundle, checkpoint_path=path)
    assert "another config or seed" in caplog.text and outcome.resumed_from is None
    assert_same_outcome(outcome, reference[0])


def _train_in_child(job, bundle_root: Path, path: Path, out: Path) -> None:
    outcome = run(job, bundle_root, checkpoint_path=path, checkpoint_seconds=0.0)
    torch.save({"model": outcome.model.state_dict(), "epochs": [asdict(r) for r in outcome.epochs],
                "best": (outcome.best_epoch, outcome.best_val_f1, outcome.steps),
                "resumed_from": outcome.resumed_from}, out)


def test_resume_after_kill_9_at_random_points_is_bit_identical(tiny_study_job, tiny_bundle, tmp_path, reference):
    """kill -9 a training process again and again (after a given step, inside an epoch, during a checkpoint
    write) with a checkpoint after every step, restart it each time, and compare with the reference."""
    path, out = tmp_path / "checkpoint.pt", tmp_path / "outcome.pt"
    pick = random.Random(0)
    resumed, mid_epoch, during_write = [], 0, 0
    for attempt in range(12):
        child = start_process(_train_in_child, tiny_study_job, tiny_bundle, path, out)
        if attempt < 6:
            _kill_at_some_point(child, path, attempt, pick)
        child.join(timeout=120)
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
            pytest.fail("the training process hung")
        if child.exitcode == 0:
            break
        assert child.exitcode == -signal.SIGKILL, f"the training process failed (exit code {child.exitcode})"
        during_write += path.with_name(f".{path.name}.tmp{child.pid}").exists()
        state = load_checkpoint(path)
        if state is not None:
            resumed.append((state.epoch, state.step))
            mid_epoch += state.position is not None
    assert child.exitcode == 0
    result = torch.load(out, weights_only=True)
    ref_outcome, ref_state = reference
    assert result["best"] == (ref_outcome.best_epoch, ref_outcome.best_val_f1, STEPS)
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in result["epochs"]] == without_seconds(ref_outcome)
    assert_same_tensors(result["model"], ref_outcome.model.state_dict())
    assert_same_final_state(load_checkpoint(path), ref_state)
    assert len(resumed) >= 3 and tuple(result["resumed_from"]) == resumed[-1]
    assert mid_epoch >= 1, f"no kill landed inside an epoch: resumed at {resumed}"
    print(f"resumed at (epoch, step) {resumed}; {mid_epoch} inside an epoch, {during_write} kills during a write")


def _kill_at_some_point(child, path: Path, attempt: int, pick: random.Random) -> None:
    """Kill the child once it has made progress: by turns as soon as a checkpoint inside an epoch past a
    random step exists, or as soon as a checkpoint write is seen in progress (else after one more second)."""
    tmp = path.with_name(f".{path.name}.tmp{child.pid}")
    before = load_checkpoint(path)
    target = (0 if before is None else before.step) + pick.randint(1, 2)
    deadline = time.monotonic() + 60
    while child.is_alive() and time.monotonic() < deadline:
        state = load_checkpoint(path)
        if state is not None and state.step >= target and (attempt % 2 == 1 or state.position is not None):
            break
        time.sleep(0.002)
    deadline = time.monotonic() + 1.0
    while attempt % 2 == 1 and child.is_alive() and not tmp.exists() and time.monotonic() < deadline:
        time.sleep(0.0001)
    if child.is_alive():
        os.kill(child.pid, signal.SIGKILL)
