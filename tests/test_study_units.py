"""Runner pieces that need no training: the study lock, the tuning choice, the tidy tables, progress."""

import io
import json
import os

import pandas as pd
import pytest

from harness.errors import StudyLocked
from harness.schema import PER_CLASS_COLUMNS, RESULTS_COLUMNS
from harness.study.lock import StudyLock, is_locked
from harness.study.progress import Progress
from harness.records import RecordError, Result, from_data, read_json, write_json
from harness.study.runner import choose_lambdas, status_of
from harness.study.table import per_class_frame, read_results, results_frame, write_tables
from harness.constants import CLASSES


def test_lock_keeps_a_second_run_out_and_names_the_holder(tmp_path):
    assert not is_locked(tmp_path)
    with StudyLock(tmp_path):
        assert is_locked(tmp_path)
        with pytest.raises(StudyLocked, match=f'"pid": {os.getpid()}'):
            with StudyLock(tmp_path):
                pass
    assert not is_locked(tmp_path)
    with StudyLock(tmp_path):  # released: can be taken again
        pass


def test_choose_lambdas_takes_best_mean_and_breaks_ties_by_order():
    points = [("A", 1.0, 1.0, 30.0), ("A", 1.0, 1.0, 34.0),  # mean 32
              ("A", 0.5, 2.0, 33.0), ("A", 0.5, 2.0, 32.0),  # mean 32.5: best
              ("B", 2.0, 0.5, 20.0), ("B", 0.5, 0.5, 20.0)]  # tie: first in order wins
    records = [from_data(Result, {**record(f"j{i}", v, i, f1), "lambda1": l1, "lambda2": l2}, "test")
               for i, (v, l1, l2, f1) in enumerate(points)]
    assert choose_lambdas(records) == {"A": (0.5, 2.0), "B": (0.5, 0.5)}


def record(job_id, variant, seed, val, phase="replicate"):
    provenance = {"bundle_key": "b", "data_digest": "d", "config_key": f"c-{variant}", "threads": 1,
                  "device": "cpu", "torch_version": "2.13.0", "cuda_version": None, "harness_version": "0.1.0",
                  "git_commit": "abc"}
    return {"status": "ok", "study": "s", "job_id": job_id, "variant": variant, "curriculum": "easier",
            "pseudolabels": "strong+weak", "masking": "event", "augmentation": "custom", "lambda1": 1.0,
            "lambda2": 1.0, "seed": seed, "profile": "quick", "phase": phase, "val_f1": val, "test_f1": val - 1,
            "val_segment_f1": 50.0, "test_segment_f1": 49.0, "best_epoch": 3, "steps": 100, "wall_seconds": 9.5,
            "train_seconds": 9.0, "provenance": provenance,
            "per_class": {s: {c: float(i) for i, c in enumerate(CLASSES)} for s in ("validation", "test")}}


def test_tables_are_rebuilt_from_job_results(tmp_path):
    jobs = tmp_path / "jobs"
    records = [record("j1", "B", 1, 30.0), record("j2", "A", 0, 40.0), record("j3", "A", 1, 41.0),
               record("j4", "A", 2, 10.0, phase="tune")]
    for r in records:
        (jobs / r["job_id"]).mkdir(parents=True)
        (jobs / r["job_id"] / "result.json").write_text(json.dumps(r))
    (jobs / "j5").mkdir()
    (jobs / "j5" / "result.json").write_text('{"status": "ok", "job_id": "j5"')  # truncated: not finished
    found = read_results(jobs)
    assert [r.job_id for r in found] == ["j1", "j2", "j3"]  # tuning runs are not replicates
    assert [r.job_id for r in read_results(jobs, {"j2"})] == ["j2"]
    assert status_of(tmp_path, "j5") == "damaged" and status_of(tmp_path, "j1") == "done"
    results_path, per_class_path = write_tables(tmp_path, found, order=["A", "B"])
    table = pd.read_csv(results_path)
    assert list(table.columns) == list(RESULTS_COLUMNS)
    assert list(table["job_id"]) == ["j2", "j3", "j1"]  # variant order of the study, then seed
    assert table["val_f1"].tolist() == [40.0, 41.0, 30.0]
    assert table["config_key"].tolist() == ["c-A", "c-A", "c-B"] and (table["threads"] == 1).all()
    per_class = pd.read_csv(per_class_path)
    assert list(per_class.columns) == list(PER_CLASS_COLUMNS) and len(per_class) == 3 * 2 * 10
    row = per_class[(per_class.job_id == "j1") & (per_class.split == "test") & (per_class.event_label == "Dog")]
    assert row["f1"].item() == CLASSES.index("Dog")
    assert results_frame([]).columns.tolist() == list(RESULTS_COLUMNS)
    assert per_class_frame([]).empty


def test_progress_counts_and_eta():
    stream = io.StringIO()
    progress = Progress(total=4, parallel=2, stream=stream)
    progress.job_finished("A", 0, {"status": "ok", "val_f1": 40.0, "test_f1": 39.0, "seconds": 10.0})
    progress.job_finished("B", 0, {"status": "failed", "message": "diverged: loss term J_s is nan"})
    assert (progress.done, progress.failed, progress.running) == (1, 1, 2)
    text = stream.getvalue()
    assert "done   A" in text and "FAILED B" in text and "1 done, 2 running, 1 failed, 4 total" in text
    assert progress.eta_seconds() is not None and progress.eta_seconds() >= 0


def test_records_are_strict_json_written_atomically(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"f1": float("nan"), "ok": [1.5, float("inf")]})
    assert path.read_text().count("null") == 2 and "NaN" not in path.read_text()  # strict JSON
    assert read_json(path) == {"f1": None, "ok": [1.5, None]}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left
    path.write_text('{"f1": NaN}')
    with pytest.raises(RecordError, match="r.json"):
        read_json(path)
    with pytest.raises(RecordError, match="missing key 'job_id'"):
        from_data(Result, {k: v for k, v in record("j", "A", 0, 1.0).items() if k != "job_id"}, "x")
    with pytest.raises(RecordError, match="cannot write"):
        write_json(tmp_path / "no" / "such" / "dir.json", {})
