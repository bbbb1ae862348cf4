"""Benchmark: a job's final threshold-free evaluation and the clip bootstrap, sed_scores_eval vs fast.

Run from the repository root:

    /work/venv/bin/python -m benchmarks.bench_final_eval [--sizes quick desed] [--repeats 3]

Prints a markdown table and writes it to benchmarks/RESULTS-eval.md.

What is timed, per split (validation, test) and engine (harness.evaluation.psds, `engine=`):

- "score set": everything a metric needs before its first statistic: score_set (reference lists,
  the score arrays) plus, for sed_scores_eval, one pandas DataFrame per clip (ScoredSet.scores) and,
  for the fast engine, the runs and events shared by the four metrics (ScoredSet.fast);
- PSDS1, PSDS2, intersection F1, collar F1: each metric on that prepared set;
- "final evaluation": their sum, which is what psds_metrics (harness.study.job._psds) runs;
- the report's clip bootstrap (bootstrap.psds_intervals, 200 resamples, the four metrics) on the
  validation split, split into the per-clip statistics (what the engine changes: sed_scores_eval's
  deltas, or the fast engine's changes) and the re-weighting of the point and the 200 resamples.

A second table times the same bootstrap before and after its re-weighting was rewritten (fast
engine both): "before" is the previous implementation, kept as bootstrap._reference_intervals
(per-clip deltas, then prefix sums of the weighted deltas over every change point and one ROC per
resample); "after" is psds_intervals (the fast engine's changes, then `weights @ per-clip statistics`
at the thresholds that can be on a PSD-ROC). "same" compares the intervals exactly (==). Its last
lines split the gain: the new re-weighting on the old per-clip deltas, then on the changes.

Inputs: bench_eval's realistic reference (0-4 events per clip around the DESED median lengths) and
noisy scores (jittered boundaries, holes, misses, false alarms), at the quick corpus size (300 clips
of 250 frames per split, hop 0.04 s) and at DESED size (1,168 validation and 692 test clips of 500
frames, hop 0.02 s), 10 classes. Times are the best of `repeats` runs, wall clock and CPU time of
this process (the machine may be shared: CPU time is the steadier figure); the slow sed_scores_eval
runs at DESED size are run once. "same" says whether both engines gave exactly the same numbers
(every metric, per class, and the bootstrap intervals).
"""

import argparse
import datetime
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.bench_eval import make_predictions, make_reference
from harness.evaluation import bootstrap, fast_psds
from harness.evaluation.psds import PSDS1, PSDS2, collar_f1, intersection_f1, metric_deltas, psds_value, score_set

SIZES = {
    "quick": {"splits": {"validation": 300, "test": 300}, "n_frames": 250, "hop": 0.04},
    "desed": {"splits": {"validation": 1168, "test": 692}, "n_frames": 500, "hop": 0.02},
}
ENGINES = ("sed_scores_eval", "fast")
METRICS = ("PSDS1", "PSDS2", "intersection F1", "collar F1")
RESAMPLES = 200
RESULTS = Path(__file__).with_name("RESULTS-eval.md")
TOTAL = f"**bootstrap {RESAMPLES} (psds_intervals)**"


def make_split(n_clips: int, n_frames: int, hop: float, seed: int) -> dict:
    """Arguments of psds_metrics for one synthetic split (bench_eval's generators)."""
    rng = np.random.default_rng(seed)
    ids, reference = make_reference(rng, n_clips, n_frames * hop)
    frame, _ = make_predictions(rng, ids, reference, n_frames, hop)
    return {"frame_probs": frame, "clip_ids": ids, "durations": np.full(n_clips, n_frames * hop),
            "reference": reference, "hop_seconds": hop}


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """(best wall seconds, best CPU seconds, last value) over repeats calls."""
    wall, cpu, value = float("inf"), float("inf"), None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        value = fn()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu, value


def final_evaluation(split: dict, engine: str, repeats: int) -> dict[str, tuple[float, float, object]]:
    """Part -> (wall s, CPU s, value) of the final evaluation of one split with one engine."""
    kwargs = {k: split[k] for k in ("frame_probs", "clip_ids", "durations", "reference")}

    def prepare():
        scored = score_set(**kwargs, hop_seconds=split["hop_seconds"])
        _ = scored.scores if engine == "sed_scores_eval" else scored.fast  # built now, timed here
        return scored

    out = {"score set": timed(prepare, repeats)}
    scored = out["score set"][2]
    calls = {
        "PSDS1": lambda: psds_value(scored, PSDS1, engine=engine),
        "PSDS2": lambda: psds_value(scored, PSDS2, engine=engine),
        "intersection F1": lambda: intersection_f1(scored, engine=engine),
        "collar F1": lambda: collar_f1(scored, engine=engine),
    }
    out.update({name: timed(call, repeats) for name, call in calls.items()})
    return out


def clip_bootstrap(split: dict, engine: str, repeats: int) -> dict[str, tuple[float, float, object]]:
    """Part -> (wall s, CPU s, value) of psds_intervals on one split with one engine: the per-clip
    statistics, the re-weighting (point and resamples, to the intervals), the whole call."""
    kwargs = {k: split[k] for k in ("frame_probs", "clip_ids", "durations", "reference", "hop_seconds")}
    scored = score_set(**{k: v for k, v in kwargs.items() if k != "hop_seconds"}, hop_seconds=split["hop_seconds"])
    _ = scored.scores if engine == "sed_scores_eval" else scored.fast  # built before: timed in the final evaluation
    n = len(scored.clip_ids)
    weights = bootstrap.resample_counts(n, RESAMPLES, np.random.default_rng(0)).astype(float)
    stats = timed(lambda: bootstrap._metric_statistics(scored, bootstrap.PSDS_METRICS, engine), repeats)
    total = timed(lambda: bootstrap.psds_intervals(**kwargs, rng=np.random.default_rng(0), n_resamples=RESAMPLES,
                                                   engine=engine), repeats)
    return {"per-clip statistics": stats, "re-weighting": timed(lambda: _intervals(scored, stats[2], weights), repeats),
            "total": total}


def _intervals(scored, stats: dict, weights: np.ndarray) -> dict:
    """psds_intervals' re-weighting, from the per-clip statistics of each metric."""
    ones = np.ones((1, weights.shape[1]))
    out = {}
    for name, metric_stats in stats.items():
        point, replicates = bootstrap._weighted(scored, metric_stats, name, [ones, weights])
        out[name] = bootstrap.percentile_interval(replicates, point[0], 0.95)
    return out


def bootstrap_before_after(split: dict, repeats: int, repeats_before: int) -> dict[str, dict[str, tuple]]:
    """Part -> {"before", "after", "deltas + new re-weighting"} -> (wall s, CPU s, value) of the fast
    engine's bootstrap on one split (see the module doc); the previous code runs repeats_before times."""
    kwargs = {k: split[k] for k in ("frame_probs", "clip_ids", "durations", "reference")}
    scored = score_set(**kwargs, hop_seconds=split["hop_seconds"])
    _ = scored.fast
    weights = bootstrap.resample_counts(len(scored.clip_ids), RESAMPLES, np.random.default_rng(0))
    deltas = timed(lambda: metric_deltas(scored, bootstrap.PSDS_METRICS), repeats_before)

    def before_total():
        fresh = score_set(**kwargs, hop_seconds=split["hop_seconds"])
        return bootstrap._reference_intervals(fresh, metric_deltas(fresh, bootstrap.PSDS_METRICS), weights)

    def new_on_deltas():
        clips = bootstrap._Clips.of(scored)
        stats = {name: bootstrap._Statistics.from_deltas(scored, deltas[2][name], clips)
                 for name in bootstrap.PSDS_METRICS}
        return _intervals(scored, stats, weights.astype(float))

    after = clip_bootstrap(split, "fast", repeats)
    return {
        "per-clip statistics": {"before": deltas, "after": after["per-clip statistics"]},
        "re-weighting": {"before": timed(lambda: bootstrap._reference_intervals(scored, deltas[2], weights),
                                         repeats_before),
                         "after": after["re-weighting"], "deltas + new re-weighting": timed(new_on_deltas, repeats)},
        "total": {"before": timed(before_total, repeats_before), "after": after["total"]},
    }


def steps(split: dict, repeats: int) -> list[tuple[str, float]]:
    """(step, best CPU seconds) of what each change weighs on one split (see RESULTS-eval.md)."""
    kwargs = {k: split[k] for k in ("frame_probs", "clip_ids", "durations", "reference")}

    def prepare():
        return score_set(**kwargs, hop_seconds=split["hop_seconds"])

    scored = prepare()
    metrics = (lambda s: psds_value(s, PSDS1), lambda s: psds_value(s, PSDS2), intersection_f1, collar_f1)

    def unshared():
        for metric in metrics:
            metric(prepare())  # a fresh set per metric: its own runs and events

    def shared():
        s = prepare()
        for metric in metrics:
            metric(s)

    def cpu(fn):
        return timed(fn, repeats)[1]

    return [
        ("score_set: reference lists and score arrays (both engines)", cpu(prepare)),
        ("(a) one pandas DataFrame per clip (sed_scores_eval's input; the fast engine needs none)",
         cpu(lambda: type(scored).scores.func(scored))),  # the cached property, rebuilt each time
        ("(b) runs and events, built once per set (fast_psds.Context)", cpu(lambda: fast_psds.Context(scored))),
        ("fast engine, four metrics, runs and events rebuilt for each metric", cpu(unshared)),
        ("fast engine, four metrics, runs and events shared (psds_metrics)", cpu(shared)),
    ]


def run(sizes: list[str], repeats: int) -> tuple[list[dict], list[dict]]:
    """Rows of the two tables: size, split, part, then per engine (first table) or before / after the
    bootstrap's rewrite (second) wall / CPU seconds, speed-up, same."""
    rows, bootstrap_rows = [], []
    for size in sizes:
        spec = SIZES[size]
        splits = {name: make_split(n, spec["n_frames"], spec["hop"], seed)
                  for seed, (name, n) in enumerate(spec["splits"].items())}
        job = {engine: [0.0, 0.0] for engine in ENGINES}
        job_same = True
        for split_name, split in splits.items():
            parts = {}
            for engine in ENGINES:
                slow = engine == "sed_scores_eval" and size == "desed"
                parts[engine] = final_evaluation(split, engine, 1 if slow else repeats)
            for part in ["score set", *METRICS]:
                rows.append(_row(size, split_name, part, parts["sed_scores_eval"][part], parts["fast"][part]))
            before = _sum(parts["sed_scores_eval"])
            after = _sum(parts["fast"])
            same = all(row["same"] for row in rows[-len(METRICS):])
            rows.append(_row(size, split_name, "**final evaluation**", before, after, same=same))
            job_same &= same
            for engine, (w, c) in (("sed_scores_eval", before[:2]), ("fast", after[:2])):
                job[engine][0] += w
                job[engine][1] += c
        rows.append(_row(size, "validation + test", "**a job's final evaluation**", (*job["sed_scores_eval"], None),
                         (*job["fast"], None), same=job_same))
        boot = {engine: clip_bootstrap(splits["validation"], engine,
                                       1 if engine == "sed_scores_eval" and size == "desed" else min(repeats, 2))
                for engine in ENGINES}
        for part in ("per-clip statistics", "re-weighting", "total"):
            label = f"bootstrap {RESAMPLES}: {part}" if part != "total" else TOTAL
            rows.append(_row(size, "validation", label, boot["sed_scores_eval"][part], boot["fast"][part]))
        rows[-2]["same"] = boot["sed_scores_eval"]["re-weighting"][2] == boot["fast"]["re-weighting"][2]
        rows[-1]["same"] = boot["sed_scores_eval"]["total"][2] == boot["fast"]["total"][2]
        changes = bootstrap_before_after(splits["validation"], min(repeats, 2),
                                         1 if size == "desed" else min(repeats, 2))
        for part, timings in changes.items():
            label = f"bootstrap {RESAMPLES}: {part}" if part != "total" else TOTAL
            before, after = timings["before"], timings["after"]
            same = None if part == "per-clip statistics" else before[2] == after[2]
            bootstrap_rows.append(_row(size, "validation", label, before, after, same=same))
            if "deltas + new re-weighting" in timings:
                step = timings["deltas + new re-weighting"]
                bootstrap_rows.append(_row(size, "validation", f"bootstrap {RESAMPLES}: re-weighting, new code on "
                                           "the deltas", before, step, same=before[2] == step[2]))
    return rows, bootstrap_rows


def _sum(parts: dict) -> tuple[float, float, None]:
    return sum(p[0] for p in parts.values()), sum(p[1] for p in parts.values()), None


def _row(size: str, split: str, part: str, before: tuple, after: tuple, same: bool | None = None) -> dict:
    if same is None and before[2] is not None and not isinstance(before[2], dict | list) and part != "score set":
        same = before[2] == after[2]
    return {"size": size, "split": split, "part": part, "before_wall": before[0], "before_cpu": before[1],
            "after_wall": after[0], "after_cpu": after[1], "same": same}


def table(rows: list[dict], before: str = "sed_scores_eval", after: str = "fast") -> str:
    """A markdown table."""
    head = (f"| size | split | part | {before} wall s | {after} wall s | speed-up (wall) | "
            f"{before} CPU s | {after} CPU s | speed-up (CPU) | same numbers |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        same = {True: "yes", False: "**NO**", None: ""}[r["same"]]
        lines.append(
            f"| {r['size']} | {r['split']} | {r['part']} | {r['before_wall']:.3f} | {r['after_wall']:.3f} | "
            f"{r['before_wall'] / r['after_wall']:.1f}x | {r['before_cpu']:.3f} | {r['after_cpu']:.3f} | "
            f"{r['before_cpu'] / r['after_cpu']:.1f}x | {same} |")
    return "\n".join(lines)


def machine() -> str:
    """CPU model and core count (/proc/cpuinfo), load average."""
    from harness.study.environment import cpu_model

    model = cpu_model()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}; load average {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    start = machine()
    rows, bootstrap_rows = run(args.sizes, args.repeats)
    step_lines = ["| size | step (validation split) | CPU s |", "|---|---|---|"]
    for size in args.sizes:
        spec = SIZES[size]
        split = make_split(spec["splits"]["validation"], spec["n_frames"], spec["hop"], 0)
        step_lines += [f"| {size} | {name} | {seconds:.3f} |" for name, seconds in steps(split, args.repeats)]
    text = "\n".join([
        "# Final evaluation and clip bootstrap: sed_scores_eval vs the fast engine",
        "",
        f"`python -m benchmarks.bench_final_eval --sizes {' '.join(args.sizes)} --repeats {args.repeats}`, "
        f"{datetime.date.today().isoformat()}.",
        "",
        f"Machine: {start} at the start; load average {machine().rsplit('load average ', 1)[1]} at the end.",
        "",
        "Best of the repeats (sed_scores_eval at DESED size: one run; bootstrap: at most two). quick: 300 + 300",
        "clips x 250 frames, hop 0.04 s; desed: 1,168 validation + 692 test clips x 500 frames, hop 0.02 s;",
        "10 classes. See the module doc of benchmarks/bench_final_eval.py for what each part contains.",
        "",
        table(rows),
        "",
        "The clip bootstrap (fast engine) before and after the rewrite of its re-weighting (module doc; before:",
        "bootstrap._reference_intervals on the per-clip deltas, one run at DESED size; after: best of two). The",
        "row \"new code on the deltas\" is the new re-weighting on the old per-clip deltas: the re-weighting's own",
        "gain; the per-clip statistics are the fast engine's deltas before, its unnetted changes after.",
        "",
        table(bootstrap_rows, "before", "after"),
        "",
        "What each change weighs (CPU seconds, best of the repeats): sed_scores_eval's per-clip DataFrames (a),",
        "the runs and events shared by the four metrics (b) against rebuilding them per metric, and the",
        "vectorised statistics themselves (c: the fast metrics above, against sed_scores_eval's).",
        "",
        *step_lines,
        "",
    ])
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
