"""Benchmark: the harness on a GPU (CUDA), and what the paper's Tables 1-3 protocol costs there.

Run from the repository root (on a machine with CUDA):

    python benchmarks/bench_gpu.py                      # writes benchmarks/RESULTS-gpu.md
    python benchmarks/bench_gpu.py --budget-s 150       # the whole run capped at 150 s
    python benchmarks/bench_gpu.py --device cpu --quick # a smoke run on the CPU (figures labelled CPU)

Without a CUDA device (and without `--device cpu`) it writes "not measured: no CUDA device" into the results
file and exits 0. `--budget-s` (default 300) caps the whole run: each measurement is started only when its
estimated time fits in what is left, and every figure that did not fit is written "not measured (budget)".
Measurements run in priority order: one-job step times, validation, the 2,000-step run, concurrency at
N = 1 and 2, determinism, then N = 4, 8, 16.

What is measured (all on synthetic tensors of the paper's shapes, SPEC 2: batch 16, T = 500 frames, 20 mel
bins for the student, 64 for the teacher, C = 10; the student h = 256, 3 LSTM layers, the cuDNN LSTM of
`torch.nn.LSTM`; the teacher a `TeacherCNN` of width 64, batch 32):

- Student step, bare: harness.model.student.Student on device-resident tensors, harness.method.losses
  .loss_terms (event masking, strong+weak pseudolabels, a batch mixing L_S, L_W and U), Adam. Precisions:
  fp32 (TF32 off for cuBLAS and cuDNN), default (PyTorch's defaults, which is what the harness runs: cuBLAS
  fp32, cuDNN allowed TF32), tf32 (both on), bf16 (bfloat16 autocast over the forward pass, as
  train.precision = "bf16" does: the Student keeps its heads and pooling float32, and the loss must see
  float32 probabilities, since masked_bce clamps to 1 - 1e-7, which is 1.0 in bfloat16).
- Student step, job loop: harness.method.train._run_epoch itself (the step loop of every job) on an
  in-memory Pool of synthetic clips: per step it gathers and normalises the batch on the host, copies it to
  the device, runs the custom SpecAugment on the CPU (as train.py does), computes the losses, checks them for
  NaN and reads four loss values back (.item()). Default and tf32 precision, and train.precision = "bf16"
  where the harness has it.
- Teacher step: TeacherCNN forward + the teacher's BCE terms + Adam, device-resident batch, four precisions.
- Validation: harness.method.train.predict on 1,168 clips (the DESED validation set; fewer on the CPU, then
  scaled), and the post-processing + event and segment F1 (fast evaluator) of 1,168 clips on the CPU
  (benchmarks.bench_eval's synthetic predictions).
- Concurrency: N spawned processes (torch.multiprocessing, "spawn"), each running the job loop on the same
  device (cuda:0) for a fixed time after a common start barrier, one CPU thread each: aggregate steps/s (the
  sum of the jobs' rates), per-job steps/s, torch.cuda.max_memory_allocated and max_memory_reserved per job,
  and each process's memory as NVML sees it (CUDA context included) when pynvml is importable.
- Determinism: two processes with the same seed run the job loop for 200 steps; are the parameters then
  bitwise equal? Once with PyTorch's defaults, once with the settings deterministic training needs
  (CUBLAS_WORKSPACE_CONFIG=:4096:8, torch.backends.cudnn.deterministic = True, cudnn.benchmark = False,
  torch.use_deterministic_algorithms(True, warn_only=True)); their steps/s compared.
- A 2,000-step run of the job loop (default precision), timed as a whole.

What is computed (not measured):
- One paper trial = the 2,000-step run's seconds x 48,790 / 2,000, plus per epoch one validation pass
  (predict + scoring), plus the curriculum's difficulty passes over U (14,412 clips), plus the final
  validation and test evaluation. Epochs per trial follow the variant's curriculum on DESED's sizes
  (L_S 2,045 + L_W 1,578 clips, U 14,412: generation 1 is 227 steps an epoch, all of U 1,128). Not counted:
  PSDS scoring at the end, checkpoint writes (about 50 ms each, benchmarks/RESULTS-checkpoint.md), reading
  features from disk (the memmaps are in the page cache after the first epoch), energy metering.
- The teacher: 6 members x 30 epochs x ceil(3,623 / 32) steps at the measured teacher step, plus its
  predictions (6 forward passes over the ~19,900 clips of every subset). Once per study, or once for all
  three tables when they share a cache (the same teacher config, seed and data give the same teacher).
- Tables 1-3: trials counted from ablations/table{1,2,3}.toml with harness.study.spec.load_study (10 seeds
  each in the paper profile) plus the [tune] stage of SPEC 2.5 (every variant x the 5 x 5 lambda grid x 2
  seeds: harness.study.spec.Tune's defaults, as table2.toml's commented [tune] shows; the files run without
  it). GPU hours at N jobs per GPU = the single-job seconds of all trials x (per-job steps/s at N = 1 /
  aggregate steps/s at N) / 3600, i.e. every part of a trial assumed to share the device as its steps do.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import math
import os
import platform
import queue as queue_mod
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/bench_gpu.py` as well as `python -m benchmarks.bench_gpu`
    sys.path.insert(0, str(ROOT))

# As `python -m harness` does: idle OpenMP threads sleep instead of spinning on shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from harness.config import MethodConfig, config_hash, from_mapping, nest, with_factors  # noqa: E402
from harness.constants import CLASSES, DESED_MEDIAN_SECONDS, FRAME_HOP_SECONDS, N_CLASSES  # noqa: E402
from harness.method import train as train_mod  # noqa: E402
from harness.method.curriculum import generation_of, needs_difficulty, select_unlabeled  # noqa: E402
from harness.config import TrainConfig  # noqa: E402
from harness.method.losses import Batch, loss_terms, masked_bce  # noqa: E402
from harness.model.student import Student  # noqa: E402
from harness.study.spec import Tune, load_study  # noqa: E402
from harness.teacher.cnn import TeacherCNN  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS-gpu.md"
TABLES = [ROOT / "ablations" / f"table{i}.toml" for i in (1, 2, 3)]
PAPER = MethodConfig()  # the defaults are the paper's values (SPEC 2)
BATCH, FRAMES = PAPER.train.batch_size, PAPER.features.n_frames
MELS, TEACHER_MELS = PAPER.features.student_mels, PAPER.features.teacher_mels
PAPER_SEEDS = 10  # the paper profile's seeds when a file gives none (harness.study.plan.BUILTIN_PROFILES)
DESED = {"synthetic": 2045, "weak": 1578, "unlabeled": 14412, "validation": 1168, "test": 692}  # SPEC 3
ALL_CLIPS = sum(DESED.values())
NOT_BUDGET = "not measured (budget)"
NO_CUDA = "not measured: no CUDA device"
MODES = ("fp32", "default", "tf32", "bf16")
HAS_PRECISION = "precision" in {f.name for f in dataclasses.fields(TrainConfig)}  # train.precision = "bf16"
DETERMINISTIC_ENV = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


# --------------------------------------------------------------------------- budget and timing


class Budget:
    """The whole run's time cap: a measurement starts only when its estimate fits in what is left."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def fits(self, estimate: float) -> bool:
        return self.left() >= estimate


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device, min_steps: int, min_seconds: float) -> float:
    """Seconds per call of `fn`, over at least `min_steps` calls and `min_seconds` (one sync at each end)."""
    sync(device)
    start, n = time.perf_counter(), 0
    while n < min_steps or time.perf_counter() - start < min_seconds:
        fn()
        n += 1
    sync(device)
    return (time.perf_counter() - start) / n


@contextlib.contextmanager
def precision(mode: str, device: torch.device):
    """Set the TF32 flags of `mode` for the block; yields a factory of the forward pass's autocast context."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch: the allow_tf32 flags are superseded by fp32_precision
        if mode == "fp32":
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, False
        elif mode == "tf32":
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = True, True
    try:
        if mode == "bf16":
            yield lambda: torch.autocast(device.type, dtype=torch.bfloat16)
        else:
            yield contextlib.nullcontext
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def default_flags() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (f"cuBLAS TF32 {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}, "
                f"cuDNN TF32 {'on' if torch.backends.cudnn.allow_tf32 else 'off'}")


# --------------------------------------------------------------------------- what is stepped


def _config(hidden: int) -> MethodConfig:
    """The paper's method (EF+SW+EM+CS) with student width `hidden` and an unbounded budget."""
    return dataclasses.replace(PAPER, student=dataclasses.replace(PAPER.student, hidden=hidden),
                               train=dataclasses.replace(PAPER.train, steps=10**12, epoch_steps=1))


def _median_frames() -> torch.Tensor:
    return torch.tensor([DESED_MEDIAN_SECONDS[c] / FRAME_HOP_SECONDS for c in CLASSES], dtype=torch.float32)


class BareStudent:
    """The student's step on device-resident tensors: forward, the harness's loss terms, backward, Adam."""

    def __init__(self, device: torch.device, hidden: int, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.config = _config(hidden)
        self.model = Student(MELS, self.config.student).to(device)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=PAPER.train.lr, betas=PAPER.train.betas)
        strong = (torch.rand(BATCH, N_CLASSES, FRAMES, generator=gen) > 0.85).float()
        self.x = torch.randn(BATCH, FRAMES, MELS, generator=gen).to(device)
        self.batch = Batch(source=(torch.arange(BATCH) % 3).to(device), weak=strong.amax(dim=2).to(device),
                           strong=strong.to(device))
        self.lstm_dtype = ""
        self.model.lstm.register_forward_hook(self._record_dtype)

    def _record_dtype(self, module, inputs, output) -> None:
        self.lstm_dtype = str(output[0].dtype).replace("torch.", "")

    def step(self, autocast: Callable) -> None:
        with autocast():
            frame, clip = self.model(self.x)
        terms = loss_terms(frame.float(), clip.float(), self.batch, self.config.loss)
        self.optimiser.zero_grad(set_to_none=True)
        terms.total.backward()
        self.optimiser.step()


def synthetic_pool(seed: int = 0, sizes: tuple[int, int, int] = (96, 64, 192)) -> train_mod.Pool:
    """An in-memory Pool (L_S, L_W, U) of random clips of the paper's shapes, for the harness's step loop."""
    rng = np.random.default_rng(seed)
    n_s, n_w, n_u = sizes
    feats = {s: rng.standard_normal((n, FRAMES, MELS), dtype=np.float32)
             for s, n in zip(train_mod.SOURCES, sizes)}
    strong_s = (rng.random((n_s, N_CLASSES, FRAMES)) > 0.85).astype(np.float32)
    weak = {"synthetic": strong_s.max(axis=2), "weak": (rng.random((n_w, N_CLASSES)) > 0.7).astype(np.float32),
            "unlabeled": rng.random((n_u, N_CLASSES), dtype=np.float32)}
    strong = {"synthetic": strong_s, "weak": None,
              "unlabeled": rng.random((n_u, N_CLASSES, FRAMES), dtype=np.float32)}
    return train_mod.Pool(features=feats, weak=weak, strong=strong, mean=np.zeros(MELS, np.float32),
                          std=np.ones(MELS, np.float32))


class JobLoop:
    """harness.method.train._run_epoch, the step loop of every job, on a synthetic in-memory Pool."""

    def __init__(self, device: torch.device, hidden: int, seed: int = 0, precision: str = "fp32") -> None:
        torch.manual_seed(seed)
        self.device = device
        self.config = _config(hidden)
        if precision != "fp32":  # train.precision, where the harness has it
            self.config = dataclasses.replace(self.config, train=dataclasses.replace(self.config.train,
                                                                                     precision=precision))
        self.pool = synthetic_pool(seed)
        self.model = Student(MELS, self.config.student).to(device)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=PAPER.train.lr, betas=PAPER.train.betas)
        self.median_frames = _median_frames()
        self.aug_gen = torch.Generator().manual_seed(seed)
        items = train_mod._items(self.pool, np.arange(self.pool.size("unlabeled"), dtype=np.int64),
                                 np.random.default_rng(seed))
        self.items = items[: len(items) // BATCH * BATCH]  # whole batches only
        self.outcome = train_mod.TrainOutcome(model=self.model, best_epoch=0, best_val_f1=-1.0, steps=0)

    def run(self, steps: int) -> None:
        config = dataclasses.replace(self.config, train=dataclasses.replace(self.config.train, epoch_steps=steps))
        train_mod._run_epoch(self.model, self.optimiser, self.pool, self.items, config, self.median_frames,
                             self.aug_gen, self.outcome, 1, self.device)

    def checksum(self) -> str:
        digest = hashlib.sha256()
        for p in self.model.parameters():
            digest.update(p.detach().cpu().numpy().tobytes())
        return digest.hexdigest()[:16]


class TeacherStep:
    """One teacher member's step (TeacherCNN, batch 32, 64 bins): BCE(clip) + BCE(frame) over L_S items, Adam."""

    def __init__(self, device: torch.device, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        tc = PAPER.teacher
        self.model = TeacherCNN(TEACHER_MELS, tc.channels).to(device).train()
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=tc.lr)
        b = tc.batch_size
        strong = (torch.rand(b, N_CLASSES, FRAMES, generator=gen) > 0.85).float()
        self.x = torch.randn(b, FRAMES, TEACHER_MELS, generator=gen).to(device)
        self.strong, self.weak = strong.to(device), strong.amax(dim=2).to(device)
        share = DESED["synthetic"] / (DESED["synthetic"] + DESED["weak"])
        self.is_strong = (torch.arange(b) < round(share * b)).to(device)

    def step(self, autocast: Callable) -> None:
        with autocast():
            frame, clip = self.model(self.x)
        frame, clip = frame.float(), clip.float()
        loss = masked_bce(clip, self.weak, torch.ones_like(clip)) + masked_bce(
            frame, self.strong, self.is_strong[:, None, None].expand_as(frame))
        self.optimiser.zero_grad()
        loss.backward()
        self.optimiser.step()

    @torch.no_grad()
    def forward(self, batch: int = 64) -> None:
        self.model.eval()
        self.model(self.x[:1].expand(batch, -1, -1).contiguous())
        self.model.train()


# --------------------------------------------------------------------------- concurrent jobs (child processes)


def _child(index: int, spec: dict, results, start, release) -> None:
    """One concurrent job: the job loop on spec["device"], timed after the common start barrier."""
    try:
        if spec.get("deterministic"):
            os.environ.update(DETERMINISTIC_ENV)  # read by cuBLAS when its handle is made: before any CUDA work
        torch.set_num_threads(1)
        device = torch.device(spec["device"])
        if spec.get("deterministic"):
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
            torch.use_deterministic_algorithms(True, warn_only=True)
        loop = JobLoop(device, spec["hidden"], seed=spec["seed"])
        loop.run(spec["warmup"])
        sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start.wait(timeout=spec["barrier_s"])
        begin, steps = time.perf_counter(), 0
        if spec.get("steps"):
            loop.run(spec["steps"])
            steps = spec["steps"]
        else:
            while time.perf_counter() - begin < spec["seconds"]:
                loop.run(spec["chunk"])
                steps += spec["chunk"]
        sync(device)
        seconds = time.perf_counter() - begin
        out = {"index": index, "pid": os.getpid(), "steps": steps, "seconds": seconds, "checksum": loop.checksum()}
        if device.type == "cuda":
            out["allocated"] = torch.cuda.max_memory_allocated(device)
            out["reserved"] = torch.cuda.max_memory_reserved(device)
        results.put(out)
        release.wait(timeout=120)  # the parent reads NVML's per-process memory while every job is alive
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which aborts the barrier
        results.put({"index": index, "error": f"{type(e).__name__}: {e}"})


def _nvml_memory(pids: set[int]) -> dict[int, int]:
    """Device memory per process (bytes) as NVML sees it, CUDA context included; {} when unavailable."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            return {p.pid: int(p.usedGpuMemory) for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
                    if p.pid in pids and p.usedGpuMemory is not None}
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - an optional figure
        return {}


def run_jobs(n: int, spec: dict, timeout: float) -> dict:
    """Start `n` concurrent jobs (spawned processes) and gather their results."""
    ctx = torch.multiprocessing.get_context("spawn")
    results, start, release = ctx.Queue(), ctx.Barrier(n), ctx.Event()
    procs = [ctx.Process(target=_child, args=(i, spec, results, start, release), daemon=True) for i in range(n)]
    began = time.monotonic()
    for p in procs:
        p.start()
    got, errors = [], []
    try:
        while len(got) + len(errors) < n:
            left = timeout - (time.monotonic() - began)
            if left <= 0:
                errors.append(f"timed out after {timeout:.0f} s")
                break
            try:
                item = results.get(timeout=min(left, 5.0))
            except queue_mod.Empty:
                if not any(p.is_alive() for p in procs) and results.empty():
                    errors.append("every job process exited without a result")
                    break
                continue
            if "error" in item:
                errors.append(item["error"])
                start.abort()  # the others stop waiting at the barrier
            else:
                got.append(item)
        nvml = _nvml_memory({r["pid"] for r in got}) if spec["device"].startswith("cuda") and not errors else {}
    finally:
        release.set()
        for p in procs:
            p.join(timeout=30)
        for p in procs:  # ours, started above
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    for r in got:
        r["nvml"] = nvml.get(r["pid"])
    return {"n": n, "jobs": sorted(got, key=lambda r: r["index"]), "errors": errors,
            "wall": time.monotonic() - began}


# --------------------------------------------------------------------------- trials and the protocol


def variant_configs(path: Path) -> tuple[Any, list[tuple[str, MethodConfig]]]:
    """The study spec of an ablation file and each variant's method config (paper profile, lambdas of [base])."""
    spec = load_study(path)
    base = from_mapping(MethodConfig, spec.base, str(path))
    out = []
    for variant in spec.variants:
        config = with_factors(base, variant.factor_dict, str(path))
        for key, value in variant.overrides:
            config = from_mapping(MethodConfig, nest(key.split("."), value), str(path), config)
        out.append((variant.name, config))
    return spec, out


def trial_shape(config: MethodConfig, sizes: dict[str, int] = DESED) -> dict[str, int]:
    """Epochs and difficulty passes of one trial of `config` on DESED's sizes (train.py's schedule)."""
    labeled, n_u, total = sizes["synthetic"] + sizes["weak"], sizes["unlabeled"], config.train.steps
    use_u = config.loss.pseudolabels != "none"
    steps = epochs = generation = passes = 0
    selected = 0
    while steps < total:
        epochs += 1
        g = generation_of(epochs, config.curriculum)
        if g != generation:
            generation = g
            if use_u:
                passes += int(needs_difficulty(g, config.curriculum))
                selected = len(select_unlabeled(np.zeros(n_u), g, config.curriculum))
        steps += min(math.ceil((labeled + selected) / config.train.batch_size), total - steps)
    return {"epochs": epochs, "difficulty_passes": passes, "steps": total}


def trial_seconds(config: MethodConfig, costs: dict) -> float:
    """One trial's seconds on one job: steps, validation per epoch, difficulty passes, final evaluation."""
    shape = trial_shape(config)
    val = costs["predict_val"] + costs["score_val"]
    final = val + costs["predict_val"] * DESED["test"] / DESED["validation"] + costs["score_val"] * DESED["test"] / \
        DESED["validation"]
    predict_u = costs["predict_val"] * DESED["unlabeled"] / DESED["validation"]
    return shape["steps"] * costs["step"] + shape["epochs"] * val + shape["difficulty_passes"] * predict_u + final


def protocol(costs: dict) -> list[dict]:
    """Per table: variants, trials (replicates and [tune]), and single-job seconds of all of them; last, the
    configurations of the three tables counted once (EF+SW+EM+CS is in all three files)."""
    rows, unique = [], {}
    for path in TABLES:
        spec, variants = variant_configs(path)
        seeds = len(spec.seeds) if spec.seeds else PAPER_SEEDS
        tune = spec.tune or Tune()
        per_point = len(tune.lambda1) * len(tune.lambda2) * tune.seeds
        seconds = sum(trial_seconds(c, costs) for _, c in variants)  # lambdas change no time
        for name, c in variants:
            unique.setdefault(config_hash(c), (name, trial_seconds(c, costs), seeds, per_point))
        rows.append({"table": spec.name, "variants": len(variants), "replicates": seeds * len(variants),
                     "tune": per_point * len(variants), "seconds": seconds * (seeds + per_point),
                     "tune_grid": f"{len(tune.lambda1)} x {len(tune.lambda2)} x {tune.seeds} seeds",
                     "names": [n for n, _ in variants],
                     "epochs": {n: trial_shape(c)["epochs"] for n, c in variants}})
    rows.append({"table": "unique", "variants": len(unique), "replicates": sum(u[2] for u in unique.values()),
                 "tune": sum(u[3] for u in unique.values()),
                 "seconds": sum(u[1] * (u[2] + u[3]) for u in unique.values())})
    return rows


def teacher_seconds(costs: dict) -> float:
    tc = PAPER.teacher
    steps = tc.n_models * tc.epochs * math.ceil((DESED["synthetic"] + DESED["weak"]) / tc.batch_size)
    return steps * costs["teacher_step"] + tc.n_models * math.ceil(ALL_CLIPS / 64) * costs["teacher_forward"]


# --------------------------------------------------------------------------- the run


def _fmt_ms(seconds: float | None) -> str:
    return NOT_BUDGET if seconds is None else f"{1000 * seconds:.2f}"


def _fmt_rate(seconds: float | None) -> str:
    return NOT_BUDGET if seconds is None else f"{1 / seconds:.1f}"


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f}"


def _hours(seconds: float | None) -> str:
    return NOT_BUDGET if seconds is None else f"{seconds / 3600:,.1f}"


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def device_description(device: torch.device) -> list[str]:
    info = [f"python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPU cores"]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.insert(0, f"device: **{props.name}** ({device}), {props.total_memory / 2**30:.0f} GiB, compute capability "
                    f"{props.major}.{props.minor}, {props.multi_processor_count} SMs; CUDA {torch.version.cuda}, cuDNN "
                    f"{torch.backends.cudnn.version()}")
    else:
        model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")),
                     platform.processor() or "unknown")
        info.insert(0, f"device: **CPU** ({model}), {torch.get_num_threads()} torch thread(s) per job; no GPU figure "
                    "here: this is a smoke run of the benchmark")
    return info


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _commit() -> str:
    try:
        from benchmarks.run import commit

        return commit()
    except Exception:  # noqa: BLE001
        return "unknown"


class Plan:
    """Steps and seconds of each measurement: full, --quick on a GPU, --quick on the CPU."""

    def __init__(self, args, device: torch.device) -> None:
        cpu, quick = device.type == "cpu", args.quick
        self.warmup = 1 if cpu else (3 if quick else 10)
        self.min_steps = 1 if cpu else (5 if quick else 30)
        self.min_seconds = 0.0 if cpu else (0.5 if quick else 2.0)
        self.trial_steps = args.trial_steps or (3 if cpu and quick else (100 if quick else 2000))
        self.seconds = args.seconds_per_job or (2.0 if quick else 10.0)
        self.chunk = 1 if cpu else 10
        self.det_steps = args.det_steps or (2 if cpu and quick else (20 if quick else 200))
        self.val_clips = 32 if cpu else DESED["validation"]
        self.jobs = [int(j) for j in args.jobs.split(",")] if args.jobs else ([1, 2] if cpu or quick
                                                                                 else [1, 2, 4, 8, 16])
        self.startup = 20.0  # seconds to spawn a job process and import torch; replaced by the first measurement


def measure(args, device: torch.device, budget: Budget) -> dict:
    plan = Plan(args, device)
    m: dict[str, Any] = {"plan": plan, "modes": {}, "teacher": {}, "loop": {}, "conc": {}, "det": {},
                         "budget_s": args.budget_s}
    modes = MODES if device.type == "cuda" else ("fp32", "bf16")  # TF32 does not exist on a CPU
    def say(text: str) -> None:
        print(f"[{budget.seconds - budget.left():6.1f} s] {text}", file=sys.stderr, flush=True)

    # 1. the student's bare step and the job loop, one job
    student = BareStudent(device, args.hidden)
    step_estimate = 0.5 if device.type == "cpu" else 0.05
    for mode in modes:
        if not budget.fits((plan.warmup + plan.min_steps) * step_estimate + plan.min_seconds + 5):
            m["modes"][mode] = None
            continue
        with precision(mode, device) as autocast:
            for _ in range(plan.warmup):
                student.step(autocast)
            m["modes"][mode] = timed(lambda: student.step(autocast), device, plan.min_steps, plan.min_seconds)
            m.setdefault("lstm_dtype", {})[mode] = student.lstm_dtype
        step_estimate = m["modes"][mode]
        say(f"student {mode}: {1000 * m['modes'][mode]:.2f} ms/step")
    student = None  # its device memory goes before the next measurements
    loop = JobLoop(device, args.hidden)
    loop_modes = ["default", "tf32"] if device.type == "cuda" else ["fp32"]
    for mode in loop_modes + (["bf16"] if HAS_PRECISION else []):
        if not budget.fits((plan.warmup + plan.min_steps) * step_estimate * 1.5 + plan.min_seconds + 5):
            m["loop"][mode] = None
            continue
        # bf16: the harness's own train.precision = "bf16" (a loop of its own), under PyTorch's default flags
        runner = JobLoop(device, args.hidden, precision="bf16") if mode == "bf16" else loop
        with precision("default" if mode == "bf16" else mode, device):
            runner.run(plan.warmup)
            m["loop"][mode] = timed(lambda: runner.run(1), device, plan.min_steps, plan.min_seconds)
        say(f"job loop {mode}: {1000 * m['loop'][mode]:.2f} ms/step")
    runner = None
    loop_mode = "default" if device.type == "cuda" else "fp32"

    # 2. the teacher's step
    teacher = TeacherStep(device)
    for mode in modes:
        if not budget.fits((plan.warmup + plan.min_steps) * step_estimate * 2 + plan.min_seconds + 5):
            m["teacher"][mode] = None
            continue
        with precision(mode, device) as autocast:
            for _ in range(plan.warmup):
                teacher.step(autocast)
            m["teacher"][mode] = timed(lambda: teacher.step(autocast), device, plan.min_steps, plan.min_seconds)
        say(f"teacher {mode}: {1000 * m['teacher'][mode]:.2f} ms/step")
    if budget.fits(10):
        teacher.forward()
        m["teacher_forward"] = timed(teacher.forward, device, plan.min_steps, plan.min_seconds / 2)
    teacher = None

    # 3. validation: predict (device) and scoring (CPU)
    if budget.fits(plan.val_clips / BATCH * step_estimate + 10):
        m.update(validation_costs(loop.model, device, plan.val_clips))
        say(f"validation: predict {m['predict_val']:.2f} s, score {m['score_val']:.2f} s (1,168 clips)")

    # 4. the 2,000-step run
    per_step = m["loop"].get(loop_mode)
    if per_step is not None and budget.fits(plan.trial_steps * per_step * 1.2 + 5):
        with precision(loop_mode, device):
            sync(device)
            begin = time.perf_counter()
            loop.run(plan.trial_steps)
            sync(device)
            m["trial_run"] = {"steps": plan.trial_steps, "seconds": time.perf_counter() - begin}
        say(f"{plan.trial_steps}-step run: {m['trial_run']['seconds']:.1f} s")
    loop = None
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # 5. concurrency and determinism (child processes), in priority order
    spec = {"device": str(device) if device.index is not None or device.type == "cpu" else "cuda:0",
            "hidden": args.hidden, "warmup": plan.warmup, "seconds": plan.seconds, "chunk": plan.chunk,
            "seed": 0, "barrier_s": 180.0}
    order: list[Any] = [n for n in plan.jobs if n <= 2] + ["det"] + [n for n in plan.jobs if n > 2]
    for item in order:
        if item == "det":
            measure_determinism(m, spec, plan, per_step, budget, say)
            continue
        n = item
        rate = per_step or step_estimate
        estimate = plan.startup * (1 + n / 16) + plan.warmup * rate * n + plan.seconds + 10
        if not budget.fits(estimate):
            m["conc"][n] = None
            continue
        res = run_jobs(n, spec, timeout=min(budget.left(), estimate * 3))
        m["conc"][n] = res
        if res["jobs"]:
            plan.startup = max(5.0, res["wall"] - plan.seconds - plan.warmup * rate * n)
        agg = sum(j["steps"] / j["seconds"] for j in res["jobs"])
        say(f"N = {n} concurrent jobs: {agg:.1f} steps/s aggregate"
            + (f"; errors: {res['errors']}" if res["errors"] else ""))
    return m


def measure_determinism(m: dict, spec: dict, plan: Plan, per_step: float | None, budget: Budget, say) -> None:
    rate = per_step or 0.05
    for name, deterministic in (("default", False), ("deterministic", True)):
        estimate = plan.startup * 1.2 + (plan.det_steps + plan.warmup) * rate * 2 + 10
        if not budget.fits(estimate):
            m["det"][name] = None
            continue
        res = run_jobs(2, {**spec, "deterministic": deterministic, "steps": plan.det_steps},
                       timeout=min(budget.left(), estimate * 3))
        m["det"][name] = res
        sums = {j["checksum"] for j in res["jobs"]}
        say(f"determinism, {name}: {len(res['jobs'])} runs, {'equal' if len(sums) == 1 else 'DIFFERENT'}"
            + (f"; errors: {res['errors']}" if res["errors"] else ""))


def validation_costs(model: Student, device: torch.device, n_clips: int) -> dict:
    """Seconds of one validation pass over DESED's 1,168 clips: predict (scaled from n_clips) and scoring."""
    from benchmarks.bench_eval import make_predictions, make_reference
    from harness.evaluation.metrics import event_based, segment_based
    from harness.evaluation.postprocess import median_windows, postprocess

    features = np.random.default_rng(0).standard_normal((n_clips, FRAMES, MELS), dtype=np.float32)
    mean, std = np.zeros(MELS, np.float32), np.ones(MELS, np.float32)
    train_mod.predict(model, features[:64], mean, std, device)  # warm-up (eval-mode kernels)
    sync(device)
    begin = time.perf_counter()
    train_mod.predict(model, features, mean, std, device)
    sync(device)
    predict = (time.perf_counter() - begin) * DESED["validation"] / n_clips
    rng = np.random.default_rng(0)
    ids, reference = make_reference(rng, DESED["validation"])
    frame, clip = make_predictions(rng, ids, reference)
    windows = median_windows(np.array([DESED_MEDIAN_SECONDS[c] / FRAME_HOP_SECONDS for c in CLASSES]))
    begin = time.perf_counter()
    events = postprocess(frame, clip, ids, windows, PAPER.postprocess)
    event_based(reference, events, ids)
    segment_based(reference, events, ids)
    return {"predict_val": predict, "score_val": time.perf_counter() - begin, "val_clips_measured": n_clips}


# --------------------------------------------------------------------------- the report


def report(m: dict, device: torch.device, command: str, seconds: float) -> str:
    plan: Plan = m["plan"]
    kind = "GPU" if device.type == "cuda" else "CPU"
    lines = ["# Benchmark results: the harness on a GPU", "",
             f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {seconds:.0f} s "
             f"(budget {m['budget_s']:.0f} s).", "", f"- commit: `{_commit()}`",
             *(f"- {x}" for x in device_description(device)),
             f"- PyTorch's default precision flags here (what the harness runs): {default_flags()}", "",
             "What is measured and what is computed: see the docstring of `benchmarks/bench_gpu.py`. "
             f"Shapes: student h = {m['hidden']}, 3 LSTM layers, batch {BATCH}, T = {FRAMES}, {MELS} mel bins; "
             f"teacher TeacherCNN width {PAPER.teacher.channels}, batch {PAPER.teacher.batch_size}, "
             f"{TEACHER_MELS} bins.",
             ""]
    fp32 = m["modes"].get("fp32")
    rows = []
    for mode in MODES:
        if mode not in m["modes"]:
            continue
        s = m["modes"][mode]
        rows.append(["student, bare step", mode, _fmt_ms(s), _fmt_rate(s),
                     "" if s is None or fp32 is None else f"{fp32 / s:.2f}", m.get("lstm_dtype", {}).get(mode, "")])
    for mode, s in m["loop"].items():
        rows.append(["student, job loop (`_run_epoch`)", 'train.precision = "bf16"' if mode == "bf16" else mode,
                     _fmt_ms(s), _fmt_rate(s),
                     "" if s is None or fp32 is None else f"{fp32 / s:.2f}", "host batch + CPU SpecAugment + syncs"])
    tfp32 = m["teacher"].get("fp32")
    for mode, s in m["teacher"].items():
        rows.append(["teacher CNN step", mode, _fmt_ms(s), _fmt_rate(s),
                     "" if s is None or tfp32 is None else f"{tfp32 / s:.2f}", ""])
    lines += [f"## One job's training step ({kind})", "",
              md_table(["what", "precision", "ms/step", "steps/s", "x its fp32 bare step",
                        "LSTM output dtype / notes"], rows), ""]

    lines += ["## Validation (one pass, DESED's 1,168 clips)", ""]
    if "predict_val" in m:
        lines += [md_table(["what", "seconds"], [
            [f"predict on the {kind} (measured on {m['val_clips_measured']} clips, scaled)", f"{m['predict_val']:.3f}"],
            ["post-processing + event F1 + segment F1, CPU", f"{m['score_val']:.3f}"]]), ""]
    else:
        lines += [NOT_BUDGET, ""]

    lines += [f"## Concurrent jobs on one {kind} (job loop, {'default precision' if kind == 'GPU' else 'fp32'}, "
              f"{plan.seconds:.0f} s each, 1 CPU thread each)", ""]
    rows, base = [], None
    for n in sorted(m["conc"]):
        res = m["conc"][n]
        if res is None or not res["jobs"]:
            why = NOT_BUDGET if res is None else f"failed: {'; '.join(res['errors'])[:200]}"
            rows.append([str(n), why, "", "", "", "", ""])
            continue
        rates = [j["steps"] / j["seconds"] for j in res["jobs"]]
        agg = sum(rates)
        base = agg if n == 1 else base
        nvml = [j["nvml"] for j in res["jobs"] if j.get("nvml")]
        rows.append([str(n) + ("" if len(rates) == n else f" ({len(rates)} ran)"), f"{agg:.1f}",
                     f"{np.mean(rates):.1f} (min {min(rates):.1f})",
                     "" if base is None else f"{agg / base:.2f}",
                     _mib(max((j.get("allocated") for j in res["jobs"]), default=None) if kind == "GPU" else None),
                     _mib(max((j.get("reserved") for j in res["jobs"]), default=None) if kind == "GPU" else None),
                     _mib(max(nvml)) if nvml else "n/a"])
    lines += [md_table(["N", "aggregate steps/s", "per-job steps/s", "x N = 1", "max allocated / job MiB",
                        "max reserved / job MiB", "NVML / process MiB"], rows), ""]

    lines += ["## Same seed twice (2 jobs at once, the job loop)", ""]
    rows = []
    rates = {}
    for name, res in m["det"].items():
        if res is None or len(res["jobs"]) < 2:
            why = NOT_BUDGET if res is None else f"failed: {'; '.join(res['errors'])[:200]}"
            rows.append([name, why, "", ""])
            continue
        rates[name] = sum(j["steps"] / j["seconds"] for j in res["jobs"])
        same = len({j["checksum"] for j in res["jobs"]}) == 1
        rows.append([name, f"{res['jobs'][0]['steps']} steps: parameters {'bitwise equal' if same else 'DIFFER'}",
                     f"{rates[name]:.1f}", ""])
    if "default" in rates and "deterministic" in rates:
        rows[-1][3] = f"{100 * (1 - rates['deterministic'] / rates['default']):+.1f} % slower"
    lines += [md_table(["settings", "result", "aggregate steps/s", "cost"], rows), "",
              "Deterministic settings: `CUBLAS_WORKSPACE_CONFIG=:4096:8` in the environment before CUDA starts, "
              "`torch.backends.cudnn.deterministic = True`, `torch.backends.cudnn.benchmark = False`, "
              "`torch.use_deterministic_algorithms(True, warn_only=True)` (warn_only: the teacher's linear "
              "`F.interpolate` has no deterministic CUDA backward). The harness sets none of them.", ""]

    lines += trial_report(m, kind)
    return "\n".join(lines) + "\n"


def trial_report(m: dict, kind: str) -> list[str]:
    plan: Plan = m["plan"]
    loop_s = next((s for k, s in m["loop"].items() if s is not None and k != "bf16"), None)
    if "trial_run" in m:
        step, source = m["trial_run"]["seconds"] / m["trial_run"]["steps"], \
            f"the measured {m['trial_run']['steps']:,}-step run ({m['trial_run']['seconds']:.1f} s)"
    elif loop_s is not None:
        step, source = loop_s, f"the short job-loop timing (the {plan.trial_steps:,}-step run: {NOT_BUDGET})"
    else:
        return ["## One paper trial and Tables 1-3", "", NOT_BUDGET, ""]
    lines = [f"## One paper trial ({PAPER.train.steps:,} steps, h = {m['hidden']}), one job alone on the {kind}", "",
             f"Step time from {source}: {1000 * step:.2f} ms/step, so {PAPER.train.steps * step / 3600:.2f} h of steps "
             "per trial."]
    if "predict_val" not in m or "teacher_forward" not in m or m["teacher"].get("default" if kind == "GPU"
                                                                                    else "fp32") is None:
        return lines + ["", f"The rest (validation, teacher, protocol): {NOT_BUDGET}.", ""]
    costs = {"step": step, "predict_val": m["predict_val"], "score_val": m["score_val"],
             "teacher_step": m["teacher"]["default" if kind == "GPU" else "fp32"],
             "teacher_forward": m["teacher_forward"]}
    rows = protocol(costs)
    example = rows[1]["names"][0]
    _, configs = variant_configs(TABLES[1])
    trial = trial_seconds(dict(configs)[example], costs)
    lines += [f"With validation every epoch ({rows[1]['epochs'][example]} epochs for {example}), the difficulty passes "
              f"and the final evaluation: **{trial / 3600:.2f} h per trial** of {example}."]
    bf16, fp32_loop = m["loop"].get("bf16"), (m["loop"].get("default") or m["loop"].get("fp32"))
    if bf16 and fp32_loop:
        bf16_trial = trial_seconds(dict(configs)[example], {**costs, "step": step * bf16 / fp32_loop})
        lines += [f'With train.precision = "bf16" (its job-loop step {fp32_loop / bf16:.2f}x the fp32 one): '
                  f"{bf16_trial / 3600:.2f} h (it changes the numbers; every figure below is fp32)."]
    lines += [""]
    conc = {n: r for n, r in m["conc"].items() if r is not None and len(r["jobs"]) == n}
    best = None
    if 1 in conc:
        one = conc[1]["jobs"][0]["steps"] / conc[1]["jobs"][0]["seconds"]
        aggs = {n: sum(j["steps"] / j["seconds"] for j in r["jobs"]) for n, r in conc.items()}
        best = max(aggs, key=aggs.get)
        factor = one / aggs[best]
    teacher = teacher_seconds(costs)
    table_rows = []
    total = {"replicates": 0, "tune": 0, "seconds": 0.0}
    *tables, unique = rows
    for r in tables:
        table_rows.append([r["table"], str(r["variants"]), str(r["replicates"]), f"{r['tune']} ({r['tune_grid']})",
                           _hours(r["seconds"]), _hours(r["seconds"] * factor) if best else NOT_BUDGET])
        for k in total:
            total[k] += r[k]
    table_rows.append(["all three, as three studies", "", str(total["replicates"]), str(total["tune"]),
                       _hours(total["seconds"]), _hours(total["seconds"] * factor) if best else NOT_BUDGET])
    table_rows.append([f"the {unique['variants']} distinct variants, each once", str(unique["variants"]),
                       str(unique["replicates"]), str(unique["tune"]), _hours(unique["seconds"]),
                       _hours(unique["seconds"] * factor) if best else NOT_BUDGET])
    table_rows.append(["teacher (6 CNNs x 30 epochs + predictions), once", "", "", "", _hours(teacher),
                       _hours(teacher)])
    device_name = torch.cuda.get_device_name(0) if kind == "GPU" else "CPU"
    lines += [f"## Tables 1-3 protocol in {kind} hours on one {device_name}"
              + (f", at the best N = {best} (concurrent jobs)" if best else ""), "",
              md_table(["table", "variants", "replicate trials", "tune trials", "hours, 1 job at a time",
                        f"hours at N = {best}" if best else "hours at the best N"], table_rows), "",
              "Replicates: 10 seeds per variant (paper profile). Tuning: every variant x lambda1 x lambda2 x tuning "
              "seeds (harness.study.spec.Tune defaults, the paper's section 5.1 grid). EF+SW+EM+CS is in all three "
              "files: run as three studies (three run directories) it is trained in each; the distinct-variants "
              "row counts each configuration once. The teacher is trained once when the three share a cache. "
              "The teacher's members train one at a time on one GPU (their lease is slot 0 whatever --jobs-per-gpu "
              "says), so it is counted unshared.", ""]
    return lines


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"written: {path}", file=sys.stderr)


def no_cuda_report(command: str) -> str:
    return "\n".join([
        "# Benchmark results: the harness on a GPU", "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
        f"- commit: `{_commit()}`", f"- torch {torch.__version__}, CUDA available: no", "",
        f"**{NO_CUDA}.** Every figure of this file (the student's and teacher's step in fp32, TF32 and bf16, "
        "N = 1, 2, 4, 8, 16 concurrent jobs on one GPU, memory per job, determinism and its cost, one paper trial, "
        "the Tables 1-3 protocol in GPU hours) is measured by", "",
        "    python benchmarks/bench_gpu.py --budget-s 300", "",
        "on a machine with CUDA (benchmarks/gpu_device_run.sh runs it with the GPU tests). What it measures: the "
        "docstring of benchmarks/bench_gpu.py.", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="auto/cuda: cuda:0 (no CUDA: write 'not measured' and exit 0); cpu: measure the CPU")
    parser.add_argument("--quick", action="store_true", help="fewer steps, N = 1, 2 only: a smoke run")
    parser.add_argument("--budget-s", type=float, default=300.0, help="cap on the whole run's seconds")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the markdown file to write")
    parser.add_argument("--jobs", help="concurrent jobs to measure, e.g. 1,2,4,8,16 (default)")
    parser.add_argument("--hidden", type=int, default=PAPER.student.hidden, help="student width (paper: 256)")
    parser.add_argument("--trial-steps", type=int, help="steps of the timed run a trial is extrapolated from "
                        "(default 2000)")
    parser.add_argument("--seconds-per-job", type=float, help="seconds each concurrent job is timed (default 10)")
    parser.add_argument("--det-steps", type=int, help="steps of each same-seed run (default 200)")
    args = parser.parse_args(argv)
    command = "python benchmarks/bench_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    command = command.strip()
    if args.device != "cpu" and not torch.cuda.is_available():
        print(NO_CUDA)
        write(args.out, no_cuda_report(command))
        return 0
    device = torch.device("cpu" if args.device == "cpu" else "cuda:0")
    torch.set_num_threads(1)  # as a job runs (harness.study.workers.default_threads: one thread per job)
    budget = Budget(args.budget_s)
    m = measure(args, device, budget)
    m["hidden"] = args.hidden
    text = report(m, device, command, budget.seconds - budget.left())
    print(text)
    write(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
