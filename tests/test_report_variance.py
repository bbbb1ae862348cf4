"""harness.report.variance: variance components of seed streams, by hand, by simulation, against MixedLM."""

import itertools

import numpy as np
import pandas as pd
import pytest

from harness.errors import HarnessError
from harness.report.variance import DesignError, reading, variance_components


def crossed_runs(rng, levels, sigma2, r=1):
    """One run per cell (r per cell) of a crossed design with known components (metric = 'f1')."""
    frame = pd.DataFrame(list(itertools.product(*[range(a) for a in levels.values()])) * r, columns=list(levels))
    y = 40 + rng.normal(0, np.sqrt(sigma2["residual"]), len(frame))
    for f, a in levels.items():
        y += rng.normal(0, np.sqrt(sigma2[f]), a)[frame[f].to_numpy()]
    return frame.assign(f1=y)


def nested_runs(rng, teachers, orders, r, sigma2):
    """Orders nested in teachers, r runs per (teacher, order)."""
    frame = pd.DataFrame([(t, o) for t in range(teachers) for o in range(orders) for _ in range(r)],
                         columns=["teacher", "order"])
    t = rng.normal(0, np.sqrt(sigma2["teacher"]), teachers)
    o = rng.normal(0, np.sqrt(sigma2["order"]), (teachers, orders))
    e = rng.normal(0, np.sqrt(sigma2["residual"]), len(frame))
    return frame.assign(f1=40 + t[frame.teacher] + o[frame.teacher, frame.order] + e)


def grid(rows):
    """A 2-factor crossed table: rows are init levels, columns order levels, one run each."""
    return pd.DataFrame([(i, j, v) for i, row in enumerate(rows) for j, v in enumerate(row)],
                        columns=["init", "order", "f1"])


def by_name(result):
    return {c.name: c for c in result.components}


def test_crossed_by_hand_expected_mean_squares():
    # y = [[2, 4, 9], [4, 4, 10]]: row means 5, 6; column means 3, 4, 9.5; grand mean 5.5.
    # MS_init = 3 (0.5^2 + 0.5^2) / 1 = 1.5; MS_order = 2 (2.5^2 + 1.5^2 + 4^2) / 2 = 24.5;
    # residuals y - row - column + grand = [-.5, .5, 0, .5, -.5, 0] -> MS_res = 1 / 2 = 0.5.
    # E[MS_init] = s2_e + 3 s2_init, E[MS_order] = s2_e + 2 s2_order, E[MS_res] = s2_e.
    res = variance_components(grid([[2, 4, 9], [4, 4, 10]]), ["init", "order"], "f1", np.random.default_rng(0))
    c = by_name(res)
    assert c["init"].variance == pytest.approx((1.5 - 0.5) / 3)
    assert c["order"].variance == pytest.approx((24.5 - 0.5) / 2)
    assert c["residual"].variance == pytest.approx(0.5)
    assert res.total == pytest.approx(1 / 3 + 12 + 0.5)
    assert c["order"].share == pytest.approx(12 / (1 / 3 + 12.5))
    assert (c["init"].df, c["order"].df, c["residual"].df) == (1, 2, 2)
    assert (c["init"].levels, c["order"].levels, c["residual"].levels) == (2, 3, 6)
    assert res.mean == 5.5 and res.n_runs == 6 and res.runs_per_cell == 1
    assert "interaction" in c["residual"].note


def test_negative_estimate_is_truncated_and_reported():
    # Row means equal (3, 3): MS_init = 0 < MS_res = 0.5, so s2_init = -0.5 / 3 -> reported as 0.
    res = variance_components(grid([[1, 5, 3], [2, 4, 3]]), ["init", "order"], "f1", np.random.default_rng(0))
    c = by_name(res)
    assert c["init"].estimate == pytest.approx(-1 / 6) and c["init"].variance == 0.0 and c["init"].truncated
    assert c["init"].share == 0.0 and c["init"].low == 0.0
    assert c["order"].variance == pytest.approx(2.0) and c["order"].share == pytest.approx(0.8)
    assert not c["order"].truncated and c["residual"].share == pytest.approx(0.2)
    text = reading(res)
    assert text.startswith("Most of the spread between runs comes from the batch order (80 %")
    assert "No spread was detected from the weight initialisation" in text and "reported as 0" in text


def test_nested_by_hand_expected_mean_squares():
    # teacher 0: order 0 -> [1, 3], order 1 -> [5, 7]; teacher 1: order 0 -> [6, 8], order 1 -> [10, 8].
    # cell means 2, 6, 7, 9; teacher means 4, 8; grand 6.
    # MS_teacher = 4 (2^2 + 2^2) / 1 = 32; MS_order(teacher) = 2 (4 + 4 + 1 + 1) / 2 = 10; MS_res = 8 / 4 = 2.
    # E[MS_teacher] = s2_e + 2 s2_order + 4 s2_teacher, E[MS_order] = s2_e + 2 s2_order, E[MS_res] = s2_e.
    runs = pd.DataFrame({"teacher": [0] * 4 + [1] * 4, "order": [0, 0, 1, 1] * 2,
                         "f1": [1, 3, 5, 7, 6, 8, 10, 8]})
    res = variance_components(runs, ["teacher", "order"], "f1", np.random.default_rng(0), design="nested")
    c = by_name(res)
    assert c["teacher"].variance == pytest.approx((32 - 10) / 4)
    assert c["order"].variance == pytest.approx((10 - 2) / 2)
    assert c["residual"].variance == pytest.approx(2.0)
    assert (c["teacher"].df, c["order"].df, c["residual"].df) == (1, 2, 4)
    assert (c["teacher"].levels, c["order"].levels) == (2, 4)
    # Order ids told apart by their teacher: globally unique ids give the same decomposition.
    unique = variance_components(runs.assign(order=[0, 0, 1, 1, 2, 2, 3, 3]), ["teacher", "order"], "f1",
                                 np.random.default_rng(0), design="nested")
    assert [x.variance for x in unique.components] == pytest.approx([x.variance for x in res.components])


def test_nested_one_run_per_cell_folds_the_residual_into_the_inner_stream():
    runs = nested_runs(np.random.default_rng(3), 4, 3, 1, {"teacher": 1.0, "order": 1.0, "residual": 0.0})
    res = variance_components(runs, ["teacher", "order"], "f1", np.random.default_rng(0), design="nested")
    assert [c.name for c in res.components] == ["teacher", "order"]
    assert "includes the residual" in res.components[1].note and res.components[1].df == 8
    assert "includes the residual" in reading(res)


def test_shares_sum_to_one_intervals_contain_estimates_and_seed_reproduces():
    rng = np.random.default_rng(11)
    for _ in range(20):
        runs = crossed_runs(rng, {"init": 3, "order": 3, "teacher": 2},
                            {"init": 1.0, "order": 2.0, "teacher": 0.5, "residual": 0.5})
        res = variance_components(runs, ["init", "order", "teacher"], "f1", np.random.default_rng(1), draws=2000)
        assert sum(c.share for c in res.components) == pytest.approx(1.0)
        for c in res.components:
            assert 0 <= c.low <= c.high and 0 <= c.share_low <= c.share_high <= 1
            assert c.low <= c.variance <= c.high or c.truncated
    again = variance_components(runs, ["init", "order", "teacher"], "f1", np.random.default_rng(1), draws=2000)
    assert again == res  # same generator seed, same numbers (frozen dataclasses compare by value)
    mapping = {k: runs[k].to_numpy() for k in runs.columns}  # arrays instead of a DataFrame
    assert variance_components(mapping, ["init", "order", "teacher"], "f1", np.random.default_rng(1),
                               draws=2000) == res


DESIGNS = [
    # (design, factors, make runs, true components): crossed with interactions pooled, and nested.
    ("crossed", ["init", "order", "teacher"],
     lambda rng, s: crossed_runs(rng, {"init": 3, "order": 3, "teacher": 2}, s),
     {"init": 1.0, "order": 2.0, "teacher": 0.5, "residual": 0.5}),
    ("crossed", ["init", "order"], lambda rng, s: crossed_runs(rng, {"init": 4, "order": 4}, s, r=2),
     {"init": 0.3, "order": 1.0, "residual": 1.0}),
    ("nested", ["teacher", "order"], lambda rng, s: nested_runs(rng, 3, 3, 2, s),
     {"teacher": 1.0, "order": 0.5, "residual": 1.0}),
]


@pytest.mark.parametrize("design,factors,make,truth", DESIGNS)
def test_intervals_cover_known_components_at_the_nominal_rate(design, factors, make, truth):
    # 300 simulated studies per design; 95 % intervals. Binomial sd of a coverage at 0.95 over 300 is
    # 0.013, so a method that covers at 0.95 falls outside [0.88, 0.99] with probability < 1e-3 per component
    # (the generator is seeded: the test is deterministic).
    rng = np.random.default_rng(2024)
    total = sum(truth.values())
    hits, share_hits, estimates = {k: 0 for k in truth}, {k: 0 for k in truth}, {k: [] for k in truth}
    studies = 300
    for _ in range(studies):
        res = variance_components(make(rng, truth), factors, "f1", rng, design=design, draws=1000)
        for c in res.components:
            hits[c.name] += c.low <= truth[c.name] <= c.high
            share_hits[c.name] += c.share_low <= truth[c.name] / total <= c.share_high
            estimates[c.name].append(c.estimate)
    for name in truth:
        assert 0.88 <= hits[name] / studies <= 0.99, (name, hits[name] / studies)
        assert 0.88 <= share_hits[name] / studies <= 0.99, (name, share_hits[name] / studies)
        # The untruncated moment estimators are unbiased: mean within 4 standard errors of the truth.
        e = np.array(estimates[name])
        assert abs(e.mean() - truth[name]) < 4 * e.std(ddof=1) / np.sqrt(studies), name


def test_agrees_with_statsmodels_mixedlm_reml():
    # In a balanced design the REML estimates equal the ANOVA (expected-mean-square) ones whenever the latter
    # are all positive: the restricted likelihood factors into independent chi-square terms, one per mean
    # square, each maximised at E[MS_j] = MS_j. The only difference is the optimiser's convergence, so a
    # relative tolerance of 1e-3 (the fit reaches ~1e-5 here) is generous and still catches a wrong formula
    # (a wrong coefficient such as N / a vs a changes an estimate by a factor of 2 or more).
    smf = pytest.importorskip("statsmodels.formula.api")
    rng = np.random.default_rng(7)
    factors = ["init", "order", "teacher"]
    runs = crossed_runs(rng, {"init": 6, "order": 6, "teacher": 3},
                        {"init": 1.0, "order": 2.0, "teacher": 1.5, "residual": 0.5})
    res = variance_components(runs, factors, "f1", rng)
    assert not any(c.truncated for c in res.components)
    model = smf.mixedlm("f1 ~ 1", runs.assign(g=1), groups="g", re_formula="0",
                        vc_formula={f: f"0 + C({f})" for f in factors})  # crossed factors in a single group
    fit = model.fit(reml=True)
    reml = dict(zip(fit.model.exog_vc.names, fit.vcomp)) | {"residual": fit.scale}
    for c in res.components:
        assert c.variance == pytest.approx(reml[c.name], rel=1e-3), c.name


def test_bad_designs_say_what_to_do():
    rng = np.random.default_rng(0)
    runs = crossed_runs(rng, {"init": 3, "order": 3}, {"init": 1.0, "order": 1.0, "residual": 1.0}, r=2)
    with pytest.raises(DesignError, match="not fully crossed and balanced.*drop runs"):
        variance_components(runs.iloc[1:], ["init", "order"], "f1", rng)
    with pytest.raises(DesignError, match="8 of 9 cells"):
        variance_components(runs[~((runs.init == 0) & (runs.order == 0))], ["init", "order"], "f1", rng)
    with pytest.raises(DesignError, match="at least 2 levels"):
        variance_components(runs[runs.init == 0], ["init", "order"], "f1", rng)
    with pytest.raises(DesignError, match="no degrees of freedom for the residual"):
        variance_components({"init": [0, 1, 2], "f1": [1.0, 2.0, 4.0]}, ["init"], "f1", rng)
    with pytest.raises(DesignError, match="no column"):
        variance_components(runs, ["init", "augment"], "f1", rng)
    with pytest.raises(DesignError, match="no variance"):
        variance_components(runs.assign(f1=40.0), ["init", "order"], "f1", rng)
    with pytest.raises(DesignError, match="non-finite"):
        variance_components(runs.assign(f1=np.where(runs.index == 0, np.nan, runs.f1)), ["init", "order"], "f1", rng)
    nested = nested_runs(rng, 3, 3, 2, {"teacher": 1.0, "order": 1.0, "residual": 1.0})
    with pytest.raises(DesignError, match="nested design teacher > order is not balanced"):
        variance_components(nested.iloc[2:], ["teacher", "order"], "f1", rng, design="nested")
    with pytest.raises(HarnessError):  # DesignError is a HarnessError (a DataError)
        variance_components(nested.iloc[:1], ["teacher", "order"], "f1", rng, design="nested")


def test_reading_names_the_largest_source_with_its_interval():
    rng = np.random.default_rng(5)
    runs = crossed_runs(rng, {"init": 5, "order": 5}, {"init": 0.1, "order": 4.0, "residual": 0.2})
    res = variance_components(runs, ["init", "order"], "f1", rng)
    order = by_name(res)["order"]
    text = reading(res, labels={"init": "the initial weights"})
    assert text.startswith(f"Most of the spread between runs comes from the batch order ({100 * order.share:.0f} %, "
                           f"95 % CI {100 * order.share_low:.0f}-{100 * order.share_high:.0f} %)")
    assert "initial weights" in text and "what the design does not separate" in text
