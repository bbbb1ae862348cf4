"""Run a study: shared stages once, then every pending job on a backend, then the tidy tables.

Backends, one interface (`_backend_map`): "local" (a pool of loky worker processes, the default), "dask" (joblib's
Dask backend on any Dask cluster: `dask scheduler` + `dask worker`, dask-jobqueue's SLURMCluster, ...),
and "inprocess" (jobs one after another in this process, for debugging and tests).

A job is finished when its result.json exists; running a study again skips finished jobs, so after Ctrl-C,
a crash or kill -9 only the jobs that were running are lost.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal

from harness.errors import ConfigError, HarnessError
from harness.study import job as jobmod
from harness.study import workers
from harness.study.environment import environment
from harness.study.lock import StudyLock, is_locked
from harness.study.plan import JobSpec, ResolvedStudy, expand, expand_tuning, shared_stage_key
from harness.study.progress import Progress
from harness.bundle import Bundle
from harness.study.stages import prepare
from harness.study.table import read_results, write_tables

log = logging.getLogger("harness.runner")


@dataclass(frozen=True)
class RunOptions:
    """How to run a study (the `harness run` flags)."""

    runs_dir: Path = Path("runs")  # runs/<study>/ holds every job's directory and the tidy tables
    cache_dir: Path = Path(".harness-cache")  # corpora, features and shared-stage bundles
    backend: Literal["local", "dask", "inprocess"] = "local"
    jobs: int | None = None  # parallel jobs; None = one per core (local) or per Dask worker thread
    threads: int | None = None  # torch/BLAS threads per job; None = 1 (jobs x threads <= cores by default)
    scheduler: str | None = None  # Dask scheduler address, e.g. tcp://127.0.0.1:8786
    dask_resources: str | None = None  # e.g. "GPU=1": each job needs that Dask worker resource
    jobs_per_gpu: int = 1  # with CUDA, how many jobs share one GPU
    rerun_failed: bool = False  # run jobs that failed before again
    force: bool = False  # run every job again, finished ones included


@dataclass
class RunOutcome:
    """What a run did: where, how many jobs of each kind, and which failed (with their logs)."""

    run_dir: Path
    total: int
    skipped: int = 0
    ran: int = 0
    failed: list[tuple[JobSpec, Path]] = field(default_factory=list)


def run_dir_of(study: ResolvedStudy, options: RunOptions) -> Path:
    return Path(options.runs_dir) / study.run_name


def job_dir(run_dir: Path, job: JobSpec) -> Path:
    return run_dir / "jobs" / job.job_id


def status_of(run_dir: Path, job: JobSpec) -> str:
    """done | failed | running | interrupted | pending."""
    directory = job_dir(run_dir, job)
    if (directory / jobmod.RESULT).exists():
        return "done"
    if (directory / jobmod.ERROR).exists():
        return "failed"
    if (directory / jobmod.STARTED).exists():
        return "running" if is_locked(run_dir) else "interrupted"
    return "pending"


def run_study(study: ResolvedStudy, options: RunOptions, echo: Callable[[str], None] = print) -> RunOutcome:
    """Run every pending job of `study` and write the tidy tables.

    Raises:
        StudyLocked: another run of the same study is in progress.
    """
    run_dir = run_dir_of(study, options)
    with StudyLock(run_dir):
        jobmod.write_json(run_dir / "environment.json", environment())
        lambdas = _tuning_stage(study, options, run_dir, echo)
        jobs = expand(study, lambdas)
        bundles = _shared_stages(jobs, options, echo)
        _write_study(study, run_dir, jobs, bundles)
        try:
            outcome = _run_jobs(jobs, bundles, options, run_dir, echo, label="jobs")
        finally:  # after Ctrl-C too: the tables show every job that finished
            rebuild_tables(run_dir)
    return outcome


def _shared_stages(jobs: list[JobSpec], options: RunOptions, echo) -> dict[str, Path]:
    """Features, teacher and pseudolabels: once per distinct stage key, before any job starts."""
    bundles: dict[str, Path] = {}
    for job in jobs:
        key = shared_stage_key(job)
        if key not in bundles:
            echo(f"shared stages for {job.variant} ({key}): data, features, teacher ...")
            bundles[key] = prepare(job, options.cache_dir, jobs=_parallel(options))
            teacher = Bundle.open(bundles[key]).manifest["teacher"]
            echo(f"  teacher: validation F1 {teacher['validation']['event_f1']:.1f} %, "
                 f"test F1 {teacher['test']['event_f1']:.1f} % (bundle {bundles[key]})")
    return bundles


def _run_jobs(jobs: list[JobSpec], bundles: dict[str, Path], options: RunOptions, run_dir: Path, echo,
              label: str) -> RunOutcome:
    outcome = RunOutcome(run_dir=run_dir, total=len(jobs))
    pending = [j for j in jobs if _needs_run(status_of(run_dir, j), options)]
    outcome.skipped = len(jobs) - len(pending)
    if outcome.skipped:
        echo(f"{label}: {outcome.skipped} of {len(jobs)} already finished or failed before (kept; "
             f"--rerun-failed / --force to run them again)")
    pending.sort(key=lambda j: (j.seed, jobs.index(j)))  # seed-major: an interrupted study stays balanced
    for job in pending:
        directory = job_dir(run_dir, job)
        directory.mkdir(parents=True, exist_ok=True)
        jobmod.write_json(directory / "job.json", jobmod.job_record(job))
    if not pending:
        return outcome
    parallel = _parallel(options)
    echo(f"{label}: running {len(pending)} on the {options.backend} backend ({parallel} at a time, "
         f"{_threads(options)} threads each)")
    progress = Progress(len(pending), parallel)
    try:
        _drain(pending, bundles, options, run_dir, _Recorder(outcome, progress, pending), echo)
    finally:
        progress.close()
    return outcome


class _Recorder:
    """Counts each finished job once into the outcome and the progress display."""

    def __init__(self, outcome: RunOutcome, progress: Progress, jobs: list[JobSpec]) -> None:
        self.outcome, self.progress = outcome, progress
        self.by_id = {j.job_id: j for j in jobs}
        self.seen: set[str] = set()

    def __call__(self, summary: dict) -> None:
        job = self.by_id[summary["job_id"]]
        if job.job_id in self.seen:
            return
        self.seen.add(job.job_id)
        self.outcome.ran += 1
        if summary["status"] != "ok":
            self.outcome.failed.append((job, job_dir(self.outcome.run_dir, job) / "log.txt"))
        self.progress.job_finished(job.variant, job.seed, summary)


def _drain(pending: list[JobSpec], bundles: dict[str, Path], options: RunOptions, run_dir: Path,
           record: _Recorder, echo) -> None:
    """Run every pending job to a result or an error, surviving the death of worker processes."""
    remaining = pending
    while remaining:
        since = time.time()
        try:
            for summary in _backend_map(remaining, bundles, options, run_dir):
                record(summary)
            return
        except _worker_deaths() as death:
            remaining = _after_worker_death(death, remaining, since, bundles, options, run_dir, record, echo)
            for job in pending:  # finished while the pool went down, before their summary came back
                if job not in remaining and status_of(run_dir, job) in ("done", "failed"):
                    record(_summary_on_disk(job, run_dir))


def _worker_deaths() -> tuple[type[BaseException], ...]:
    """Exceptions by which a backend says that a worker process died under a job (OOM killer, kill -9)."""
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    deaths: list[type[BaseException]] = [TerminatedWorkerError]
    try:
        from distributed import KilledWorker
    except ImportError:
        pass
    else:
        deaths.append(KilledWorker)
    return tuple(deaths)


def _after_worker_death(death: BaseException, remaining: list[JobSpec], since: float, bundles: dict[str, Path],
                        options: RunOptions, run_dir: Path, record: _Recorder, echo
                        ) -> list[JobSpec]:
    """A worker died: find the culprit among the jobs in flight, record it failed, return what is left.

    A dead loky worker takes the whole pool down, so every job in flight stopped, the culprit and the
    bystanders alike. Each of them runs again alone: a bystander finishes, a job that kills its worker
    a second time while alone is the culprit and is recorded failed. The other jobs then go on. (On Dask the
    scheduler has already retried the task on other workers before it raises KilledWorker; the run here is
    one more attempt, and a second KilledWorker records the job failed.)
    """
    in_flight = [j for j in remaining if _started_since(run_dir, j, since)]
    echo(f"a job worker died ({_first_line(death)}); running the {len(in_flight)} job(s) it stopped again, "
         "one at a time")
    alone = dataclasses.replace(options, jobs=1)
    for job in in_flight:
        try:
            for summary in _backend_map([job], bundles, alone, run_dir):
                record(summary)
        except _worker_deaths() as again:
            record(_record_killed(job, run_dir, again))
    return [j for j in remaining if j not in in_flight and status_of(run_dir, j) not in ("done", "failed")]


def _summary_on_disk(job: JobSpec, run_dir: Path) -> dict:
    """The progress summary of a job from what it left on disk."""
    directory = job_dir(run_dir, job)
    if (directory / jobmod.RESULT).exists():
        return jobmod.ok_summary(json.loads((directory / jobmod.RESULT).read_text()))
    error = json.loads((directory / jobmod.ERROR).read_text())
    return {"job_id": job.job_id, "status": "failed", "message": f"{error['error']}: {error['message']}",
            "seconds": 0.0}


def _started_since(run_dir: Path, job: JobSpec, since: float) -> bool:
    """The job started at or after `since` and left neither a result nor an error."""
    directory = job_dir(run_dir, job)
    if (directory / jobmod.RESULT).exists() or (directory / jobmod.ERROR).exists():
        return False
    try:
        return json.loads((directory / jobmod.STARTED).read_text())["time"] >= since
    except (OSError, ValueError, KeyError):
        return False


def _record_killed(job: JobSpec, run_dir: Path, death: BaseException) -> dict:
    """error.json for a job whose worker died twice, the second time with the job alone; its summary."""
    message = (f"the worker process running this job died twice, the second time with no other job running "
               f"({_first_line(death)}). This is most often the out-of-memory killer (see `dmesg`): give the job "
               "less to hold (student.hidden, fewer --jobs on the machine) and run again with --rerun-failed.")
    jobmod.write_json(job_dir(run_dir, job) / jobmod.ERROR, {"status": "failed", "job_id": job.job_id,
                                                              "error": "WorkerDied", "message": message,
                                                              "traceback": ""})
    log.error("job %s (%s seed %d): %s", job.job_id, job.variant, job.seed, message)
    return {"job_id": job.job_id, "status": "failed", "message": f"WorkerDied: {message}", "seconds": 0.0}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _needs_run(status: str, options: RunOptions) -> bool:
    if options.force:
        return True
    if status == "failed":
        return options.rerun_failed
    return status != "done"


def _parallel(options: RunOptions) -> int:
    if options.jobs is not None and options.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {options.jobs}")
    return workers.default_workers(options.jobs)


def _threads(options: RunOptions) -> int:
    return workers.default_threads(options.threads)


def _backend_map(pending: list[JobSpec], bundles: dict[str, Path], options: RunOptions, run_dir: Path
                 ) -> Iterator[dict]:
    """Run `execute` on every pending job; yield each summary as its job finishes."""
    threads = _threads(options)
    args = [(j, str(bundles[shared_stage_key(j)]), str(job_dir(run_dir, j)), threads, options.jobs_per_gpu)
            for j in pending]
    if options.backend == "inprocess":
        for a in args:
            yield jobmod.execute(*a)
        return
    if options.backend == "local":
        yield from workers.map_unordered(jobmod.execute, args, _parallel(options), threads)
        return
    import joblib

    with _dask_backend(options):
        yield from joblib.Parallel(n_jobs=-1, return_as="generator_unordered")(
            joblib.delayed(jobmod.execute)(*a) for a in args)


@contextmanager
def _dask_backend(options: RunOptions):
    import joblib

    if not options.scheduler:
        raise ConfigError("--backend dask needs --scheduler tcp://HOST:PORT (the address `dask scheduler` prints)")
    try:
        import dask
        from dask.distributed import Client
    except ImportError as e:
        raise ConfigError("--backend dask needs dask and distributed: pip install 'harness[dask]'") from e
    try:
        client = Client(options.scheduler, timeout=30)
    except OSError as e:
        raise HarnessError(f"cannot reach the Dask scheduler at {options.scheduler}: {e}") from e
    annotations = {"resources": _resources(options.dask_resources)} if options.dask_resources else {}
    try:
        with dask.annotate(**annotations), joblib.parallel_config(backend="dask"):
            yield
    finally:
        client.close()


def _resources(text: str) -> dict[str, float]:
    """"GPU=1,MEM=8e9" -> {"GPU": 1.0, "MEM": 8e9}."""
    out = {}
    for part in text.split(","):
        name, _, amount = part.partition("=")
        try:
            out[name.strip()] = float(amount)
        except ValueError as e:
            raise ConfigError(f"--dask-resources {text!r}: expected NAME=AMOUNT[,NAME=AMOUNT]") from e
    return out


# --------------------------------------------------------------------------- tuning


def _tuning_stage(study: ResolvedStudy, options: RunOptions, run_dir: Path, echo) -> dict | None:
    """The [tune] stage: run the lambda grid, pick per variant the pair with the best mean val F1."""
    tune_jobs = expand_tuning(study)
    if not tune_jobs:
        return None
    bundles = _shared_stages(tune_jobs, options, echo)
    outcome = _run_jobs(tune_jobs, bundles, options, run_dir, echo, label="tuning")
    if outcome.failed:
        echo(f"tuning: {len(outcome.failed)} jobs failed; choosing among the points that finished")
    records = read_results(run_dir / "jobs", {j.job_id for j in tune_jobs}, phase="tune")
    chosen = choose_lambdas(records)
    missing = [v.name for v in study.spec.variants if v.name not in chosen]
    if missing:
        raise HarnessError(f"tuning: no finished tuning job for {', '.join(missing)}; see the logs under "
                           f"{run_dir / 'jobs'} and run again with --rerun-failed")
    jobmod.write_json(run_dir / "tuning.json", {v: {"lambda1": l1, "lambda2": l2} for v, (l1, l2) in chosen.items()})
    _write_tuning_table(run_dir, records)
    for variant, (l1, l2) in chosen.items():
        echo(f"tuning: {variant}: lambda1 = {l1}, lambda2 = {l2}")
    return chosen


def choose_lambdas(records: list[dict]) -> dict[str, tuple[float, float]]:
    """Per variant, the (lambda1, lambda2) with the highest mean validation F1 over tuning seeds.

    Ties go to the pair met first in (lambda1, lambda2) order, so the choice is deterministic.
    """
    means: dict[str, dict[tuple[float, float], list[float]]] = {}
    for r in records:
        means.setdefault(r["variant"], {}).setdefault((r["lambda1"], r["lambda2"]), []).append(r["val_f1"])
    chosen = {}
    for variant, points in means.items():
        best = max(sorted(points), key=lambda p: statistics.fmean(points[p]))
        chosen[variant] = best
    return chosen


def _write_tuning_table(run_dir: Path, records: list[dict]) -> None:
    import pandas as pd

    frame = pd.DataFrame([{k: r[k] for k in ("variant", "lambda1", "lambda2", "seed", "val_f1", "test_f1")}
                          for r in records])
    summary = frame.groupby(["variant", "lambda1", "lambda2"], sort=True)["val_f1"].agg(["count", "mean", "std"])
    summary.reset_index().to_csv(run_dir / "tuning.csv", index=False, float_format="%.4f")


# --------------------------------------------------------------------------- study.json


def _write_study(study: ResolvedStudy, run_dir: Path, jobs: list[JobSpec], bundles: dict[str, Path]) -> None:
    """study.json: what the report needs (tables, variants, comparisons, teacher F1) and the current job ids."""
    spec = study.spec
    teacher_rows = []
    for key, root in bundles.items():
        t = Bundle.open(root).manifest["teacher"]
        name = "Teacher (ours)" if len(bundles) == 1 else f"Teacher ({key})"
        teacher_rows.append({"name": name, "val_f1": round(t["validation"]["event_f1"], 4),
                             "test_f1": round(t["test"]["event_f1"], 4)})
    data = {
        "name": spec.name,
        "run_name": study.run_name,
        "description": spec.description,
        "profile": study.profile,
        "file": str(spec.path),
        "generation_epochs": study.base.curriculum.generation_epochs,
        "tables": [{"name": t.name, "caption": t.caption, "variants": list(t.variants)} for t in spec.tables],
        "variants": [{"name": v.name, "factors": dict(jobs[[j.variant for j in jobs].index(v.name)].factors)}
                     for v in spec.variants],
        "comparisons": [{"label": c.label, "a": c.a, "b": c.b} for c in spec.comparisons],
        "reference_rows": teacher_rows,
        "seeds": list(study.seeds),
        "jobs": [j.job_id for j in jobs],
    }
    jobmod.write_json(run_dir / "study.json", data)


def rebuild_tables(run_dir: Path) -> tuple[Path, Path]:
    """Rebuild results.csv and results_per_class.csv from the job results of the study's current plan."""
    meta = json.loads((Path(run_dir) / "study.json").read_text())
    records = read_results(Path(run_dir) / "jobs", set(meta["jobs"]))
    return write_tables(Path(run_dir), records, [v["name"] for v in meta["variants"]])
