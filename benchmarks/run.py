"""Run every benchmark of the harness, print one table and write it to benchmarks/RESULTS.md.

Run from the repository root:

    /work/venv/bin/python -m benchmarks.run            # full run (about 15-20 minutes on 2 cores)
    /work/venv/bin/python -m benchmarks.run --quick    # smoke run, smaller sizes (a few minutes)

Each figure is a ratio of two timings taken in the same run (see each bench_*.py for what is timed).
A table row is a dict: figure, measured, baseline, ratio (float or None), target (text), met (bool or None).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
COLUMNS = ("figure", "measured", "baseline", "ratio", "target", "met?")
NOTES = [
    "The first run on a machine also builds the benchmark bundles (tiny and quick synthetic corpora, their "
    "features and teachers) into $TMPDIR/harness-bench-cache; that time is in no figure.",
    "The machine is shared: other processes raise the load average printed above, and every figure, most of "
    "all the 2-thread and parallel ones, is lower than on an idle machine.",
]


def machine() -> dict[str, str]:
    """Cores, CPU model, torch and numpy versions, the BLAS libraries numpy uses, and the load."""
    import numpy as np
    import torch
    from threadpoolctl import threadpool_info

    from harness.study.environment import cpu_model

    model = cpu_model()
    blas = ", ".join(f"{i['internal_api']} {i['version']} ({i['num_threads']} thr)" for i in threadpool_info())
    return {"cores": str(os.cpu_count()), "cpu": model, "python": platform.python_version(),
            "torch": torch.__version__, "torch threads (default)": str(torch.get_num_threads()),
            "numpy": np.__version__, "numpy BLAS / OpenMP": blas or "none found",
            "load average (1, 5, 15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def commit() -> str:
    """`git rev-parse HEAD`, with +dirty when the work tree has changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git work tree)"
    return head + ("+dirty" if dirty else "")


def _cell(row: dict, key: str) -> str:
    if key == "ratio":
        return "" if row.get("ratio") is None else f"{row['ratio']:.2f}"
    if key == "met?":
        met = row.get("met")
        return "" if met is None else ("yes" if met else "NO")
    return str(row.get(key, ""))


def format_table(rows: list[dict]) -> str:
    """A Markdown table (also readable as plain text)."""
    cells = [[_cell(r, k) for k in COLUMNS] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) if cells else len(k) for i, k in enumerate(COLUMNS)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    return "\n".join([line(COLUMNS), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def standalone(run: Callable[[bool, Path], list[dict]], doc: str, quick_help: str, cache: Path) -> None:
    """The command line of a benchmark run alone: `python -m benchmarks.bench_x [--quick] [--cache DIR]`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--cache", type=Path, default=cache, help="cache for the benchmark bundles")
    args = parser.parse_args()
    print_table(run(args.quick, args.cache))


def print_table(rows: list[dict]) -> None:
    print(format_table(rows), flush=True)


def eval_rows(quick: bool) -> list[dict]:
    """Benchmark 2 (benchmarks/bench_eval.py, post-processing + event F1) as table rows."""
    from benchmarks import bench_eval

    rows = bench_eval.run(n_clips=bench_eval.N_VALIDATION_CLIPS, repeats=1 if quick else 3)
    by = {r["evaluator"]: r for r in rows}
    fast, ref = by["fast"], by["sed_eval"]
    n = fast["n_clips"]
    return [
        {"figure": f"evaluation: post-processing + event F1, {n} clips, fast vs sed_eval",
         "measured": f"{fast['seconds']:.3f} s", "baseline": f"{ref['seconds']:.3f} s", "ratio": fast["speedup"],
         "target": ">= 20", "met": fast["speedup"] >= 20},
        {"figure": "evaluation: event F1 alone, fast vs sed_eval", "measured": f"{fast['f1_seconds']:.3f} s",
         "baseline": f"{ref['f1_seconds']:.3f} s", "ratio": fast["f1_speedup"], "target": ">= 20",
         "met": fast["f1_speedup"] >= 20},
        {"figure": "evaluation: same macro F1 as sed_eval (abs. difference < 1e-12)",
         "measured": f"{fast['macro_f1']:.6f}", "baseline": f"{ref['macro_f1']:.6f}", "ratio": None,
         "target": "equal", "met": bool(fast["f1_equal"])},
    ]


# The paper protocol's trial (harness.config.TrainConfig.steps) and the share of its GPU training that a job's
# final evaluation may take (issue 25); the GPU step is not measured here (benchmarks/RESULTS-gpu.md).
PAPER_STEPS = 48790
EVAL_SHARE = 0.05
RECURRENT_STEP_US = 2.0  # assumed least time of one dependent LSTM time step on a GPU (a kernel-level step)


def final_eval_rows(quick: bool) -> list[dict]:
    """A job's final evaluation (PSDS1, PSDS2, intersection and collar F1 on validation and test) and the
    report's clip bootstrap, fast engine vs sed_scores_eval at the quick corpus's size and at DESED's
    (benchmarks/bench_final_eval.py; --quick: the quick size only, one repeat), and the evaluation at DESED size
    against a paper trial's GPU training, which is estimated, not measured (the estimate: final_eval_gpu_rows)."""
    from benchmarks import bench_final_eval

    sizes = ["quick"] if quick else ["quick", "desed"]
    rows, _ = bench_final_eval.run(sizes, 1 if quick else 2)
    out = []
    for r in rows:
        if r["part"] not in ("**a job's final evaluation**", bench_final_eval.TOTAL):
            continue
        what = "a job's final evaluation (val + test)" if "job" in r["part"] else "clip bootstrap, 200 resamples"
        ratio = r["before_wall"] / r["after_wall"]
        out.append({"figure": f"{what}, {r['size']} size: fast vs sed_scores_eval (same numbers: {r['same']})",
                    "measured": f"{r['after_wall']:.2f} s", "baseline": f"{r['before_wall']:.2f} s", "ratio": ratio,
                    "target": ">= 5", "met": ratio >= 5 and bool(r["same"])})
    desed = [r for r in rows if r["size"] == "desed" and "job" in r["part"]]
    if desed:
        out += final_eval_gpu_rows(desed[0]["after_wall"])
    return out


def final_eval_gpu_rows(eval_seconds: float) -> list[dict]:
    """The evaluation at DESED size as a share of a paper trial's GPU training. No GPU here: the row gives the
    GPU step at which the share is 5 % (break-even) and two estimates of that step from the paper student's
    size (harness.plugins models: MACs per clip; 6 FLOP a MAC for forward and backward, batch 16): its FLOPs at
    an H100's FP32 peak (67 TFLOP/s, a bound no batch-16 LSTM reaches) and its recurrence, 3 layers x 500
    dependent time steps forward and as many backward at RECURRENT_STEP_US each (assumed)."""
    import harness.builtins  # noqa: F401 - registers the built-in models
    from harness import plugins
    from harness.config import MethodConfig

    c = MethodConfig()
    size = plugins.models.get(c.student.model).size(c.student, c.features.student_mels, 10, c.features.n_frames)
    flop_step = 6 * size.macs_per_clip * c.train.batch_size
    flop_ms = flop_step / 67e12 * 1e3
    recurrent_ms = 2 * c.student.layers * c.features.n_frames * RECURRENT_STEP_US / 1e3
    breakeven_ms = eval_seconds / (EVAL_SHARE * PAPER_STEPS) * 1e3
    share = lambda ms: eval_seconds / (PAPER_STEPS * ms / 1e3)  # noqa: E731
    return [
        {"figure": f"evaluation at DESED size / paper trial's GPU training ({PAPER_STEPS:,} steps): not measured (no "
                   f"GPU); break-even GPU step for {EVAL_SHARE:.0%}",
         "measured": f"{eval_seconds:.2f} s", "baseline": f"{breakeven_ms:.1f} ms/step", "ratio": None,
         "target": f"<= {EVAL_SHARE:.0%}", "met": None},
        {"figure": f"  estimate, recurrence-bound step ({2 * c.student.layers} x {c.features.n_frames} time steps x "
                   f"{RECURRENT_STEP_US:g} us): share of the trial",
         "measured": f"{share(recurrent_ms):.1%}", "baseline": f"{recurrent_ms:.1f} ms/step", "ratio": None,
         "target": "(info)", "met": None},
        {"figure": f"  estimate, FLOP-bound step ({flop_step / 1e9:.0f} GFLOP at 67 TFLOP/s): share of the trial",
         "measured": f"{share(flop_ms):.1%}", "baseline": f"{flop_ms:.2f} ms/step", "ratio": None,
         "target": "(info)", "met": None},
    ]


def benchmarks() -> list[tuple[str, Callable[[bool], list[dict]]]]:
    from benchmarks import (bench_checkpoint, bench_features, bench_memory, bench_parallel, bench_startup, bench_step,
                            bench_training, bench_verify)

    return [("1 training", bench_training.run), ("2 evaluation", eval_rows), ("3 features", bench_features.run),
            ("4 parallel", bench_parallel.run), ("5-6 study overhead and memory", bench_memory.run),
            ("7 trust", bench_verify.run), ("8 checkpoints", bench_checkpoint.run),
            ("9 training step, fp32 and bf16", bench_step.run), ("10 start-up", bench_startup.run),
            ("11 final evaluation", final_eval_rows)]


# A figure of a RESULTS.md written before it had a section per benchmark: its benchmark, by the figure's start.
_OLD_SECTIONS = (("  h=32, fp32 alone", "9 training step, fp32 and bf16"), ("training steps/s", "1 training"),
                 ("  h=", "1 training"), ("student FLOP/s", "1 training"),
                 ("matmul", "1 training"), ("evaluation:", "2 evaluation"), ("features", "3 features"),
                 ("parallel", "4 parallel"), ("study overhead", "5-6 study overhead and memory"),
                 ("  of which", "5-6 study overhead and memory"), ("memory:", "5-6 study overhead and memory"),
                 ("trust:", "7 trust"), ("checkpoint", "8 checkpoints"), ("  checkpoint", "8 checkpoints"),
                 ("  training step, h=", "8 checkpoints"), ("training step, quick job", "9 training step, fp32 and bf16"),
                 )


def kept_sections(text: str) -> dict[str, list[str]]:
    """Benchmark name -> the lines of its section in an earlier RESULTS.md (its "measured" line and table), so
    that `--only` replaces the sections it runs and keeps the others with the commit and date they were
    measured at. A file from before the sections: its one table split by figure (_OLD_SECTIONS)."""
    lines = text.splitlines()
    if any(line.startswith("## ") and line[3:4].isdigit() for line in lines):
        sections, name = {}, None
        for line in lines:
            if line.startswith("## "):
                name = line[3:] if line[3:4].isdigit() else None
                if name:
                    sections[name] = []
            elif name:
                sections[name].append(line)
        return sections
    written = next((line for line in lines if line.startswith("Written by")), "")
    commit_line = next((line for line in lines if line.startswith("- commit:")), "")
    header = [line for line in lines if line.startswith("| figure")][:1]
    rule = [line for line in lines if line.startswith("| ---")][:1]
    sections: dict[str, list[str]] = {}
    for line in lines:
        if not line.startswith("| ") or line.startswith(("| figure", "| ---")):
            continue
        figure = line[2:]
        name = next((n for prefix, n in _OLD_SECTIONS if figure.startswith(prefix)), None)
        if name:
            sections.setdefault(name, ["", f"Not measured again: {written} ({commit_line[2:]}).", "", *header, *rule])
            sections[name].append(line)
    return {k: [*v, ""] for k, v in sections.items()}


def write_results(sections: dict[str, list[dict]], info: dict[str, str], command: str, seconds: float,
                  notes: list[str], only: list[str] | None = None) -> None:
    """One section per benchmark, in the order of benchmarks(); with `only`, the sections not run are kept from
    the RESULTS.md there was (kept_sections), each saying when it was measured."""
    kept = kept_sections(RESULTS.read_text()) if only and RESULTS.exists() else {}
    lines = ["# Benchmark results", "",
             f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
             f"in {seconds / 60:.1f} min.", "", f"- commit: `{commit()}`"]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", "Each ratio is taken in the same run; targets are for a 2-core CPU. What each figure times is "
              "described in the docstring of its `benchmarks/bench_*.py`."]
    for name, _ in benchmarks():
        if name in sections:
            lines += ["", f"## {name}", "", f"Measured in this run (`{command}`, commit above).", "",
                      format_table(sections[name])]
        elif name in kept:
            lines += ["", f"## {name}", *kept[name]]
    lines += ["", "## Notes", "", *(f"- {n}" for n in [*notes, *NOTES]), ""]
    RESULTS.write_text("\n".join(line.rstrip() for line in lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the harness benchmarks; write benchmarks/RESULTS.md.")
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run of a few minutes")
    parser.add_argument("--only", nargs="*", help="run only the benchmarks whose name contains one of these")
    args = parser.parse_args(argv)
    info_before = machine()
    start = time.perf_counter()
    rows: list[dict] = []
    sections: dict[str, list[dict]] = {}
    notes: list[str] = []
    for name, fn in benchmarks():
        if args.only and not any(o in name for o in args.only):
            continue
        print(f"== {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            part = fn(args.quick)
        except Exception as e:  # noqa: BLE001 - one broken benchmark must not lose the others' figures
            part = [{"figure": f"{name}: FAILED ({type(e).__name__}: {str(e)[:120]})", "measured": "",
                     "baseline": "", "ratio": None, "target": "", "met": False}]
            traceback.print_exc()
        rows += part
        sections[name] = part
        print_table(part)
        notes.append(f"{name}: {time.perf_counter() - t0:.0f} s")
    info = {**info_before, "load average at the end": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    command = "python -m benchmarks.run" + (" --quick" if args.quick else "") + (
        f" --only {' '.join(args.only)}" if args.only else "")
    print()
    print_table(rows)
    write_results(sections, info, command, time.perf_counter() - start, notes, args.only)
    print(f"written: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
