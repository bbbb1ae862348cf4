"""Table 4 from published summary statistics: file formats, rounding intervals, errors."""

import math

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.report import stats
from harness.report.build import build_summary_report
from harness.report.summary import analyse_summary, parse_number, read_summary

# A made-up experiment: the true (unrounded) statistics, and the table as it would be published.
TRUE = {"X": (41.2349, 0.6271, 10), "Y": (40.4102, 0.7444, 10), "Z": (38.0551, 1.1838, 8)}
COMPARISONS = [("X vs Y", "X", "Y"), ("X vs Z", "X", "Z"), ("Y vs Z", "Y", "Z")]


def true_t(a: str, b: str, test: str = "student") -> float:
    (ma, sa, na), (mb, sb, nb) = TRUE[a], TRUE[b]
    return stats.t_from_summary(ma, sa, na, mb, sb, nb, test).t


def write_toml(path, wrong_t_for: str | None = None):
    lines = ['metric = "validation F1 (%)"']
    for name, (m, s, n) in TRUE.items():
        lines += ["[[configuration]]", f'name = "{name}"', f'mean = "{m:.1f}"', f'sd = "{s:.2f}"', f"n = {n}"]
    for label, a, b in COMPARISONS:
        t = true_t(a, b) + (1.0 if label == wrong_t_for else 0.0)
        lines += ["[[comparison]]", f'label = "{label}"', f'a = "{a}"', f'b = "{b}"', f't = "{t:.3f}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def write_csv(path, wrong_t_for: str | None = None):
    lines = ["kind,name,mean,sd,n,a,b,t"]
    lines += [f"configuration,{name},{m:.1f},{s:.2f},{n},,," for name, (m, s, n) in TRUE.items()]
    for label, a, b in COMPARISONS:
        t = true_t(a, b) + (1.0 if label == wrong_t_for else 0.0)
        lines.append(f"comparison,{label},,,,{a},{b},{t:.3f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_parse_number_keeps_decimals():
    assert parse_number("40.70", "x") .decimals == 2
    assert parse_number("40", "x").decimals == 0
    assert parse_number(40.7, "x").decimals == 1  # TOML float: trailing zeros are lost
    assert parse_number(" 0.05 ", "x").value == 0.05


@pytest.mark.parametrize("writer", [write_toml, write_csv])
@pytest.mark.parametrize("test", ["student", "welch"])
def test_intervals_contain_true_t(tmp_path, writer, test):
    path = writer(tmp_path / ("s.toml" if writer is write_toml else "s.csv"))
    table = read_summary(path)
    assert table.configurations["X"].mean.decimals == 1 and table.configurations["X"].sd.decimals == 2
    rows = analyse_summary(table, test)
    for row, (label, a, b) in zip(rows, COMPARISONS):
        assert row.comparison.label == label
        assert row.t_low <= true_t(a, b, test) <= row.t_high
        # The recomputed t uses the rounded values, so it lies inside too but need not equal the true t.
        assert row.t_low <= row.comparison.t <= row.t_high
        assert row.comparison.mann_whitney_p is None
    if test == "student":
        assert all(r.consistent for r in rows)


def test_flags_wrong_published_t(tmp_path):
    rows = analyse_summary(read_summary(write_toml(tmp_path / "s.toml", wrong_t_for="X vs Y")))
    assert [r.consistent for r in rows] == [False, True, True]


def test_same_as_scipy_from_stats(tmp_path):
    from scipy import stats as sps

    rows = analyse_summary(read_summary(write_csv(tmp_path / "s.csv")))
    ref = sps.ttest_ind_from_stats(41.2, 0.63, 10, 38.1, 1.18, 8)  # X vs Z as published
    assert rows[1].comparison.t == pytest.approx(ref.statistic)
    assert rows[1].comparison.p == pytest.approx(ref.pvalue)
    assert rows[1].comparison.df == 16
    holm = stats.holm([r.comparison.p for r in rows])
    np.testing.assert_allclose([r.comparison.p_holm for r in rows], holm)


def test_paper_published_t_inconsistency(tmp_path):
    path = tmp_path / "paper.toml"
    path.write_text(
        '[[configuration]]\nname = "EF+SW+EM+CS"\nmean = "40.7"\nsd = "0.6"\nn = 10\n'
        '[[configuration]]\nname = "SW+EM+CS"\nmean = "40.3"\nsd = "0.7"\nn = 10\n'
        '[[configuration]]\nname = "EF+SW+EM+NS"\nmean = "39.5"\nsd = "0.4"\nn = 10\n'
        '[[comparison]]\nlabel = "Easier first vs all"\na = "EF+SW+EM+CS"\nb = "SW+EM+CS"\nt = "1.413"\n'
        '[[comparison]]\nlabel = "Cust. SpecAug vs none"\na = "EF+SW+EM+CS"\nb = "EF+SW+EM+NS"\nt = "7.055"\n')
    rows = analyse_summary(read_summary(path))
    assert rows[0].consistent is True and rows[0].published_significant == (True, False, False)
    assert rows[1].consistent is False
    assert rows[1].t_high == pytest.approx(6.306, abs=1e-3)


def test_summary_report_files(tmp_path):
    path = write_toml(tmp_path / "s.toml", wrong_t_for="Y vs Z")
    md = build_summary_report(path, tmp_path / "out")
    text = md.read_text()
    assert "| Y vs Z |" in text and "NO" in text
    for ext in ("csv", "tex", "md"):
        assert (tmp_path / "out" / "tables" / f"table4_summary.{ext}").is_file()
    assert (tmp_path / "out" / "report.html").is_file()


@pytest.mark.parametrize("body,needle", [
    ('[[configuration]]\nname = "A"\nmean = "1.0"\nsd = "0.1"\nn = 1\n', "[[configuration]] #1, key 'n'"),
    ('[[configuration]]\nname = "A"\nmean = "1.0"\nsd = "-0.1"\nn = 5\n', "[[configuration]] #1, key 'sd'"),
    ('[[configuration]]\nname = "A"\nmean = "x"\nsd = "0.1"\nn = 5\n', "[[configuration]] #1, key 'mean'"),
    ('[[configuration]]\nname = "A"\nsd = "0.1"\nn = 5\n', "missing 'mean'"),
    ('[[configuration]]\nname = "A"\nmean = "1.0"\nsd = "0.1"\nn = 5\n'
     '[[comparison]]\nlabel = "A vs B"\na = "A"\nb = "B"\n', "names configuration 'B'"),
    ('colour = "red"\n', "unknown keys ['colour']"),
])
def test_toml_errors_name_file_and_row(tmp_path, body, needle):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        read_summary(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_csv_errors_name_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("kind,name,mean,sd,n,a,b,t\nconfiguration,A,1.0,0.1,5,,,\nconfiguration,B,1.0,0.1,one,,,\n")
    with pytest.raises(ConfigError, match=r"bad\.csv: line 3, key 'n'"):
        read_summary(path)
    path.write_text("kind,name,mean,sd,n,a,b,t\nconfig,A,1.0,0.1,5,,,\n")
    with pytest.raises(ConfigError, match=r"line 2: kind must be"):
        read_summary(path)
    path.write_text("name,mean,sd,n\nA,1,1,5\n")
    with pytest.raises(ConfigError, match=r"missing CSV columns \['kind', 'a', 'b', 't'\]"):
        read_summary(path)


def test_not_testable_summary(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("kind,name,mean,sd,n,a,b,t\nconfiguration,A,1.0,0.0,5,,,\nconfiguration,B,2.0,0.0,5,,,\n"
                    "comparison,A vs B,,,,A,B,\n")
    (row,) = analyse_summary(read_summary(path))
    assert not row.comparison.testable and "zero variance" in row.comparison.reason
    assert row.consistent is None
    assert row.t_low == -math.inf and row.t_high < 0


# ---------------------------------------------------------------- the audit and the columns beyond the paper

PAPER_FILE = "ablations/published/paper_validation.toml"


def test_published_values_as_published():
    assert parse_number("6.800", "x").text == "6.800"
    assert parse_number("40", "x").text == "40"
    rows = analyse_summary(read_summary(PAPER_FILE))
    assert [r.published_t_text for r in rows][6] == "6.800"


def test_settled_decisions_by_hand():
    from harness.report.summary import settled_decisions

    crit = (1.33, 2.10, 2.88)
    assert settled_decisions(2.4, 3.881, crit) == ("Y", "Y", "?")
    assert settled_decisions(-0.319, 0.319, crit) == ("N", "N", "N")
    assert settled_decisions(-2.8, -2.5, crit) == ("Y", "Y", "N")  # |t| in [2.5, 2.8]
    assert settled_decisions(-1.0, 3.0, crit) == ("?", "?", "?")  # straddles 0: |t| in [0, 3]
    assert settled_decisions(1.0, math.inf, crit) == ("?", "?", "?")


def test_paper_decisions_the_published_precision_cannot_settle():
    rows = analyse_summary(read_summary(PAPER_FILE))
    unsettled = {r.comparison.label: "/".join(r.settled) for r in rows if "?" in r.settled}
    # 4 of the 12: the rounding interval of t crosses a critical value at df = 18.
    assert unsettled == {"Easier first vs all": "?/N/N", "Easier vs harder first": "?/N/N",
                         "Cust. SpecAug vs std.": "Y/Y/?", "Std. SpecAug vs none": "Y/?/?"}
    assert rows[0].critical_t == pytest.approx((1.3304, 2.1009, 2.8784), abs=1e-4)


def test_rope_keys(tmp_path):
    path = write_toml(tmp_path / "s.toml")
    text = path.read_text().replace('metric = "validation F1 (%)"', 'metric = "validation F1 (%)"\nrope = 1.0')
    text = text.replace('label = "X vs Z"', 'label = "X vs Z"\nrope = "0.25"')
    path.write_text(text)
    table = read_summary(path)
    assert table.rope == 1.0 and [c.rope for c in table.comparisons] == [None, 0.25, None]
    rows = analyse_summary(table)
    assert [r.comparison.rope for r in rows] == [1.0, 0.25, 1.0]
    default = analyse_summary(read_summary(write_toml(tmp_path / "d.toml")))
    assert {r.comparison.rope for r in default} == {0.5}
    path.write_text(text.replace("rope = 1.0", "rope = -1.0"))
    with pytest.raises(ConfigError, match="key 'rope': a ROPE is a half-width"):
        read_summary(path)
    csv_path = write_csv(tmp_path / "s.csv")
    lines = csv_path.read_text().splitlines()
    lines[0] += ",rope"
    lines = [lines[0]] + [ln + ("," if ln.startswith("configuration") else ",0.2") for ln in lines[1:]]
    csv_path.write_text("\n".join(lines) + "\n")
    assert [c.rope for c in read_summary(csv_path).comparisons] == [0.2, 0.2, 0.2]


def test_bayesian_and_power_columns_from_summary_statistics():
    (row,) = [r for r in analyse_summary(read_summary(PAPER_FILE)) if r.comparison.label == "Easier first vs all"]
    c = row.comparison
    se = math.sqrt((0.36 + 0.49) / 2 * 0.2)
    from scipy import stats as sps

    assert c.p_a_better == pytest.approx(sps.t.sf((0.5 - 0.4) / se, 18))
    assert c.p_equivalent == pytest.approx(1 - c.p_a_better - c.p_b_better)
    assert c.seeds_for_power_by_alpha == (27, 47, 70)
    assert c.prob_improvement is None and c.aso_a is None and c.pi_low is None  # these need the runs


def test_paper_summary_report(tmp_path):
    md = build_summary_report(PAPER_FILE, tmp_path / "out")
    text = md.read_text()
    assert "| Event mask vs segment | 6.578 | 18 |" in text and "| 6.800 |" in text  # as published
    assert "| Easier first vs all | 0.5 | 0.368 / 0.629 / 0.003 | 27 / 47 / 70 |" in text
    assert "Settled by the published precision (α = 0.2 / 0.05 / 0.01)" in text and "| ?/N/N |" in text
    assert "| EF+SW+EM+NS | 10 | 39.5 ± 0.4 |" in text
    for stem in ("table4_summary_beyond", "configurations_published"):
        assert (tmp_path / "out" / "tables" / f"{stem}.md").is_file()
    assert (tmp_path / "out" / "figures" / "forest_summary.png").stat().st_size > 0
    assert "P(A > B)" not in (tmp_path / "out" / "tables" / "table4_summary_beyond.md").read_text()
    csv = (tmp_path / "out" / "tables" / "table4_summary.csv").read_text()
    assert ",6.800," in csv  # the published t as printed, also in the CSV
