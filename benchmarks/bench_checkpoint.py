"""Benchmark 7: the cost of resumable training checkpoints, as a share of a job's time.

Run from the repository root: /work/venv/bin/python -m benchmarks.bench_checkpoint [--quick]
(prints the table and writes it to benchmarks/RESULTS-checkpoint.md).

Two shapes of the student: the quick profile's (h = 32, 3 layers, 20 mel bins, batch 16) and the paper's
(h = 256). For each:

Measured.
- The write of one checkpoint through the training loop's own code path (`train._Checkpointer.save`, i.e.
  `harness.method.checkpoint.save_checkpoint`: torch.save to a temporary file, flush, fsync, rename, fsync of
  the directory), best of several writes, into a directory under the benchmark cache (the file system of
  $TMPDIR). The state is the largest a job of the profile holds: a real Student and its Adam state after two
  steps, the best epoch's weights, every random state, all of U selected, a mid-epoch position holding the
  largest epoch's shuffled items, and the epoch log of the job's last epoch.
- The restore of that checkpoint (`_Checkpointer.resume`: read, parse, load into the model and optimiser).
- The time of one training step (`train._run_epoch`, see benchmarks/bench_training.py) on the tiny bundle,
  at 1 thread (THREADS: a job's threads under the default `--jobs 2` on 2 cores), best round.

Computed (not measured). The smallest epoch of the profile (generation 1: the labeled clips only, 700 in the
quick corpus, 3,623 in DESED) in steps of 16, times the measured step time, is the epoch's time; its
validation is left out, so the epoch is shorter and the share larger than in a real job. A job writes one
checkpoint per epoch and at most one more every `checkpoint_seconds` (300 s) inside long epochs, so
    share <= write / epoch + write / 300 s.
Target: under 2 % of job time.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from benchmarks.bench_training import BATCH, DEFAULT_CACHE, JobLoop, build_bundle
from harness.bundle import Bundle
from harness.method import train as train_mod
from harness.method.checkpoint import EpochPosition
from harness.study.plan import QUICK_STEPS

RESULTS = Path(__file__).resolve().parent / "RESULTS-checkpoint.md"
CHECKPOINT_SECONDS = 300.0  # train_student's default
# The threads of a job's training: `harness run` on 2 cores runs 2 jobs of 1 thread each (--jobs 2, the
# default). Earlier versions timed the step at 2 threads, which collapses on a loaded machine (902 ms a step
# of h = 32 instead of about 36 ms): that made the epoch 25x longer and the checkpoint's share 25x smaller.
THREADS = 1
# Per shape: student width, clips of L_S + L_W (the smallest epoch), clips of U, the step budget.
SHAPES = {"quick": {"hidden": 32, "labeled": 400 + 300, "unlabeled": 1200, "steps": QUICK_STEPS},
          "paper": {"hidden": 256, "labeled": 2045 + 1578, "unlabeled": 14412, "steps": 48790}}


def _record(epoch: int) -> train_mod.EpochRecord:
    return train_mod.EpochRecord(epoch, 4, 100 * epoch, 1900, 1200, 0.1, 0.2, 0.3, 0.6, 30.0, 40.0, 12.0)


def checkpoint_cost(bundle: Bundle, shape: dict, directory: Path, repeats: int) -> dict:
    """Seconds to write and to restore the largest checkpoint of a job of `shape`; its size in bytes."""
    job = JobLoop(bundle, shape["hidden"])
    job.run(2)  # the Adam state exists from the first step on
    smallest_epoch = math.ceil(shape["labeled"] / BATCH)
    n_epochs = math.ceil(shape["steps"] / smallest_epoch)  # the most epochs a job can log
    job.outcome.epochs = [_record(e) for e in range(1, n_epochs + 1)]
    loop = train_mod._Loop(epoch=n_epochs, generation=4, selected=np.arange(shape["unlabeled"], dtype=np.int64),
                           best_state=copy.deepcopy(job.model.state_dict()))
    path = directory / f"checkpoint-h{shape['hidden']}.pt"
    path.unlink(missing_ok=True)
    saver = train_mod._Checkpointer(path, CHECKPOINT_SECONDS, "bench", torch.device("cpu"), job.model,
                                    job.optimiser, np.random.default_rng(0), job.aug_gen, job.outcome, loop)
    items = np.zeros((shape["labeled"] + shape["unlabeled"], 2), np.int64)  # the largest epoch
    position = EpochPosition(items=items, batch=1, sums=np.zeros(4), done=1, seconds=1.0)
    write = restore = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        saver.save(position)
        write = min(write, time.perf_counter() - start)
        start = time.perf_counter()
        if saver.resume() is None:
            raise RuntimeError(f"{path}: the checkpoint just written could not be restored")
        restore = min(restore, time.perf_counter() - start)
    size = path.stat().st_size
    path.unlink()
    return {"write_s": write, "restore_s": restore, "bytes": size, "epochs_logged": n_epochs}


def step_seconds(bundle: Bundle, hidden: int, steps: int, rounds: int) -> float:
    """Best seconds per training step of the job loop (bench_training's JobLoop) at THREADS threads."""
    torch.set_num_threads(THREADS)
    with threadpool_limits(THREADS):
        job = JobLoop(bundle, hidden)
        job.run(2)  # warm-up
        best = math.inf
        for _ in range(rounds):
            start = time.perf_counter()
            job.run(steps)
            best = min(best, (time.perf_counter() - start) / steps)
    return best


def measure(quick: bool = False, cache_dir: Path = DEFAULT_CACHE) -> list[dict]:
    """One dict of measured and computed figures per shape."""
    # Each shape steps on frames of its own profile: the quick profile's bundle (250 frames of 40 ms) for
    # quick, the tiny corpus (the paper's 500 frames of 20 ms) for paper; --quick steps both on tiny's.
    bundles = {name: Bundle.open(build_bundle(cache_dir, "tiny" if quick or name == "paper" else "quick"))
               for name in SHAPES}
    directory = Path(cache_dir) / "checkpoint-bench"
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, shape in SHAPES.items():
        steps = {32: 10, 256: 3}[shape["hidden"]] if quick else {32: 50, 256: 10}[shape["hidden"]]
        bundle = bundles[name]
        cost = checkpoint_cost(bundle, shape, directory, repeats=3 if quick else 10)
        step = step_seconds(bundle, shape["hidden"], steps, rounds=2 if quick else 3)
        epoch_steps = math.ceil(shape["labeled"] / BATCH)
        epoch = epoch_steps * step
        share = cost["write_s"] / epoch + cost["write_s"] / CHECKPOINT_SECONDS
        out.append({"shape": name, **shape, **cost, "step_s": step, "epoch_steps": epoch_steps,
                    "epoch_s": epoch, "share": share})
    return out


def rows_from(measured: list[dict]) -> list[dict]:
    """Table rows (see benchmarks.run) from `measure`'s output."""
    rows = []
    for m in measured:
        h, name = m["hidden"], m["shape"]
        rows.append({"figure": f"checkpoint write, {name} shape (h={h}), {m['bytes'] / 2**20:.1f} MB (measured)",
                     "measured": f"{1000 * m['write_s']:.1f} ms", "baseline": "", "ratio": None,
                     "target": "(info)", "met": None})
        rows.append({"figure": f"  checkpoint restore, h={h} (measured)", "measured": f"{1000 * m['restore_s']:.1f} ms",
                     "baseline": "", "ratio": None, "target": "(info)", "met": None})
        rows.append({"figure": f"  training step, h={h}, {THREADS} thr (measured)",
                     "measured": f"{1000 * m['step_s']:.1f} ms", "baseline": "", "ratio": None, "target": "(info)",
                     "met": None})
        rows.append({"figure": f"checkpoint share of job time, h={h}: write / epoch of {m['epoch_steps']} steps "
                               f"+ write / {CHECKPOINT_SECONDS:.0f} s (computed)",
                     "measured": f"{100 * m['share']:.3f} %",
                     "baseline": f"{1000 * m['write_s']:.1f} ms / epoch {m['epoch_s']:.1f} s", "ratio": None,
                     "target": "< 2 %", "met": m["share"] < 0.02})
    return rows


def run(quick: bool = False, cache_dir: Path = DEFAULT_CACHE) -> list[dict]:
    """Benchmark 7 as table rows."""
    return rows_from(measure(quick, cache_dir))


def write_results(rows: list[dict], command: str, seconds: float, before: dict[str, str]) -> None:
    """benchmarks/RESULTS-checkpoint.md; `before`: benchmarks.run.machine() taken before the run (its load)."""
    from benchmarks.run import commit, format_table

    lines = ["# Benchmark results: training checkpoints", "",
             f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {seconds:.0f} s.",
             "", f"- commit: `{commit()}`", *(f"- {k}: {v}" for k, v in before.items()),
             f"- load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", "",
             "What is measured and what is computed: see the docstring of `benchmarks/bench_checkpoint.py`.", "",
             format_table(rows), ""]
    RESULTS.write_text("\n".join(lines))


def main() -> None:
    from benchmarks.run import machine, print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps (smoke run)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache for the benchmark bundles")
    args = parser.parse_args()
    before, start = machine(), time.perf_counter()
    rows = run(args.quick, args.cache)
    print_table(rows)
    write_results(rows, "python -m benchmarks.bench_checkpoint" + (" --quick" if args.quick else ""),
                  time.perf_counter() - start, before)
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
