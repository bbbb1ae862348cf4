"""Benchmarks 5 and 6: the overhead of a study over its jobs' training time, and memory per process.

Run from the repository root: /work/venv/bin/python -m benchmarks.bench_memory [--quick]

One study is run by the real command line with `--jobs 2` under a process-tree monitor (see
benchmarks.bench_parallel.TreeMonitor), after its shared stages were built into the cache:
full run: the quick profile (synthetic quick corpus, its steps a job: harness.study.plan.QUICK_STEPS) with 4 seeds; --quick: the
tiny profile with 4 seeds of 20 steps.

5. Overhead per job = sum of the jobs' wall_seconds / sum of their train_seconds - 1 (target <= 10 %).
   train_seconds is the sum of the job's epoch times (steps + per-epoch validation); a job's wall_seconds
   adds its set-up in the worker, its final evaluation on validation and test and its output files.
   The whole command's overhead, wall time of `harness run` / (sum of train_seconds / 2) - 1, adds what a
   study pays once (start-up and planning, the cache check of the shared stages, starting the loky
   workers, the tables): shown, with no target, since it depends on how many jobs share it.
6. Memory: the peak RSS (VmHWM) of the parent process and of each job worker. Sharing: the monitor
   reads /proc/<pid>/smaps of every worker for the bundle's feature files; a file-backed mapping whose
   pages are Shared_Clean/Private_Clean with Private_Dirty = 0 is read from the page cache, never copied
   into the job (a copy would show as anonymous memory, not as a mapping of the file). In-process the
   training Pool's feature arrays are checked to be np.memmap instances.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks.bench_parallel import StudyRun, run_study, study_file
from benchmarks.bench_training import DEFAULT_CACHE, build_bundle
from harness.method.train import SOURCES, Pool
from harness.bundle import Bundle

MB = 1024**2


def _plan(quick: bool) -> tuple[str, dict[str, object]]:
    """(profile, --set overrides) of the monitored study."""
    if quick:
        return "tiny", {"seeds": 4, "train.steps": 20, "student.hidden": 64}
    return "quick", {"seeds": 4}  # two jobs a worker


def pool_is_mapped(bundle: Bundle) -> bool:
    """True when every training feature array of a job's Pool is a np.memmap (no in-memory copy)."""
    pool = Pool.from_bundle(bundle)
    return all(isinstance(pool.features[s], np.memmap) for s in SOURCES)


def measure(quick: bool = False, cache_dir: Path = DEFAULT_CACHE) -> dict:
    profile, settings = _plan(quick)
    bundle = Bundle.open(build_bundle(cache_dir, profile))
    features = {s: str((bundle.root / e.path).resolve()) for s, e in bundle.manifest.features.items()}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        study = study_file(Path(tmp), int(settings["seeds"]))
        run = run_study(study, cache_dir, Path(tmp) / "runs", 2, None, settings, profile=profile,
                        watch=tuple(features.values()))
    return {"profile": profile, "run": run, "features": features, "mapped": pool_is_mapped(bundle),
            "sizes": {s: Path(p).stat().st_size for s, p in features.items()}}


def overhead_rows(run: StudyRun, profile: str, jobs: int = 2) -> list[dict]:
    """The target is on a job: what a worker spends on it beyond its training (final evaluation, outputs,
    result files) over its training. The whole command adds costs paid once a study (start-up, stage check,
    workers, tables), shown against the jobs' training for this small study only: they shrink per job as a
    study grows (the main command has 15 jobs)."""
    train = sum(r["train_seconds"] for r in run.results)
    wall_jobs = sum(r["wall_seconds"] for r in run.results)
    ideal = train / jobs
    per_job = wall_jobs / train - 1
    n = len(run.results)
    return [
        {"figure": f"study overhead per job: {profile} profile, {n} jobs: sum(job wall) vs sum(train_seconds)",
         "measured": f"{wall_jobs / n:.1f} s", "baseline": f"{train / n:.1f} s", "ratio": wall_jobs / train,
         "target": "overhead <= 10 %", "met": per_job <= 0.10},
        {"figure": "  of which: per-job final evaluation + outputs (mean)",
         "measured": f"{(wall_jobs - train) / n:.1f} s", "baseline": "", "ratio": None,
         "target": "(info)", "met": None},
        {"figure": f"study overhead, whole command, --jobs {jobs}: wall vs sum(train_seconds)/{jobs}",
         "measured": f"{run.wall:.1f} s", "baseline": f"{ideal:.1f} s", "ratio": run.wall / ideal,
         "target": "(info)", "met": None},
        {"figure": "  of which: command start-up, stages cache check, workers, tables (once a study)",
         "measured": f"{run.wall - wall_jobs / jobs:.1f} s", "baseline": "", "ratio": None,
         "target": "(info)", "met": None},
    ]


def memory_rows(m: dict) -> list[dict]:
    run: StudyRun = m["run"]
    workers = run.workers
    biggest = max(m["sizes"], key=m["sizes"].get)
    path = m["features"][biggest]
    seen = [w.mapped[path] for w in workers if path in w.mapped]
    rss = max((s.get("Rss", 0) for s in seen), default=0)
    dirty = max((s.get("Private_Dirty", 0) for s in seen), default=0)
    rows = [
        {"figure": "memory: peak RSS of the parent (harness run)", "measured": f"{run.parent.peak_rss / MB:.0f} MB",
         "baseline": "", "ratio": None, "target": "(info)", "met": None},
        {"figure": f"memory: peak RSS per job worker ({len(workers)} workers)",
         "measured": ", ".join(f"{w.peak_rss / MB:.0f}" for w in workers) + " MB", "baseline": "", "ratio": None,
         "target": "(info)", "met": None},
        {"figure": f"memory: {biggest} features ({m['sizes'][biggest] / MB:.1f} MB file) mapped in "
                   f"{len(seen)}/{len(workers)} workers; max resident / private dirty",
         "measured": f"{rss / MB:.1f} MB / {dirty / MB:.1f} MB", "baseline": "", "ratio": None,
         "target": "file-backed, 0 dirty", "met": bool(seen) and dirty == 0},
        {"figure": "memory: training Pool features are np.memmap", "measured": str(m["mapped"]), "baseline": "",
         "ratio": None, "target": "True", "met": m["mapped"]},
    ]
    return rows


def run(quick: bool = False, cache_dir: Path = DEFAULT_CACHE) -> list[dict]:
    """Benchmarks 5 and 6 as table rows."""
    m = measure(quick, cache_dir)
    return overhead_rows(m["run"], m["profile"]) + memory_rows(m)


def main() -> None:
    from benchmarks.run import standalone

    standalone(run, __doc__, "tiny profile instead of quick", DEFAULT_CACHE)


if __name__ == "__main__":
    main()
