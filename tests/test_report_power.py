"""harness.report.power: seed planning from a pilot, by hand, and its table."""

import numpy as np
import pandas as pd
import pytest

from harness.report import power, stats, tables

A = np.array([41.0, 40.5, 40.9])
B = np.array([40.1, 40.6, 39.8])
C = np.array([30.1, 31.6, 29.8])


def pilot():
    return [power.PilotComparison("A vs B", "A", "B", A, B), power.PilotComparison("A vs C", "A", "C", A, C),
            power.PilotComparison("B vs B'", "B", "B2", B, B.copy())]


def test_plan_by_hand():
    plan = power.plan_seeds(pilot(), {"A": 200.0, "B": 100.0, "C": 50.0, "B2": None})
    ab, ac, bb = plan.comparisons
    g = stats.hedges_g(A, B)
    assert ab.effect == pytest.approx(g) and not ab.paired
    assert ab.seeds_per_arm == tuple(stats.seeds_for_power(g, al) for al in (0.2, 0.05, 0.01)) == (5, 9, 13)
    assert ab.extra_runs == (4, 12, 20)  # (n - 3) on each arm
    assert ab.extra_seconds == pytest.approx(((5 - 3) * 300.0, (9 - 3) * 300.0, (13 - 3) * 300.0))
    assert ac.seeds_per_arm[1] == 2 and ac.extra_runs == (0, 0, 0) and ac.extra_seconds == (0.0, 0.0, 0.0)
    assert bb.effect == 0.0 and bb.seeds_per_arm == (None, None, None) and "no difference" in bb.reason
    assert plan.unplanned == ("B vs B'",)
    by_name = {v.name: v for v in plan.variants}
    assert by_name["A"].seeds_per_arm == (5, 9, 13)  # the most its comparisons need
    assert by_name["C"].seeds_per_arm == (2, 2, 3) and by_name["C"].extra_seconds == (0.0, 0.0, 0.0)
    assert by_name["B2"].seeds_per_arm == (None, None, None)
    # Each variant once: A and B to 9 at alpha 0.05 -> 6 + 6 runs, 6 x 200 + 6 x 100 seconds.
    assert plan.extra_runs[1] == 12 and plan.extra_seconds[1] == pytest.approx(1800.0)


def test_unknown_job_time_and_unplannable():
    plan = power.plan_seeds([power.PilotComparison("A vs B", "A", "B", A, B)], {"A": 200.0})
    assert plan.comparisons[0].extra_seconds == (None, None, None)
    assert plan.extra_seconds == (None, None, None)
    one = power.plan_seeds([power.PilotComparison("A vs B", "A", "B", A[:1], B)], {})
    assert one.comparisons[0].effect is None and "fewer than 2" in one.comparisons[0].reason


def test_paired_plan_uses_d_z():
    shared = np.array([40.0, 41.0, 39.0, 40.5])
    a, b = shared + np.array([0.5, 0.7, 0.4, 0.6]), shared
    plan = power.plan_seeds([power.PilotComparison("a vs b", "a", "b", a, b)], {}, paired=True)
    row = plan.comparisons[0]
    d_z = (a - b).mean() / (a - b).std(ddof=1)
    assert row.paired and row.effect == pytest.approx(d_z)
    assert row.seeds_per_arm[1] == stats.seeds_for_power_paired(d_z)
    assert row.correlation == pytest.approx(np.corrcoef(a, b)[0, 1])


def test_seeds_from_summary_matches_the_table4_column():
    sa, sb = stats.Summary(40.7, 0.6, 10), stats.Summary(40.3, 0.7, 10)
    row = stats.compare_summary(sa, sb)
    assert power.seeds_from_summary(sa, sb) == row.seeds_for_power_by_alpha == (27, 47, 70)


def test_plan_from_results_and_text():
    rows = []
    for variant, scores, secs in (("A", A, 200.0), ("B", B, 100.0)):
        for seed, x in enumerate(scores):
            rows.append({"variant": variant, "seed": seed, "val_f1": x, "wall_seconds": secs})
    results = pd.DataFrame(rows)
    plan = tables.seed_plan_from_results(results, [{"label": "A vs B", "a": "A", "b": "B"}])
    assert plan.comparisons[0].seeds_per_arm == (5, 9, 13)
    assert plan.extra_seconds[1] == pytest.approx(6 * 200.0 + 6 * 100.0)
    text = tables.seed_plan_text(plan)
    assert "| A vs B | 3 / 3 | 1.48 | 5 | 4, 10 min | 9 | 12, 30 min | 13 | 20, 50 min |" in text
    assert "| Study (each variant once) |" in text
    assert tables.fmt_duration(5300) == "88 min" and tables.fmt_duration(5400) == "1.5 h" and tables.fmt_duration(3 * 86400) == "3.0 days"
