"""Run a study: shared stages once, then every pending job on a backend, then the tidy tables.

Backends, one interface (harness.study.executors): "local" (a pool of loky worker processes, the default),
"dask" (any Dask cluster: `dask scheduler` + `dask worker`, dask-jobqueue's SLURMCluster, ...), and
"inprocess" (everything one after another in this process, for debugging and tests). The driver only
orchestrates: data, features, teacher members and bundles are tasks on the same backend as the jobs.

A job is finished when its result.json exists; running a study again skips finished jobs, and a job that
was stopped, killed or preempted resumes from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from harness import ranges
from harness.bundle import MANIFEST
from harness.errors import ConfigError, HarnessError, Interrupted
from harness.records import (
    Budget,
    ComparisonInfo,
    FactorInfo,
    Failure,
    RecordError,
    ReferenceRow,
    Result,
    StudyRecord,
    TableInfo,
    TuningChoice,
    VariantInfo,
    atomic_file,
    open_append,
    read_record,
    write_json,
    write_record,
)
from harness.streams import STREAMS
from harness.study import stage_tasks, task_entry, workers
from harness.study.executors import Executor, Task, make_executor
from harness.study.executors.base import ExecutorSettings
from harness.study.executors.dask import clear_old_stop_files
from harness.study.environment import git_commit
from harness.study.jobfiles import CHECKPOINT, ELSEWHERE, ERROR, LOG, RESULT, attempts, job_dir, job_record, status_of
from harness.study.lock import StudyLock, job_is_locked
from harness.study.plan import JobSpec, ResolvedStudy, expand, expand_tuning
from harness.study.progress import Progress
from harness.study.rundir import (
    STUDY,
    check_same_study,
    first_new_folder,
    read_study_record,
    remove_if_bare,
    resolution_of,
)
from harness.study.pseudolabels import quality_rows
from harness.study.stages import DataState, StageKeys, teacher_scores
from harness.study.table import read_results, write_tables

log = logging.getLogger("harness.runner")


@dataclass(frozen=True)
class RunOptions:
    """How to run a study (the `harness run` flags)."""

    runs_dir: Path = Path("runs")  # runs/<study>/ holds every job's directory and the tidy tables
    cache_dir: Path = Path(".harness-cache")  # corpora, features and shared-stage bundles
    backend: str = "local"  # a name of harness.plugins.executors: local, dask, slurm, inprocess or a plugin's
    jobs: int | None = None  # parallel jobs; None = one per core (local) or per Dask worker thread
    threads: int | None = None  # torch/BLAS threads per job; None = 1 (jobs x threads <= cores by default)
    scheduler: str | None = None  # Dask scheduler address, e.g. tcp://127.0.0.1:8786
    dask_resources: str | None = None  # e.g. "GPU=1": each job needs that Dask worker resource
    jobs_per_gpu: int = 1  # with CUDA, how many jobs share one GPU
    name: str | None = None  # the run directory's name under runs_dir; None = the study's run_name
    rerun_failed: bool = False  # run jobs that failed before again
    force: bool = False  # run every job again, finished ones included
    job_timeout: float | None = None  # seconds an attempt of a job may run; then TimedOut, checkpoint kept
    retries: int = 1  # more attempts for a job whose worker died, was preempted or timed out


@dataclass
class RunOutcome:
    """What a run did: where, how many jobs of each kind, and which failed (with their logs)."""

    run_dir: Path
    total: int
    skipped: int = 0
    ran: int = 0
    failed: list[tuple[JobSpec, Path]] = field(default_factory=list)
    # jobs another live process runs (their lock was held), with that process: not run here, neither finished
    # nor failed
    elsewhere: list[tuple[JobSpec, str]] = field(default_factory=list)
    # jobs that failed in an earlier run and were not run again (no --rerun-failed): still failed, still missing
    kept_failed: list[tuple[JobSpec, Path]] = field(default_factory=list)

    @property
    def all_failed(self) -> list[tuple[JobSpec, Path]]:
        """Every job of the plan that has failed: in this run, or before and kept."""
        return [*self.kept_failed, *self.failed]


_RUN_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def run_dir_of(study: ResolvedStudy, options: RunOptions) -> Path:
    """runs/<name>: --name, or the study's default run name (study, profile, digest of the overrides)."""
    name = options.name or study.run_name
    if not _RUN_NAME.fullmatch(name) or name.startswith("."):
        raise ConfigError(f"--name {name!r}: a run name is one folder under --runs: letters, digits, '_', '-', "
                          "'+' and '.', not starting with '.'")
    return Path(options.runs_dir) / name


def run_study(study: ResolvedStudy, options: RunOptions, echo: Callable[[str], None] = print,
              seed_counts: Mapping[str, int] | None = None, sequential: dict | None = None) -> RunOutcome:
    """Run every pending job of `study` and write the tidy tables.

    Every piece of work, the shared stages included, runs on the executor of `options.backend`; the driver
    plans, waits and records. `seed_counts` (variant -> n) keeps only each variant's first n seeds (a round
    of --until-decided, whose design `sequential` is recorded in study.json).

    On a stop signal (Interrupted) the executor is cancelled first (queued work never starts, jobs in flight
    write their checkpoint and stop, no worker is left), then the tables are rebuilt, and the study lock is
    released last.

    Raises:
        StudyLocked: another run of the same study is in progress.
        ConfigError: the run directory holds another resolution of the study, or the backend is unusable.
    """
    run_dir = run_dir_of(study, options)
    check_same_study(run_dir, study)
    _check_limits(options)
    settings = _executor_settings(options, run_dir)
    executor = make_executor(settings)  # a Dask scheduler is reached now, before any work
    created = first_new_folder(run_dir)
    try:
        with StudyLock(run_dir):
            try:
                return _run_locked(study, options, run_dir, executor, echo, seed_counts, sequential)
            except BaseException as e:
                executor.cancel(_grace(e))
                raise
            finally:
                executor.close()
                if (run_dir / STUDY).exists():  # after a stop too: the tables show every job that finished
                    rebuild_tables(run_dir)
                elif created is not None:  # refused before it recorded anything (its data): no folder left
                    remove_if_bare(run_dir, created)
    finally:
        executor.close()


def _run_locked(study: ResolvedStudy, options: RunOptions, run_dir: Path, executor: Executor, echo,
                seed_counts: Mapping[str, int] | None, sequential: dict | None) -> RunOutcome:
    clear_old_stop_files(run_dir)
    # Where the jobs run, described by a worker (on Dask or Slurm it is not the driver's machine); the driver
    # itself never imports torch.
    write_json(run_dir / "environment.json", stage_tasks.worker_environment(executor, options.retries))
    data = stage_tasks.load_data(executor, study.data, options.cache_dir, options.retries)
    keys = StageKeys(data, study.spec.teacher_seed)
    tune_jobs = expand_tuning(study, keys)
    lambdas = _tuning_stage(study, tune_jobs, options, run_dir, echo, data, executor)
    jobs = expand(study, lambdas, keys)
    if seed_counts is not None:
        jobs = [j for j in jobs if study.seeds.index(j.seed) < seed_counts.get(j.variant, 0)]
    bundles = stage_tasks.shared_stages(jobs, executor, options.cache_dir, data, options.retries, echo)
    _write_study(study, run_dir, jobs, tune_jobs, bundles, data, sequential)
    return _run_jobs(jobs, bundles, options, run_dir, echo, "jobs", executor)


def _grace(error: BaseException) -> float:
    """Seconds jobs in flight get to checkpoint: a stop signal gives them time, an error in the driver none."""
    return workers.STOP_GRACE_SECONDS if isinstance(error, (Interrupted, KeyboardInterrupt)) else 0.0


def _check_limits(options: RunOptions) -> None:
    """The flags' ranges (harness.ranges) for a caller that builds RunOptions itself, not through the CLI."""
    for option, value in (("--jobs", options.jobs), ("--threads", options.threads), ("--retries", options.retries),
                          ("--job-timeout", options.job_timeout), ("--jobs-per-gpu", options.jobs_per_gpu)):
        if value is not None:
            ranges.FLAGS[option].check(value, option)


def _executor_settings(options: RunOptions, run_dir: Path) -> ExecutorSettings:
    return ExecutorSettings(backend=options.backend, parallel=_parallel(options), threads=_threads(options),
                            scheduler=options.scheduler, dask_resources=options.dask_resources,
                            stop_file=str(Path(run_dir).absolute() / f".stop-{uuid.uuid4().hex[:12]}"))


def _run_jobs(jobs: list[JobSpec], bundles: dict[str, Path], options: RunOptions, run_dir: Path, echo,
              label: str, executor: Executor) -> RunOutcome:
    outcome = RunOutcome(run_dir=run_dir, total=len(jobs))
    states = {j.job_id: status_of(run_dir, j) for j in jobs}
    pending = [j for j in jobs if _needs_run(states[j.job_id], options)]
    outcome.skipped = len(jobs) - len(pending)
    outcome.kept_failed = [(j, job_dir(run_dir, j) / LOG) for j in jobs
                           if states[j.job_id] == "failed" and j not in pending]
    for job in jobs:
        if states[job.job_id] == "done" and job not in pending:
            _relabel_streams(run_dir, job)
    if outcome.skipped:
        echo(f"{label}: {outcome.skipped} of {len(jobs)} already finished or failed before (kept; "
             f"--rerun-failed / --force to run them again)")
    pending.sort(key=lambda j: (j.seed, jobs.index(j)))  # seed-major: an interrupted study stays balanced
    for job in pending:
        _prepare_job_dir(job, run_dir, options)
    if not pending:
        return outcome
    parallel = _parallel(options)
    echo(f"{label}: running {len(pending)} on the {options.backend} backend ({parallel} at a time, "
         f"{_threads(options)} threads each)")
    progress = Progress(len(pending), parallel)
    try:
        _drive(pending, bundles, options, run_dir, executor, _Recorder(outcome, progress, pending), echo)
    finally:
        progress.close()
    return outcome


def _prepare_job_dir(job: JobSpec, run_dir: Path, options: RunOptions) -> None:
    """job.json; a job run again from scratch loses its old checkpoint (one that stopped for an
    infrastructure reason keeps it, and resumes)."""
    directory = job_dir(run_dir, job)
    state = status_of(run_dir, job)
    from_scratch = state == "done" or (state == "failed" and (options.force or not _resumable(directory)))
    if from_scratch and not job_is_locked(directory):  # another process runs it: its checkpoint is its own
        (directory / CHECKPOINT).unlink(missing_ok=True)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HarnessError(f"{directory}: cannot create the job directory ({e.strerror or e}); check that "
                           f"{run_dir} is writable") from e
    write_record(directory / "job.json", job_record(job))


def _relabel_streams(run_dir: Path, job: JobSpec) -> None:
    """A finished job kept by a plan that labels it otherwise takes the plan's labels, in result.json and
    job.json, so that results.csv describes the plan it is part of. The computation is the same (its id says
    so): another stream design or teacher count (streams that differ from the seed are in the id, the teacher
    in the bundle), or a study that now names as factors keys it did not vary before (a new factor column)."""
    directory = job_dir(run_dir, job)
    try:
        result = read_record(directory / RESULT, Result)
    except RecordError:
        return
    labels = json.loads(json.dumps({"streams": dict(job.streams), "factors": job.extra_factors}))  # as JSON reads
    if any(getattr(result, name) != value for name, value in labels.items()):
        write_record(directory / RESULT, dataclasses.replace(result, **labels))
        write_record(directory / "job.json", job_record(job))


def _resumable(directory: Path) -> bool:
    try:
        return read_record(directory / ERROR, Failure).error in INFRASTRUCTURE
    except RecordError:
        return False


INFRASTRUCTURE = ("WorkerDied", "Preempted", "TimedOut")


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
        if summary["status"] == ELSEWHERE:  # another process runs it: this run did not
            self.outcome.elsewhere.append((job, summary.get("holder", "unknown")))
            self.progress.job_finished(job.variant, job.seed, summary)
            return
        self.outcome.ran += 1
        if summary["status"] != "ok":
            self.outcome.failed.append((job, job_dir(self.outcome.run_dir, job) / "log.txt"))
        self.progress.job_finished(job.variant, job.seed, summary)


def _drive(pending: list[JobSpec], bundles: dict[str, Path], options: RunOptions, run_dir: Path,
           executor: Executor, record: _Recorder, echo) -> None:
    """Every pending job to a result or an error; an infrastructure failure is retried up to --retries times
    (the job resumes from its checkpoint), a deterministic one never."""
    by_id = {j.job_id: j for j in pending}
    retried = {j.job_id: 0 for j in pending}
    for job in pending:
        executor.submit(_job_task(job, bundles, options, run_dir, executor))
    for outcome in executor.outcomes():
        job = by_id[outcome.task.key]
        if outcome.failure is not None:
            failure = outcome.failure
            _append_log(run_dir, job, f"==== attempt {attempts(job_dir(run_dir, job))} ended: "
                                      f"{type(failure).__name__}: {failure} ====")
            if retried[job.job_id] < options.retries:
                retried[job.job_id] += 1
                echo(f"job {job.job_id} ({job.variant} seed {job.seed}): {type(failure).__name__}; running it "
                     f"again (retry {retried[job.job_id]} of {options.retries})")
                executor.submit(outcome.task)
                continue
            record(_record_failure(job, run_dir, type(failure).__name__, f"{failure}; after {retried[job.job_id] + 1} "
                                   f"attempt(s) (--retries {options.retries}). Its checkpoint is kept: run the "
                                   "study again with --rerun-failed to resume it"))
        elif outcome.error is not None:  # execute never raises: this is the backend's own (pickling, ...)
            record(_record_failure(job, run_dir, type(outcome.error).__name__, str(outcome.error)))
        else:
            record(outcome.value)


def _job_task(job: JobSpec, bundles: dict[str, Path], options: RunOptions, run_dir: Path,
              executor: Executor) -> Task:
    stop_file = getattr(getattr(executor, "settings", None), "stop_file", None)
    return Task(job.job_id, task_entry.execute,
                (job, str(bundles[job.bundle_key]), str(job_dir(run_dir, job)), _threads(options),
                 options.jobs_per_gpu),
                {"timeout": options.job_timeout, "stop_file": stop_file}, kind="job",
                label=f"{job.variant} seed {job.seed}")


def _append_log(run_dir: Path, job: JobSpec, line: str) -> None:
    """A line of the driver's in the job's log.txt (where the failure reason belongs, not only error.json)."""
    try:  # never through a symbolic link (records.open_append); the job itself reports such a log.txt
        with open_append(job_dir(run_dir, job) / LOG) as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} harness.runner {line}\n")
    except (OSError, HarnessError):
        pass


def _record_failure(job: JobSpec, run_dir: Path, kind: str, message: str) -> dict:
    """error.json for a job that failed outside its own code (its worker died, it kept timing out); its summary."""
    directory = job_dir(run_dir, job)
    write_record(directory / ERROR, Failure(job_id=job.job_id, error=kind, message=message,
                                                   log=str(directory / LOG)))
    _append_log(run_dir, job, f"job failed: {kind}: {message}")
    log.error("job %s (%s seed %d): %s: %s", job.job_id, job.variant, job.seed, kind, message)
    return {"job_id": job.job_id, "status": "failed", "message": f"{kind}: {message}", "seconds": 0.0}


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


# --------------------------------------------------------------------------- tuning


def _tuning_stage(study: ResolvedStudy, tune_jobs: list[JobSpec], options: RunOptions, run_dir: Path, echo,
                  data: DataState, executor: Executor) -> dict | None:
    """The [tune] stage: run the lambda grid, pick per variant the pair with the best mean val F1."""
    if not tune_jobs:
        return None
    bundles = stage_tasks.shared_stages(tune_jobs, executor, options.cache_dir, data, options.retries, echo)
    outcome = _run_jobs(tune_jobs, bundles, options, run_dir, echo, "tuning", executor)
    if outcome.failed:
        echo(f"tuning: {len(outcome.failed)} jobs failed; choosing among the points that finished")
    return choose_and_record(study, tune_jobs, run_dir, echo)


def choose_and_record(study: ResolvedStudy, tune_jobs: list[JobSpec], run_dir: Path, echo) -> dict:
    """From the finished tuning jobs: the lambdas of each variant, recorded in tuning.json and tuning.csv."""
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
    with atomic_file(run_dir / "tuning.csv") as tmp:
        summary.reset_index().to_csv(tmp, index=False, float_format="%.4f")


# --------------------------------------------------------------------------- study.json


def _write_study(study: ResolvedStudy, run_dir: Path, jobs: list[JobSpec], tune_jobs: list[JobSpec],
                 bundles: dict[str, Path], data: DataState, sequential: dict | None = None) -> None:
    """study.json: the resolution, what the report needs (tables, variants, comparisons, teacher F1), job ids."""
    spec = study.spec
    names = teacher_names(jobs, len(bundles), len(spec.teachers))
    teacher_rows = []
    for key, root in bundles.items():
        if not (Path(root) / MANIFEST).exists():  # on Slurm, a bundle still queued: the last job fills it in
            continue
        job = next(j for j in jobs if j.bundle_key == key)
        t = teacher_scores(root, job.config)
        teacher_rows.append(ReferenceRow(name=names[key],
                                         val_f1=round(t["validation"]["event_f1"], 4),
                                         test_f1=round(t["test"]["event_f1"], 4)))
    pseudolabel_rows = quality_rows(bundles, jobs, data, names)  # () where the unlabeled clips' truth is not known
    base = study.base
    factors = {j.variant: j.factors for j in jobs}
    record = StudyRecord(
        name=spec.name, run_name=run_dir.name, description=spec.description,
        resolution=resolution_of(study, data.key),
        budget=Budget(steps=base.train.steps, hidden=getattr(base.student, "hidden", 0),
                      layers=getattr(base.student, "layers", 0), student_model=base.student.model,
                      teacher_models=base.teacher.n_models, teacher_channels=base.teacher.channels,
                      teacher_source=base.teacher.source, precision=base.train.precision,
                      features_hop=base.features.hop_seconds, n_frames=base.features.n_frames),
        generation_epochs=base.curriculum.generation_epochs,
        tables=tuple(TableInfo(t.name, t.caption, tuple(t.variants)) for t in spec.tables),
        variants=tuple(VariantInfo(v.name, factors[v.name]) for v in spec.variants),
        factors=tuple(FactorInfo(f.name, f.key, f.label, dict(f.level_labels)) for f in spec.factor_specs.values()),
        plugins=spec.plugins,
        comparisons=tuple(ComparisonInfo(c.label, c.a, c.b, c.rope) for c in spec.comparisons),
        reference_rows=tuple(teacher_rows), seeds=tuple(study.seeds), jobs=tuple(j.job_id for j in jobs),
        tune_jobs=tuple(j.job_id for j in tune_jobs), git_commit=git_commit(), paired=spec.paired,
        sequential=sequential, pseudolabel_rows=pseudolabel_rows, **_streams_record(study, jobs),
    )
    write_record(run_dir / STUDY, record)


def teacher_names(jobs: list[JobSpec], n_bundles: int, n_teachers: int) -> dict[str, str]:
    """Bundle key -> the report's name of its teacher row. Teachers of different configs (a study with the
    teacher as a factor) are named by the teacher settings that differ between them, e.g. "Teacher (channels 8,
    epochs 3)"; otherwise as teacher_label says."""
    configs = {j.bundle_key: dataclasses.asdict(j.config.teacher) for j in jobs}
    differ = [k for k in next(iter(configs.values()), {}) if len({repr(c[k]) for c in configs.values()}) > 1]
    seeds = {j.bundle_key: j.teacher_seed for j in jobs}
    names = {}
    for key, config in configs.items():
        if differ and n_teachers == 1:
            names[key] = "Teacher (" + ", ".join(f"{k.replace('_', ' ')} {config[k]}" for k in differ) + ")"
        else:
            names[key] = teacher_label(key, seeds[key], n_bundles, n_teachers)
    if len(set(names.values())) < len(names):  # same teacher settings, other features or data: keep them apart
        names = {key: teacher_label(key, seeds[key], n_bundles, n_teachers) for key in configs}
    return names


def teacher_label(bundle_key: str, teacher_seed: int, n_bundles: int, n_teachers: int) -> str:
    """The report's name of a teacher row: "Teacher (ours)" for the study's one bundle, "Teacher (seed 1)" for
    each of several teachers (and its bundle key when the variants' teachers differ in more than the seed)."""
    if n_bundles == 1:
        return "Teacher (ours)"
    if n_teachers == 1:
        return f"Teacher ({bundle_key})"
    if n_bundles == n_teachers:
        return f"Teacher (seed {teacher_seed})"
    return f"Teacher (seed {teacher_seed}, {bundle_key})"


def _streams_record(study: ResolvedStudy, jobs: list[JobSpec]) -> dict:
    """study.json's design of seed streams (StudyRecord.streams_design, streams, teacher_seeds)."""
    teachers = study.spec.teachers
    if study.streams is None and len(teachers) == 1:
        return {}
    varied = tuple(name for name in STREAMS if len({dict(j.streams).get(name) for j in jobs}) > 1)
    # one seed per run over several teachers: every stream follows the run's seed, which nests in its teacher
    design = study.streams.design if study.streams is not None else "nested"
    return {"streams_design": design, "streams": varied, "teacher_seeds": tuple(teachers)}


def rebuild_tables(run_dir: Path, into: Path | None = None) -> tuple[Path, Path]:
    """Rebuild results.csv and results_per_class.csv from the job results of the study's current plan, in the
    run directory or in `into` (a report of a read-only run directory)."""
    record = read_study_record(run_dir)
    records = read_results(Path(run_dir) / "jobs", set(record.jobs))
    return write_tables(Path(into or run_dir), records, [v.name for v in record.variants])
