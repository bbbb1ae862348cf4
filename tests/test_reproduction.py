"""docs/reproduction.md: the paper's Table 4 against the demo's reports (harness.report.reproduction)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import DataError
from harness.report import reproduction as rp

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_HEADER = "comparison,a,b,t,significant_0.2,significant_0.05,significant_0.01,published_t,published_decisions"

# label, a, b, published t, decisions at 0.2/0.05/0.01 (the paper's own Y/N)
PUBLISHED = [
    ("same way and significant", "A", "B", "3.000", "YYN"),
    ("reversed", "A", "C", "4.000", "YYY"),
    ("too weak", "B", "C", "2.500", "YYY"),
    ("null kept", "A", "D", "1.000", "YNN"),
    ("null broken", "B", "D", "0.500", "NNN"),
    ("short budget", "C", "E", "6.000", "YYY"),
    ("read backwards", "C", "D", "2.000", "YYY"),
    ("never run", "A", "E", "2.000", "YYY"),
    ("Strong + weak vs weak", "EF+SW+EM+CS", "EF+W+EM+CS", "41.954", "YYY"),
]
# report folder -> rows (label, a, b, t, p, p_holm); Holm p as the report would hold it
RUNS = {
    "table1-quick": [
        ("s", "A", "B", "2.5", "0.005", "0.01"),
        ("r", "A", "C", "-3", "0.01", "0.02"),
        ("w", "B", "C", "1.0", "0.2", "0.4"),
        ("n", "A", "D", "-1", "0.15", "0.3"),
        ("b", "B", "D", "5", "0.0005", "0.001"),
        ("u", "C", "E", "4", "0.1", "0.3"),
    ],
    "table2-quick": [
        ("backwards", "D", "C", "-4", "0.0005", "0.001"),
        ("pl", "EF+SW+EM+CS", "EF+W+EM+CS", "-2.07", "0.107", "0.176"),
    ],
}
CONVERGED = {"A": (3, 3), "B": (3, 3), "C": (3, 3), "D": (3, 3), "E": (1, 3), "EF+SW+EM+CS": (3, 3),
             "EF+W+EM+CS": (3, 3)}  # variant: (converged, n)

# By hand, from the rule of docs/reproduction.md (label: quick verdict cell).
EXPECTED = {
    "same way and significant": "yes",
    "reversed": "no: opposite direction",
    "too weak": "no: not significant",
    "null kept": "yes (both n.s.)",
    "null broken": "no: significant",
    "short budget": "no: budget (not significant)",  # E: 1 of 3 runs converged
    "read backwards": "yes",  # (D, C) at t = -4 is (C, D) at t = +4
    "never run": "not run",
    "Strong + weak vs weak": "no: opposite direction[^pseudolabels]",
}


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _reports(tmp_path: Path) -> Path:
    reports = tmp_path / "reports"
    _write(reports / "paper-published" / "tables" / "table4_summary.csv",
           [PUBLISHED_HEADER] + [f"{lab},{a},{b},9,Y,Y,Y,{t},{d}" for lab, a, b, t, d in PUBLISHED])
    for name, rows in RUNS.items():
        _write(reports / name / "tables" / "table4_val_f1.csv",
               ["comparison,a,b,t,p,p_holm"] + [",".join(r) for r in rows])
        variants = sorted({v for r in rows for v in r[1:3]})
        _write(reports / name / "tables" / "convergence.csv",
               ["Experiment,n,converged"] + [f"{v},{CONVERGED[v][1]},{CONVERGED[v][0]}" for v in variants])
    return reports


def _row_cells(page: str, label: str) -> list[str]:
    line = next(x for x in page.splitlines() if x.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_verdicts_and_reasons_follow_the_rule(tmp_path):
    reports = _reports(tmp_path)
    out = tmp_path / "docs" / "reproduction.md"
    out.parent.mkdir()
    assert main(["reproduce-table", "--reports", str(reports), "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    for label, expected in EXPECTED.items():
        cells = _row_cells(page, label)
        assert cells[11] == expected, label  # the quick profile's "reproduces?"
        assert cells[-1] == "not run", label  # no quick-long report at all
    reversed_cells = _row_cells(page, "read backwards")
    assert reversed_cells[6:9] == [">", "4.00", "5.0e-04"]  # flipped to the published order; p unchanged
    assert _row_cells(page, "short budget")[10] == "no (3/3, 1/3)"
    assert "table1-quick-long, table2-quick-long, table3-quick-long: not run" in page
    assert "(docs/teacher-strength.md) has not been run" in page


def test_pseudolabel_note_links_the_study_once_it_exists(tmp_path):
    reports = _reports(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "teacher-strength.md").write_text("# study\n", encoding="utf-8")
    page = rp.render(reports, tmp_path / "docs")
    assert "[teacher-strength.md](teacher-strength.md), measures" in page and "not been run" not in page


def test_a_pair_in_two_reports_of_one_profile_is_an_error(tmp_path):
    reports = _reports(tmp_path)
    _write(reports / "table3-quick" / "tables" / "table4_val_f1.csv", ["comparison,a,b,t,p,p_holm", "x,B,A,1,0.3,0.3"])
    _write(reports / "table3-quick" / "tables" / "convergence.csv", ["Experiment,n,converged", "A,3,3", "B,3,3"])
    with pytest.raises(DataError, match="B vs A is compared in both table1-quick and table3-quick"):
        rp.render(reports, tmp_path / "docs")


def test_committed_page_is_what_the_command_writes():
    done = subprocess.run([sys.executable, "-m", "harness", "reproduce-table"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    committed = (ROOT / "docs" / "reproduction.md").read_text(encoding="utf-8")
    assert done.stdout == committed, f"docs/reproduction.md is stale: run `{rp.REGENERATE}` from the repository root"
