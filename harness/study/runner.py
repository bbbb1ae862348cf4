"""Run a study: shared stages once, then every pending job on a backend, then the tidy tables.

Backends, one interface (`_backend_map`): "local" (a pool of loky worker processes, the default), "dask" (joblib's
Dask backend on any Dask cluster: `dask scheduler` + `dask worker`, dask-jobqueue's SLURMCluster, ...),
and "inprocess" (jobs one after another in this process, for debugging and tests).

A job is finished when its result.json exists; running a study again skips finished jobs, so after Ctrl-C,
a crash or kill -9 only the jobs that were running are lost.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal, Mapping

from harness.errors import ConfigError, HarnessError
from harness.records import (
    read_json,
    Budget,
    ComparisonInfo,
    Failure,
    RecordError,
    ReferenceRow,
    Result,
    StudyRecord,
    TableInfo,
    TuningChoice,
    VariantInfo,
    read_record,
    write_json,
    write_record,
)
from harness.study import job as jobmod
from harness.study import workers
from harness.study.environment import environment, git_commit
from harness.study.lock import StudyLock, is_locked
from harness.study.plan import JobSpec, ResolvedStudy, expand, expand_tuning
from harness.study.progress import Progress
from harness.study.rundir import STUDY, check_same_study, read_study_record, resolution_of
from harness.study.stages import DataState, StageKeys, prepare, read_data, teacher_scores
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
    name: str | None = None  # the run directory's name under runs_dir; None = the study's run_name
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


_RUN_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def run_dir_of(study: ResolvedStudy, options: RunOptions) -> Path:
    """runs/<name>: --name, or the study's default run name (study, profile, digest of the overrides)."""
    name = options.name or study.run_name
    if not _RUN_NAME.fullmatch(name) or name.startswith("."):
        raise ConfigError(f"--name {name!r}: a run name is one folder under --runs: letters, digits, '_', '-', "
                          "'+' and '.', not starting with '.'")
    return Path(options.runs_dir) / name


def job_dir(run_dir: Path, job: JobSpec | str) -> Path:
    return run_dir / "jobs" / (job if isinstance(job, str) else job.job_id)


def status_of(run_dir: Path, job: JobSpec | str) -> str:
    """done | failed | running | interrupted | damaged | pending.

    "done" only for a result.json that reads as a whole, valid Result; "damaged" (an unreadable result or
    error record) runs again like "pending".
    """
    directory = job_dir(run_dir, job)
    for name, record, state in ((jobmod.RESULT, Result, "done"), (jobmod.ERROR, Failure, "failed")):
        if (directory / name).exists():
            try:
                read_record(directory / name, record)
            except RecordError:
                return "damaged"
            return state
    if (directory / jobmod.STARTED).exists():
        return "running" if is_locked(run_dir) else "interrupted"
    return "pending"


def run_study(study: ResolvedStudy, options: RunOptions, echo: Callable[[str], None] = print,
              seed_counts: Mapping[str, int] | None = None, sequential: dict | None = None) -> RunOutcome:
    """Run every pending job of `study` and write the tidy tables.

    `seed_counts` (variant -> n) keeps only each variant's first n seeds (a round of --until-decided, whose
    design `sequential` is recorded in study.json).

    Raises:
        StudyLocked: another run of the same study is in progress.
        ConfigError: the run directory holds another resolution of the study, or the backend is unusable.
    """
    run_dir = run_dir_of(study, options)
    check_same_study(run_dir, study)
    _check_backend(options)
    with StudyLock(run_dir):
        write_json(run_dir / "environment.json", environment())
        data = read_data(study.data, options.cache_dir, _parallel(options))
        keys = StageKeys(data, study.spec.teacher_seed)
        tune_jobs = expand_tuning(study, keys)
        lambdas = _tuning_stage(study, tune_jobs, options, run_dir, echo, data)
        jobs = expand(study, lambdas, keys)
        if seed_counts is not None:
            jobs = [j for j in jobs if study.seeds.index(j.seed) < seed_counts.get(j.variant, 0)]
        bundles = _shared_stages(jobs, options, echo, data)
        _write_study(study, run_dir, jobs, tune_jobs, bundles, data, sequential)
        try:
            outcome = _run_jobs(jobs, bundles, options, run_dir, echo, label="jobs")
        finally:  # after Ctrl-C too: the tables show every job that finished
            rebuild_tables(run_dir)
    return outcome


def _check_backend(options: RunOptions) -> None:
    """A Dask scheduler is reached now, before any stage runs, not after the teacher is trained."""
    if options.backend != "dask":
        return
    with _dask_backend(options):
        pass


def _shared_stages(jobs: list[JobSpec], options: RunOptions, echo, data: DataState) -> dict[str, Path]:
    """Features, teacher and pseudolabels: once per distinct bundle key, before any job starts."""
    bundles: dict[str, Path] = {}
    for job in jobs:
        if job.bundle_key not in bundles:
            echo(f"shared stages for {job.variant} (bundle {job.bundle_key}): data, features, teacher ...")
            bundles[job.bundle_key] = prepare(job, options.cache_dir, jobs=_parallel(options), data=data)
            teacher = teacher_scores(bundles[job.bundle_key], job.config)
            echo(f"  teacher: validation F1 {teacher['validation']['event_f1']:.1f} %, "
                 f"test F1 {teacher['test']['event_f1']:.1f} % (bundle {bundles[job.bundle_key]})")
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
        if status_of(run_dir, job) in ("done", "failed"):  # run again from scratch (--force, --rerun-failed)
            (directory / jobmod.CHECKPOINT).unlink(missing_ok=True)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise HarnessError(f"{directory}: cannot create the job directory ({e.strerror or e}); check that "
                               f"{run_dir} is writable") from e
        write_record(directory / "job.json", jobmod.job_record(job))
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
    if status_of(run_dir, job) == "done":
        return jobmod.ok_summary(read_record(directory / jobmod.RESULT, Result))
    error = read_record(directory / jobmod.ERROR, Failure)
    return {"job_id": job.job_id, "status": "failed", "message": f"{error.error}: {error.message}",
            "seconds": 0.0}


def _started_since(run_dir: Path, job: JobSpec, since: float) -> bool:
    """The job started at or after `since` and left neither a result nor an error."""
    directory = job_dir(run_dir, job)
    if (directory / jobmod.RESULT).exists() or (directory / jobmod.ERROR).exists():
        return False
    try:
        return read_json(directory / jobmod.STARTED)["time"] >= since
    except (RecordError, KeyError, TypeError):
        return False


def _record_killed(job: JobSpec, run_dir: Path, death: BaseException) -> dict:
    """error.json for a job whose worker died twice, the second time with the job alone; its summary."""
    message = (f"the worker process running this job died twice, the second time with no other job running "
               f"({_first_line(death)}). This is most often the out-of-memory killer (see `dmesg`): give the job "
               "less to hold (student.hidden, fewer --jobs on the machine) and run again with --rerun-failed.")
    directory = job_dir(run_dir, job)
    write_record(directory / jobmod.ERROR, Failure(job_id=job.job_id, error="WorkerDied", message=message,
                                                   log=str(directory / jobmod.LOG)))
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
    return status != "done"  # damaged results run again


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
    args = [(j, str(bundles[j.bundle_key]), str(job_dir(run_dir, j)), threads, options.jobs_per_gpu)
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
        client = Client(options.scheduler, timeout=10)
    except (OSError, TimeoutError, ValueError) as e:
        raise ConfigError(f"--scheduler {options.scheduler}: cannot reach the Dask scheduler ({e}); start it "
                          "(`dask scheduler`) or fix the address, then run again") from e
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


def _tuning_stage(study: ResolvedStudy, tune_jobs: list[JobSpec], options: RunOptions, run_dir: Path, echo,
                  data: DataState) -> dict | None:
    """The [tune] stage: run the lambda grid, pick per variant the pair with the best mean val F1."""
    if not tune_jobs:
        return None
    bundles = _shared_stages(tune_jobs, options, echo, data)
    outcome = _run_jobs(tune_jobs, bundles, options, run_dir, echo, label="tuning")
    if outcome.failed:
        echo(f"tuning: {len(outcome.failed)} jobs failed; choosing among the points that finished")
    records = read_results(run_dir / "jobs", {j.job_id for j in tune_jobs}, phase="tune")
    chosen = choose_lambdas(records)
    missing = [v.name for v in study.spec.variants if v.name not in chosen]
    if missing:
        raise HarnessError(f"tuning: no finished tuning job for {', '.join(missing)}; see the logs under "
                           f"{run_dir / 'jobs'} and run again with --rerun-failed")
    write_record(run_dir / "tuning.json", TuningChoice(chosen=chosen))
    _write_tuning_table(run_dir, records)
    for variant, (l1, l2) in chosen.items():
        echo(f"tuning: {variant}: lambda1 = {l1}, lambda2 = {l2}")
    return chosen


def read_tuning(run_dir: Path) -> dict[str, tuple[float, float]] | None:
    """The lambdas the [tune] stage chose, or None before it has run."""
    path = Path(run_dir) / "tuning.json"
    if not path.exists():
        return None
    return {v: (float(p[0]), float(p[1])) for v, p in read_record(path, TuningChoice).chosen.items()}


def choose_lambdas(records: list[Result]) -> dict[str, tuple[float, float]]:
    """Per variant, the (lambda1, lambda2) with the highest mean validation F1 over tuning seeds.

    Ties go to the pair met first in (lambda1, lambda2) order, so the choice is deterministic.
    """
    means: dict[str, dict[tuple[float, float], list[float]]] = {}
    for r in records:
        if r.val_f1 is not None:
            means.setdefault(r.variant, {}).setdefault((r.lambda1, r.lambda2), []).append(r.val_f1)
    chosen = {}
    for variant, points in means.items():
        best = max(sorted(points), key=lambda p: statistics.fmean(points[p]))
        chosen[variant] = best
    return chosen


def _write_tuning_table(run_dir: Path, records: list[Result]) -> None:
    import pandas as pd

    frame = pd.DataFrame([{"variant": r.variant, "lambda1": r.lambda1, "lambda2": r.lambda2, "seed": r.seed,
                           "val_f1": r.val_f1, "test_f1": r.test_f1} for r in records])
    summary = frame.groupby(["variant", "lambda1", "lambda2"], sort=True)["val_f1"].agg(["count", "mean", "std"])
    summary.reset_index().to_csv(run_dir / "tuning.csv", index=False, float_format="%.4f")


# --------------------------------------------------------------------------- study.json


def _write_study(study: ResolvedStudy, run_dir: Path, jobs: list[JobSpec], tune_jobs: list[JobSpec],
                 bundles: dict[str, Path], data: DataState, sequential: dict | None = None) -> None:
    """study.json: the resolution, what the report needs (tables, variants, comparisons, teacher F1), job ids."""
    spec = study.spec
    teacher_rows = []
    for key, root in bundles.items():
        config = next(j.config for j in jobs if j.bundle_key == key)
        t = teacher_scores(root, config)
        name = "Teacher (ours)" if len(bundles) == 1 else f"Teacher ({key})"
        teacher_rows.append(ReferenceRow(name=name, val_f1=round(t["validation"]["event_f1"], 4),
                                         test_f1=round(t["test"]["event_f1"], 4)))
    base = study.base
    factors = {j.variant: j.factors for j in jobs}
    record = StudyRecord(
        name=spec.name, run_name=run_dir.name, description=spec.description,
        resolution=resolution_of(study, data.key),
        budget=Budget(steps=base.train.steps, hidden=base.student.hidden, layers=base.student.layers,
                      teacher_models=base.teacher.n_models, teacher_channels=base.teacher.channels,
                      teacher_source=base.teacher.source),
        generation_epochs=base.curriculum.generation_epochs,
        tables=tuple(TableInfo(t.name, t.caption, tuple(t.variants)) for t in spec.tables),
        variants=tuple(VariantInfo(v.name, factors[v.name]) for v in spec.variants),
        comparisons=tuple(ComparisonInfo(c.label, c.a, c.b, c.rope) for c in spec.comparisons),
        reference_rows=tuple(teacher_rows), seeds=tuple(study.seeds), jobs=tuple(j.job_id for j in jobs),
        tune_jobs=tuple(j.job_id for j in tune_jobs), git_commit=git_commit(), paired=spec.paired,
        sequential=sequential,
    )
    write_record(run_dir / STUDY, record)


def rebuild_tables(run_dir: Path) -> tuple[Path, Path]:
    """Rebuild results.csv and results_per_class.csv from the job results of the study's current plan."""
    record = read_study_record(run_dir)
    records = read_results(Path(run_dir) / "jobs", set(record.jobs))
    return write_tables(Path(run_dir), records, [v.name for v in record.variants])
