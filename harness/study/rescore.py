"""Scores of a finished run under other post-processing and metric settings, without retraining.

`harness rescore runs/<run> --set postprocess.threshold=0.4` reads every finished job's saved
probabilities (`probabilities_{validation,test}.npz`: the best epoch's raw frame and clip outputs), scores
them again with the settings changed, in parallel over jobs (joblib, loky processes), and writes
`runs/<run>/rescore/<name>/results.csv` and `results_per_class.csv` (the columns of the run's own tables,
harness.schema) with `settings.json` (harness.records.RescoreRecord) beside them. The name defaults to a
digest of the settings, so the same settings land in the same folder.

What can change (RESCORE_KEYS): every `postprocess.*` and `eval.*` field, `student.gate_threshold`, and
two options of the threshold-free metrics: `psds.median_filter` (median-filter the scores with the
post-processing windows first, as the DCASE 2023-2024 baselines do) and `psds.drop_empty_clips` (score
only clips with reference events, the DESED_task recipe). With a job's own settings the numbers are the
job's result.json numbers exactly: the same scoring functions run on the same float32 arrays.

What does not change: the best epoch. It was chosen on validation F1 under the job's own post-processing,
and only its outputs are saved; a rescore scores that epoch under the new settings.

The same inputs give the clip-level uncertainty of each job (`job_uncertainty`): percentile bootstrap
intervals of a metric over the evaluation clips (harness.evaluation.bootstrap) and the PSD-ROC on a
common eFPR grid, which the report averages over seeds. They are cached beside each job as
`uncertainty-<key>.json` (harness.records.UncertaintyRecord).

Every job needs its shared stages (the reference events and event lengths live in the bundle): they are
looked up under `--cache` (default: the harness cache), then where the job read them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from harness import __version__
from harness.bundle import MANIFEST, Bundle
from harness.config import EvalConfig, MethodConfig, PostprocessConfig, check_method, from_mapping, parse_override
from harness.errors import ConfigError, DataError, HarnessError
from harness.evaluation.outputs import Probabilities, read_probabilities
from harness.evaluation.registered import plugin_metric_values
from harness.identity import digest
from harness.records import (IntervalRecord, JobRecord, RecordError, ReferenceRow, RescoreRecord, Result,
                             UncertaintyRecord, file_checksum, read_record, write_record)

RESCORE = "rescore"  # runs/<run>/rescore/<name>/
SETTINGS = "settings.json"
SPLITS: dict[str, str] = {"validation": "val", "test": "test"}  # subset -> column prefix
RESCORE_VERSION = 1  # bump when a change alters rescored numbers: same settings, new folder name
UNCERTAINTY_VERSION = 1

# section -> the fields `--set` may change: post-processing and metric settings, nothing that trains.
RESCORE_KEYS: dict[str, tuple[str, ...]] = {
    "postprocess": tuple(f.name for f in dataclasses.fields(PostprocessConfig)),
    "eval": tuple(f.name for f in dataclasses.fields(EvalConfig)),
    "student": ("gate_threshold",),
    "psds": ("median_filter", "drop_empty_clips"),
}
THRESHOLD_FREE: tuple[str, ...] = ("psds1", "psds2", "intersection_f1", "collar_f1")
EVENT_RESAMPLES = 1000  # bootstrap replicates of the event-based F1 (cheap: weighted counts)
PSDS_RESAMPLES = 200  # of the threshold-free metrics (each replicate recomputes the PSD-ROC)
CONFIDENCE = 0.95
ROC_GRID = np.linspace(0.0, 100.0, 201)  # eFPR per hour, 0..e_max of both PSDS scenarios
PARALLEL_FROM = 4  # run_uncertainty computes more jobs than this in worker processes


@dataclass(frozen=True)
class RescoreSettings:
    """What a rescore changes.

    Attributes:
        overrides: every --set, as given.
        method: nested method-config overrides, e.g. {"postprocess": {"threshold": 0.4}}.
        psds_median_filter, psds_drop_empty_clips: options of the threshold-free metrics (module doc).
        threshold_free: recompute PSDS1/2 and the two F1s at 0.5 (False: their columns are left empty).
    """

    overrides: tuple[str, ...] = ()
    method: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    psds_median_filter: bool = False
    psds_drop_empty_clips: bool = False
    threshold_free: bool = True

    @property
    def key(self) -> str:
        return digest(RESCORE_VERSION, self.method, self.psds_median_filter, self.psds_drop_empty_clips,
                      self.threshold_free, length=10)


@dataclass(frozen=True)
class RescoreOutcome:
    directory: Path  # runs/<run>/rescore/<name>
    record: RescoreRecord
    results: Path
    per_class: Path


# --------------------------------------------------------------------------- settings


def parse_settings(overrides: Sequence[str], threshold_free: bool = True) -> RescoreSettings:
    """`--set` strings -> RescoreSettings, checked against the config before any job is read.

    Raises:
        ConfigError: a key outside RESCORE_KEYS (the valid ones listed), or a value of the wrong type.
    """
    method: dict[str, dict[str, Any]] = {}
    psds: dict[str, Any] = {}
    for text in overrides:
        path, value = parse_override(text)
        if len(path) != 2 or path[1] not in RESCORE_KEYS.get(path[0], ()):
            raise ConfigError(f"--set {text}: rescore changes post-processing and metric settings only; valid "
                              f"keys: {', '.join(valid_keys())}")
        section, name = path
        if section == "psds":
            if not isinstance(value, bool):
                raise ConfigError(f"--set {text}: psds.{name} takes true or false")
            psds[name] = value
        else:
            method.setdefault(section, {})[name] = value
    check_method(from_mapping(MethodConfig, method, "rescore"), "rescore")  # types and ranges, before any job
    return RescoreSettings(overrides=tuple(overrides), method=method,
                           psds_median_filter=psds.get("median_filter", False),
                           psds_drop_empty_clips=psds.get("drop_empty_clips", False), threshold_free=threshold_free)


def valid_keys() -> list[str]:
    return [f"{section}.{name}" for section, names in RESCORE_KEYS.items() for name in names]


def settings_of(record: RescoreRecord) -> RescoreSettings:
    """The settings a rescore table was computed under, from its settings.json."""
    return RescoreSettings(overrides=tuple(record.overrides), method=dict(record.method),
                           psds_median_filter=record.psds_median_filter,
                           psds_drop_empty_clips=record.psds_drop_empty_clips, threshold_free=record.threshold_free)


def read_rescore(run_dir: Path, name: str) -> RescoreRecord:
    """runs/<run>/rescore/<name>/settings.json.

    Raises:
        DataError: no such rescore (the rescores of the run are listed).
    """
    path = Path(run_dir) / RESCORE / name / SETTINGS
    if not path.is_file():
        known = sorted(p.parent.name for p in (Path(run_dir) / RESCORE).glob(f"*/{SETTINGS}"))
        raise DataError(f"{path} not found: no rescore {name!r} of {run_dir}; rescores of this run: "
                        f"{', '.join(known) or 'none'} (make one with `python -m harness rescore {run_dir} --set ...`)")
    return read_record(path, RescoreRecord)


# --------------------------------------------------------------------------- one job's inputs


@dataclass(frozen=True)
class JobInputs:
    """What scoring a finished job needs: its result, its config under the settings, its bundle, its outputs."""

    job_dir: Path
    result: Result
    config: MethodConfig
    bundle: Bundle
    probabilities: dict[str, Probabilities]  # subset -> the best epoch's outputs


def default_cache() -> Path:
    from harness.api import default_cache as cli_default  # one place for $HARNESS_CACHE and its default

    return cli_default()


def locate_bundle(result: Result, cache_dir: Path | None) -> Path:
    """The folder of a job's shared stages: under cache_dir (default: the harness cache) by its key, else where
    the job read it.

    Raises:
        DataError: in none of those places, naming them and what to do.
    """
    key = result.provenance.bundle_key
    places = [Path(cache_dir or default_cache()) / "stages" / key]
    if result.bundle_root:
        places.append(Path(result.bundle_root))
    for place in places:
        if (place / MANIFEST).is_file():
            return place
    raise DataError(f"job {result.job_id}: its shared stages (bundle {key}) are not in "
                    f"{' nor '.join(map(str, places))}; give the cache the run used with --cache DIR, or run the "
                    "study again to rebuild them (finished jobs are kept)")


def load_job(job_dir: Path, settings: RescoreSettings, cache_dir: Path | None) -> JobInputs:
    """A finished job's inputs, its config with the settings applied.

    Raises:
        HarnessError: no result.json or job.json, a probabilities file missing or of other clips, a bundle
            not found or whose reference events were changed.
    """
    job_dir = Path(job_dir)
    result = read_record(job_dir / "result.json", Result)
    config = job_config(job_dir, settings)
    bundle = Bundle.open(locate_bundle(result, cache_dir), verify=False)  # only the reference files are read
    _check_references(bundle)
    probabilities = {}
    for subset in SPLITS:
        probs = read_probabilities(job_dir / f"probabilities_{subset}.npz")
        if list(probs.clip_ids) != bundle.clip_ids(subset) or tuple(probs.classes) != bundle.classes:
            raise DataError(f"{job_dir / f'probabilities_{subset}.npz'}: its clips or classes are not those of "
                            f"the bundle {bundle.root}; run the study again with --force for this job")
        probabilities[subset] = probs
    return JobInputs(job_dir, result, config, bundle, probabilities)


def job_config(job_dir: Path, settings: RescoreSettings) -> MethodConfig:
    """The job's resolved config (its job.json) with the settings' overrides applied."""
    job = read_record(Path(job_dir) / "job.json", JobRecord)
    base = from_mapping(MethodConfig, job.config, f"{Path(job_dir) / 'job.json'}: config")
    return from_mapping(MethodConfig, settings.method, "rescore", base=base)


def _check_references(bundle: Bundle) -> None:
    for subset in SPLITS:
        entry = bundle.manifest.arrays.get(f"{subset}_reference")
        if entry is not None and file_checksum(bundle.root / entry.path) != entry.checksum:
            raise DataError(f"{bundle.root / entry.path} was changed since the bundle was written (checksum); "
                            "run the study again to rebuild the shared stages")


# --------------------------------------------------------------------------- scoring


def rescore_job(job_dir: Path, settings: RescoreSettings, cache_dir: Path | None = None) -> Result:
    """A job's Result with every score recomputed under `settings` (the rest of the record kept)."""
    from harness.evaluation.scoring import score  # the job's own scoring: the same settings give the same numbers

    inputs = load_job(job_dir, settings, cache_dir)
    changes: dict[str, Any] = {}
    per_class, metrics = {}, {}
    for subset, short in SPLITS.items():
        probs = inputs.probabilities[subset]
        ev = score(probs.frame, probs.clip, inputs.bundle, subset, inputs.config)
        changes[f"{short}_f1"] = 100 * ev.events.macro_f1
        changes[f"{short}_segment_f1"] = 100 * ev.segments.macro_f1
        per_class[subset] = {c: 100 * ev.events.per_class_f1[c] for c in inputs.bundle.classes}
        free = threshold_free_scores(inputs, subset, settings) if settings.threshold_free else {}
        changes.update({f"{short}_{name}": free.get(name) for name in THRESHOLD_FREE})
        own = plugin_metric_values(ev.frame, probs.clip, inputs.bundle, subset)
        metrics.update({f"{short}_{name}": value for name, value in own.items()})
    return dataclasses.replace(inputs.result, per_class=per_class, metrics=metrics, **changes)


def threshold_free_scores(inputs: JobInputs, subset: str, settings: RescoreSettings) -> dict[str, float]:
    """PSDS1, PSDS2, intersection and collar F1 (%) of a job's raw frame scores; {} when the split has no
    reference event (as harness.study.job does)."""
    from harness.evaluation.psds import psds_metrics

    try:
        m = psds_metrics(*_scoring_args(inputs, subset), hop_seconds=inputs.bundle.hop_seconds,
                         classes=inputs.bundle.classes, median_windows=score_windows(inputs, settings),
                         drop_empty_clips=settings.psds_drop_empty_clips)
    except DataError:
        return {}
    return {"psds1": 100 * m.psds1, "psds2": 100 * m.psds2, "intersection_f1": 100 * m.intersection_f1,
            "collar_f1": 100 * m.collar_f1}


def _scoring_args(inputs: JobInputs, subset: str) -> tuple:
    b = inputs.bundle
    return inputs.probabilities[subset].frame, b.clip_ids(subset), b.durations(subset), b.reference(subset)


def score_windows(inputs: JobInputs, settings: RescoreSettings) -> np.ndarray | None:
    """The post-processing median windows when psds.median_filter is set, else None (raw scores)."""
    if not settings.psds_median_filter:
        return None
    from harness.evaluation.postprocess import median_windows

    pp = inputs.config.postprocess
    return median_windows(inputs.bundle.event_frames[pp.window_statistic], pp.window_fraction)


def _rescore_task(job_dir: str, settings: RescoreSettings, cache_dir: str | None,
                  study_plugins: tuple[str, ...] = ()) -> Result:
    from harness import plugins

    plugins.load_entry_points()  # a fresh worker: the run's plugins register their models and metrics here too
    plugins.load_plugins(study_plugins)
    return rescore_job(Path(job_dir), settings, None if cache_dir is None else Path(cache_dir))


# --------------------------------------------------------------------------- a run


def finished_jobs(run_dir: Path) -> list[Result]:
    """The finished replicate jobs of the run's current plan, in study order.

    Raises:
        HarnessError: not a run directory, or no finished job in it.
    """
    from harness.study.rundir import read_study_record
    from harness.study.table import read_results

    record = read_study_record(run_dir)
    results = read_results(Path(run_dir) / "jobs", set(record.jobs))
    if not results:
        raise HarnessError(f"{run_dir}: no finished job to score (of {len(record.jobs)} planned); run the study "
                           "first with `python -m harness run <study.toml>`")
    order = {v.name: i for i, v in enumerate(record.variants)}
    return sorted(results, key=lambda r: (order.get(r.variant, len(order)), r.variant, r.seed))


def _parallel(tasks: list, jobs: int | None) -> list:
    from joblib import Parallel, delayed

    n = max(1, min(len(tasks), jobs or os.cpu_count() or 1))
    if n == 1:  # in this process: no worker start-up, and tracebacks stay readable
        return [fn(*args) for fn, args in tasks]
    return Parallel(n_jobs=n, backend="loky")(delayed(fn)(*args) for fn, args in tasks)


def rescore_run(run_dir: Path, settings: RescoreSettings, *, name: str | None = None,
                cache_dir: Path | None = None, jobs: int | None = None) -> RescoreOutcome:
    """Rescore every finished job of a run into runs/<run>/rescore/<name>/ (module doc).

    Args:
        run_dir: runs/<run>.
        settings: what changes (parse_settings).
        name: the folder's name (letters, digits, . _ -); default: settings.key.
        cache_dir: where the shared stages are (default: the harness cache).
        jobs: parallel processes (default: one per CPU core).

    Raises:
        HarnessError: not a run directory, no finished job, a bad name, a job's bundle or outputs missing.
    """
    from harness.study.table import write_tables

    run_dir = Path(run_dir)
    name = name or settings.key
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    from harness.study.rundir import read_study_record

    finished = finished_jobs(run_dir)
    cache = None if cache_dir is None else str(cache_dir)
    study_plugins = read_study_record(run_dir).plugins
    records = _parallel([(_rescore_task, (str(run_dir / "jobs" / r.job_id), settings, cache, study_plugins))
                         for r in finished], jobs)
    directory = run_dir / RESCORE / name
    directory.mkdir(parents=True, exist_ok=True)
    results_path, per_class_path = write_tables(directory, records)
    record = _record(run_dir, name, settings, records, cache_dir)
    write_record(directory / SETTINGS, record)
    return RescoreOutcome(directory, record, results_path, per_class_path)


def _record(run_dir: Path, name: str, settings: RescoreSettings, records: list[Result],
            cache_dir: Path | None) -> RescoreRecord:
    from harness.evaluation.psds import metric_versions

    return RescoreRecord(name=name, key=settings.key, overrides=settings.overrides, method=settings.method,
                         psds_median_filter=settings.psds_median_filter,
                         psds_drop_empty_clips=settings.psds_drop_empty_clips,
                         threshold_free=settings.threshold_free, jobs=tuple(r.job_id for r in records),
                         reference_rows=_teacher_rows(run_dir, records, settings, cache_dir),
                         harness_version=__version__, metric_versions=metric_versions())


def _teacher_rows(run_dir: Path, records: list[Result], settings: RescoreSettings,
                  cache_dir: Path | None) -> tuple[ReferenceRow, ...]:
    """The teacher's event F1 under the same post-processing, per bundle, as the run's own tables show it
    (harness.study.stages.teacher_scores: its saved predictions scored again, cached per setting)."""
    from harness.study.runner import teacher_label
    from harness.study.stages import teacher_scores

    firsts: dict[str, Result] = {}
    for r in records:
        firsts.setdefault(r.provenance.bundle_key, r)
    rows = []
    for key, first in firsts.items():
        config = job_config(Path(run_dir) / "jobs" / first.job_id, settings)
        t = teacher_scores(locate_bundle(first, cache_dir), config)
        teachers = {r.streams.get("teacher") for r in records}  # {None}: one teacher (no stream columns)
        label = teacher_label(key, first.streams.get("teacher", 0), len(firsts), len(teachers))
        rows.append(ReferenceRow(label, round(t["validation"]["event_f1"], 4), round(t["test"]["event_f1"], 4)))
    return tuple(rows)


# --------------------------------------------------------------------------- uncertainty within a run


def metric_of(column: str) -> tuple[str, str]:
    """"val_psds1" -> ("validation", "psds1").

    Raises:
        ConfigError: not a val_/test_ column.
    """
    for subset, short in SPLITS.items():
        if column.startswith(short + "_"):
            return subset, column[len(short) + 1:]
    raise ConfigError(f"{column!r} is not a validation or test metric column (val_..., test_...)")


def uncertainty_key(settings: RescoreSettings, columns: Sequence[str], scenario: str, seed: int) -> str:
    return digest(UNCERTAINTY_VERSION, settings.key, sorted(columns), scenario, seed, EVENT_RESAMPLES,
                  PSDS_RESAMPLES, CONFIDENCE, ROC_GRID.tolist(), length=12)


def job_uncertainty(job_dir: Path, settings: RescoreSettings, columns: Sequence[str], scenario: str, seed: int,
                    cache_dir: Path | None = None) -> UncertaintyRecord:
    """Clip-level bootstrap intervals (%) of the given results.csv columns of one job and its PSD-ROC per
    split of those columns, cached as jobs/<id>/uncertainty-<key>.json (module doc).

    Args:
        job_dir: the finished job.
        settings: post-processing and metric settings (a rescore's, or none: the job's own).
        columns: e.g. ("val_f1", "test_f1") or ("test_psds1",). Columns without a bootstrap (segment F1)
            and splits without reference events get no interval.
        scenario: the PSD-ROC's scenario, "psds1" or "psds2".
        seed: the report's seed; each job draws from its own generator seeded by (seed, its id).
    """
    key = uncertainty_key(settings, columns, scenario, seed)
    path = Path(job_dir) / f"uncertainty-{key}.json"
    try:
        return read_record(path, UncertaintyRecord)
    except RecordError:
        pass
    inputs = load_job(job_dir, settings, cache_dir)
    rng = np.random.default_rng([seed, zlib.crc32(inputs.result.job_id.encode())])
    intervals = {}
    for column, generator in zip(columns, rng.spawn(len(columns))):
        interval = _interval(inputs, settings, *metric_of(column), generator)
        if interval is not None:
            intervals[column] = interval
    splits = dict.fromkeys(metric_of(c)[0] for c in columns)
    roc = {subset: tuple(curve) for subset in splits
           if (curve := _roc(inputs, subset, scenario, settings)) is not None}
    record = UncertaintyRecord(job_id=inputs.result.job_id, key=key, intervals=intervals, roc_scenario=scenario,
                               roc_grid=tuple(ROC_GRID.tolist()), roc=roc)
    try:
        write_record(path, record)
    except HarnessError:  # a read-only run directory (`report --out` elsewhere): a cache only, computed again
        pass
    return record


def _interval(inputs: JobInputs, settings: RescoreSettings, subset: str, metric: str,
              rng: np.random.Generator) -> IntervalRecord | None:
    from harness.evaluation import bootstrap
    from harness.evaluation.scoring import score

    try:
        if metric == "f1":
            probs = inputs.probabilities[subset]
            events = score(probs.frame, probs.clip, inputs.bundle, subset, inputs.config).predictions
            ev = inputs.config.eval
            b = bootstrap.event_f1_interval(inputs.bundle.reference(subset), events, inputs.bundle.clip_ids(subset),
                                            rng=rng, n_resamples=EVENT_RESAMPLES, confidence=CONFIDENCE,
                                            t_collar=ev.t_collar, percentage_of_length=ev.percentage_of_length,
                                            classes=inputs.bundle.classes)
        elif metric in THRESHOLD_FREE:
            b = bootstrap.psds_intervals(*_scoring_args(inputs, subset), rng=rng, n_resamples=PSDS_RESAMPLES,
                                         confidence=CONFIDENCE, metrics=[metric],
                                         hop_seconds=inputs.bundle.hop_seconds, classes=inputs.bundle.classes,
                                         median_windows=score_windows(inputs, settings),
                                         drop_empty_clips=settings.psds_drop_empty_clips)[metric]
        else:
            return None  # no clip-level bootstrap of this metric (segment F1)
    except DataError:  # no reference event in the split: the metric is undefined
        return None
    return IntervalRecord(point=100 * b.point, low=100 * b.low, high=100 * b.high, std=100 * b.std,
                          confidence=b.confidence, n_resamples=b.n_resamples)


def _roc(inputs: JobInputs, subset: str, scenario: str, settings: RescoreSettings) -> np.ndarray | None:
    from harness.evaluation import psds

    params = {"psds1": psds.PSDS1, "psds2": psds.PSDS2}[scenario]
    try:
        scored = psds.score_set(*_scoring_args(inputs, subset), hop_seconds=inputs.bundle.hop_seconds,
                                classes=inputs.bundle.classes, median_windows=score_windows(inputs, settings),
                                drop_empty_clips=settings.psds_drop_empty_clips)
    except DataError:
        return None
    curve = psds.psd_roc(scored, params)
    return None if curve is None else psds.roc_on_grid(*curve, ROC_GRID)


def _uncertainty_task(job_dir: str, settings: RescoreSettings, columns: tuple[str, ...], scenario: str, seed: int,
                      cache_dir: str | None) -> UncertaintyRecord | str:
    """job_uncertainty in a worker; a job whose inputs are missing gives the reason instead."""
    try:
        return job_uncertainty(Path(job_dir), settings, columns, scenario, seed,
                               None if cache_dir is None else Path(cache_dir))
    except HarnessError as e:
        return str(e)


def run_uncertainty(run_dir: Path, job_ids: Sequence[str], settings: RescoreSettings, columns: Sequence[str],
                    scenario: str, seed: int, cache_dir: Path | None = None, jobs: int | None = None
                    ) -> tuple[dict[str, UncertaintyRecord], list[str]]:
    """job_uncertainty of every job: (job id -> record, the reasons of the jobs left out).

    Cached records are read here; the others are computed in parallel (joblib, loky) when there are more
    than PARALLEL_FROM of them, else in this process (a worker's start-up, ~3 s to import torch, costs more
    than a few small jobs).
    """
    key = uncertainty_key(settings, columns, scenario, seed)
    done, todo, missing = {}, [], []
    for job_id in job_ids:
        job_dir = Path(run_dir) / "jobs" / job_id
        if not (job_dir / "result.json").is_file():
            missing.append(f"{job_dir}: no result.json (the job has not finished)")
            continue
        try:
            done[job_id] = read_record(job_dir / f"uncertainty-{key}.json", UncertaintyRecord)
        except RecordError:
            todo.append(job_id)
    cache = None if cache_dir is None else str(cache_dir)
    tasks = [(_uncertainty_task, (str(Path(run_dir) / "jobs" / j), settings, tuple(columns), scenario, seed, cache))
             for j in todo]
    for job_id, out in zip(todo, _parallel(tasks, jobs if len(tasks) > PARALLEL_FROM else 1)):
        if isinstance(out, str):
            missing.append(out)
        else:
            done[job_id] = out
    return done, missing
