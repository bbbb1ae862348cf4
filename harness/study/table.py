"""The tidy tables, rebuilt from the per-job result files at any time (never the only copy of a result)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd

from harness.records import RecordError, Result, atomic_file, read_record
from harness.schema import FACTOR_COLUMNS, LAST_METRIC_COLUMN, PER_CLASS_COLUMNS, RESULTS_COLUMNS
from harness.streams import STREAMS, column

log = logging.getLogger("harness.table")


def read_results(jobs_dir: Path, job_ids: set[str] | None = None, phase: str = "replicate") -> list[Result]:
    """The result records under `jobs_dir`, optionally only those of `job_ids`, in a stable order.

    A result.json that cannot be read (damaged, of another harness version) is left out with a warning
    naming it; the runner treats its job as not finished and runs it again.
    """
    records = []
    for path in sorted(Path(jobs_dir).glob("*/result.json")):
        if job_ids is not None and path.parent.name not in job_ids:
            continue
        try:
            record = read_record(path, Result)
        except RecordError as e:
            log.warning("%s; its job is not counted as finished", e)
            continue
        if record.phase == phase:
            records.append(record)
    return records


def result_row(record: Result) -> dict:
    """A Result as one flat row of RESULTS_COLUMNS (provenance fields inlined), then its study's other factors."""
    flat = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    flat.update(dataclasses.asdict(record.provenance))
    flat["sed_scores_eval_version"] = record.metric_versions.get("sed_scores_eval")
    streams = {column(name): seed for name, seed in record.streams.items()}
    return {**{c: flat[c] for c in RESULTS_COLUMNS}, **record.factors, **record.metrics, **streams}


def results_frame(records: list[Result]) -> pd.DataFrame:
    """One row per job: the columns of harness.schema.RESULTS_COLUMNS, with a column per factor of the study
    beyond the paper's four (named by its dotted key) after the paper's factor columns."""
    return pd.DataFrame([result_row(r) for r in records], columns=results_columns(records))


def results_columns(records: list[Result]) -> list[str]:
    """RESULTS_COLUMNS with the records' other factor columns inserted after the paper's four, the seed
    streams' columns (seed_teacher, seed_init, seed_order, seed_augment: a study that varies streams or
    teachers) after `seed`, and the columns of plugin metrics after the built-in metrics."""
    extra = list(dict.fromkeys(k for r in records for k in r.factors))
    metrics = list(dict.fromkeys(k for r in records for k in r.metrics))
    streams = [column(name) for name in STREAMS if any(name in r.streams for r in records)]
    at = RESULTS_COLUMNS.index(FACTOR_COLUMNS[-1]) + 1
    seed = RESULTS_COLUMNS.index("seed") + 1
    after = RESULTS_COLUMNS.index(LAST_METRIC_COLUMN) + 1
    return [*RESULTS_COLUMNS[:at], *extra, *RESULTS_COLUMNS[at:seed], *streams, *RESULTS_COLUMNS[seed:after],
            *metrics, *RESULTS_COLUMNS[after:]]


def per_class_frame(records: list[Result]) -> pd.DataFrame:
    """One row per (job, split, class), columns of harness.schema.PER_CLASS_COLUMNS.

    The classes are each record's own (its study's, harness.data.vocabulary), in the order it lists them.
    """
    rows = [
        {"study": r.study, "job_id": r.job_id, "variant": r.variant, "seed": r.seed,
         "split": split, "event_label": c, "f1": f1}
        for r in records for split in ("validation", "test") for c, f1 in r.per_class[split].items()
    ]
    return pd.DataFrame(rows, columns=list(PER_CLASS_COLUMNS))


_FINE_COLUMNS: tuple[str, ...] = ("train_kwh", "eval_kwh")  # written with 6 significant digits


def _fine(value) -> str:
    return "" if value is None or pd.isna(value) else f"{float(value):.6g}"


def write_tables(run_dir: Path, records: list[Result], order: list[str] | None = None) -> tuple[Path, Path]:
    """Write results.csv and results_per_class.csv atomically; rows ordered by variant order, then seed."""
    results = results_frame(records)
    per_class = per_class_frame(records)
    if order is not None:
        rank = {v: i for i, v in enumerate(order)}
        key = lambda s: s.map(rank) if s.name == "variant" else s  # noqa: E731
        results = results.sort_values(["variant", "seed"], key=key, kind="stable")
        per_class = per_class.sort_values(["variant", "seed"], key=key, kind="stable")
    for name in _FINE_COLUMNS:  # kWh of a short job are ~1e-5: 4 decimals would print 0.0000
        results[name] = [_fine(x) for x in results[name]]
    paths = []
    for frame, name in ((results, "results.csv"), (per_class, "results_per_class.csv")):
        path = Path(run_dir) / name
        with atomic_file(path) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.4f")
        paths.append(path)
    return paths[0], paths[1]
