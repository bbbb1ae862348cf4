"""The report's "what tuning buys" section from a run folder with tuning jobs: the curves equal to
harness.report.tuning_curve called directly and to a brute-force enumeration, the budget statement, the
figure; a study without [tune] has no such section."""

import itertools

import numpy as np
import pandas as pd
import pytest

from harness.report import build_report, sections
from harness.report.tuning_curve import budget_reading, compare_budgets, tuning_curve
from harness.records import (Budget, ComparisonInfo, Provenance, Resolution, Result, StudyRecord, TableInfo,
                             VariantInfo, write_record)
from harness.schema import RESULTS_COLUMNS

FACTORS = {"curriculum": "all", "pseudolabels": "strong+weak", "masking": "event", "augmentation": "custom"}
GRID = list(itertools.product((0.5, 0.75, 1.0, 1.5, 2.0), repeat=2))  # the paper's 5 x 5 lambda grid
# Mean validation F1 of each grid point: A is insensitive to the lambdas (39.5-40.5), B sensitive: 15 points
# near 30, 10 near 45. A leads with one trial (mean 40 vs 36), B with the whole grid (best 46 vs 40.5).
POINTS = {"A": 39.5 + np.arange(25) / 24, "B": np.r_[29.0 + np.arange(15) / 7, 44.0 + np.arange(10) / 4.5]}
JOB_SECONDS = {"A": 30.0, "B": 90.0}  # each point runs 2 tuning seeds: a trial costs 1 min (A) and 3 min (B)
PROVENANCE = Provenance(bundle_key="b1", data_digest="d1", config_key="c", threads=1, device="cpu",
                        torch_version="2", cuda_version=None, harness_version="0.1.0", git_commit="abc")


def tuning_result(variant, point, seed, val):
    (l1, l2) = GRID[point]
    return Result(study="tuned", job_id=f"tune-{variant}-{point}-s{seed}", variant=variant, **FACTORS, lambda1=l1,
                  lambda2=l2, seed=1000 + seed, profile="test", phase="tune", val_f1=val, test_f1=val,
                  val_segment_f1=None, test_segment_f1=None, best_epoch=3, steps=100,
                  wall_seconds=JOB_SECONDS[variant], train_seconds=JOB_SECONDS[variant], provenance=PROVENANCE,
                  per_class={"validation": {}, "test": {}})


def write_run(root, tune=True):
    """runs/tuned/ with 3 replicate runs a variant in results.csv and, with `tune`, 2 tuning jobs per grid point
    (validation F1 the point's value -0.3 and +0.3: their mean is the point's) in jobs/*/result.json."""
    run_dir = root / "tuned"
    run_dir.mkdir(parents=True)
    rows = []
    for variant, base in (("A", 40.0), ("B", 45.0)):
        for seed in range(3):
            row = {c: "" for c in RESULTS_COLUMNS}
            row.update({"study": "tuned", "job_id": f"{variant}-s{seed}", "variant": variant, **FACTORS,
                        "lambda1": 1.0, "lambda2": 1.0, "seed": seed, "profile": "test", "val_f1": base + seed,
                        "test_f1": base + seed, "best_epoch": 3, "steps": 100, "wall_seconds": 1.0,
                        "config_key": f"c-{variant}", "bundle_key": "b1", "data_digest": "d1", "threads": 1})
            rows.append(row)
    pd.DataFrame(rows).to_csv(run_dir / "results.csv", index=False)
    tune_jobs = []
    for variant, values in POINTS.items() if tune else ():
        for point, value in enumerate(values):
            for seed, delta in enumerate((-0.3, 0.3)):
                record = tuning_result(variant, point, seed, float(value + delta))
                (run_dir / "jobs" / record.job_id).mkdir(parents=True)
                write_record(run_dir / "jobs" / record.job_id / "result.json", record)
                tune_jobs.append(record.job_id)
    record = StudyRecord(
        name="tuned", run_name="tuned", description="Two variants tuned over the lambda grid",
        resolution=Resolution(file="/x/tuned.toml", profile="test", overrides=(), overrides_key="k",
                              data_root="synthetic:quick:0", data_digest="d1"),
        budget=Budget(steps=100, hidden=32, layers=3, teacher_models=2, teacher_channels=24, teacher_source="train"),
        generation_epochs=3, tables=(TableInfo("Table 1", "Tuned", ("A", "B")),),
        variants=(VariantInfo("A", FACTORS), VariantInfo("B", FACTORS)),
        comparisons=(ComparisonInfo("A vs B", "A", "B"),), reference_rows=(), seeds=(0, 1, 2), jobs=(),
        tune_jobs=tuple(tune_jobs), git_commit="abc")
    write_record(run_dir / "study.json", record)
    return run_dir


def direct_curve(variant, index):
    """The curve as harness.report.tuning_curve gives it: trial costs in minutes (2 jobs a trial)."""
    return tuning_curve(POINTS[variant], np.random.default_rng([0, sections.TUNING_TAG, index]),
                        costs=2 * JOB_SECONDS[variant] / 60)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuning")
    build_report(write_run(root), root / "out")
    return root / "out"


def test_curves_equal_the_module_and_brute_force(built):
    table = pd.read_csv(built / "tables" / "tuning_curve.csv")
    for index, variant in enumerate(("A", "B")):
        got = table[table["variant"] == variant]
        curve = direct_curve(variant, index)
        assert list(got["k"]) == list(range(1, 26)) and set(got["trials"]) == {25}
        assert got["expected_best"].to_numpy() == pytest.approx(curve.expected_max, rel=1e-5)
        assert got["low"].to_numpy() == pytest.approx(curve.low, rel=1e-5)
        assert got["high"].to_numpy() == pytest.approx(curve.high, rel=1e-5)
        assert got["compute_seconds"].to_numpy() == pytest.approx(np.arange(1, 26) * 2 * JOB_SECONDS[variant])
        scores = POINTS[variant]  # the mean of each point's two tuning seeds
        best_of_2 = np.mean([max(pair) for pair in itertools.combinations(scores, 2)])
        best_of_3 = np.mean([max(t) for t in itertools.combinations(scores, 3)])
        assert got["expected_best"].iloc[:3].to_numpy() == pytest.approx([scores.mean(), best_of_2, best_of_3],
                                                                         rel=1e-5)
        assert got["expected_best"].iloc[-1] == pytest.approx(scores.max(), rel=1e-6)
    display = (built / "tables" / "tuning_curve.md").read_text()
    assert "| A | 25 | 2 | 60 s |" in display and "| B | 25 | 2 | 3 min |" in display


def test_the_order_changes_with_the_budget(built):
    budget = pd.read_csv(built / "tables" / "tuning_budget.csv", keep_default_na=False).set_index("axis")
    a, b = direct_curve("A", 0), direct_curve("B", 1)
    trials = compare_budgets(a, b, "trials")
    assert trials.changes_with_budget and trials.a_ahead[0] == 1 and trials.b_ahead[-1] == 25
    assert budget.loc["trials", "changes_with_budget"] == "Y"
    assert budget.loc["trials", "reading"] == budget_reading(trials, "A", "B")
    assert "The order depends on the budget." in budget.loc["trials", "reading"]
    compute = compare_budgets(a, b, "compute")
    assert budget.loc["compute", "reading"] == budget_reading(compute, "A", "B").replace(" compute", " job-min")
    assert budget.loc["compute", "unit"] == "job-min"
    md = (built / "report.md").read_text()
    assert "## What tuning buys: expected best validation F1 against the tuning budget" in md
    assert budget_reading(trials, "A", "B") in md
    assert (built / "figures" / "tuning_curves.png").stat().st_size > 0


def test_tuning_points_average_the_seeds_and_sum_the_cost():
    records = [tuning_result("A", 0, 0, 40.0), tuning_result("A", 0, 1, 41.0), tuning_result("A", 1, 0, 38.0),
               tuning_result("A", 2, 0, None)]  # a job without a validation score: its point is left out
    points = sections.tuning_points(records)
    assert list(points["val_f1"]) == [40.5, 38.0] and list(points["seconds"]) == [60.0, 30.0]
    assert list(points["jobs"]) == [2, 1]


def test_a_study_without_tune_has_no_section(tmp_path):
    build_report(write_run(tmp_path, tune=False), tmp_path / "out")
    assert "What tuning buys" not in (tmp_path / "out" / "report.md").read_text()
    assert not (tmp_path / "out" / "tables" / "tuning_curve.csv").exists()
    assert not (tmp_path / "out" / "figures" / "tuning_curves.png").exists()
