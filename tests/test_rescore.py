"""`harness rescore` and the report's metric choice, clip-level bootstrap and PSD-ROC, on a tiny study run for real."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import warm_cache
from harness.cli import main
from harness.errors import ConfigError
from harness.evaluation.outputs import read_probabilities, write_probabilities
from harness.evaluation.psds import roc_on_grid
from harness.records import Result, read_record
from harness.report import build_report
from harness.study.rescore import (ROC_GRID, RescoreSettings, job_uncertainty, parse_settings, rescore_job,
                                   rescore_run)

STUDY = """
[study]
name = "tiny"
seeds = 2

[[variant]]
name = "EF+SW+EM+CS"

[[variant]]
name = "SW+NM+NS"
curriculum = "all"
masking = "none"
augmentation = "none"

[[comparison]]
label = "Event mask vs none"
a = "EF+SW+EM+CS"
b = "SW+NM+NS"
"""
SCORES = ("val_f1", "test_f1", "val_segment_f1", "test_segment_f1", "val_psds1", "test_psds1", "val_psds2",
          "test_psds2", "val_intersection_f1", "test_intersection_f1", "val_collar_f1", "test_collar_f1")


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_corpus, tiny_stages) -> tuple[Path, Path]:
    """(run directory, cache) of a 2 x 2 tiny study run by the command line, on a copy of the prebuilt shared
    stages (conftest's `tiny_stages`)."""
    root = tmp_path_factory.mktemp("rescore")
    warm_cache(tiny_stages, root)
    (root / "tiny.toml").write_text(STUDY + f'\n[data]\nroot = "{tiny_corpus}"\n')
    out = subprocess.run([sys.executable, "-m", "harness", "run", str(root / "tiny.toml"), "--profile", "tiny",
                          "--runs", str(root / "runs"), "--cache", str(root / "cache"), "--jobs", "2", "--no-report"],
                         cwd=root, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return root / "runs" / "tiny-tiny", root / "cache"


def job_dirs(run_dir: Path) -> list[Path]:
    return sorted(p.parent for p in run_dir.glob("jobs/*/result.json"))


def same(a: float | None, b: float | None) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return (a is None or math.isnan(a)) and (b is None or math.isnan(b))
    return abs(a - b) <= 1e-9


def test_own_settings_give_the_result_json_numbers_exactly(study):
    run_dir, cache = study
    for job_dir in job_dirs(run_dir):
        saved = read_record(job_dir / "result.json", Result)
        again = rescore_job(job_dir, RescoreSettings(), cache)
        for column in SCORES:
            assert same(getattr(again, column), getattr(saved, column)), (job_dir.name, column)
        for split in ("validation", "test"):
            for name, value in saved.per_class[split].items():
                assert same(again.per_class[split][name], value)


def test_cli_writes_the_tables_and_settings_in_parallel(study, capsys):
    run_dir, cache = study
    assert main(["rescore", str(run_dir), "--cache", str(cache), "--jobs", "2", "--name", "own"]) == 0
    assert "rescored 4 jobs" in capsys.readouterr().out
    own = pd.read_csv(run_dir / "rescore" / "own" / "results.csv")
    base = pd.read_csv(run_dir / "results.csv")
    assert list(own.columns) == list(base.columns)
    pd.testing.assert_frame_equal(own.set_index("job_id").loc[base["job_id"], list(SCORES)].reset_index(drop=True),
                                  base[list(SCORES)])
    assert len(pd.read_csv(run_dir / "rescore" / "own" / "results_per_class.csv")) == 4 * 2 * 10
    settings = json.loads((run_dir / "rescore" / "own" / "settings.json").read_text())
    assert settings["overrides"] == [] and sorted(settings["jobs"]) == sorted(base["job_id"])
    assert settings["reference_rows"][0]["name"] == "Teacher (ours)"

    assert main(["rescore", str(run_dir), "--cache", str(cache), "--jobs", "1", "--no-psds",
                 "--set", "postprocess.threshold=0.3"]) == 0
    name = parse_settings(["postprocess.threshold=0.3"], threshold_free=False).key  # the default name: a digest
    record = json.loads((run_dir / "rescore" / name / "settings.json").read_text())
    assert record["method"] == {"postprocess": {"threshold": 0.3}} and record["threshold_free"] is False
    assert pd.read_csv(run_dir / "rescore" / name / "results.csv")["val_psds1"].isna().all()


def hand_made(job_dir: Path, cache: Path) -> None:
    """Frame probabilities 0.45 on every reference event (its frames), 0 elsewhere; clip probability 1 for the
    classes of the clip: every event is found exactly when the frame threshold is below 0.45."""
    from harness.bundle import Bundle
    from harness.constants import CLASSES

    result = read_record(job_dir / "result.json", Result)
    bundle = Bundle.open(cache / "stages" / result.provenance.bundle_key, verify=False)
    hop = bundle.hop_seconds
    for subset in ("validation", "test"):
        probs = read_probabilities(job_dir / f"probabilities_{subset}.npz")
        frame = np.zeros_like(probs.frame)
        clip = np.zeros_like(probs.clip)
        ref = bundle.reference(subset)
        ref = ref[ref["event_label"] != ""]
        for row in ref.itertuples():
            i, c = probs.clip_ids.index(row.filename), CLASSES.index(row.event_label)
            start, end = math.floor(float(row.onset) / hop), math.ceil(float(row.offset) / hop)
            assert not frame[i, c, max(0, start - 1):end + 1].any()  # no two events of a class touch
            frame[i, c, start:end] = 0.45
            clip[i, c] = 1.0
        write_probabilities(job_dir / f"probabilities_{subset}.npz", probs.clip_ids, frame, clip,
                            durations=probs.durations)


def test_a_lower_threshold_finds_the_hand_made_events(study, tmp_path):
    run_dir, cache = study
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    job_dir = job_dirs(copy)[0]
    hand_made(job_dir, cache)
    # Window 1: no median filter, so the frames alone decide.
    at_05 = rescore_job(job_dir, parse_settings(["postprocess.window_fraction=0"]), cache)
    at_04 = rescore_job(job_dir, parse_settings(["postprocess.window_fraction=0", "postprocess.threshold=0.4"]),
                        cache)
    # 0.45 is below 0.5: nothing is detected, every class with events scores 0.
    assert at_05.val_f1 == 0.0 and at_05.test_f1 == 0.0
    # At 0.4 each event is found within a frame (20 ms) of its onset and offset, inside the 200 ms collar:
    # F1 = 100 for every class with events (classes without events are left out of the macro average).
    assert at_04.val_f1 == pytest.approx(100.0, abs=1e-9) and at_04.test_f1 == pytest.approx(100.0, abs=1e-9)
    # The threshold-free metrics do not depend on the threshold: a perfect ranking has PSDS1 = 100.
    assert at_05.val_psds1 == at_04.val_psds1 == pytest.approx(100.0, abs=1e-6)
    rec = job_uncertainty(job_dir, RescoreSettings(), ("val_f1", "test_f1"), "psds1", seed=0, cache_dir=cache)
    assert np.array_equal(rec.roc["validation"], np.ones(len(ROC_GRID)))  # eTPR 1 from eFPR 0 on


def test_bad_input_is_a_clear_error_without_traceback(study, tmp_path, capsys):
    run_dir, cache = study
    assert main(["rescore", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a run directory" in err and "Traceback" not in err
    assert main(["rescore", str(run_dir), "--set", "train.steps=5"]) == 2
    err = capsys.readouterr().err
    assert "post-processing and metric settings only" in err and "postprocess.threshold" in err
    assert main(["rescore", str(run_dir), "--set", "postprocess.threshold=high"]) == 2
    assert "expected float" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(run_dir / "study.json", empty / "study.json")
    assert main(["rescore", str(empty)]) == 2
    assert "no finished job" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--name"):
        rescore_run(run_dir, RescoreSettings(), name="../up", cache_dir=cache)
    moved = tmp_path / "moved"  # a run whose shared stages are neither in the cache given nor where they were
    shutil.copytree(run_dir, moved)
    for path in moved.glob("jobs/*/result.json"):
        data = json.loads(path.read_text())
        data["bundle_root"] = str(tmp_path / "gone")
        path.write_text(json.dumps(data))
    assert main(["rescore", str(moved), "--cache", str(tmp_path / "nowhere"), "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert "its shared stages (bundle" in err and "--cache DIR" in err and "Traceback" not in err


def test_roc_on_grid_by_hand():
    etpr, efpr = np.array([0.2, 0.5]), np.array([0.0, 10.0])
    assert roc_on_grid(etpr, efpr, np.array([0.0, 5.0, 10.0, 20.0])).tolist() == [0.2, 0.2, 0.5, 0.5]
    assert roc_on_grid(np.array([0.5]), np.array([3.0]), np.array([0.0, 3.0])).tolist() == [0.0, 0.5]


def test_uncertainty_is_seeded_cached_and_brackets_the_result(study):
    run_dir, cache = study
    job_dir = job_dirs(run_dir)[0]
    saved = read_record(job_dir / "result.json", Result)
    first = job_uncertainty(job_dir, RescoreSettings(), ("val_f1", "test_f1"), "psds1", seed=0, cache_dir=cache)
    for column in ("val_f1", "test_f1"):
        interval = first.intervals[column]
        assert interval.point == pytest.approx(getattr(saved, column), abs=1e-9)  # the metric on all clips
        assert interval.low <= interval.point <= interval.high and interval.n_resamples == 1000
    for path in job_dir.glob("uncertainty-*.json"):
        path.unlink()
    again = job_uncertainty(job_dir, RescoreSettings(), ("val_f1", "test_f1"), "psds1", seed=0, cache_dir=cache)
    assert again == first  # the same seed, the same numbers
    other = job_uncertainty(job_dir, RescoreSettings(), ("val_f1", "test_f1"), "psds1", seed=1, cache_dir=cache)
    assert other.key != first.key


def test_report_on_psds1_and_on_a_rescore(study, tmp_path):
    run_dir, cache = study
    results = pd.read_csv(run_dir / "results.csv")
    md = build_report(run_dir, tmp_path / "psds1", metric="psds1", cache_dir=cache).read_text()
    assert "Metric: PSDS1" in md and "## Table 4: t-tests on validation PSDS1" in md
    table = pd.read_csv(tmp_path / "psds1" / "tables" / "tiny.csv").set_index("Experiment")
    runs = results[results["variant"] == "SW+NM+NS"]
    assert table.loc["SW+NM+NS", "test_psds1_mean"] == pytest.approx(runs["test_psds1"].mean(), abs=1e-4)
    assert (tmp_path / "psds1" / "tables" / "table4_test_psds1.csv").is_file()
    assert (tmp_path / "psds1" / "figures" / "psds1_distribution.png").is_file()
    uncertainty = pd.read_csv(tmp_path / "psds1" / "tables" / "uncertainty.csv").set_index("Experiment")
    assert "val_psds1_boot_se" in uncertainty.columns
    with pytest.raises(ConfigError, match="valid: f1, segment_f1, psds1"):
        build_report(run_dir, tmp_path / "bad", metric="psds3", cache_dir=cache)

    settings = parse_settings(["postprocess.threshold=0.2"])
    rescored = rescore_run(run_dir, settings, name="t02", cache_dir=cache, jobs=1)
    md = build_report(run_dir, tmp_path / "t02", rescore="t02", cache_dir=cache).read_text()
    assert "rescore 't02'" in md and "`postprocess.threshold=0.2`" in md
    table = pd.read_csv(tmp_path / "t02" / "tables" / "tiny.csv").set_index("Experiment")
    new = pd.read_csv(rescored.results)
    assert table.loc["EF+SW+EM+CS", "val_f1_mean"] == pytest.approx(
        new.loc[new["variant"] == "EF+SW+EM+CS", "val_f1"].mean(), abs=1e-4)


def test_default_report_shows_bootstrap_energy_and_roc(study, tmp_path):
    run_dir, cache = study
    md = build_report(run_dir, tmp_path / "out", cache_dir=cache).read_text()
    assert "## Uncertainty within a run: clip-level bootstrap" in md and "## Size and energy" in md
    uncertainty = pd.read_csv(tmp_path / "out" / "tables" / "uncertainty.csv").set_index("Experiment")
    results = pd.read_csv(run_dir / "results.csv")
    jobs = results.loc[results["variant"] == "EF+SW+EM+CS", "job_id"]
    records = [job_uncertainty(run_dir / "jobs" / j, RescoreSettings(), ("val_f1", "test_f1"), "psds1", seed=0,
                               cache_dir=cache) for j in jobs]  # cached by the report: the same records
    half = np.mean([(r.intervals["test_f1"].high - r.intervals["test_f1"].low) / 2 for r in records])
    assert uncertainty.loc["EF+SW+EM+CS", "test_f1_boot_halfwidth"] == pytest.approx(half, abs=1e-4)
    assert uncertainty.loc["EF+SW+EM+CS", "test_f1_sd_seeds"] == pytest.approx(
        results.loc[results["variant"] == "EF+SW+EM+CS", "test_f1"].std(ddof=1), abs=1e-4)
    compute = pd.read_csv(tmp_path / "out" / "tables" / "compute.csv").set_index("Experiment")
    assert compute.loc["SW+NM+NS", "params"] == results["params"].iloc[0]
    assert (tmp_path / "out" / "figures" / "psd_roc.png").is_file()
