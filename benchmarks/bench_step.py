"""Benchmark 9: where each millisecond of a quick-profile training step goes, fp32 against bf16 autocast.

Run from the repository root: python -m benchmarks.bench_step [--quick] [--hidden 32 256] [--steps N]
It prints the table and writes benchmarks/RESULTS-step.md (with the load average before and after);
`python -m benchmarks.run` takes its h = 32 figures into benchmarks/RESULTS.md.

What is timed. A quick-profile job (`--profile quick`: h = 32, batch 16, custom SpecAugment, event masking,
strong+weak pseudolabels, Adam) on the quick synthetic corpus's real bundle (memory-mapped features), in the
training set of its last generations (all of U in use: 1,900 clips, 119 steps an epoch). Each step is the
step of `harness.method.train._run_epoch`, made of the same calls, with `time.perf_counter()` read between
them (manual timing, not torch.profiler: the profiler's per-op records cost about as much as the small
ops they time). On CPU every op has finished when its call returns, so the clock between two calls is
that part's time; with `--device cuda` the benchmark synchronises the device at each boundary. Parts:

- gather: `Pool.batch` (16 clips from the memmaps, normalised, targets) and the copy to the device;
- SpecAugment: `spec_augment` (custom: top-2 class time masks + a frequency mask);
- forward LSTM / forward heads: the student's forward under `autocast(train.precision)`, split by hooks
  on its LSTM (a forward hook reads the clock when the LSTM returns);
- loss: `loss_terms` + `check_finite` + the total;
- backward heads + loss / backward LSTM: `total.backward()`, split where the gradient reaches the LSTM's
  output (a tensor hook on it reads the clock; the input needs no gradient, so everything after it is
  the LSTM's backward and its weights' gradient accumulation);
- optimiser: `zero_grad` + `Adam.step`;
- bookkeeping: the four `.item()` reads of the loss terms for the epoch means.

"sum of parts" is checked against the real `_run_epoch` over the same number of steps on the same model
("real step"); the difference is what the clock reads cost and what the split misses. Validation is timed
per epoch, as `evaluate(model, bundle, "validation", ...)` does it: `predict` on the 300 validation clips
(always float32, whatever train.precision) and the scoring (post-processing, event and segment F1); its
time per step is the epoch's validation over the 119 steps of an epoch. "job estimate" = the quick profile's steps
(harness.study.plan.QUICK_STEPS) x real step + a validation per epoch, without the final test evaluation.

Each process uses one torch thread and one BLAS thread; "x2 parallel" runs two identical processes at the
same time (started together at each phase), as `harness run --jobs 2` does on 2 cores: the figure is the
mean of the two. Times are means over the timed steps (the cost a job pays; the median of the step is
shown too), after warm-up steps; fp32 and bf16 alternate in short rounds (8 of 25 steps each at h = 32),
so that a change in the machine's load hits both.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "RESULTS-step.md"
PARTS = ("gather", "SpecAugment", "forward LSTM", "forward heads + pooling", "loss", "backward heads + loss",
         "backward LSTM", "optimiser", "bookkeeping")
STEPS_PER_EPOCH = 119  # quick profile, all of U in use: ceil((400 + 300 + 1200) / 16)
# The first three generations (2 epochs each) train on 700, 940 and 1,180 clips: 44, 59 and 74 steps an epoch.
EARLY_EPOCHS, EARLY_STEPS = 6, 2 * (44 + 59 + 74)


def quick_epochs(steps: int) -> int:
    """Epochs of a quick-profile job of `steps` steps (34 at 3,600; 19 at the profile's 1,800)."""
    return EARLY_EPOCHS + -(-(steps - EARLY_STEPS) // STEPS_PER_EPOCH)


def quick_job(cache: Path, hidden: int, corpus: str = "quick"):
    """(MethodConfig, bundle path) of a quick-profile job of the benchmark study, at student width `hidden`;
    corpus "tiny" (a smoke run) puts the same config on the tiny corpus's bundle."""
    from benchmarks.bench_training import build_bundle, write_study
    from harness.study.plan import expand, resolve
    from harness.study.spec import load_study

    bundle = build_bundle(cache, corpus)
    with tempfile.TemporaryDirectory() as tmp:
        config = expand(resolve(load_study(write_study(Path(tmp))), "quick", cache))[0].config
    return dataclasses.replace(config, student=dataclasses.replace(config.student, hidden=hidden)), bundle


class StepTimer:
    """One student, optimiser and data stream, stepped with a clock read between the parts of each step."""

    def __init__(self, config, bundle_path: Path, device: str, seed: int = 0) -> None:
        import torch

        from harness.bundle import Bundle
        from harness.method import train as train_mod
        from harness.model.student import Student

        torch.manual_seed(seed)
        self.torch, self.train_mod = torch, train_mod
        self.config, self.device = config, torch.device(device)
        self.bundle = Bundle.open(bundle_path)
        self.pool = train_mod.Pool.from_bundle(self.bundle)
        self.model = Student(self.pool.features["synthetic"].shape[2], config.student).to(self.device)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=config.train.lr, betas=config.train.betas)
        self.median_frames = torch.as_tensor(self.bundle.event_frames["median"], dtype=torch.float32)
        self.aug_gen = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        self.items = train_mod._items(self.pool, np.arange(self.pool.size("unlabeled"), dtype=np.int64), rng)
        self.next = 0
        self.marks: dict[str, float] = {}
        self.model.lstm.register_forward_hook(self._lstm_done)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def _now(self) -> float:
        self._sync()
        return time.perf_counter()

    def _lstm_done(self, module, inputs, output) -> None:
        self.marks["lstm"] = self._now()
        if output[0].requires_grad:
            output[0].register_hook(self._grad_at_lstm)

    def _grad_at_lstm(self, grad):
        self.marks["grad_at_lstm"] = self._now()
        return grad

    def _batch(self):
        b = self.config.train.batch_size
        rows = (self.next * b + np.arange(b)) % len(self.items)
        self.next += 1
        return self.items[rows]

    def step(self, precision: str) -> dict[str, float]:
        """One training step; returns seconds per part (PARTS)."""
        from harness.method.augment import spec_augment
        from harness.method.losses import check_finite, loss_terms

        config, device, model = self.config, self.device, self.model
        model.train()
        t0 = self._now()
        x, batch = self.pool.batch(self._batch(), device)
        t1 = self._now()
        if config.augment.kind != "none":
            x = spec_augment(x.cpu(), batch.weak.cpu(), config.augment, self.median_frames, self.aug_gen).to(device)
        t2 = self._now()
        with self.train_mod.autocast(precision, device):
            frame, clip = model(x)
        t3 = self._now()
        terms = loss_terms(frame, clip, batch, config.loss)
        check_finite(terms, 1, 1)
        total = terms.weak + terms.strong + terms.unlabeled
        t4 = self._now()
        self.optimiser.zero_grad(set_to_none=True)
        total.backward()
        t5 = self._now()
        self.optimiser.step()
        t6 = self._now()
        [terms.weak.item(), terms.strong.item(), terms.unlabeled.item(), total.item()]
        t7 = self._now()
        lstm, grad = self.marks["lstm"], self.marks["grad_at_lstm"]
        return {"gather": t1 - t0, "SpecAugment": t2 - t1, "forward LSTM": lstm - t2,
                "forward heads + pooling": t3 - lstm, "loss": t4 - t3, "backward heads + loss": grad - t4,
                "backward LSTM": t5 - grad, "optimiser": t6 - t5, "bookkeeping": t7 - t6}

    def real_steps(self, precision: str, steps: int) -> float:
        """Seconds per step of the real `_run_epoch` over `steps` steps (same model, data and optimiser)."""
        config = dataclasses.replace(self.config, train=dataclasses.replace(
            self.config.train, steps=10**9, epoch_steps=steps, precision=precision))
        outcome = self.train_mod.TrainOutcome(model=self.model, best_epoch=0, best_val_f1=-1.0, steps=0)
        start = self._now()
        self.train_mod._run_epoch(self.model, self.optimiser, self.pool, self.items, config, self.median_frames,
                                  self.aug_gen, outcome, 1, self.device)
        return (self._now() - start) / steps

    def validation(self) -> tuple[float, float]:
        """Seconds of one epoch's validation: (predict on the validation clips, scoring)."""
        train_mod = self.train_mod
        mean, std = self.bundle.norm
        start = self._now()
        frame, clip = train_mod.predict(self.model, self.bundle.features("validation"), mean, std, self.device)
        mid = self._now()
        train_mod.score(frame, clip, self.bundle, "validation", self.config)
        return mid - start, time.perf_counter() - mid


def _worker(config, bundle_path: str, device: str, plan: dict, barrier, queue, index: int) -> None:
    """One measuring process: 1 thread, rounds of (fp32, bf16) phases, each started at the barrier."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    with threadpool_limits(1):
        timer = StepTimer(config, Path(bundle_path), device)
        out = {p: {"parts": {k: [] for k in PARTS}, "step": [], "real": [], "predict": [], "score": []}
               for p in plan["precisions"]}
        for precision in plan["precisions"]:  # warm-up: oneDNN kernels, allocator, page cache
            for _ in range(plan["warmup"]):
                timer.step(precision)
            timer.validation()
        for _ in range(plan["rounds"]):
            for precision in plan["precisions"]:
                rec = out[precision]
                barrier.wait()
                for _ in range(plan["steps"]):
                    parts = timer.step(precision)
                    for k, v in parts.items():
                        rec["parts"][k].append(v)
                    rec["step"].append(sum(parts.values()))
                barrier.wait()
                rec["real"].append(timer.real_steps(precision, plan["steps"]))
                barrier.wait()
                predict, score = timer.validation()
                rec["predict"].append(predict)
                rec["score"].append(score)
    queue.put((index, out))


def measure(config, bundle_path: Path, device: str, processes: int, plan: dict) -> list[dict]:
    """Run `processes` measuring processes at once; their raw records, one dict per process."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(config, str(bundle_path), device, plan, barrier, queue, i))
             for i in range(processes)]
    for p in procs:
        p.start()
    results = dict(queue.get() for _ in procs)
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a measuring process exited {p.exitcode}")
    return [results[i] for i in range(processes)]


def summarise(records: list[dict], precision: str) -> dict[str, float]:
    """Milliseconds per step of each part and of the step, means over the processes' timed steps."""
    recs = [r[precision] for r in records]
    ms = {k: 1000 * float(np.mean([np.mean(r["parts"][k]) for r in recs])) for k in PARTS}
    ms["sum of parts"] = sum(ms[k] for k in PARTS)
    ms["step (median)"] = 1000 * float(np.mean([np.median(r["step"]) for r in recs]))
    ms["real step (_run_epoch)"] = 1000 * float(np.mean([np.mean(r["real"]) for r in recs]))
    predict = float(np.mean([np.mean(r["predict"]) for r in recs]))
    score = float(np.mean([np.mean(r["score"]) for r in recs]))
    ms["validation predict (s / epoch)"] = predict
    ms["validation scoring (s / epoch)"] = score
    ms["validation per step"] = 1000 * (predict + score) / STEPS_PER_EPOCH
    from harness.study.plan import QUICK_STEPS  # imported where used, like the module's other harness imports

    job_seconds = (QUICK_STEPS * ms["real step (_run_epoch)"] / 1000
                   + quick_epochs(QUICK_STEPS) * (predict + score))
    ms["job estimate (min)"] = job_seconds / 60
    return ms


ROWS = (*PARTS, "sum of parts", "real step (_run_epoch)", "step (median)", "validation predict (s / epoch)",
        "validation scoring (s / epoch)", "validation per step", "job estimate (min)")


def format_table(columns: dict[str, dict[str, float]]) -> str:
    """Markdown: a row per part, a column per (precision, processes); ms unless the row says otherwise."""
    names = list(columns)
    head = "| part (ms per step unless stated) | " + " | ".join(names) + " |"
    rule = "|:---|" + "---:|" * len(names)
    lines = [head, rule]
    for row in ROWS:
        fmt = ".2f" if "(s / epoch)" in row or "min" in row else ".1f"
        lines.append(f"| {row} | " + " | ".join(format(columns[n][row], fmt) for n in names) + " |")
    return "\n".join(lines)


def ratio_lines(columns: dict[str, dict[str, float]]) -> list[str]:
    """bf16 / fp32 of the real step and of the LSTM parts, alone and in parallel."""
    lines = []
    for mode in ("alone", "x2 parallel"):
        f, b = columns.get(f"fp32 {mode}"), columns.get(f"bf16 {mode}")
        if f is None or b is None:
            continue
        lstm_f = f["forward LSTM"] + f["backward LSTM"]
        lstm_b = b["forward LSTM"] + b["backward LSTM"]
        real = b["real step (_run_epoch)"] / f["real step (_run_epoch)"]
        lines.append(f"{mode}: real step bf16 / fp32 = {real:.2f}; LSTM forward + backward bf16 / fp32 = "
                     f"{lstm_b / lstm_f:.2f}; LSTM share of the fp32 step {lstm_f / f['sum of parts']:.0%}")
    return lines


def write_results(text: str, path: Path = RESULTS) -> None:
    path.write_text(text, encoding="utf-8")


def plan_for(hidden: int, quick: bool = False, steps: int | None = None, rounds: int | None = None) -> dict:
    """Warm-up steps, rounds and timed steps per round for a student of width `hidden`.

    Short rounds, fp32 and bf16 alternating, spread a change in the machine's load over both precisions.
    A step of h = 256 costs ~20x one of h = 32: it gets fewer steps.
    """
    wide = hidden > 64
    default_steps = (3 if wide else 10) if quick else (5 if wide else 25)
    default_rounds = (1 if wide else 2) if quick else (4 if wide else 8)
    return {"precisions": ("fp32", "bf16"), "warmup": 3 if quick or wide else 10,
            "steps": steps or default_steps, "rounds": rounds or default_rounds}


def measure_hidden(hidden: int, cache: Path, device: str, plan: dict, corpus: str = "quick"
                   ) -> tuple[dict[str, dict[str, float]], list]:
    """Columns "fp32 alone", "bf16 alone", "fp32 x2 parallel", "bf16 x2 parallel" of `summarise`, and the
    1-minute load average before the first phase and after each."""
    config, bundle = quick_job(cache, hidden, corpus)
    columns: dict[str, dict[str, float]] = {}
    loads = [os.getloadavg()[0]]
    for processes, mode in ((1, "alone"), (2, "x2 parallel")):
        print(f"== h = {hidden}, {mode} ...", file=sys.stderr, flush=True)
        records = measure(config, bundle, device, processes, plan)
        for precision in plan["precisions"]:
            columns[f"{precision} {mode}"] = summarise(records, precision)
        loads.append(os.getloadavg()[0])
        print(f"   load {loads[-2]:.2f} -> {loads[-1]:.2f}", file=sys.stderr, flush=True)
    return columns, loads


def rows_from(columns: dict[str, dict[str, float]], hidden: int) -> list[dict]:
    """benchmarks.run table rows: the real step in bf16 against fp32, alone and two in parallel, the LSTM's
    share of the fp32 step and the validation pass."""
    real = "real step (_run_epoch)"
    rows = []
    for mode in ("alone", "x2 parallel"):
        f, b = columns[f"fp32 {mode}"], columns[f"bf16 {mode}"]
        rows.append({"figure": f"training step, quick job (h={hidden}, 1 thr), {mode}: bf16 vs fp32 (_run_epoch)",
                     "measured": f"{b[real]:.1f} ms", "baseline": f"{f[real]:.1f} ms", "ratio": f[real] / b[real],
                     "target": "(info)", "met": None})
    f = columns["fp32 alone"]
    lstm = f["forward LSTM"] + f["backward LSTM"]
    rows.append({"figure": f"  h={hidden}, fp32 alone: LSTM forward + backward / sum of the step's parts",
                 "measured": f"{lstm:.1f} ms", "baseline": f"{f['sum of parts']:.1f} ms",
                 "ratio": lstm / f["sum of parts"], "target": "(info)", "met": None})
    rows.append({"figure": f"  h={hidden}, fp32 alone: validation per epoch (predict + scoring, 300 clips)",
                 "measured": f"{f['validation predict (s / epoch)'] + f['validation scoring (s / epoch)']:.2f} s",
                 "baseline": "", "ratio": None, "target": "(info)", "met": None})
    return rows


def run(quick: bool = False, cache: Path | None = None) -> list[dict]:
    """Benchmark 9 as benchmarks.run table rows (the quick profile's h = 32 only; the full table:
    `python -m benchmarks.bench_step`). quick: a smoke run on the tiny corpus."""
    from benchmarks.bench_training import DEFAULT_CACHE

    columns, _ = measure_hidden(32, cache or DEFAULT_CACHE, "cpu", plan_for(32, quick), "tiny" if quick else "quick")
    return rows_from(columns, 32)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.bench_training import DEFAULT_CACHE
    from benchmarks.run import commit, machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few timed steps on the tiny corpus (a smoke run)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[32], help="student widths (quick: 32)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per round and precision (default 25 for h <= 64, 5 above)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of (fp32, bf16) (default 8 for h <= 64, 4 above)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache for the benchmark bundle")
    parser.add_argument("--commit", default=None, help="commit text for the results file (default: ask git)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (default benchmarks/RESULTS-step.md)")
    args = parser.parse_args(argv)
    before, start = machine(), time.perf_counter()
    sections = []
    for hidden in args.hidden:
        plan = plan_for(hidden, args.quick, args.steps, args.rounds)
        columns, loads = measure_hidden(hidden, args.cache, args.device, plan, "tiny" if args.quick else "quick")
        table = format_table(columns)
        print(f"\nh = {hidden}\n{table}\n" + "\n".join(ratio_lines(columns)), flush=True)
        what = "the quick profile" if hidden == 32 else "the quick profile with a wider student (the paper's h)"
        sections += [f"## h = {hidden}: {what}", "",
                     f"{plan['rounds']} rounds of {plan['steps']} timed steps per precision and per process, fp32 "
                     f"and bf16 alternating, after {plan['warmup']} warm-up steps each; load average (1 min) "
                     f"{loads[0]:.2f} before the first phase, {loads[1]:.2f} after the processes alone, "
                     f"{loads[2]:.2f} after the two in parallel.", "",
                     table, "", *(f"- {line}" for line in ratio_lines(columns)), ""]
    after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    command = "python -m benchmarks.bench_step" + (" --quick" if args.quick else "") + (
        f" --hidden {' '.join(map(str, args.hidden))}" if args.hidden != [32] else "") + (
        f" --steps {args.steps}" if args.steps else "") + (f" --rounds {args.rounds}" if args.rounds else "") + (
        f" --device {args.device}" if args.device != "cpu" else "")
    lines = ["# Benchmark results: the training step, part by part, fp32 and bf16", "",
             f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in "
             f"{(time.perf_counter() - start) / 60:.1f} min, device {args.device}.", "",
             f"- commit: `{args.commit or commit()}`", *(f"- {k}: {v}" for k, v in before.items()),
             f"- load average at the end: {after}", "",
             "What each row times and how: see the docstring of `benchmarks/bench_step.py`. The machine's load "
             "(above) slows every figure, the parallel ones most; compare columns of one run, not runs.", "",
             *sections]
    write_results("\n".join(lines), args.out)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
