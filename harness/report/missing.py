"""The runs a report lacks: every job of the study's plan without a row in its results, and why.

A table row with fewer runs than the study has seeds must never pass unnoticed: the report names each
missing run (variant, seed), its state as `harness status` spells it, the reason (a failed job's error.json)
and its log, and says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.records import JobRecord, RecordError, StudyRecord, read_record
from harness.study.jobfiles import LOG, failure_reason, job_dir, status_of

# state (harness.study.jobfiles.status_of) -> why the run has no row, when the state alone says it
WHY = {
    "running": "running now (a run of the study holds its lock)",
    "interrupted": "started, then stopped before it finished; its checkpoint is kept: run the study again to "
                   "resume it",
    "damaged": "its result.json or error.json cannot be read; run the study again to run it again",
    "pending": "not run yet: run the study (again) to run it",
    "done": "finished after these tables were built: build the report again",
}


@dataclass(frozen=True)
class MissingRun:
    job_id: str
    variant: str
    seed: str  # "?" when its job.json cannot be read
    state: str  # failed | running | interrupted | damaged | pending | done
    why: str
    log: Path


def missing_runs(run_dir: Path, record: StudyRecord, results: pd.DataFrame, rescored: bool = False
                 ) -> list[MissingRun]:
    """The replicate jobs of the study's plan that have no row in `results` (a rescore's, when `rescored`),
    in the plan's order."""
    present = set(results["job_id"].astype(str)) if "job_id" in results else set()
    return [_missing(Path(run_dir), job_id, rescored) for job_id in record.jobs if job_id not in present]


def _missing(run_dir: Path, job_id: str, rescored: bool) -> MissingRun:
    state = status_of(run_dir, job_id)
    if state == "failed":
        why = f"{failure_reason(run_dir, job_id)}; fix the cause, then run again with --rerun-failed"
    elif state == "done" and rescored:
        why = "finished after this rescore: run `harness rescore` again"
    else:
        why = WHY.get(state, state)
    try:
        job = read_record(job_dir(run_dir, job_id) / "job.json", JobRecord)
        variant, seed = job.variant, str(job.seed)
    except RecordError:  # a job planned but never prepared (the run stopped first): its id is all there is
        variant, seed = "?", "?"
    return MissingRun(job_id, variant, seed, state, why, job_dir(run_dir, job_id) / LOG)


def summary(missing: list[MissingRun], planned: int) -> str:
    """One sentence: how many of the planned runs are missing, by state."""
    counts: dict[str, int] = {}
    for run in missing:
        counts[run.state] = counts.get(run.state, 0) + 1
    states = ", ".join(f"{n} {_STATE_WORDS.get(s, s)}" for s, n in counts.items())
    return (f"{len(missing)} of the {planned} runs of the study's plan are missing from the tables below ({states}); "
            "their variants' rows hold fewer runs than the study has seeds.")


_STATE_WORDS = {"pending": "not run yet", "done": "finished since the tables were built"}


def table(missing: list[MissingRun]) -> pd.DataFrame:
    return pd.DataFrame([{"Variant": r.variant, "Seed": r.seed, "Job": r.job_id, "State": r.state, "Why": r.why,
                          "Log": str(r.log)} for r in missing])
