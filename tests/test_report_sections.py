"""The report's sections beyond Table 4 (harness.report.sections, tables), from a results table."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.report import sections, tables

OFFSETS = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
JITTER = np.array([0.1, -0.2, 0.15, 0.0, -0.05])
VAL = {"A": 40.0 + OFFSETS, "B": 35.0 + 0.5 * OFFSETS[::-1], "C": 39.5 + OFFSETS + JITTER}
STUDY = {"comparisons": [{"label": "A vs B", "a": "A", "b": "B"},
                         {"label": "A vs C", "a": "A", "b": "C", "rope": 1.0}]}


def results(val=VAL, drop=None):
    rows = [{"variant": v, "seed": s, "val_f1": x, "test_f1": x + 1, "wall_seconds": 10.0}
            for v, xs in val.items() for s, x in enumerate(xs) if (v, s) != drop]
    return pd.DataFrame(rows)


def test_compare_variants_rope_and_pairing():
    rows = tables.compare_variants(results(), STUDY, rng=np.random.default_rng(0))
    assert [r.rope for r in rows] == [0.5, 1.0]
    assert all(r.pi_low is not None and r.aso_a is not None for r in rows)
    again = tables.compare_variants(results(), STUDY, rng=np.random.default_rng(0))
    assert rows == again
    paired = tables.compare_variants(results(drop=("C", 4)), {**STUDY, "paired": True})
    a_vs_c = paired[1]
    assert a_vs_c.paired and a_vs_c.summary_a.n == 4  # seed 4 of C failed: its pair is left out
    ref = sps.ttest_rel(VAL["A"][:4], VAL["C"][:4])
    assert a_vs_c.t == pytest.approx(ref.statistic) and a_vs_c.correlation == pytest.approx(
        np.corrcoef(VAL["A"][:4], VAL["C"][:4])[0, 1])
    assert paired[0].correlation == pytest.approx(-1.0)  # B's offsets run the other way


def test_beyond_and_sequential_sections(tmp_path):
    rows = tables.compare_variants(results(), STUDY, rng=np.random.default_rng(1))
    blocks = sections.beyond_blocks(tmp_path, rows, "val_f1")
    table = blocks[0].table
    assert list(table.columns) == ["Comparison", "P(A > B) [95 % CI]", "Δ mean [95 % bootstrap CI]",
                                   "ASO ε(A≻B) / ε(B≻A)", "ROPE ± (points)", "P(A better) / P(equiv.) / P(B better)",
                                   "Seeds/arm for 80 % power at α = 0.2 / 0.05 / 0.01"]
    assert table.iloc[0]["P(A > B) [95 % CI]"].startswith("1.00 [")
    csv = pd.read_csv(tmp_path / "tables" / "table4_val_f1_beyond.csv")
    assert {"prob_improvement", "pi_low", "aso_a", "p_equivalent", "seeds_for_80_power_0.01"} <= set(csv.columns)
    test_rows = tables.compare_variants(results(), STUDY, "test_f1")
    (forest,) = sections.forest_blocks(tmp_path, {"val_f1": rows, "test_f1": test_rows})
    assert forest.path.as_posix() == "figures/forest.png" and (tmp_path / "figures" / "forest.png").stat().st_size > 0
    seq_blocks = sections.sequential_blocks(tmp_path, results(), STUDY, seed=0)
    assert seq_blocks[0].text.startswith("Sequential seeds in retrospect (looks at 3, 5 seeds per arm)")
    decisions = seq_blocks[1].table.set_index("Comparison")
    assert decisions.loc["A vs B", "Decision"] == "significant (A > B)"
    assert decisions.loc["A vs C", "Decision"] == "not significant"
    assert "Kim-DeMets" in seq_blocks[2].text and "Holm over the 2 comparisons" in seq_blocks[2].text
    assert (tmp_path / "figures" / "sequential_paths.png").stat().st_size > 0
    # A study run with --until-decided states its design; too few seeds: no section.
    declared = sections.sequential_blocks(tmp_path, results(), {**STUDY, "sequential": {"looks": [2, 5],
                                                                                         "family": "none"}})
    assert declared[0].text == "Sequential seeds (--until-decided)" and "each comparison at α = 0.05" in declared[2].text
    two = results({k: v[:2] for k, v in VAL.items()})
    assert sections.sequential_blocks(tmp_path, two, STUDY) == []


def test_retrospective_looks():
    assert sections.retrospective_looks(10) == (3, 5, 10)
    assert sections.retrospective_looks(3) == (2, 3)
    assert sections.retrospective_looks(12) == (3, 5, 10, 12)
