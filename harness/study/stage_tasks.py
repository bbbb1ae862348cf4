"""The shared stages as tasks on the study's executor: the driver plans and waits, workers compute.

Per bundle that is not in the cache yet, in three waves (each waits for the one before):
1. features: every subset at the student's and the teacher's mel resolutions, each split in parts of clips
   (harness.features.cache.compute_part), so a subset's extraction spreads over the workers;
2. the teacher: each ensemble member trained by its own task (harness.study.stages.member_task);
3. the bundle: features assembled from their parts, the members' predictions and pseudolabels, the manifest
   (harness.study.stages.prepare), and the teacher's scores, all cached.

Every wave's work is cached by content key and written atomically, under a lock on its target, so a stopped
or failed stage resumes from what is done and two studies sharing a cache never build a thing twice. A task's
log lines are captured on the worker and shown by the driver when the task ends.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable, Iterable

from harness.bundle import MANIFEST
from harness.errors import HarnessError, disk_full
from harness.features.cache import compute_part, feature_path, part_ranges
from harness.study.executors import Executor, Outcome, Task
from harness.study.plan import JobSpec
from harness.study.stages import (
    DataState,
    StageKeys,
    check_durations,
    member_path,
    prepare,
    read_data,
    teacher_scores,
)

log = logging.getLogger("harness.stages")

SUBSETS_BY_ROLE = ("synthetic", "weak", "unlabeled", "validation", "test")
PART_CLIPS = 64  # clips per feature part, at least: ~2 s of work for 10-s clips against a task's overhead


def logged(fn: Callable[..., Any], *args, **kwargs) -> tuple[Any, list[str]]:
    """Run a stage function on a worker, with its harness log lines (INFO and up) returned beside its value."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")

    handler, root = Keep(logging.INFO), logging.getLogger("harness")
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(level or logging.INFO, logging.INFO))
    try:
        return fn(*args, **kwargs), lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def load_data(executor: Executor, study_data, cache_dir: Path, retries: int) -> DataState:
    """The data read and hashed (and a synthetic corpus generated) by a worker, its audio checked against its
    labels (before any feature is computed)."""
    (data,) = run_wave(executor, [Task("data", logged, (_read_checked, study_data, cache_dir), label="data")],
                       retries)
    return data


def worker_environment(executor: Executor, retries: int) -> dict:
    """harness.study.environment.environment() as a worker sees it (the machine, packages and devices)."""
    from harness.study.environment import environment

    (env,) = run_wave(executor, [Task("environment", logged, (environment,), label="environment")], retries)
    return env


def _read_checked(study_data, cache_dir: Path) -> DataState:
    data = read_data(study_data, cache_dir, 2)
    check_durations(data)
    return data


def shared_stages(jobs: list[JobSpec], executor: Executor, cache_dir: Path, data: DataState, retries: int,
                  echo: Callable[[str], None]) -> dict[str, Path]:
    """Bundle key -> verified bundle directory, for every bundle the jobs need."""
    firsts: dict[str, JobSpec] = {}
    for job in jobs:
        firsts.setdefault(job.bundle_key, job)
    missing = [j for k, j in firsts.items() if not (Path(cache_dir) / "stages" / k / MANIFEST).exists()]
    if missing:
        features = _feature_tasks(missing, data, cache_dir, executor.parallel)
        if features:
            echo(f"shared stages: features in {len(features)} parts")
            run_wave(executor, features, retries)
        members = _member_tasks(missing, data, cache_dir)
        if members:
            echo(f"shared stages: {len(members)} teacher members")
            run_wave(executor, members, retries)
    tasks = [Task(f"bundle-{key}", logged, (_bundle, job, cache_dir, data), label=f"bundle {key}")
             for key, job in firsts.items()]
    bundles = {}
    for key, (root, scores) in zip(firsts, run_wave(executor, tasks, retries)):
        bundles[key] = Path(root)
        echo(f"shared stages for {firsts[key].variant} (bundle {key}): teacher validation F1 "
             f"{scores['validation']['event_f1']:.1f} %, test F1 {scores['test']['event_f1']:.1f} % "
             f"(bundle {root})")
    return bundles


def _bundle(job: JobSpec, cache_dir: Path, data: DataState) -> tuple[str, dict]:
    root = prepare(job, cache_dir, jobs=1, data=data)
    return str(root), teacher_scores(root, job.config)


def _feature_tasks(jobs: list[JobSpec], data: DataState, cache_dir: Path, parallel: int) -> list[Task]:
    """A task per part of every features file the bundles need and the cache lacks."""
    wanted: dict[Path, tuple] = {}
    for job in jobs:
        fcfg = job.config.features
        mels = [fcfg.student_mels] + ([fcfg.teacher_mels] if job.config.teacher.source != "file" else [])
        for n_mels in mels:
            for name in SUBSETS_BY_ROLE:
                path = feature_path(cache_dir, name, fcfg, n_mels, data.clip_digests[name])
                if not path.is_file() and data.subsets[name].clips:  # an empty subset: written by its bundle
                    clips = tuple((c.clip_id, str(c.path)) for c in data.subsets[name].clips)
                    wanted[path] = (clips, fcfg, n_mels)
    tasks = []
    for path, (clips, fcfg, n_mels) in wanted.items():
        parts = len(part_ranges(len(clips), max(1, min(4 * parallel, math.ceil(len(clips) / PART_CLIPS)))))
        tasks += [Task(f"features-{path.stem}-{i}of{parts}", logged, (compute_part, clips, fcfg, n_mels, path, i,
                                                                      parts), label=f"features {path.name}")
                  for i in range(parts)]
    return tasks


def _member_tasks(jobs: list[JobSpec], data: DataState, cache_dir: Path) -> list[Task]:
    """A task per teacher member not in the cache, for every distinct teacher the bundles need."""
    from harness.study.stages import member_task

    tasks, seen = [], set()
    for job in jobs:
        if job.config.teacher.source == "file":
            continue
        teacher_key = StageKeys(data, job.teacher_seed).teacher(job.config)
        for member in range(job.config.teacher.n_models):
            path = member_path(cache_dir, teacher_key, member)
            if path in seen or path.is_file():
                continue
            seen.add(path)
            tasks.append(Task(f"teacher-{teacher_key}-{member}", logged, (member_task, job, data, cache_dir, member),
                              label=f"teacher member {member + 1}"))
    return tasks


def run_wave(executor: Executor, tasks: Iterable[Task], retries: int) -> list[Any]:
    """Run stage tasks to their values (in the tasks' order), retrying infrastructure failures.

    Raises:
        HarnessError: a task raised one (its message, e.g. a DataError naming a clip), or kept dying.
    """
    tasks = list(tasks)
    values: dict[str, Any] = {}
    tries = {t.key: 0 for t in tasks}
    for task in tasks:
        executor.submit(task)
    for outcome in executor.outcomes():
        task = outcome.task
        if outcome.failure is not None and tries[task.key] < retries:
            tries[task.key] += 1
            log.warning("%s: %s; running it again (retry %d of %d)", task.label, outcome.failure, tries[task.key],
                        retries)
            executor.submit(task)
            continue
        values[task.key] = _value(outcome, replay=executor.name != "inprocess")
    return [values[t.key] for t in tasks]


def _value(outcome: Outcome, replay: bool = True) -> Any:
    """The task's value; its log lines shown here (`replay`) unless it ran in this process, which showed them."""
    task = outcome.task
    if outcome.failure is not None:
        raise HarnessError(f"shared stage {task.label}: {outcome.failure}; run the study again (finished stages "
                           "are kept)")
    if isinstance(outcome.error, HarnessError):
        raise outcome.error
    full = disk_full(f"shared stage {task.label}", outcome.error)  # a full disk no stage anticipated
    if full is not None:
        raise full from outcome.error
    if outcome.error is not None:
        raise HarnessError(f"shared stage {task.label} failed: {type(outcome.error).__name__}: "
                           f"{outcome.error}") from outcome.error
    value, lines = outcome.value
    for line in lines if replay else ():
        level, _, text = line.partition(" ")
        log.log(logging.getLevelName(level), "%s", text.partition(": ")[2] if ": " in text else text)
    return value
