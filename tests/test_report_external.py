"""`python -m harness report --results FILE.csv`: the report of runs made elsewhere, through the command line.

The t-tests are checked against scipy on the same numbers; malformed files must be named with their line and
column, exit 2 and print no traceback.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

SCORES = {  # variant -> (factor level, val_f1 of seeds 1-5, test_f1 of seeds 1-5)
    "EM": ("event", [40.1, 40.9, 41.3, 39.8, 40.6], [38.2, 38.0, 39.1, 37.5, 38.8]),
    "SM": ("segment", [39.6, 40.4, 40.0, 39.1, 40.8], [37.9, 37.2, 38.4, 37.7, 38.1]),
    "NM": ("none", [39.0, 39.7, 40.2, 38.8, 39.5], [37.1, 37.9, 37.0, 36.4, 37.6]),
}


def _write_csv(path: Path, variants: dict = SCORES) -> Path:
    lines = ["variant,seed,val_f1,test_f1,masking,accuracy"]
    for name, (level, val, test) in variants.items():
        lines += [f"{name},{s + 1},{v},{t},{level},{(v + t) / 200:.4f}" for s, (v, t) in enumerate(zip(val, test))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _report(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "report", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _table4(folder: Path, stem: str) -> pd.DataFrame:
    return pd.read_csv(folder / "tables" / f"{stem}.csv").set_index("comparison")


def test_t_tests_are_scipys_on_the_same_numbers_and_the_folder_holds_the_report(tmp_path):
    results = _write_csv(tmp_path / "runs.csv")
    done = _report(tmp_path, "--results", "runs.csv", "--out", "rep")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "rep"
    for column, at in (("val_f1", 1), ("test_f1", 2)):
        table = _table4(folder, f"table4_{column}")
        assert list(table.index) == ["EM vs SM", "EM vs NM", "SM vs NM"]  # every pair, in file order
        for label, row in table.iterrows():
            a, b = SCORES[row["a"]][at], SCORES[row["b"]][at]
            expected = sps.ttest_ind(a, b)  # the report's default: Student's pooled t, seeds unpaired
            assert row["t"] == pytest.approx(expected.statistic, rel=1e-5), label
            assert row["p"] == pytest.approx(expected.pvalue, rel=1e-5), label
            assert row["df"] == 8 and row["paired"] == "N"
    for name in ("report.md", "report.html", "tables/table_1.csv", "tables/table_1.tex", "tables/table4_val_f1.md",
                 "tables/table4_val_f1_beyond.csv", "tables/sequential.csv", "figures/f1_distribution.png",
                 "figures/forest.png", "figures/sequential_paths.png"):
        assert (folder / name).is_file(), name
    assert not (folder / "figures" / "learning_curves.png").exists()
    variants = pd.read_csv(folder / "tables" / "table_1.csv").set_index("Experiment")
    assert variants.loc["EM", "val_f1_mean"] == pytest.approx(np.mean(SCORES["EM"][1]), rel=1e-5)
    text = (folder / "report.md").read_text(encoding="utf-8")
    assert hashlib.sha256(results.read_bytes()).hexdigest() in text and "not runs of this harness" in text
    assert "metric val_f1, test_f1; factors masking" in text and "Not used: accuracy" in text


def test_welch_and_a_custom_metric_column(tmp_path):
    _write_csv(tmp_path / "runs.csv")
    done = _report(tmp_path, "--results", "runs.csv", "--metric", "accuracy", "--test", "welch", "--out", "acc")
    assert done.returncode == 0, done.stderr
    table = _table4(tmp_path / "acc", "table4_accuracy")
    accuracy = pd.read_csv(tmp_path / "runs.csv").groupby("variant")["accuracy"]
    row = table.loc["EM vs NM"]
    expected = sps.ttest_ind(accuracy.get_group("EM"), accuracy.get_group("NM"), equal_var=False)
    assert row["t"] == pytest.approx(expected.statistic, rel=1e-5)
    assert row["p"] == pytest.approx(expected.pvalue, rel=1e-5)
    assert (tmp_path / "acc" / "figures" / "accuracy_distribution.png").is_file()
    assert "# Results from runs.csv: accuracy" in (tmp_path / "acc" / "report.md").read_text(encoding="utf-8")


def test_a_study_file_gives_the_comparisons_tables_and_pairing(tmp_path):
    _write_csv(tmp_path / "runs.csv")
    (tmp_path / "study.toml").write_text(
        '[study]\nname = "masks"\npaired = true\n'
        + "".join(f'[[variant]]\nname = "{n}"\nmasking = "{level}"\n' for n, (level, _, _) in SCORES.items())
        + '[[table]]\nname = "Masking"\nvariants = ["EM", "NM"]\n'
        + '[[comparison]]\nlabel = "Event vs none"\na = "EM"\nb = "NM"\n', encoding="utf-8")
    done = _report(tmp_path, "--results", "runs.csv", "--study", "study.toml", "--out", "rep")
    assert done.returncode == 0, done.stderr
    row = _table4(tmp_path / "rep", "table4_val_f1").loc["Event vs none"]
    expected = sps.ttest_rel(SCORES["EM"][1], SCORES["NM"][1])  # seed s of a against seed s of b
    assert row["t"] == pytest.approx(expected.statistic, rel=1e-5) and row["df"] == 4
    assert row["p"] == pytest.approx(expected.pvalue, rel=1e-5)
    assert (tmp_path / "rep" / "tables" / "masking.csv").is_file()

    study = (tmp_path / "study.toml").read_text(encoding="utf-8")
    (tmp_path / "study.toml").write_text(study.replace('"NM"', '"XM"'), encoding="utf-8")  # not in runs.csv
    done = _report(tmp_path, "--results", "runs.csv", "--study", "study.toml", "--out", "rep2")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "study.toml: comparison 'Event vs none' names variant 'XM', which has no runs in runs.csv" in done.stderr


def test_a_variant_with_one_run_is_reported_and_said_so(tmp_path):
    path = _write_csv(tmp_path / "runs.csv")
    path.write_text(path.read_text() + "ONE,1,41.0,38.0,none,0.4\n", encoding="utf-8")
    done = _report(tmp_path, "--results", "runs.csv", "--out", "rep")
    assert done.returncode == 0, done.stderr
    assert "One run only (no sd; their comparisons are not testable): ONE (line 17)" in (
        tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    table = _table4(tmp_path / "rep", "table4_val_f1")
    assert table.loc["EM vs ONE", "testable"] == "N"


def test_per_class_columns_give_the_heatmap(tmp_path):
    rows = ["variant,seed,val_f1,val_f1_Speech,val_f1_Dog"]
    rows += [f"{v},{s},{40 + s},{50 + s},{30 - s}" for v in ("A", "B") for s in (1, 2, 3)]
    (tmp_path / "runs.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    done = _report(tmp_path, "--results", "runs.csv", "--out", "rep")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "rep" / "figures" / "per_class_validation.png").is_file()


BAD_FILES = [  # (file's text, what the message names)
    ("", ["runs.csv: empty"]),
    ("variant,val_f1\nA,40\n", ["runs.csv: line 1: no column 'seed'"]),
    ("seed,val_f1\n1,40\n", ["runs.csv: line 1: no column 'variant'"]),
    ("variant;seed;val_f1\nA;1;40\n", ["line 1: no column 'variant'", "';'-separated"]),
    ("variant,seed,val_f1\nA,1,40\nA,2,4O.1\n", ["runs.csv: line 3, column 'val_f1': '4O.1' is not a number"]),
    ("variant,seed,val_f1\nA,1,40\nB,1,39\nA,1,41\n", ["runs.csv: line 4, columns 'variant' and 'seed'",
                                                      "already on line 2"]),
    ("variant,seed,val_f1,masking\nA,1,40,event\nA,2,41,none\n", ["runs.csv: line 3, column 'masking'",
                                                                  "variant 'A'", "on line 2"]),
    ("variant,seed,val_f1\nA,one,40\n", ["runs.csv: line 2, column 'seed': 'one' is not an integer"]),
    ("variant,seed,val_f1\nA,1,40\nA,2\n", ["runs.csv: line 3: 2 fields, but the header (line 1) has 3"]),
    ("variant,seed,val_f1\n", ["runs.csv: no runs, only the header (line 1)"]),
    ("variant,seed,acc\nA,1,0.4\nA,2,0.5\n", ["--metric 'f1': not a metric column of runs.csv", "acc"]),
]


@pytest.mark.parametrize("text, expected", BAD_FILES, ids=[e[0] for _, e in BAD_FILES])
def test_a_malformed_file_is_named_with_its_line_and_column(tmp_path, text, expected):
    (tmp_path / "runs.csv").write_text(text, encoding="utf-8")
    done = _report(tmp_path, "--results", "runs.csv", "--out", "rep")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for words in expected:
        assert words in done.stderr


def test_not_a_csv(tmp_path):
    (tmp_path / "runs.csv").write_bytes(bytes(range(256)) * 4)
    done = _report(tmp_path, "--results", "runs.csv", "--out", "rep")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "runs.csv: not UTF-8 text; expected a CSV" in done.stderr
