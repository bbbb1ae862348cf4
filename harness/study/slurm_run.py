"""`harness run --backend slurm`: submit a study to Slurm and exit; `status` and `cancel` read it back.

What is submitted, each wave an array that starts once the one before has ended well (`afterok`):
features (in parts of clips) -> teacher members -> bundles -> student jobs, and last a `finish` job
(`afterany`) that writes the teacher's rows into study.json and rebuilds the tables. Waves whose work is
cached are not submitted. With a [tune] stage, the first submission runs the tuning jobs and a `continue`
job after them (`afterany`), which chooses lambda1 and lambda2 and submits the rest, so a study with a
tuning stage also runs unattended.

Submitting again submits only what is missing: a job already done, or still queued or running in Slurm,
is left alone. What was submitted is kept in runs/<run>/slurm/submissions.json (task key -> Slurm id).
The data is read and hashed here (the job ids depend on its content); the audio digests are kept in the
cache's index, so that is a read of every file the first time only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.bundle import MANIFEST
from harness.records import write_json
from harness.study import stage_tasks
from harness.study.cluster import ClusterConfig
from harness.study.environment import environment
from harness.study.executors import Task
from harness.study.executors import slurm
from harness.study.jobfiles import SUBMISSIONS, job_dir, read_submissions, status_of
from harness.study.lock import StudyLock
from harness.study.plan import JobSpec, ResolvedStudy, expand, expand_tuning
from harness.study.rundir import check_same_study, first_new_folder, remove_if_bare
from harness.study.stages import DataState, StageKeys, check_durations, read_data


@dataclass
class Submitted:
    """What one submission did."""

    run_dir: Path
    ids: dict[str, list[str]] = field(default_factory=dict)  # wave -> Slurm ids
    skipped: int = 0  # jobs done or still in Slurm's queue
    waiting_for_tuning: bool = False


def submit_study(study: ResolvedStudy, options, cluster: ClusterConfig, echo: Callable[[str], None] = print
                 ) -> Submitted:
    """Submit every missing piece of `study` to Slurm; returns at once (nothing waits for the cluster)."""
    from harness.study import runner

    slurm.check_slurm()
    run_dir = runner.run_dir_of(study, options)
    check_same_study(run_dir, study)
    runner._check_limits(options)
    cache_dir = Path(options.cache_dir).absolute()
    created = first_new_folder(run_dir)
    with StudyLock(run_dir):
        try:
            write_json(run_dir / "environment.json", environment())
            data = read_data(study.data, cache_dir, 2)
            check_durations(data)  # audio that ends before its labels fails now, not in a queued job
        except BaseException:
            if created is not None:  # refused for its data: no run folder left behind
                remove_if_bare(run_dir, created)
            raise
        keys = StageKeys(data, study.spec.teacher_seed)
        book = _Book(run_dir)
        out = Submitted(run_dir)
        tune_jobs = expand_tuning(study, keys)
        lambdas = runner.read_tuning(run_dir) if tune_jobs else None
        if tune_jobs and lambdas is None:
            waiting = [j for j in tune_jobs if status_of(run_dir, j) not in ("done", "failed")]
            if waiting:
                after = _submit_jobs(tune_jobs, "tuning", study, options, cluster, cache_dir, data, book, out, echo)
                tasks = [Task("continue", _continue, (study, options, cluster), label="continue")]
                out.ids["continue"] = _submit(book, tasks, "continue", cluster, run_dir, after, "afterany", echo)
                out.waiting_for_tuning = True
                return out
            lambdas = runner.choose_and_record(study, tune_jobs, run_dir, echo)
        jobs = expand(study, lambdas, keys)
        bundles = {j.bundle_key: cache_dir / "stages" / j.bundle_key for j in jobs}
        runner._write_study(study, run_dir, jobs, tune_jobs, bundles, data)
        after = _submit_jobs(jobs, "jobs", study, options, cluster, cache_dir, data, book, out, echo)
        if after:
            tasks = [Task("finish", _finish, (study, run_dir, jobs, tune_jobs, bundles, data), label="finish")]
            out.ids["finish"] = _submit(book, tasks, "finish", cluster, run_dir, after, "afterany", echo)
        else:  # nothing left to run
            runner.rebuild_tables(run_dir)
    return out


def _submit_jobs(jobs: list[JobSpec], label: str, study: ResolvedStudy, options, cluster: ClusterConfig,
                 cache_dir: Path, data: DataState, book: "_Book", out: Submitted, echo) -> list[str]:
    """The stages the jobs need and the jobs themselves; returns the Slurm ids of the jobs (queued or new)."""
    from harness.study import runner

    run_dir = out.run_dir
    active = book.active()
    todo, waiting = [], []
    for job in jobs:
        if job.job_id in active:
            waiting.append(active[job.job_id])
        elif runner._needs_run(status_of(run_dir, job), options):
            todo.append(job)
    out.skipped += len(jobs) - len(todo)
    if not todo:
        return waiting
    after = _submit_stages(todo, cluster, cache_dir, data, book, out, echo)
    for job in todo:
        runner._prepare_job_dir(job, run_dir, options)
    threads = runner._threads(options)
    tasks = [Task(job.job_id, slurm.student_job, (job, str(cache_dir / "stages" / job.bundle_key),
                                                   str((job_dir(run_dir, job)).absolute()), threads,
                                                   options.jobs_per_gpu, options.retries, str(run_dir.absolute())),
                  kind="job", label=f"{job.variant} seed {job.seed}") for job in todo]
    ids = _submit(book, tasks, label, cluster, run_dir, after, "afterok", echo, gpus=True)
    out.ids[label] = ids
    return waiting + ids


def _submit_stages(jobs: list[JobSpec], cluster: ClusterConfig, cache_dir: Path, data: DataState, book: "_Book",
                   out: Submitted, echo) -> list[str]:
    """Arrays of the missing stages, each after the one before; returns what the jobs must wait for."""
    firsts: dict[str, JobSpec] = {}
    for job in jobs:
        firsts.setdefault(job.bundle_key, job)
    missing = [j for k, j in firsts.items() if not (cache_dir / "stages" / k / MANIFEST).exists()]
    if not missing:
        return []
    active = book.active()
    # Up to 8 parts a subset: each part is a Slurm job, whose start costs seconds to minutes of queueing.
    waves = [("features", stage_tasks._feature_tasks(missing, data, cache_dir, 2), False),
             ("teacher", stage_tasks._member_tasks(missing, data, cache_dir), True),
             ("bundles", [Task(f"bundle-{j.bundle_key}", stage_tasks.logged, (stage_tasks._bundle, j, cache_dir, data),
                               label=f"bundle {j.bundle_key}") for j in missing], False)]
    after: list[str] = []
    for name, tasks, gpus in waves:
        queued = [active[t.key] for t in tasks if t.key in active]
        new = [Task(t.key, slurm.stage_job, t.args, label=t.label) for t in tasks if t.key not in active]
        ids = _submit(book, new, name, cluster, out.run_dir, after, "afterok", echo, gpus=gpus)
        if ids:
            out.ids[name] = ids
        if ids or queued:
            after = ids + queued
    return after


def _submit(book: "_Book", tasks: list[Task], name: str, cluster: ClusterConfig, run_dir: Path, after: list[str],
            kind: str, echo, gpus: bool = False) -> list[str]:
    if not tasks:
        return []
    ids = slurm.submit_array(tasks, cluster, run_dir.absolute() / "slurm" / "logs", f"harness-{run_dir.name}-{name}", after,
                             kind, gpus)
    book.add(tasks, ids, name)
    shown = ids[0].split("_")[0] + (f"_[0-{len(ids) - 1}]" if "_" in ids[0] else "")
    echo(f"slurm: {name}: {len(ids)} submitted as {shown}" + (f" (after {len(after)} jobs)" if after else ""))
    return ids


def _continue(study: ResolvedStudy, options, cluster: ClusterConfig) -> None:
    """Inside Slurm, after the tuning jobs: choose the lambdas and submit the rest of the study."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    submit_study(study, options, cluster)


def _finish(study: ResolvedStudy, run_dir: Path, jobs, tune_jobs, bundles, data) -> None:
    """Inside Slurm, after every job: the teacher's rows in study.json, and the tables."""
    from harness.study import runner

    record = runner.read_study_record(run_dir)
    runner._write_study(study, run_dir, jobs, tune_jobs, bundles, data, record.sequential)
    runner.rebuild_tables(run_dir)


class _Book:
    """runs/<run>/slurm/submissions.json: task key -> {id, wave, time}; which of them Slurm still holds."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / SUBMISSIONS
        self.entries: dict[str, dict] = read_submissions(run_dir)

    def add(self, tasks: list[Task], ids: list[str], wave: str) -> None:
        now = time.time()
        for task, slurm_id in zip(tasks, ids):
            self.entries[task.key] = {"id": slurm_id, "wave": wave, "label": task.label, "time": now}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"tasks": self.entries})

    def active(self) -> dict[str, str]:
        """Task key -> Slurm id, for the tasks still queued or running."""
        known = slurm.states([e["id"] for e in self.entries.values()])
        return {key: e["id"] for key, e in self.entries.items()
                if e["id"] in known and known[e["id"]].state in slurm.ACTIVE}
