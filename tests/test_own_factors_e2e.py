"""Any config key as a factor, through the CLI: a grid of two keys the paper never varies, its generated
comparisons, the tidy table's factor columns, the report's factor columns and numeric-factor figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats as sps

from conftest import warm_cache

STUDY = """
[study]
name = "own"
description = "Hidden units x learning rate"
seeds = 2

[grid]
"student.hidden" = [8, 16]
train.lr = [0.001, 0.003]          # an unquoted dotted key is the same factor

[factor."student.hidden"]
label = "Hidden units"
abbreviations = { 8 = "H8", 16 = "H16" }

[[comparisons]]
factor = "student.hidden"
against = 16

[[comparisons]]
factor = "train.lr"
pairs = "all"
"""


def harness(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=900)
    if check:
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_corpus, tiny_stages):
    root = tmp_path_factory.mktemp("own_factors")
    warm_cache(tiny_stages, root)  # the prebuilt shared stages: the factors are what this is about
    (root / "own.toml").write_text(STUDY + f'\n[data]\nroot = "{tiny_corpus}"\n')
    common = ["--profile", "tiny", "--runs", str(root / "runs"), "--cache", str(root / "cache")]
    plan = harness("plan", str(root / "own.toml"), *common, cwd=root)
    run = harness("run", str(root / "own.toml"), *common, "--jobs", "2", "--reports", str(root / "reports"),
                  cwd=root)
    return root, common, plan, run


def test_grid_of_any_keys_names_variants_and_columns(study):
    root, common, plan, _ = study
    assert "student.hidden" in plan.stdout and "train.lr" in plan.stdout  # plan shows the factor columns
    table = pd.read_csv(root / "runs" / "own-tiny" / "results.csv")
    columns = list(table.columns)
    at = columns.index("augmentation")
    assert columns[at + 1: at + 3] == ["student.hidden", "train.lr"]  # right after the paper's four
    variants = {(r["variant"], r["student.hidden"], r["train.lr"]) for _, r in table.iterrows()}
    assert variants == {("H8+train.lr=0.001", 8, 0.001), ("H8+train.lr=0.003", 8, 0.003),
                        ("H16+train.lr=0.001", 16, 0.001), ("H16+train.lr=0.003", 16, 0.003)}
    assert len(table) == 8
    # the level really reached the job: its recorded config and its parameter count follow the factor
    for _, row in table.iterrows():
        job = json.loads((root / "runs" / "own-tiny" / "jobs" / row["job_id"] / "job.json").read_text())
        assert job["config"]["student"]["hidden"] == row["student.hidden"]
        assert job["config"]["train"]["lr"] == pytest.approx(row["train.lr"])
    params = table.groupby("student.hidden")["params"].unique()
    assert len(params[8]) == 1 and len(params[16]) == 1 and params[8][0] < params[16][0]


def test_generated_comparisons_join_table4_with_the_t_tests_of_scipy(study):
    root, _, _, _ = study
    record = json.loads((root / "runs" / "own-tiny" / "study.json").read_text())
    labels = [c["label"] for c in record["comparisons"]]
    assert labels == ["Hidden units 8 vs 16 (train.lr=0.001)", "Hidden units 8 vs 16 (train.lr=0.003)",
                      "train.lr 0.001 vs 0.003 (H8)", "train.lr 0.001 vs 0.003 (H16)"]
    table = pd.read_csv(root / "runs" / "own-tiny" / "results.csv")
    report = root / "reports" / "own-tiny"
    table4 = pd.read_csv(report / "tables" / "table4_test_f1.csv")
    assert list(table4["comparison"]) == labels  # one Holm family of the four generated comparisons
    checked = 0
    for _, row in table4.iterrows():
        a = table.loc[table["variant"] == row["a"], "test_f1"].to_numpy()
        b = table.loc[table["variant"] == row["b"], "test_f1"].to_numpy()
        expected = sps.ttest_ind(a, b)
        if pd.notna(row["t"]):
            assert row["t"] == pytest.approx(expected.statistic, rel=1e-4, abs=1e-4)
            assert row["p"] == pytest.approx(expected.pvalue, rel=1e-4, abs=1e-5)
            checked += 1
    assert checked >= 1


def test_report_shows_the_study_factors_and_a_figure_per_numeric_factor(study):
    root, _, _, _ = study
    report = root / "reports" / "own-tiny"
    variant_table = pd.read_csv(report / "tables" / "own.csv")  # the study's one table, named by the study
    assert "Hidden units" in variant_table.columns and "train.lr" in variant_table.columns
    assert "Curriculum" not in variant_table.columns  # a study that never varies it does not show it
    assert (report / "figures" / "factor_student_hidden.png").is_file()
    assert (report / "figures" / "factor_train_lr.png").is_file()
    text = (report / "report.md").read_text()
    assert "against Hidden units" in text


def test_a_rerun_runs_nothing_and_an_unknown_key_lists_the_valid_ones(study):
    root, common, _, _ = study
    again = harness("run", str(root / "own.toml"), *common, "--no-report", cwd=root)
    assert "(8 jobs: 0 ran, 8 kept from before, 0 failed)" in again.stdout, again.stdout
    bad = root / "bad.toml"
    bad.write_text(STUDY.replace('"student.hidden" = [8, 16]', '"student.hiden" = [8, 16]'))
    out = harness("run", str(bad), *common, cwd=root, check=False)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "student.hiden" in out.stderr and "hidden" in out.stderr and "layers" in out.stderr


@pytest.mark.parametrize("comparisons, expected", [
    ('[[comparisons]]\nfactor = "student.hidden"\nagainst = 32\n', "32 is not a level of 'student.hidden'"),
    ('[[comparisons]]\nfactor = "student.layers"\nagainst = 3\n', "not a factor of this study's variants"),
    ('[[comparisons]]\nfactor = "train.lr"\n', "give either against = LEVEL"),
])
def test_bad_generated_comparisons_name_the_key(tmp_path, comparisons, expected):
    from harness.errors import ConfigError
    from harness.study.spec import load_study

    head = STUDY.split("[[comparisons]]")[0]
    path = tmp_path / "s.toml"
    path.write_text(head + comparisons)
    with pytest.raises(ConfigError) as error:
        load_study(path)
    assert expected in str(error.value) and "s.toml: comparisons[0]" in str(error.value)
