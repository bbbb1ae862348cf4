"""The tidy tables, rebuilt from the per-job result files at any time (never the only copy of a result)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from harness.constants import CLASSES
from harness.schema import PER_CLASS_COLUMNS, RESULTS_COLUMNS


def read_results(jobs_dir: Path, job_ids: set[str] | None = None, phase: str = "replicate") -> list[dict]:
    """The result records under `jobs_dir`, optionally only those of `job_ids`, in a stable order."""
    records = []
    for path in sorted(Path(jobs_dir).glob("*/result.json")):
        record = json.loads(path.read_text())
        if record.get("phase", "replicate") != phase:
            continue
        if job_ids is None or record["job_id"] in job_ids:
            records.append(record)
    return records


def results_frame(records: list[dict]) -> pd.DataFrame:
    """One row per job, columns of harness.schema.RESULTS_COLUMNS."""
    return pd.DataFrame([{c: r.get(c) for c in RESULTS_COLUMNS} for r in records], columns=list(RESULTS_COLUMNS))


def per_class_frame(records: list[dict]) -> pd.DataFrame:
    """One row per (job, split, class), columns of harness.schema.PER_CLASS_COLUMNS."""
    rows = [
        {"study": r["study"], "job_id": r["job_id"], "variant": r["variant"], "seed": r["seed"],
         "split": split, "event_label": c, "f1": r["per_class"][split][c]}
        for r in records for split in ("validation", "test") for c in CLASSES
    ]
    return pd.DataFrame(rows, columns=list(PER_CLASS_COLUMNS))


def write_tables(run_dir: Path, records: list[dict], order: list[str] | None = None) -> tuple[Path, Path]:
    """Write results.csv and results_per_class.csv atomically; rows ordered by variant order, then seed."""
    results = results_frame(records)
    per_class = per_class_frame(records)
    if order is not None:
        rank = {v: i for i, v in enumerate(order)}
        key = lambda s: s.map(rank) if s.name == "variant" else s  # noqa: E731
        results = results.sort_values(["variant", "seed"], key=key, kind="stable")
        per_class = per_class.sort_values(["variant", "seed"], key=key, kind="stable")
    paths = []
    for frame, name in ((results, "results.csv"), (per_class, "results_per_class.csv")):
        path = Path(run_dir) / name
        tmp = path.with_name(f".{name}.tmp{os.getpid()}")
        frame.to_csv(tmp, index=False, float_format="%.4f")
        os.replace(tmp, path)
        paths.append(path)
    return paths[0], paths[1]
