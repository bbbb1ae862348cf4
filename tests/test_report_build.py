"""A report built from a synthetic run directory with known means."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.constants import CLASSES
from harness.errors import DataError, HarnessError
from harness.report import build_report
from harness.records import (Budget, ComparisonInfo, ReferenceRow, Resolution, StudyRecord, TableInfo,
                             VariantInfo, write_record)
from harness.schema import EPOCH_COLUMNS, PER_CLASS_COLUMNS, RESULTS_COLUMNS

OFFSETS = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])  # mean 0, sd sqrt(2.5)
FACTORS = {
    "EF+SW+EM+CS": {"curriculum": "easier", "pseudolabels": "strong+weak", "masking": "event", "augmentation": "custom"},
    "SW+EM+CS": {"curriculum": "all", "pseudolabels": "strong+weak", "masking": "event", "augmentation": "custom"},
    "HF+SW+EM+CS": {"curriculum": "harder", "pseudolabels": "strong+weak", "masking": "event", "augmentation": "custom"},
    "EM+CS": {"curriculum": "all", "pseudolabels": "none", "masking": "event", "augmentation": "custom"},
}
# variant -> validation F1 of its seeds (%); test F1 is validation + 1
VAL_F1 = {
    "EF+SW+EM+CS": 40.0 + OFFSETS,  # mean 40, sd 1.5811
    "SW+EM+CS": 35.0 + 0.5 * OFFSETS,  # mean 35, sd 0.7906
    "HF+SW+EM+CS": 39.5 + OFFSETS,  # mean 39.5: t = 0.5 vs EF (not significant)
    "EM+CS": np.array([21.0]),  # a single run: not testable
}
COMPARISONS = [
    {"label": "Easier first vs all", "a": "EF+SW+EM+CS", "b": "SW+EM+CS"},
    {"label": "Easier vs harder first", "a": "EF+SW+EM+CS", "b": "HF+SW+EM+CS"},
    {"label": "Strong + weak vs none", "a": "EF+SW+EM+CS", "b": "EM+CS"},
]
GENERATION_EPOCHS = 3


def write_study_record(run_dir):
    tables = (TableInfo("Table 1", "Curriculum", ("EF+SW+EM+CS", "SW+EM+CS", "HF+SW+EM+CS")),
              TableInfo("Table 3", "Pseudolabels", ("EF+SW+EM+CS", "EM+CS")))
    record = StudyRecord(
        name="synthetic", run_name="synthetic", description="A synthetic study with known means",
        resolution=Resolution(file="/x/synthetic.toml", profile="test", overrides=("train.steps=100",),
                              overrides_key="k", data_root="synthetic:quick:0", data_digest="d1"),
        budget=Budget(steps=100, hidden=32, layers=3, teacher_models=2, teacher_channels=24, teacher_source="train"),
        generation_epochs=GENERATION_EPOCHS, tables=tables,
        variants=tuple(VariantInfo(n, f) for n, f in FACTORS.items()),
        comparisons=tuple(ComparisonInfo(**c) for c in COMPARISONS),
        reference_rows=(ReferenceRow("Teacher (ours)", 45.1, 43.0),), seeds=(0, 1, 2, 3, 4), jobs=(),
        git_commit="abc")
    write_record(run_dir / "study.json", record)


def make_run_dir(root, n_epochs: int = 7, skip_metrics_of: str | None = "EM+CS-s0"):
    """runs/<study>/ with results.csv, results_per_class.csv, study.json and jobs/*/metrics.csv."""
    run_dir = root / "synthetic"
    rows, per_class = [], []
    for variant, vals in VAL_F1.items():
        for seed, val in enumerate(vals):
            job_id = f"{variant}-s{seed}"
            row = {c: "" for c in RESULTS_COLUMNS}
            row.update({"study": "synthetic", "job_id": job_id, "variant": variant, **FACTORS[variant],
                        "lambda1": 1.0, "lambda2": 1.0, "seed": seed, "profile": "test", "val_f1": val,
                        "test_f1": val + 1.0, "val_segment_f1": val + 10, "test_segment_f1": val + 11,
                        "best_epoch": n_epochs, "steps": 100, "wall_seconds": 1.0, "device": "cpu",
                        "harness_version": "0.1.0", "git_commit": "abc", "config_key": f"c-{variant}",
                        "bundle_key": "b1", "data_digest": "d1", "threads": 1})
            rows.append(row)
            for split in ("validation", "test"):
                for c, label in enumerate(CLASSES):
                    per_class.append({"study": "synthetic", "job_id": job_id, "variant": variant, "seed": seed,
                                      "split": split, "event_label": label, "f1": val + c - 4.5})
            if job_id == skip_metrics_of:
                continue
            epochs = np.arange(1, n_epochs + 1)
            metrics = pd.DataFrame({c: 0.0 for c in EPOCH_COLUMNS}, index=range(n_epochs))
            metrics["epoch"] = epochs
            metrics["generation"] = (epochs - 1) // GENERATION_EPOCHS + 1
            metrics["val_f1"] = val * epochs / n_epochs
            (run_dir / "jobs" / job_id).mkdir(parents=True)
            metrics[list(EPOCH_COLUMNS)].to_csv(run_dir / "jobs" / job_id / "metrics.csv", index=False)
    pd.DataFrame(rows)[list(RESULTS_COLUMNS)].to_csv(run_dir / "results.csv", index=False)
    pd.DataFrame(per_class)[list(PER_CLASS_COLUMNS)].to_csv(run_dir / "results_per_class.csv", index=False)
    write_study_record(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    run_dir = make_run_dir(root)
    md = build_report(run_dir, root / "out1")
    build_report(run_dir, root / "out2")
    return root, md


def test_table1_values(built):
    root, _ = built
    table = pd.read_csv(root / "out1" / "tables" / "table_1.csv")
    assert list(table["Experiment"]) == ["Teacher (ours)", "EF+SW+EM+CS", "SW+EM+CS", "HF+SW+EM+CS"]
    ef = table.set_index("Experiment").loc["EF+SW+EM+CS"]
    assert ef["n"] == 5 and ef["Curriculum"] == "Easier" and ef["Pseudolabels"] == "Strong+weak"
    assert ef["val_f1_mean"] == pytest.approx(40.0) and ef["test_f1_mean"] == pytest.approx(41.0)
    assert ef["val_f1_sd"] == pytest.approx(math.sqrt(2.5), abs=1e-5)
    assert table.set_index("Experiment").loc["SW+EM+CS", "val_f1_mean"] == pytest.approx(35.0)
    md = (root / "out1" / "tables" / "table_1.md").read_text()
    assert "| EF+SW+EM+CS | Easier | Strong+weak | Event | Custom | 5 | 40.0 ± 1.6 | 41.0 ± 1.6 |" in md
    assert "| Teacher (ours) | — | — | — | — | — | 45.1 | 43.0 |" in md
    table3 = (root / "out1" / "tables" / "table_3.md").read_text()
    assert "| EM+CS | N/A | None | Event | Custom | 1 | 21.0 | 22.0 |" in table3


def test_table4_decisions(built):
    root, _ = built
    t4 = pd.read_csv(root / "out1" / "tables" / "table4_val_f1.csv", keep_default_na=False).set_index("comparison")
    row = t4.loc["Easier first vs all"]
    ref = sps.ttest_ind(VAL_F1["EF+SW+EM+CS"], VAL_F1["SW+EM+CS"])
    assert float(row["t"]) == pytest.approx(ref.statistic, rel=1e-5)  # = 5 / 0.7906 = 6.3246
    assert float(row["df"]) == 8
    assert (row["significant_0.2"], row["significant_0.05"], row["significant_0.01"]) == ("Y", "Y", "Y")
    assert float(row["diff"]) == pytest.approx(5.0)
    close = t4.loc["Easier vs harder first"]
    assert float(close["t"]) == pytest.approx(0.5)  # 0.5 / (sqrt(2.5) * sqrt(0.4))
    assert (close["significant_0.2"], close["significant_0.05"], close["significant_0.01"]) == ("N", "N", "N")
    untestable = t4.loc["Strong + weak vs none"]
    assert untestable["testable"] == "N" and "fewer than 2" in untestable["reason"] and untestable["t"] == ""
    # Holm over the two testable rows
    p = sorted([float(row["p"]), float(close["p"])])
    assert float(close["p_holm"]) == pytest.approx(max(2 * p[0], p[1]), rel=1e-4)
    test_t4 = pd.read_csv(root / "out1" / "tables" / "table4_test_f1.csv").set_index("comparison")
    assert test_t4.loc["Easier first vs all", "t"] == pytest.approx(ref.statistic, rel=1e-5)  # test = val + 1


def test_all_files_exist(built):
    root, md = built
    out = root / "out1"
    assert md == out / "report.md"
    for stem in ("table_1", "table_3", "table4_val_f1", "table4_test_f1"):
        for ext in ("csv", "tex", "md"):
            assert (out / "tables" / f"{stem}.{ext}").stat().st_size > 0
    for stem in ("f1_distribution", "per_class_validation", "per_class_test", "learning_curves"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{stem}.{ext}").stat().st_size > 0
    text = md.read_text()
    for heading in ("## Table 1", "## Table 3", "## Table 4: t-tests on validation F1, as in the paper", "How to read",
                    "![", "Generated by harness"):
        assert heading in text
    html = (out / "report.html").read_text()
    # 4 figures of the runs, the forest plot and the sequential paths (harness.report.sections)
    assert html.count("data:image/png;base64,") == 6 and "<table>" in html
    assert "not testable: fewer than 2 runs" in text
    assert "(1 job(s) without a readable metrics.csv left out)" in text  # EM+CS-s0 has none
    tex = (out / "tables" / "table_1.tex").read_text()
    assert r"\toprule" in tex and r"$\pm$" in tex and r"(\%)" in tex


def test_tables_byte_identical(built):
    root, _ = built
    files = sorted(p.relative_to(root / "out1") for p in (root / "out1" / "tables").iterdir())
    # 4 tables + the beyond-the-t-test tables per metric + sequential + convergence, 3 formats each, and
    # convergence_runs.csv
    assert len(files) == 25
    for rel in files:
        assert (root / "out1" / rel).read_bytes() == (root / "out2" / rel).read_bytes(), rel
    # The report differs at most in the footer line (the generation time).
    a = (root / "out1" / "report.md").read_text().splitlines()
    b = (root / "out2" / "report.md").read_text().splitlines()
    assert a[:-1] == b[:-1]


def test_figures_reproducible(built):
    root, _ = built
    for name in ("f1_distribution.png", "learning_curves.pdf"):
        assert (root / "out1" / "figures" / name).read_bytes() == (root / "out2" / "figures" / name).read_bytes()


def test_welch(tmp_path):
    run_dir = make_run_dir(tmp_path)
    build_report(run_dir, tmp_path / "out", test="welch")
    t4 = pd.read_csv(tmp_path / "out" / "tables" / "table4_val_f1.csv").set_index("comparison")
    ref = sps.ttest_ind(VAL_F1["EF+SW+EM+CS"], VAL_F1["SW+EM+CS"], equal_var=False)
    assert t4.loc["Easier first vs all", "df"] == pytest.approx(ref.df, rel=1e-5)
    assert t4.loc["Easier first vs all", "p"] == pytest.approx(ref.pvalue, rel=1e-4)


def test_missing_results(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="python -m harness run") as info:
        build_report(tmp_path / "empty", tmp_path / "out")
    assert isinstance(info.value, HarnessError) and "results.csv" in str(info.value)


def test_no_finished_runs_is_not_a_crash(tmp_path):
    run_dir = make_run_dir(tmp_path)
    pd.DataFrame(columns=list(RESULTS_COLUMNS)).to_csv(run_dir / "results.csv", index=False)
    md = build_report(run_dir, tmp_path / "out")
    t1 = pd.read_csv(tmp_path / "out" / "tables" / "table_1.csv")
    assert list(t1["n"].iloc[1:]) == [0, 0, 0]
    t4 = pd.read_csv(tmp_path / "out" / "tables" / "table4_val_f1.csv")
    assert list(t4["testable"]) == ["N", "N", "N"]
    assert "fewer than 2 runs on a side (n = 0 vs 0)" in md.read_text()


def test_nan_scores_are_not_counted(tmp_path):
    run_dir = make_run_dir(tmp_path)
    results = pd.read_csv(run_dir / "results.csv")
    results.loc[results["job_id"] == "SW+EM+CS-s4", ["val_f1", "test_f1"]] = np.nan
    results.to_csv(run_dir / "results.csv", index=False)
    build_report(run_dir, tmp_path / "out")
    t1 = pd.read_csv(tmp_path / "out" / "tables" / "table_1.csv").set_index("Experiment")
    assert t1.loc["SW+EM+CS", "n"] == 4
    assert t1.loc["SW+EM+CS", "val_f1_mean"] == pytest.approx(np.mean(VAL_F1["SW+EM+CS"][:4]))
    t4 = pd.read_csv(tmp_path / "out" / "tables" / "table4_val_f1.csv").set_index("comparison")
    ref = sps.ttest_ind(VAL_F1["EF+SW+EM+CS"], VAL_F1["SW+EM+CS"][:4])
    assert t4.loc["Easier first vs all", "t"] == pytest.approx(ref.statistic, rel=1e-5)


def test_a_row_of_runs_from_different_bundles_is_refused(tmp_path):
    run_dir = make_run_dir(tmp_path)
    results = pd.read_csv(run_dir / "results.csv")
    results.loc[results["job_id"] == "SW+EM+CS-s2", "bundle_key"] = "b2"  # e.g. another teacher
    results.to_csv(run_dir / "results.csv", index=False)
    with pytest.raises(DataError, match=r"variant 'SW\+EM\+CS' come from different shared stages.*b1, b2"):
        build_report(run_dir, tmp_path / "out")


def test_header_states_the_resolution(built):
    _, md = built
    text = md.read_text()
    assert "Profile: test; overrides: `--set train.steps=100`; budget: 100 steps a run, student h = 32" in text
    assert "teacher: 2 CNNs of width 24" in text and "data: synthetic:quick:0 (digest d1)" in text
    assert "harness commit abc" in text
    # What changes the numbers besides the budget: the training steps' precision and the frame geometry
    # (a record written before these fields existed reads as the paper's fp32, 500 frames of 20 ms).
    assert "(3 layers, fp32 training steps), frames: 500 of 20 ms" in text


def test_report_on_another_metric(tmp_path):
    run_dir = make_run_dir(tmp_path)
    results = pd.read_csv(run_dir / "results.csv")
    results["val_psds1"], results["test_psds1"] = results["val_f1"] / 2, results["test_f1"] / 2
    results.to_csv(run_dir / "results.csv", index=False)
    md = build_report(run_dir, tmp_path / "out", metric="psds1").read_text()
    assert "Metric: PSDS1, PSDS scenario 1" in md and "## Table 4b: the same t-tests on test PSDS1" in md
    t1 = pd.read_csv(tmp_path / "out" / "tables" / "table_1.csv").set_index("Experiment")
    assert t1.loc["EF+SW+EM+CS", "val_psds1_mean"] == pytest.approx(20.0)
    assert t1.loc["EF+SW+EM+CS", "test_psds1_sd"] == pytest.approx(math.sqrt(2.5) / 2, abs=1e-5)
    assert math.isnan(t1.loc["Teacher (ours)", "val_psds1_mean"])  # the teacher has event F1 only
    assert "| Mean ± sd val PSDS1 (%) | Mean ± sd test PSDS1 (%) |" in (tmp_path / "out" / "tables" / "table_1.md").read_text()
    t4 = pd.read_csv(tmp_path / "out" / "tables" / "table4_val_psds1.csv").set_index("comparison")
    ref = sps.ttest_ind(VAL_F1["EF+SW+EM+CS"] / 2, VAL_F1["SW+EM+CS"] / 2)
    assert t4.loc["Easier first vs all", "t"] == pytest.approx(ref.statistic, rel=1e-5)
    assert t4.loc["Easier first vs all", "diff"] == pytest.approx(2.5)
    build_report(run_dir, tmp_path / "one", metric="test_psds1")
    assert sorted(p.name for p in (tmp_path / "one" / "tables").glob("table4_*.csv")) == [
        "table4_test_psds1.csv", "table4_test_psds1_beyond.csv"]
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="valid: f1, segment_f1, psds1"):
        build_report(run_dir, tmp_path / "bad", metric="psds9")


def test_size_and_energy_sums_by_hand(tmp_path):
    run_dir = make_run_dir(tmp_path)
    results = pd.read_csv(run_dir / "results.csv")
    results["params"], results["macs_per_clip"] = 7124, 3_365_000
    results["train_kwh"] = 0.001 * (results["seed"] + 1)  # EF+SW+EM+CS: 0.001 * (1 + ... + 5) = 0.015
    results["eval_kwh"] = 0.0001
    results["energy_estimate"] = "RAM(); CPU(Cpu Load) TDP 8 W"
    results.to_csv(run_dir / "results.csv", index=False)
    md = build_report(run_dir, tmp_path / "out").read_text()
    compute = pd.read_csv(tmp_path / "out" / "tables" / "compute.csv").set_index("Experiment")
    ef = compute.loc["EF+SW+EM+CS"]
    assert ef["train_kwh"] == pytest.approx(0.015) and ef["eval_kwh"] == pytest.approx(0.0005)
    assert ef["kwh_per_run"] == pytest.approx(0.0155 / 5) and ef["params"] == 7124
    assert compute.loc["All runs", "train_kwh"] == pytest.approx(3 * 0.015 + 0.001)  # 3 variants of 5 seeds, 1 of 1
    assert "| EF+SW+EM+CS | 5 | 7,124 | 3.4 M | 0.015 | 0.0005 | 0.0031 | 5 / 5 |" in md
    assert "CPU(Cpu Load) TDP 8 W; RAM()" in md


def test_runs_without_saved_outputs_say_what_is_missing(built):
    _, md = built
    text = md.read_text()
    assert "## Uncertainty within a run: clip-level bootstrap" in text and "Not computed:" in text
    assert "Size and energy: not measured" in text


def test_convergence_is_reported_flagged_and_warned(tmp_path):
    n_epochs = 20  # the rule's tail: the last 5 epochs
    run_dir = make_run_dir(tmp_path, n_epochs=n_epochs)
    epochs = np.arange(1, n_epochs + 1)
    for job in (run_dir / "jobs").iterdir():
        metrics = pd.read_csv(job / "metrics.csv")
        top = metrics["val_f1"].iloc[-1]
        if job.name.startswith("SW+EM+CS"):  # still climbing 0.5 points an epoch
            metrics["val_f1"] = top - 0.5 * (n_epochs - epochs)
        else:  # at its plateau from epoch 10 on
            metrics["val_f1"] = np.minimum(top, top * epochs / 10)
        metrics.to_csv(job / "metrics.csv", index=False)
    md = build_report(run_dir, tmp_path / "out").read_text()
    out = tmp_path / "out" / "tables"
    conv = pd.read_csv(out / "convergence.csv").set_index("Experiment")
    assert conv.loc["EF+SW+EM+CS", ["converged", "not_converged", "undetermined"]].tolist() == [5, 0, 0]
    assert conv.loc["EF+SW+EM+CS", "median_best_epoch"] == 10 and conv.loc["EF+SW+EM+CS", "median_epochs"] == 20
    assert conv.loc["SW+EM+CS", ["converged", "not_converged"]].tolist() == [0, 5]
    assert conv.loc["SW+EM+CS", "median_gain"] == pytest.approx(2.5)  # best 20 vs 15 epochs in: 5 x 0.5
    assert conv.loc["SW+EM+CS", "median_slope"] == pytest.approx(0.5)
    assert conv.loc["EM+CS", "runs_with_curve"] == 0  # its one job has no metrics.csv
    runs = pd.read_csv(out / "convergence_runs.csv").set_index("job_id")
    assert runs.loc["SW+EM+CS-s3", "status"] == "not converged" and runs.loc["EM+CS-s0", "status"] == "no curve"
    # Tables 1-3: the flag and its legend; Table 3 has no flagged variant, so no legend of its own.
    assert "| SW+EM+CS † | All | Strong+weak |" in (out / "table_1.md").read_text()
    assert r"SW+EM+CS \textdagger{}" in (out / "table_1.tex").read_text()
    assert "† not converged when training ended (see Convergence): SW+EM+CS (5 of 5 runs)." in md
    assert "†" not in (out / "table_3.md").read_text()
    assert "| SW+EM+CS | 5 | 0 / 5 | 5 | 0 |" in md and "not converged: seeds 0, 1, 2, 3, 4" in md
    # A warning above Table 4 and above the table beyond it, naming only the rows that involve SW+EM+CS.
    warning = ("Warning, not converged: 'Easier first vs all' involves SW+EM+CS (5 of 5 runs), whose validation "
               "F1 was still improving")
    # Table 4 and 4b, each with its beyond-the-t-test table, the forest plot and the sequential section
    assert md.count(warning) == 6
    first = md.index(warning)
    assert md.index("## Table 4: t-tests on validation F1") < first < md.index("**Table 4: t-tests on validation F1")
    forest, sequential = md.index("![Comparisons: difference of means"), md.index("## Sequential seeds in retrospect")
    assert md.rindex(warning, 0, forest) > md.index("How to read")
    assert sequential < md.index(warning, sequential) < md.index("**Sequential seeds in retrospect")
    assert "How to read the convergence table. A run has converged when" in md


def test_convergence_without_any_log(tmp_path):
    run_dir = make_run_dir(tmp_path)
    for job in (run_dir / "jobs").iterdir():
        (job / "metrics.csv").unlink()
    md = build_report(run_dir, tmp_path / "out").read_text()
    assert "Not checked: no run has a readable per-epoch log" in md and "†" not in md


def test_p_a_beats_b_with_newcombe_interval_beside_the_t_test(built):
    from harness.report.superiority import superiority

    root, md_path = built
    beyond = pd.read_csv(root / "out1" / "tables" / "table4_val_f1_beyond.csv",
                         keep_default_na=False).set_index("comparison")
    for c in COMPARISONS:
        s, row = superiority(VAL_F1[c["a"]], VAL_F1[c["b"]]), beyond.loc[c["label"]]
        assert (float(row["superiority"]), float(row["superiority_low"]), float(row["superiority_high"])) == \
            pytest.approx((s.estimate, s.low, s.high), rel=1e-5)
        assert row["superiority_method"] == "newcombe"
        assert row["sources_varied"] == "seed (5): all streams; 1 teacher"  # EM+CS's one seed is among the 5
    # By hand: every run of EF (38-42) beats every run of SW (34-36): P = 1, Newcombe's interval from 5 runs a side
    # [0.64, 1]: significant, and meaningful (P >= 0.75) though the interval reaches below 0.75.
    ef_sw = beyond.loc["Easier first vs all"]
    assert float(ef_sw["superiority"]) == 1.0 and float(ef_sw["superiority_low"]) == pytest.approx(0.64, abs=0.005)
    assert (ef_sw["superiority_significant"], ef_sw["superiority_meaningful"],
            ef_sw["superiority_surely_meaningful"]) == ("Y", "Y", "N")
    # EF = 40 + o_i beats HF = 39.5 + o_j iff o_i >= o_j: 15 of the 25 pairs
    assert float(beyond.loc["Easier vs harder first", "superiority"]) == pytest.approx(0.6)
    assert beyond.loc["Easier vs harder first", "superiority_significant"] == "N"
    # 5 runs against 1 run: untestable for the t-test, P(A > B) = 1 with a wide interval, not significant
    assert beyond.loc["Strong + weak vs none", "superiority_significant"] == "N"
    md = md_path.read_text()
    assert "| Easier first vs all | 1.00 [0.64, 1.00] | meaningful | seed (5): all streams; 1 teacher |" in md
    assert "Sources of randomness. The runs varied the run's seed alone" in md
    assert "meaningful when, besides, P(A > B) is at least γ = 0.75" in md
