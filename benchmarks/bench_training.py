"""Benchmark 1: the job's training loop against a bare PyTorch loop, and the student's achieved FLOP/s.

Run from the repository root: /work/venv/bin/python -m benchmarks.bench_training [--quick]

What is timed. The *job loop* is `harness.method.train._run_epoch`, the step loop of `train_student`, on a
real shared-stage bundle (memory-mapped features of the synthetic corpus): per step it gathers a batch of
16 clips from the memmaps, normalises it, draws the custom SpecAugment masks, runs the student, computes
the masked losses (event masking, strong+weak pseudolabels), checks them for NaN, and takes an Adam step.
Per-epoch validation is *not* in the timing (it is a fixed cost per epoch, reported by the study
benchmarks). The *bare loop* runs the same Student on ready-made random tensors of the same shape
([16, 500, 20] features, [16, 10, 500] frame and [16, 10] clip targets) with BCE on frame and clip
outputs and Adam. Both loops run the same number of steps after the same warm-up, alternating in rounds
so that a change in machine load hits both; each figure is the best round. A third timing isolates the
harness's own per-step work (batch gathering from the memmaps, SpecAugment, masked loss forward) on fixed
model outputs: its share of the job step bounds what the harness can lose against the bare loop.

FLOPs of one training step, counted analytically (multiply-add = 2 FLOPs):
    LSTM layer l, per sample and timestep, forward: gates = W_ih x + W_hh h, a [4h x (in_l + h)]
    matrix-vector product = 8 h (in_l + h) FLOPs (in_1 = F = 20, in_l = h above);
    the two heads (frame and attention, h -> C each) = 4 h C FLOPs per sample and frame;
    backward = 2 x forward (gradients of inputs and of weights), so a step = 3 x forward:
    FLOPs/step = 3 B T (sum_l 8 h (in_l + h) + 4 h C).
Element-wise gate work, losses and the optimiser are left out, so the figure slightly understates.
The machine's reference is torch.matmul of two n x n float32 matrices (2 n^3 FLOPs) at the same
thread count.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from harness.config import MethodConfig, StudentConfig, TrainConfig
from harness.constants import N_CLASSES
from harness.method import train as train_mod
from harness.method.augment import spec_augment
from harness.method.losses import loss_terms
from harness.model.student import Student
from harness.study.plan import expand, resolve
from harness.study.spec import load_study
from harness.bundle import Bundle
from harness.study.stages import prepare

BATCH, FRAMES, MELS = 16, 500, 20
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "harness-bench-cache"

STUDY = """
[study]
name = "bench"
description = "benchmark study: one variant, identical jobs"
seeds = {seeds}

[[variant]]
name = "EF+SW+EM+CS"
curriculum = "easier"
pseudolabels = "strong+weak"
masking = "event"
augmentation = "custom"
"""


def write_study(directory: Path, seeds: int = 1) -> Path:
    """Write the benchmark ablation file (one variant, `seeds` seeds) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "bench.toml"
    path.write_text(STUDY.format(seeds=seeds))
    return path


def build_bundle(cache_dir: Path, profile: str = "tiny") -> Path:
    """Run (or reuse from `cache_dir`) the shared stages of the benchmark study; return the bundle dir."""
    with tempfile.TemporaryDirectory() as tmp:
        study = resolve(load_study(write_study(Path(tmp))), profile, Path(cache_dir))
        job = expand(study)[0]
        return prepare(job, Path(cache_dir), jobs=2)


def step_flops(hidden: int, layers: int = 3, n_in: int = MELS, batch: int = BATCH, frames: int = FRAMES,
               classes: int = N_CLASSES) -> float:
    """Analytic FLOPs of one training step of the student (see the module docstring)."""
    lstm = sum(8 * hidden * ((n_in if layer == 0 else hidden) + hidden) for layer in range(layers))
    heads = 4 * hidden * classes
    return 3.0 * batch * frames * (lstm + heads)


def _job_config(hidden: int, steps: int) -> MethodConfig:
    """The default method (EF+SW+EM+CS) with student width `hidden` and a fixed epoch of `steps`."""
    base = MethodConfig()
    return dataclasses.replace(
        base,
        student=StudentConfig(hidden=hidden),
        train=dataclasses.replace(TrainConfig(), steps=10**9, epoch_steps=steps, device="cpu"),
    )


class JobLoop:
    """The harness's step loop (`_run_epoch`) on a bundle, ready to run `steps` steps at a time."""

    def __init__(self, bundle: Bundle, hidden: int, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.pool = train_mod.Pool.from_bundle(bundle)
        self.model = Student(MELS, StudentConfig(hidden=hidden))
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=1e-3, betas=(0.9, 0.99))
        self.median_frames = torch.as_tensor(bundle.event_frames["median"], dtype=torch.float32)
        self.aug_gen = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        all_u = np.arange(self.pool.size("unlabeled"), dtype=np.int64)  # every source in the batches
        items = train_mod._items(self.pool, all_u, rng)
        # Whole batches only: with a fixed epoch_steps, _run_epoch slices items[start:start + B] with start
        # wrapping around, so a batch straddling the end would be short (2 clips on the tiny corpus) and
        # flatter the job loop.
        self.items = items[: len(items) // BATCH * BATCH]
        self.hidden = hidden
        self.outcome = train_mod.TrainOutcome(model=self.model, best_epoch=0, best_val_f1=-1.0, steps=0)

    def harness_work(self, steps: int) -> None:
        """Only the harness's own per-step work, without the model: gather + normalise a batch from the
        memmaps, custom SpecAugment, masked losses (forward) on fixed model outputs."""
        config = _job_config(self.hidden, steps)
        frame, clip = torch.rand(BATCH, N_CLASSES, FRAMES), torch.rand(BATCH, N_CLASSES)
        for b in range(steps):
            start = (b * BATCH) % len(self.items)
            x, batch = self.pool.batch(self.items[start:start + BATCH], torch.device("cpu"))
            spec_augment(x, batch.weak, config.augment, self.median_frames, self.aug_gen)
            terms = loss_terms(frame, clip, batch, config.loss)
            (terms.weak + terms.strong + terms.unlabeled).item()

    def run(self, steps: int) -> None:
        config = _job_config(self.hidden, steps)
        train_mod._run_epoch(self.model, self.optimiser, self.pool, self.items, config, self.median_frames,
                             self.aug_gen, self.outcome, 1, torch.device("cpu"))


class BareLoop:
    """The same Student on ready-made tensors: BCE on frame and clip outputs, Adam."""

    def __init__(self, hidden: int, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.model = Student(MELS, StudentConfig(hidden=hidden))
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=1e-3, betas=(0.9, 0.99))
        self.x = torch.randn(BATCH, FRAMES, MELS, generator=gen)
        self.strong = (torch.rand(BATCH, N_CLASSES, FRAMES, generator=gen) > 0.8).float()
        self.weak = self.strong.amax(dim=2)
        self.bce = torch.nn.BCELoss()

    def run(self, steps: int) -> None:
        self.model.train()
        for _ in range(steps):
            frame, clip = self.model(self.x)
            loss = self.bce(frame, self.strong) + self.bce(clip, self.weak)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()


def matmul_flops(n: int, threads: int, repeats: int = 3) -> float:
    """Best FLOP/s of an n x n float32 matmul at `threads` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up: allocations and the BLAS thread pool
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


def compare_loops(bundle: Bundle, hidden: int, threads: int, steps: int, rounds: int) -> dict:
    """Seconds per step of the job loop and of the bare loop (best of `rounds` alternating rounds)."""
    torch.set_num_threads(threads)
    with threadpool_limits(threads):
        job, bare = JobLoop(bundle, hidden), BareLoop(hidden)
        job.run(2)  # warm-up: first-touch of the memmaps, allocator, oneDNN kernels
        bare.run(2)
        best = {"job": math.inf, "bare": math.inf, "work": math.inf}
        for _ in range(rounds):
            for name, fn in (("job", job.run), ("bare", bare.run), ("work", job.harness_work)):
                start = time.perf_counter()
                fn(steps)
                best[name] = min(best[name], (time.perf_counter() - start) / steps)
    return {"hidden": hidden, "threads": threads, "job_step_s": best["job"], "bare_step_s": best["bare"],
            "work_step_s": best["work"],
            "ratio": best["bare"] / best["job"], "flops_per_step": step_flops(hidden)}


def measure(quick: bool = False, cache_dir: Path = DEFAULT_CACHE) -> list[dict]:
    """Raw measurements: one dict per (hidden, threads) loop comparison and per matmul size."""
    bundle = Bundle.open(build_bundle(cache_dir, "tiny"))
    plan = {256: (3, 2), 64: (20, 3)} if quick else {256: (5, 3), 64: (30, 3)}  # hidden: (steps, rounds)
    out = []
    for threads in (1, 2):
        for hidden, (steps, rounds) in plan.items():
            out.append({"kind": "loop", **compare_loops(bundle, hidden, threads, steps, rounds)})
        for n in ((2048,) if quick else (2048, 4096)):
            out.append({"kind": "matmul", "n": n, "threads": threads, "flops": matmul_flops(n, threads)})
    return out


def rows_from(measured: list[dict]) -> list[dict]:
    """Table rows (see benchmarks.run) from `measure`'s output."""
    peak = {m["threads"]: max(x["flops"] for x in measured if x["kind"] == "matmul" and x["threads"] ==
                              m["threads"]) for m in measured if m["kind"] == "matmul"}
    rows = []
    for m in measured:
        if m["kind"] == "matmul":
            rows.append({"figure": f"matmul {m['n']}x{m['n']} float32, {m['threads']} thr (reference)",
                         "measured": f"{m['flops'] / 1e9:.1f} GFLOP/s", "baseline": "", "ratio": None,
                         "target": "", "met": None})
            continue
        h, t = m["hidden"], m["threads"]
        rows.append({"figure": f"training steps/s, h={h}, {t} thr: job loop vs bare loop",
                     "measured": f"{1 / m['job_step_s']:.2f} steps/s", "baseline": f"{1 / m['bare_step_s']:.2f}",
                     "ratio": m["ratio"], "target": ">= 0.90", "met": m["ratio"] >= 0.90})
        rows.append({"figure": f"  h={h}, {t} thr: harness's own work per step (batch, augment, masks, loss)",
                     "measured": f"{1000 * m['work_step_s']:.1f} ms", "baseline": f"{1000 * m['job_step_s']:.1f} ms",
                     "ratio": m["work_step_s"] / m["job_step_s"], "target": "(info)", "met": None})
        achieved = m["flops_per_step"] / m["job_step_s"]
        rows.append({"figure": f"student FLOP/s, h={h}, {t} thr vs matmul",
                     "measured": f"{achieved / 1e9:.1f} GFLOP/s", "baseline": f"{peak[t] / 1e9:.1f}",
                     "ratio": achieved / peak[t], "target": "(info)", "met": None})
    return rows


def run(quick: bool = False, cache_dir: Path = DEFAULT_CACHE) -> list[dict]:
    """Benchmark 1 as table rows."""
    return rows_from(measure(quick, cache_dir))


def main() -> None:
    from benchmarks.run import standalone

    standalone(run, __doc__, "fewer steps (smoke run)", DEFAULT_CACHE)


if __name__ == "__main__":
    main()
