"""harness.report.sequential: spending, t-scale boundaries, decisions, and the design's error by simulation."""

import math

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as sps

from harness.report import sequential as seq

# The paper's validation F1 (mean, sd; n = 10) and its 12 Table 4 comparisons, in the paper's order.
PAPER = {"EF+SW+EM+CS": (40.7, 0.6), "SW+EM+CS": (40.3, 0.7), "HF+SW+EM+CS": (40.3, 0.8),
         "EF+SW+EM+SS": (40.0, 0.4), "EF+SW+EM+NS": (39.5, 0.4), "EF+SW+SM+CS": (39.2, 0.4),
         "EF+SW+NM+CS": (33.9, 0.8), "EF+W+EM+CS": (26.0, 1.0), "EM+CS": (21.0, 1.6)}
PAPER_COMPARISONS = [("EF+SW+EM+CS", "SW+EM+CS"), ("HF+SW+EM+CS", "SW+EM+CS"), ("EF+SW+EM+CS", "HF+SW+EM+CS"),
                     ("EF+SW+EM+CS", "EF+SW+EM+SS"), ("EF+SW+EM+CS", "EF+SW+EM+NS"), ("EF+SW+EM+SS", "EF+SW+EM+NS"),
                     ("EF+SW+EM+CS", "EF+SW+SM+CS"), ("EF+SW+SM+CS", "EF+SW+NM+CS"), ("EF+SW+EM+CS", "EF+SW+NM+CS"),
                     ("EF+W+EM+CS", "EM+CS"), ("EF+SW+EM+CS", "EF+W+EM+CS"), ("EF+SW+EM+CS", "EM+CS")]
LARGEST = [10, 11]  # Strong + weak vs weak (t = 41.954 published), Strong + weak vs none (36.011)


@pytest.fixture(scope="module")
def paper_design():
    """The default design for the paper's family: looks 3, 5, 10; Kim-DeMets rho = 2; Holm over 12."""
    return seq.design_sequential((3, 5, 10), 12, rng=np.random.default_rng(0), n_sim=100_000)


def test_spending_functions_by_hand():
    tau = np.array([0.25, 0.5, 1.0])
    np.testing.assert_allclose(seq.alpha_spent(tau, 0.05, "kim-demets", 2.0), 0.05 * tau**2)
    # O'Brien-Fleming type at tau = 1/4: 2 - 2 Phi(1.959964 / 0.5) = 2 - 2 Phi(3.919928) = 8.857e-5
    assert seq.alpha_spent(tau, 0.05, "obrien-fleming")[0] == pytest.approx(8.857e-5, rel=1e-3)
    np.testing.assert_allclose(seq.alpha_spent(tau, 0.05, "pocock"), 0.05 * np.log(1 + (math.e - 1) * tau))
    for kind in seq.SPENDINGS:
        spent = seq.alpha_spent(tau, 0.05, kind)
        assert spent[-1] == pytest.approx(0.05) and np.all(np.diff(spent) > 0)
    with pytest.raises(ValueError, match="spending must be one of"):
        seq.alpha_spent(tau, 0.05, "haybittle")


@pytest.mark.parametrize("looks,max_seeds,paired,needle", [
    ((), None, False, "at least one look"),
    ((3, 3, 10), None, False, "strictly increasing"),
    ((1, 5), None, False, "at least 2 seeds"),
    ((2, 5), None, True, "at least 3 seeds"),
    ((3, 5, 8), 10, False, "must equal --max-seeds"),
])
def test_validate_looks(looks, max_seeds, paired, needle):
    with pytest.raises(ValueError, match=needle):
        seq.validate_looks(looks, max_seeds, paired)
    assert seq.validate_looks([3, 5, 10], 10) == (3, 5, 10)


def test_first_look_is_the_exact_t_quantile(paper_design):
    for r in (1, 12):
        b = paper_design.boundary(r)
        spent = 0.05 / r * 0.3**2  # Kim-DeMets rho = 2 at tau = 3/10
        assert b.cumulative_alpha[0] == pytest.approx(spent)
        assert b.critical_t[0] == pytest.approx(sps.t.isf(spent / 2, 4))  # df = 2 * 3 - 2
        assert b.method[0] == "exact"
        assert b.nominal_p[0] == pytest.approx(spent)
        assert all(x > y for x, y in zip(b.critical_t, b.critical_t[1:]))  # boundaries fall with n
    assert paper_design.df == (4, 8, 18)


def test_same_generator_same_boundaries():
    a = seq.design_sequential((3, 5), 2, rng=np.random.default_rng(7), n_sim=20_000)
    b = seq.design_sequential((3, 5), 2, rng=np.random.default_rng(7), n_sim=20_000)
    c = seq.design_sequential((3, 5), 2, rng=np.random.default_rng(8), n_sim=20_000)
    assert a == b
    assert a.boundaries[0].critical_t[1] != c.boundaries[0].critical_t[1]


def _z_boundaries_two_looks(tau1: float, alpha: float, spending: str) -> tuple[float, float]:
    """Exact z-scale boundaries for 2 looks from the bivariate normal (an independent method)."""
    a1, a2 = seq.alpha_spent(np.array([tau1, 1.0]), alpha, spending)
    c1 = sps.norm.isf(a1 / 2)
    mvn = sps.multivariate_normal(mean=[0, 0], cov=[[1, math.sqrt(tau1)], [math.sqrt(tau1), 1]])

    def stay(c1: float, c2: float) -> float:  # P(|Z1| < c1, |Z2| < c2)
        return mvn.cdf([c1, c2]) - mvn.cdf([-c1, c2]) - mvn.cdf([c1, -c2]) + mvn.cdf([-c1, -c2])

    c2 = optimize.brentq(lambda c: stay(c1, c) - (1 - a2), 1.0, 5.0, xtol=1e-6)
    return float(c1), float(c2)


@pytest.mark.parametrize("spending", ["obrien-fleming", "pocock"])
def test_large_n_boundaries_agree_with_the_z_boundaries(spending):
    # At 50 and 150 seeds per arm (df 98, 298) the simulated t boundary must agree with the exact z
    # boundary carried to the t scale at the same nominal level (Jennison & Turnbull's approximation,
    # accurate at such df), within Monte Carlo error (about 0.01 here).
    design = seq.design_sequential((50, 150), 1, rng=np.random.default_rng(1), family="none", spending=spending,
                                   n_sim=50_000)
    z1, z2 = _z_boundaries_two_looks(1 / 3, 0.05, spending)
    c1, c2 = design.boundaries[0].critical_t
    assert c1 == pytest.approx(sps.t.isf(sps.norm.sf(z1), 98), abs=1e-9)
    assert c2 == pytest.approx(sps.t.isf(sps.norm.sf(z2), 298), abs=0.03)


def test_false_positive_rate_under_no_effect(paper_design):
    # 12 comparisons with no effect (equal means and sds), looks 3, 5, 10: the chance that the family
    # rejects anything must stay at alpha = 0.05 within Monte Carlo error.
    n = 20_000
    sim = seq.simulate_design(paper_design, np.zeros(12), np.ones(12), np.ones(12), n, np.random.default_rng(11))
    fwer = sim.family_error(np.ones(12, dtype=bool))
    assert fwer <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / n)  # measured: 0.0505 (SE 0.0015)
    # One comparison at alpha (family "none"): its own error, over its looks.
    single = seq.design_sequential((3, 5, 10), 1, rng=np.random.default_rng(3), family="none", n_sim=100_000)
    b = single.boundaries[0]
    assert b.simulated_alpha <= 0.05 + 3 * b.simulated_alpha_se
    sim1 = seq.simulate_design(single, [0.0], [1.0], [1.0], n, np.random.default_rng(12))
    assert sim1.family_error(np.array([True])) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / n)


def test_paper_largest_effects_stop_at_the_first_look(paper_design):
    diff, sd_a, sd_b = seq.paper_effects(PAPER, PAPER_COMPARISONS)
    sim = seq.simulate_design(paper_design, diff, sd_a, sd_b, 4000, np.random.default_rng(5))
    first = sim.stop_rate(0)
    assert all(first[i] >= 0.95 for i in LARGEST)  # measured: 0.995 and 0.982
    assert np.all(sim.direction[:, LARGEST] >= 0)  # never the wrong way
    # The paper's "Easier first vs all" (d = 0.4 points) mostly runs to the last look.
    assert (sim.seeds_per_arm[:, 0] == 10).mean() > 0.8
    assert sim.seeds_per_arm.mean() < 7.5  # the family uses about 7.1 of 10 seeds per arm on average


def test_sequential_decisions_agree_with_the_vectorised_procedure(paper_design):
    rng = np.random.default_rng(9)
    diff, sd_a, sd_b = seq.paper_effects(PAPER, PAPER_COMPARISONS)
    for _ in range(40):
        a = diff[:, None] + sd_a[:, None] * rng.standard_normal((12, 10))
        b = sd_b[:, None] * rng.standard_normal((12, 10))
        decisions = seq.sequential_decisions(paper_design, list(zip(a, b)))
        t = np.stack([seq._t_at_looks_pooled(a, b, np.array(paper_design.looks))])
        decided, _, _ = seq.decide(paper_design, np.abs(t))
        for d, k in zip(decisions, decided[0]):
            assert (d.status == "significant") == (k >= 0)
            assert d.look == (k + 1 if k >= 0 else 3)


def _design_two_looks(m: int, family: str = "holm") -> seq.SequentialDesign:
    return seq.design_sequential((3, 5), m, rng=np.random.default_rng(0), family=family, n_sim=20_000)


def test_decisions_round_by_round():
    design = _design_two_looks(2)
    big = (np.array([50.0, 50.2, 49.9]), np.array([30.0, 30.1, 29.8]))  # |t| about 200 at 3 seeds
    null = (np.array([40.0, 40.5, 39.7]), np.array([40.2, 39.9, 40.1]))
    first = seq.sequential_decisions(design, [big, null], ["big", "null"])
    assert (first[0].status, first[0].look, first[0].n, first[0].direction) == ("significant", 1, 3, 1)
    assert (first[1].status, first[1].next_n, first[1].look) == ("continue", 5, None)
    assert first[1].level == pytest.approx(0.05)  # "big" passed its alpha / 2 on
    assert seq.seeds_to_run(design, [("A", "B"), ("C", "D")], first, variants=["A", "B", "C", "D", "E"]) == {
        "A": 3, "B": 3, "C": 5, "D": 5, "E": 5}
    assert not seq.all_decided(first)
    more = (np.append(null[0], [39.8, 40.3]), np.append(null[1], [40.0, 40.4]))
    second = seq.sequential_decisions(design, [big, more], ["big", "null"])
    assert (second[1].status, second[1].look, second[1].n) == ("not significant", 2, 5)
    assert second[0] == first[0]  # runs beyond its decision look do not change a decision
    assert seq.all_decided(second)
    # Before any run, every comparison needs the first look.
    empty = seq.sequential_decisions(design, [(np.empty(0), np.empty(0))] * 2)
    assert [d.next_n for d in empty] == [3, 3]


def test_holm_passes_alpha_on_at_the_same_look_and_to_earlier_looks():
    design = _design_two_looks(2)
    (c1_half, c2_half), (c1_full, c2_full) = design.boundary(2).critical_t, design.boundary(1).critical_t
    assert c1_half > c1_full and c2_half > c2_full
    between1 = 0.5 * (c1_half + c1_full)  # crosses the alpha boundary only
    # Same look: A crosses alpha/2, then B is re-tested at alpha and crosses too.
    decided, crossed, open_at = seq.decide(design, np.array([[[c1_half + 1, np.nan], [between1, np.nan]]]))
    assert decided.tolist() == [[0, 0]] and open_at.tolist() == [[2, 1]]
    # Earlier look: B's look-1 statistic lies between the boundaries, A crosses only at look 2; then
    # B is rejected at look 2 on its look-1 statistic against the alpha boundary.
    decided, crossed, _ = seq.decide(design, np.array([[[1.0, c2_half + 1], [between1, 0.5]]]))
    assert decided.tolist() == [[1, 1]] and crossed.tolist() == [[1, 0]]
    # Family "none": each at alpha, no passing on.
    none = _design_two_looks(2, "none")
    decided, _, _ = seq.decide(none, np.array([[[between1, np.nan], [0.1, np.nan]]]))
    assert decided.tolist() == [[0, -1]]
    # NaN (not testable) never crosses.
    decided, _, _ = seq.decide(design, np.full((1, 2, 2), np.nan))
    assert decided.tolist() == [[-1, -1]]


def test_paired_design_uses_the_paired_t():
    design = seq.design_sequential((3, 5), 1, rng=np.random.default_rng(0), family="none", paired=True,
                                   n_sim=20_000)
    assert design.df == (2, 4)
    a = np.array([40.0, 41.0, 42.0, 43.0, 44.0])
    b = a - np.array([1.0, 1.1, 0.9, 1.05, 0.95])  # differences nearly constant: paired |t| huge
    (d,) = seq.sequential_decisions(design, [(a, b)])
    assert d.t[0] == pytest.approx(sps.ttest_rel(a[:3], b[:3]).statistic)
    assert d.status == "significant" and d.look == 1


def test_sd_ratio_calibration_is_more_conservative():
    plain = seq.design_sequential((3, 5), 1, rng=np.random.default_rng(0), family="none", n_sim=20_000)
    robust = seq.design_sequential((3, 5), 1, rng=np.random.default_rng(0), family="none", sd_ratios=(1.0, 3.0),
                                   n_sim=20_000)
    assert all(r >= p for r, p in zip(robust.boundaries[0].critical_t, plain.boundaries[0].critical_t))
    assert robust.sd_ratios == (1.0, 3.0)
