"""Tables 1-4 as DataFrames, and their Markdown, LaTeX (booktabs) and CSV renderings.

pandas at the edges only: the statistics come from `harness.report.stats` on numpy arrays. Each
table exists twice: a numeric frame (written as CSV, 6 significant digits) and a display
frame of strings in the paper's layout (written as Markdown and LaTeX). Rendering is deterministic:
rows in study order, fixed number formats, "\\n" line endings, no timestamps.
"""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from harness.report import stats
from harness.report.summary import SummaryComparison

FACTOR_LABELS: dict[str, dict[str, str]] = {
    "curriculum": {"easier": "Easier", "harder": "Harder", "all": "All"},
    "pseudolabels": {"strong+weak": "Strong+weak", "weak": "Weak only", "none": "None"},
    "masking": {"event": "Event", "segment": "Segment", "none": "None"},
    "augmentation": {"custom": "Custom", "standard": "Standard", "none": "None"},
}
FACTOR_HEADERS: dict[str, str] = {"curriculum": "Curriculum", "pseudolabels": "Pseudolabels",
                                  "masking": "Masking", "augmentation": "Augmentation"}
METRIC_LABELS: dict[str, str] = {"val_f1": "validation F1", "test_f1": "test F1"}
DASH = "—"
# Left-aligned in Markdown and LaTeX; every other column holds numbers or Y/N and is right-aligned.
TEXT_COLUMNS: frozenset[str] = frozenset({"Experiment", "Comparison", "Note", *FACTOR_HEADERS.values()})


# ---------------------------------------------------------------- formatting helpers

def factor_label(factor: str, level: Any, variant_factors: dict[str, Any]) -> str:
    """The paper's display of a factor level (e.g. "strong+weak" -> "Strong+weak").

    The curriculum is shown as N/A when no pseudolabels are used (as Table 3 does for EM+CS).
    """
    if level is None or (isinstance(level, float) and math.isnan(level)):
        return DASH
    if factor == "curriculum" and str(variant_factors.get("pseudolabels", "")).lower() == "none":
        return "N/A"
    text = str(level)
    return FACTOR_LABELS.get(factor, {}).get(text.lower(), text[:1].upper() + text[1:])


def _num(x: float | None, fmt: str) -> str:
    if x is None or not math.isfinite(x):
        return DASH if x is None or math.isnan(x) else ("∞" if x > 0 else "−∞")
    return format(x, fmt)


def fmt_mean_sd(mean: float | None, sd: float | None) -> str:
    """"40.7 ± 0.6" (one decimal, as the paper); the mean alone when there is no sd."""
    if mean is None or not math.isfinite(mean):
        return DASH
    if sd is None or not math.isfinite(sd):
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {sd:.1f}"


def fmt_p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return DASH
    return f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}"


def fmt_df(df: float | None) -> str:
    if df is None or not math.isfinite(df):
        return DASH
    return f"{df:.0f}" if abs(df - round(df)) < 1e-9 else f"{df:.1f}"


def _yn(flag: bool | None) -> str:
    return DASH if flag is None else ("Y" if flag else "N")


# ---------------------------------------------------------------- Tables 1-3

def variant_table(results: pd.DataFrame, study: dict[str, Any], table: dict[str, Any]) -> pd.DataFrame:
    """Numeric Tables 1-3 frame: reference rows, then one row per variant of `table`, in study order.

    Args:
        results: rows of RESULTS_COLUMNS (val_f1, test_f1 in %).
        study: the study.json dict.
        table: one entry of study["tables"] (name, caption, variants).

    Returns:
        columns Experiment, Curriculum, Pseudolabels, Masking, Augmentation, n, val_f1_mean,
        val_f1_sd, test_f1_mean, test_f1_sd (sd with ddof 1; NaN where undefined). n counts the
        runs with a finite validation F1, the runs the t-tests use.
    """
    factors_of = {v["name"]: dict(v.get("factors", {})) for v in study.get("variants", [])}
    rows: list[dict[str, Any]] = []
    for ref in study.get("reference_rows", []) or []:
        rows.append({"Experiment": ref["name"], **{h: DASH for h in FACTOR_HEADERS.values()}, "n": np.nan,
                     "val_f1_mean": float(ref.get("val_f1", np.nan)), "val_f1_sd": np.nan,
                     "test_f1_mean": float(ref.get("test_f1", np.nan)), "test_f1_sd": np.nan})
    for name in table["variants"]:
        runs = results[results["variant"] == name] if len(results) else results
        factors = factors_of.get(name, {})
        row: dict[str, Any] = {"Experiment": name}
        for factor, header in FACTOR_HEADERS.items():
            level = factors.get(factor, runs[factor].iloc[0] if len(runs) and factor in runs else None)
            row[header] = factor_label(factor, level, factors)
        row["n"] = int(np.isfinite(runs["val_f1"].to_numpy(dtype=float)).sum()) if len(runs) else 0
        for metric in ("val_f1", "test_f1"):
            values = runs[metric].to_numpy(dtype=float) if len(runs) else np.empty(0)
            s = stats.summarize(values[np.isfinite(values)])
            row[f"{metric}_mean"] = s.mean if s.n else np.nan
            row[f"{metric}_sd"] = s.sd if s.n >= 2 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def display_variant_table(numeric: pd.DataFrame) -> pd.DataFrame:
    """Strings in the paper's layout: ..., n, Mean ± sd val F1, Mean ± sd test F1."""
    out = numeric[["Experiment", *FACTOR_HEADERS.values()]].copy()
    out["n"] = [DASH if (isinstance(n, float) and math.isnan(n)) else str(int(n)) for n in numeric["n"]]
    out["Mean ± sd val F1 (%)"] = [fmt_mean_sd(m, s) for m, s in zip(numeric["val_f1_mean"], numeric["val_f1_sd"])]
    out["Mean ± sd test F1 (%)"] = [fmt_mean_sd(m, s) for m, s in zip(numeric["test_f1_mean"], numeric["test_f1_sd"])]
    return out.reset_index(drop=True)


# ---------------------------------------------------------------- Table 4

def compare_variants(
    results: pd.DataFrame, study: dict[str, Any], metric: str = "val_f1",
    test: stats.TestKind = "student", alphas: tuple[float, ...] = stats.DEFAULT_ALPHAS,
) -> list[stats.Comparison]:
    """One Comparison per study["comparisons"] entry on `metric`, Holm over the whole table."""
    rows = []
    for comp in study.get("comparisons", []):
        def scores(name: str) -> np.ndarray:
            x = results.loc[results["variant"] == name, metric].to_numpy(dtype=float) if len(results) else np.empty(0)
            return x[np.isfinite(x)]
        rows.append(stats.compare(scores(comp["a"]), scores(comp["b"]), test, alphas,
                                  comp.get("label", f"{comp['a']} vs {comp['b']}"), comp["a"], comp["b"]))
    return stats.with_holm(rows)


def comparison_table(rows: Sequence[stats.Comparison]) -> pd.DataFrame:
    """Numeric Table 4 frame (CSV): one row per comparison, NaN where not testable."""
    def v(x: Any) -> float:
        return np.nan if x is None else float(x)

    def sd(summary: stats.Summary) -> float:
        return summary.sd if summary.n >= 2 else np.nan

    records = []
    for r in rows:
        rec: dict[str, Any] = {"comparison": r.label, "a": r.a, "b": r.b, "test": r.test,
                               "n_a": r.summary_a.n, "n_b": r.summary_b.n,
                               "mean_a": v(r.summary_a.mean), "sd_a": sd(r.summary_a),
                               "mean_b": v(r.summary_b.mean), "sd_b": sd(r.summary_b),
                               "t": v(r.t), "df": v(r.df), "p": v(r.p)}
        for i, alpha in enumerate(r.alphas):
            rec[f"significant_{alpha:g}"] = "" if r.significant is None else ("Y" if r.significant[i] else "N")
        rec.update({"diff": v(r.diff), "ci_low": v(r.ci_low), "ci_high": v(r.ci_high),
                    "hedges_g": v(r.hedges_g), "p_holm": v(r.p_holm), "mann_whitney_p": v(r.mann_whitney_p),
                    "seeds_for_80_power": "" if r.seeds_for_power is None else str(r.seeds_for_power),
                    "testable": "Y" if r.testable else "N", "reason": r.reason})
        records.append(rec)
    return pd.DataFrame(records)


def display_comparison_table(rows: Sequence[stats.Comparison]) -> pd.DataFrame:
    """Table 4 strings: the paper's columns (t, Y/N per alpha) and the extra ones after them."""
    records = []
    for r in rows:
        rec: dict[str, str] = {"Comparison": r.label, "t": _num(r.t, ".3f"), "df": fmt_df(r.df), "p": fmt_p(r.p)}
        for i, alpha in enumerate(r.alphas):
            rec[f"α = {alpha:g}"] = _yn(None if r.significant is None else r.significant[i])
        ci = DASH if r.diff is None else f"{r.diff:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
        rec.update({"Δ mean [95 % CI]": ci, "Hedges' g": _num(r.hedges_g, ".2f"), "Holm p": fmt_p(r.p_holm),
                    "Mann–Whitney p": fmt_p(r.mann_whitney_p),
                    "Seeds/arm for 80 % power": DASH if r.seeds_for_power is None else str(r.seeds_for_power),
                    "Note": "" if r.testable else f"not testable: {r.reason}"})
        records.append(rec)
    return pd.DataFrame(records)


def drop_empty_note(display: pd.DataFrame) -> pd.DataFrame:
    """Without the Note column when no row has a note (all comparisons testable)."""
    if "Note" in display and not display["Note"].astype(bool).any():
        return display.drop(columns=["Note"])
    return display


def summary_comparison_table(rows: Sequence[SummaryComparison]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numeric, display) Table 4 from summary statistics, with the published-t check."""
    numeric = comparison_table([r.comparison for r in rows]).drop(columns=["mann_whitney_p"])
    display = display_comparison_table([r.comparison for r in rows]).drop(columns=["Mann–Whitney p"])
    numeric["published_t"] = [np.nan if r.published_t is None else r.published_t for r in rows]
    numeric["t_low_rounding"] = [r.t_low for r in rows]
    numeric["t_high_rounding"] = [r.t_high for r in rows]
    numeric["consistent"] = ["" if r.consistent is None else ("Y" if r.consistent else "N") for r in rows]
    numeric["published_decisions"] = ["" if r.published_significant is None else
                                      "".join("Y" if s else "N" for s in r.published_significant) for r in rows]
    note = display.pop("Note")
    display["Published t"] = [DASH if r.published_t is None else f"{r.published_t:g}" for r in rows]
    display["t range (rounding)"] = [f"[{_num(r.t_low, '.3f')}, {_num(r.t_high, '.3f')}]" for r in rows]
    display["Consistent"] = [DASH if r.consistent is None else ("yes" if r.consistent else "NO") for r in rows]
    display["Decisions at published t"] = ["" if r.published_significant is None else
                                           "/".join("Y" if s else "N" for s in r.published_significant) for r in rows]
    display["Note"] = note
    return numeric, drop_empty_note(display)


# ---------------------------------------------------------------- renderers

def to_markdown(display: pd.DataFrame) -> str:
    """A GitHub-flavoured pipe table ("|" in cells escaped)."""
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in display.columns) + " |"
    rule = "|" + "|".join(":---" if c in TEXT_COLUMNS else "---:" for c in display.columns) + "|"
    body = ["| " + " | ".join(cell(x) for x in row) + " |" for row in display.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "α": r"$\alpha$",
    "Δ": r"$\Delta$", "—": "---", "–": "--", "−": "$-$", "∞": r"$\infty$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials (& % _ # $ { } ~ ^ \\) and map ± α Δ dashes to LaTeX."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(display: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A booktabs table environment (needs \\usepackage{booktabs})."""
    spec = "".join("l" if c in TEXT_COLUMNS else "r" for c in display.columns)
    lines = [r"\begin{table}[t]", r"\centering", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(c) for c in display.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(x) for x in row) + r" \\" for row in display.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(numeric: pd.DataFrame) -> str:
    """CSV text with 6 significant digits, "\\n" line endings, empty cells for NaN."""
    buf = io.StringIO()
    numeric.to_csv(buf, index=False, float_format="%.6g", lineterminator="\n")
    return buf.getvalue()
