"""A study of both students through the CLI: the LSTM as before (same job ids), the CRNN beside it by
`set = { "student.model" = "crnn" }`, its size in results.csv, a report, and a second run that reruns nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from conftest import warm_cache
from harness.config import CRNNConfig, StudentConfig
from harness.model.crnn import crnn_size
from harness.model.size import lstm_size

LSTM = '[[variant]]\nname = "LSTM"\n'
CRNN = '[[variant]]\nname = "CRNN"\nset = { "student.model" = "crnn" }\n'
COMPARISON = '[[comparison]]\na = "CRNN"\nb = "LSTM"\n'


def harness(*args, cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, f"harness {' '.join(map(str, args))}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


def run(root: Path, body: str) -> subprocess.CompletedProcess:
    head = f'[study]\nname = "students"\nseeds = [0]\n\n[data]\nroot = "{root / "corpus"}"\n\n'
    (root / "students.toml").write_text(head + body)
    return harness("run", root / "students.toml", "--profile", "tiny", "--runs", root / "runs", "--cache",
                   root / "cache", "--no-report", "--backend", "inprocess", "--jobs", "1", cwd=root)


def test_a_study_of_the_lstm_and_the_crnn(tmp_path, tiny_corpus, tiny_stages):
    (tmp_path / "corpus").symlink_to(tiny_corpus)
    warm_cache(tiny_stages, tmp_path)
    results = tmp_path / "runs" / "students-tiny" / "results.csv"

    run(tmp_path, LSTM)  # the study before it had a CRNN
    lstm_alone = pd.read_csv(results).set_index("variant")

    out = run(tmp_path, LSTM + CRNN + COMPARISON)
    assert "1 of 2 already finished" in out.stdout and "running 1 on the" in out.stdout  # the LSTM is kept
    table = pd.read_csv(results).set_index("variant")
    assert table.loc["LSTM", "job_id"] == lstm_alone.loc["LSTM", "job_id"]
    assert table.loc["CRNN", "job_id"] != table.loc["LSTM", "job_id"]
    # tiny profile: 20 mel bins, 500 frames of 20 ms, 10 classes; its LSTM has h = 16, the CRNN its defaults
    crnn = crnn_size(CRNNConfig(), 20, 10, 500)
    assert (table.loc["CRNN", "params"], table.loc["CRNN", "macs_per_clip"]) == (crnn.params, crnn.macs_per_clip)
    lstm = lstm_size(StudentConfig(hidden=16), 20, 10, 500)
    assert (table.loc["LSTM", "params"], table.loc["LSTM", "macs_per_clip"]) == (lstm.params, lstm.macs_per_clip)
    for split in ("val_f1", "test_f1"):
        assert 0 <= table.loc["CRNN", split] <= 100

    again = run(tmp_path, LSTM + CRNN + COMPARISON)
    assert "2 of 2 already finished" in again.stdout and "running" not in again.stdout

    harness("report", tmp_path / "runs" / "students-tiny", "--out", tmp_path / "report", cwd=tmp_path)
    report = (tmp_path / "report" / "report.md").read_text()
    assert "CRNN vs LSTM" in report

    # The same two students as a grid factor: the same variants and jobs (nothing reruns), a factor column, and
    # the comparison generated from the grid.
    grid = ('[grid]\n"student.model" = ["lstm", "crnn"]\n\n[factor."student.model"]\nlabel = "Student"\n'
            'abbreviations = { lstm = "LSTM", crnn = "CRNN" }\n\n'
            '[[comparisons]]\nfactor = "student.model"\nagainst = "lstm"\n')
    as_grid = run(tmp_path, grid)
    assert "2 of 2 already finished" in as_grid.stdout and "running" not in as_grid.stdout
    by_grid = pd.read_csv(results).set_index("variant")
    assert by_grid.loc[["LSTM", "CRNN"], "job_id"].tolist() == table.loc[["LSTM", "CRNN"], "job_id"].tolist()
    assert by_grid.loc[["LSTM", "CRNN"], "student.model"].tolist() == ["lstm", "crnn"]
    harness("report", tmp_path / "runs" / "students-tiny", "--out", tmp_path / "report-grid", cwd=tmp_path)
    assert "Student crnn vs lstm" in (tmp_path / "report-grid" / "report.md").read_text()
