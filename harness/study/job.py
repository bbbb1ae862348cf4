"""One job: `run_job(job, bundle, job_dir) -> Result`, and the files it leaves in its directory.

A job directory holds `job.json` (harness.records.JobRecord: the resolved config, seed and bundle key),
`log.txt`, `metrics.csv` (one row per epoch, rewritten after every epoch), `predictions_{validation,test}.tsv`
(DCASE format, post-processed), `probabilities_{validation,test}.npz` (raw frame and clip probabilities),
`best.pt` and, last, `result.json` (harness.records.Result) or `error.json` (harness.records.Failure).
Both are written atomically, so a readable `result.json` means the job finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from harness import __version__, plugins
from harness.bundle import Bundle
from harness.config import factors_of
from harness.errors import DataError, HarnessError, JobRunningElsewhere, JobStopped
from harness.evaluation.energy import EnergyMeter, EnergyReading
from harness.evaluation.outputs import write_dcase_tsv, write_probabilities
from harness.evaluation.registered import plugin_metric_values
from harness.evaluation.scoring import score
from harness.method.train import EpochRecord, predict_subset, train_student
from harness.records import (
    Failure,
    Provenance,
    RecordError,
    Result,
    atomic_file,
    open_append,
    read_record,
    write_json,
    write_record,
)
from harness.schema import EPOCH_COLUMNS
from harness.study.curves import CurveWriter
from harness.study.devices import device_lease
from harness.study.environment import cpu_description, git_commit
from harness.study.jobfiles import CHECKPOINT, ELSEWHERE, ERROR, LOG, REPLACED_RESULT, RESULT, STARTED, attempts
from harness.study.lock import JobLock
from harness.study.plan import JobSpec
from harness.study.stages import resolve_device

RUNNING = threading.Event()  # set while this process runs a job (see harness.study.workers: a stop signal)
EXIT_ON_STOP = False  # set in the local backend's pool workers: a stopped worker leaves at once...
HOLD = threading.Event()  # ...unless the driver is stopping the study: it ends the workers itself (workers.stop_jobs)
def run_job(job: JobSpec, bundle_root: Path, job_dir: Path, device: str | None = None, threads: int = 1,
            stop: threading.Event | None = None, release: Callable[[], None] | None = None) -> Result:
    """Train and evaluate one student; write its outputs into `job_dir`; return the result record.

    Args:
        job: the resolved job.
        bundle_root: the shared-stage bundle (see harness.study.stages.prepare); checksums verified here.
        job_dir: the job's directory; created if needed.
        device: overrides config.train.device (the runner hands each job its own GPU).
        threads: the torch thread count in force (recorded).
        stop: set to stop training at the next step (JobStopped, the checkpoint written).
        release: called once the model's probabilities on validation and test are computed, before the scoring
            (CPU only): it hands back the job's GPU slot (execute) so that another job trains meanwhile.

    Raises:
        JobFailed (TrainingDiverged for a NaN loss), CacheCorrupt, or any unexpected error; `execute`
        records them.
    """
    job_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    dev = resolve_device(device or job.config.train.device)
    bundle = Bundle.open(bundle_root, verify=True)
    if bundle.key != job.bundle_key:
        raise HarnessError(f"job {job.job_id} was planned on bundle {job.bundle_key!r} but was given {bundle.key}; "
                           "run the study again")
    epochs: list[EpochRecord] = []
    curves = CurveWriter(job_dir, job.variant, job.seed)  # TensorBoard, when installed (harness.study.curves)

    def on_epoch(record: EpochRecord) -> None:
        epochs.append(record)
        _write_metrics(job_dir, epochs)
        curves.add(record)
        logging.getLogger("harness.train").info(
            "epoch %d gen %d step %d: n_train %d, J_w %.4f J_s %.4f J_u %.4f, val F1 %.2f %% (%.1f s)",
            record.epoch, record.generation, record.step, record.n_train, record.loss_weak,
            record.loss_strong, record.loss_unlabeled, record.val_f1, record.seconds)

    def on_resume(records: list[EpochRecord]) -> None:
        epochs[:] = records
        _write_metrics(job_dir, epochs)
        curves.restart(records)

    checkpoint = job_dir / CHECKPOINT
    gpus = [dev.index or 0] if dev.type == "cuda" else None  # count this job's GPU only
    try:
        with EnergyMeter(job.config.train.energy_country, gpus) as meter:  # harness.evaluation.energy
            outcome = train_student(job.config, bundle, job.seed, dev, on_epoch, checkpoint_path=checkpoint,
                                    on_resume=on_resume, stop=stop, streams=job.seed_streams)
            energy = {"train": meter.stop()}
    finally:
        curves.close()
    scores, threshold_free, extra = {}, {}, {}
    with EnergyMeter(job.config.train.energy_country, gpus) as meter:
        probabilities = {subset: predict_subset(outcome.model, bundle, subset, dev) for subset in EVAL_SUBSETS}
        if release is not None:
            release()
        for subset in EVAL_SUBSETS:
            ev = score(*probabilities[subset], bundle, subset, job.config)
            write_dcase_tsv(ev.predictions, job_dir / f"predictions_{subset}.tsv")
            write_probabilities(job_dir / f"probabilities_{subset}.npz", bundle.clip_ids(subset), ev.frame,
                                ev.clip, bundle.classes, durations=bundle.durations(subset))
            scores[subset] = ev
            threshold_free[subset] = _psds(bundle, subset, ev.frame)
            extra[subset] = plugin_metric_values(ev.frame, ev.clip, bundle, subset)
        energy["eval"] = meter.stop()
    if job.config.train.checkpoint:  # last: a job that fails on a full disk leaves room for its error.json
        with atomic_file(job_dir / "best.pt") as tmp:  # replaces a link there rather than writing through it
            torch.save(outcome.model.state_dict(), tmp)
    result = _result(job, bundle, outcome, scores, time.perf_counter() - started, dev, threads, threshold_free,
                     energy)
    result = dataclasses.replace(result, metrics={f"{short}_{name}": value for split, short in SPLIT_SHORT
                                                  for name, value in extra[split].items()})
    write_record(job_dir / RESULT, result)
    checkpoint.unlink(missing_ok=True)  # best.pt holds the best weights; a paper-shape checkpoint is ~21 MB
    return result


def _write_metrics(job_dir: Path, epochs: list[EpochRecord]) -> None:
    frame = pd.DataFrame([asdict(e) for e in epochs], columns=list(EPOCH_COLUMNS))
    with atomic_file(job_dir / "metrics.csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def provenance(job: JobSpec, bundle: Bundle, device: torch.device, threads: int) -> Provenance:
    """What places a result and what can move its last bits, recorded in every result."""
    return Provenance(bundle_key=bundle.key, data_digest=bundle.manifest.data_digest, config_key=job.config_key,
                      threads=threads, device=_device_name(device), torch_version=torch.__version__,
                      cuda_version=torch.version.cuda, harness_version=__version__, git_commit=git_commit(),
                      cpu=cpu_description())


SPLIT_SHORT = (("validation", "val"), ("test", "test"))  # a split and its results.csv column prefix
EVAL_SUBSETS = ("validation", "test")


def _psds(bundle: Bundle, subset: str, frame) -> dict[str, float | None]:
    """PSDS1, PSDS2, intersection and collar F1 (%) of the raw frame probabilities (README, "Metrics")."""
    from harness.evaluation.psds import psds_metrics

    try:
        m = psds_metrics(frame, bundle.clip_ids(subset), bundle.durations(subset), bundle.reference(subset),
                         hop_seconds=bundle.hop_seconds, classes=bundle.classes)
    except DataError as e:  # a split with no reference event (tiny corpora): no threshold-free metric
        logging.getLogger("harness.job").warning("%s: no PSDS (%s)", subset, e)
        return {}
    return {"psds1": 100 * m.psds1, "psds2": 100 * m.psds2, "intersection_f1": 100 * m.intersection_f1,
            "collar_f1": 100 * m.collar_f1}


def _result(job: JobSpec, bundle: Bundle, outcome, scores, seconds: float, device: torch.device, threads: int,
            threshold_free: dict, energy: dict[str, EnergyReading] | None = None) -> Result:
    from harness.evaluation.psds import metric_versions

    val, test = scores["validation"], scores["test"]
    size = plugins.models.get(job.config.student.model).size(
        job.config.student, job.config.features.student_mels, len(bundle.classes), job.config.features.n_frames)
    train_energy, eval_energy = (energy or {}).get("train"), (energy or {}).get("eval")
    extra = {f"{short}_{name}": value for split, short in (("validation", "val"), ("test", "test"))
             for name, value in threshold_free[split].items()}
    return Result(
        **extra, metric_versions=metric_versions(),
        study=job.study, job_id=job.job_id, variant=job.variant, **factors_of(job.config), factors=job.extra_factors,
        lambda1=job.config.loss.lambda1, lambda2=job.config.loss.lambda2, seed=job.seed, profile=job.profile,
        phase=job.phase,
        val_f1=100 * val.events.macro_f1, test_f1=100 * test.events.macro_f1,
        val_segment_f1=100 * val.segments.macro_f1, test_segment_f1=100 * test.segments.macro_f1,
        best_epoch=outcome.best_epoch, steps=outcome.steps, wall_seconds=round(seconds, 2),
        train_seconds=round(sum(e.seconds for e in outcome.epochs), 2),
        provenance=provenance(job, bundle, device, threads),
        per_class={"validation": {c: 100 * val.events.per_class_f1[c] for c in bundle.classes},
                   "test": {c: 100 * test.events.per_class_f1[c] for c in bundle.classes}},
        params=size.params, macs_per_clip=size.macs_per_clip,
        train_kwh=None if train_energy is None else train_energy.kwh,
        eval_kwh=None if eval_energy is None else eval_energy.kwh,
        energy_estimate=None if train_energy is None else train_energy.estimate,
        bundle_root=str(Path(bundle.root).absolute()),
        streams=dict(job.streams),
    )


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device}:{torch.cuda.get_device_name(device)}"
    return str(device)


def execute(job: JobSpec, bundle_root: str, job_dir: str, threads: int, jobs_per_gpu: int = 1, *,
            timeout: float | None = None, stop_file: str | None = None) -> dict:
    """The worker-side entry point of every backend: run one job, never raise, always leave a record.

    Everything from the first line is inside the failure recording: a job directory that cannot be
    written, a full disk or a broken bundle fail this job (error.json when it can be written, the summary
    always), never the study. Returns a small summary for the progress display, whose status is "ok",
    "failed", "stopped" (a stop signal or `stop_file`: the checkpoint is kept), "timed_out" (`timeout`
    seconds passed: stopped the same way) or ELSEWHERE (another live process holds the job's lock, which this
    one holds from before the job's first file is touched to its end: the job is not run, nothing of it is
    touched; "ok" instead when that process finishes the job while this one waits for it).

    Args:
        timeout: seconds this attempt may run (--job-timeout); None: no limit.
        stop_file: a path the driver creates to stop the study's jobs wherever they run (Dask workers on
            other machines, which no signal of the driver reaches); polled every second.
    """
    start = time.perf_counter()
    directory = Path(job_dir)
    handler = lock = None
    stop, finished, timed_out, timer = threading.Event(), threading.Event(), threading.Event(), None
    if HOLD.is_set():  # the study is stopping: no new work (the driver ends this worker)
        return {"job_id": job.job_id, "status": "stopped", "message": "not started: the study is stopping",
                "seconds": 0.0}
    RUNNING.set()
    try:
        if timeout is not None:
            timer = threading.Timer(timeout, lambda: (timed_out.set(), stop.set()))
            timer.daemon = True
            timer.start()
        if stop_file is not None:
            threading.Thread(target=_watch, args=(Path(stop_file), stop, finished), daemon=True).start()
        directory.mkdir(parents=True, exist_ok=True)
        had_result = (directory / RESULT).exists()  # a job run again (--force) has one: not a result of now
        lock = JobLock(directory).acquire()  # before any file of the job is touched: never two runners at once
        if lock.waited and not had_result and (done := _finished_meanwhile(directory)) is not None:
            return done
        (directory / ERROR).unlink(missing_ok=True)
        # This process may be a fresh worker: the study's plugins register their models and metrics here too.
        plugins.load_entry_points()
        plugins.load_plugins(job.plugins)
        threads = max(1, threads)
        torch.set_num_threads(threads)
        attempt = attempts(directory) + 1
        write_json(directory / STARTED, {"pid": os.getpid(), "host": os.uname().nodename, "time": time.time(),
                                         "attempt": attempt})
        handler = _job_logger(directory)
        logging.getLogger("harness.job").info("==== attempt %d of job %s (%s seed %d), pid %d on %s ====", attempt,
                                              job.job_id, job.variant, job.seed, os.getpid(), os.uname().nodename)
        with _thread_limit(threads), contextlib.ExitStack() as lease:
            device = lease.enter_context(device_lease(job.config.train.device, jobs_per_gpu))
            # The slot is handed back once the probabilities are computed: the CPU-only scoring runs while
            # the next job trains on the GPU.
            result = run_job(job, Path(bundle_root), directory, device, threads, stop=stop, release=lease.close)
        return ok_summary(result)
    except JobStopped as e:  # asked to stop: no failure; the checkpoint is kept and the next run resumes
        seconds = round(time.perf_counter() - start, 2)
        if timed_out.is_set() and not _stopping() and not _stop_requested(stop_file):
            logging.getLogger("harness.job").warning(
                "job %s timed out: %s after %.0f s (--job-timeout %g); its checkpoint is kept, so a retry or the "
                "next run resumes it", job.job_id, e, seconds, timeout)
            return {"job_id": job.job_id, "status": "timed_out", "message": f"{e} after {seconds:.0f} s (--job-timeout "
                    f"{timeout:g})", "seconds": seconds}
        logging.getLogger("harness.job").info("job %s %s; run the study again to resume", job.job_id, e)
        return {"job_id": job.job_id, "status": "stopped", "message": str(e), "seconds": seconds}
    except JobRunningElsewhere as e:  # not this process's job: no record of its own, the other one writes them
        logging.getLogger("harness.job").info("job %s: %s", job.job_id, e)
        return {"job_id": job.job_id, "status": ELSEWHERE, "message": str(e), "holder": e.holder, "seconds": 0.0}
    except Exception as e:  # noqa: BLE001 - a failed job must be recorded, not crash the study
        return _record_failure(job, directory, e, time.perf_counter() - start, logged=handler is not None)
    finally:
        finished.set()
        if timer is not None:
            timer.cancel()
        RUNNING.clear()
        if handler is not None:
            logging.getLogger("harness").removeHandler(handler)
            handler.close()
        if lock is not None:
            lock.release()
        if EXIT_ON_STOP and _stopping() and not HOLD.is_set():  # told to stop from outside the harness: leave
            os._exit(0)


def _finished_meanwhile(directory: Path) -> dict | None:
    """The summary of the result that the process this one waited for wrote (it finished the job), or None."""
    try:
        return ok_summary(read_record(directory / RESULT, Result))
    except RecordError:  # no result, or a damaged one: this process runs the job
        return None


def _watch(stop_file: Path, stop: threading.Event, finished: threading.Event) -> None:
    while not finished.wait(1.0):
        if stop_file.exists():
            stop.set()
            return


def _stop_requested(stop_file: str | None) -> bool:
    return stop_file is not None and Path(stop_file).exists()


def _stopping() -> bool:
    from harness.method.train import STOP

    return STOP.is_set()


def _record_failure(job: JobSpec, directory: Path, error: Exception, seconds: float, logged: bool = True) -> dict:
    """error.json (when the directory is writable) and the log line of a failed job; its summary.

    Without the job's own log (it could not be opened) the line goes to the worker's stderr, without the
    traceback, which error.json keeps."""
    kind = type(error).__name__
    trace = traceback.format_exc()
    logging.getLogger("harness.job").error("job %s failed: %s: %s" + ("\n%s" if logged else "%s"), job.job_id, kind,
                                           error, trace if logged else "")
    failure = Failure(job_id=job.job_id, error=kind, message=str(error), log=str(directory / LOG), traceback=trace)
    try:
        write_record(directory / ERROR, failure)
        _set_aside_earlier_result(job, directory)
    except (HarnessError, OSError) as e:
        logging.getLogger("harness.job").error("job %s: cannot record the failure: %s", job.job_id, e)
    return {"job_id": job.job_id, "status": "failed", "message": f"{kind}: {error}", "seconds": round(seconds, 2)}


def _set_aside_earlier_result(job: JobSpec, directory: Path) -> None:
    """A job run again (--force) that fails has no result of now: its earlier result.json would have it read as
    done. That result is kept, under another name that no table reads."""
    if (directory / RESULT).exists():
        os.replace(directory / RESULT, directory / REPLACED_RESULT)
        logging.getLogger("harness.job").warning("job %s: the result of its earlier run is kept as %s", job.job_id,
                                                 directory / REPLACED_RESULT)


def ok_summary(result: Result) -> dict:
    """The small summary of a finished job that the runner's progress display shows."""
    return {"job_id": result.job_id, "status": "ok", "val_f1": result.val_f1, "test_f1": result.test_f1,
            "seconds": result.wall_seconds}


class _LogFile(logging.FileHandler):
    """log.txt, appended to but never through a symbolic link (records.open_append: a RecordError names it)."""

    def _open(self):
        return open_append(Path(self.baseFilename))

    def handleError(self, record: logging.LogRecord) -> None:
        # A line lost to a full disk: the job's next write fails with an error that names the file and says
        # so; logging's own report would be a raw traceback on the terminal for every line.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handleError(record)


def _job_logger(directory: Path) -> logging.Handler:
    handler = _LogFile(directory / LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger("harness")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


class _thread_limit:
    """Limit BLAS/OpenMP pools inside a worker to `threads` (torch's own pool is set separately)."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)
        self.limiter = None

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # threadpoolctl comes with scipy's usual installs; without it torch's limit holds
            return self
        self.limiter = threadpool_limits(self.threads)
        return self

    def __exit__(self, *exc):
        if self.limiter is not None:
            self.limiter.unregister()
