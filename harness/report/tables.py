"""Tables 1-4 as DataFrames, and their Markdown, LaTeX (booktabs) and CSV renderings.

pandas at the edges only: the statistics come from `harness.report.stats` on numpy arrays. Each
table exists twice: a numeric frame (written as CSV, 6 significant digits) and a display
frame of strings in the paper's layout (written as Markdown and LaTeX). Rendering is deterministic:
rows in study order, fixed number formats, "\\n" line endings, no timestamps.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from harness.builtins import BUILTIN_METRICS, PAPER_FACTORS
from harness.plugins import FactorSpec, level_text
from harness.report import stats
from harness.report.summary import SummaryComparison
from harness.report.superiority import DEFAULT_GAMMA, Superiority

# The paper's four factors as reports show them: their short names and column headers (harness.builtins).
FACTOR_HEADERS: dict[str, str] = {f.name: f.label for f in PAPER_FACTORS}
# The metrics a report can be built on (`report --metric`): name -> label. Each is a pair of results.csv
# columns, val_<name> and test_<name>; "f1" is the paper's event-based macro F1.
METRIC_NAMES: dict[str, str] = {m.name: m.label for m in BUILTIN_METRICS}  # harness.builtins
SPLIT_PREFIXES: dict[str, tuple[str, str]] = {"val": ("validation", "val"), "test": ("test", "test")}  # long, short
METRIC_LABELS: dict[str, str] = {f"{prefix}_{name}": f"{long} {label}" for name, label in METRIC_NAMES.items()
                                 for prefix, (long, _) in SPLIT_PREFIXES.items()}  # "val_f1": "validation F1"
SHORT_LABELS: dict[str, str] = {f"{prefix}_{name}": f"{short} {label}" for name, label in METRIC_NAMES.items()
                                for prefix, (_, short) in SPLIT_PREFIXES.items()}  # "val_f1": "val F1"
DASH = "—"
# Left-aligned in Markdown and LaTeX; every other column holds numbers or Y/N and is right-aligned.
TEXT_COLUMNS: frozenset[str] = frozenset({"Experiment", "Comparison", "Note", "Decision", *FACTOR_HEADERS.values()})


def left_aligned(display: pd.DataFrame) -> list[bool]:
    """Per column: left-aligned text (TEXT_COLUMNS, or a factor column whose levels are words) or numbers."""
    def is_text(column: str) -> bool:
        if column in TEXT_COLUMNS:
            return True
        values = [str(v) for v in display[column] if str(v) not in (DASH, "N/A", "", "Y", "N")]  # Y/N: right
        return bool(values) and not all(_is_number(v) for v in values)
    return [is_text(c) for c in display.columns]


def _is_number(text: str) -> bool:
    try:
        float(text.split(" ")[0].replace("−", "-").replace(",", ""))
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- formatting helpers

def study_factors(study: dict[str, Any]) -> list[dict[str, Any]]:
    """The factors a report's tables show: the study's own (study.json `factors`), or the paper's four for a
    record written before any config key could be a factor. Each: name, key, label, level_labels."""
    recorded = study.get("factors") or []
    if recorded:
        return list(recorded)
    named = {name for v in study.get("variants", []) for name in v.get("factors", {})}
    return [{"name": f.name, "key": f.key, "label": f.label, "level_labels": dict(f.level_labels)}
            for f in PAPER_FACTORS if f.name in named]  # old records name all four; results made elsewhere maybe none


def factor_label(factor: dict[str, Any], level: Any, variant_factors: dict[str, Any]) -> str:
    """A level as a table shows it (e.g. "strong+weak" -> "Strong+weak", 64 -> "64").

    The curriculum is shown as N/A when no pseudolabels are used (as Table 3 does for EM+CS).
    """
    if level is None or (isinstance(level, float) and math.isnan(level)):
        return DASH
    if factor["name"] == "curriculum" and str(variant_factors.get("pseudolabels", "")).lower() == "none":
        return "N/A"
    spec = FactorSpec(key=factor["key"], name=factor["name"], label=factor["label"],
                      level_labels=factor.get("level_labels") or {})
    shown = spec.display(level)
    if factor["name"] in FACTOR_HEADERS and shown == level_text(level):  # a level the paper never named
        return shown[:1].upper() + shown[1:]
    return shown


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


# ---------------------------------------------------------------- the metric of a report

@dataclass(frozen=True)
class MetricChoice:
    """What `report --metric NAME` builds Tables 1-4 and the figures on.

    Attributes:
        name: as asked: a name of METRIC_NAMES (both splits) or one column (e.g. "val_psds1").
        columns: the results.csv columns, validation first, e.g. ("val_psds1", "test_psds1").
        label: e.g. "PSDS1", "validation PSDS1".
    """

    name: str
    columns: tuple[str, ...]
    label: str

    @property
    def base(self) -> str:
        """The metric without its split: "psds1" for "val_psds1"; a column of results made elsewhere
        (`report --results FILE --metric COLUMN`) is its own base."""
        return self.name if self.name in METRIC_NAMES or self.name not in METRIC_LABELS else self.name.split("_", 1)[1]


def metric_names() -> dict[str, str]:
    """Every registered metric (built-ins and loaded plugins): name -> label."""
    from harness import plugins

    return {name: plugins.metrics.get(name).label for name in plugins.metrics}


def choose_metric(name: str, available: Sequence[str]) -> MetricChoice:
    """The MetricChoice of `name` among the columns of a results table.

    Raises:
        ConfigError: not a metric of the table, listing the valid names.
    """
    from harness.errors import ConfigError

    available = set(available)
    names = metric_names()
    labels = {f"{prefix}_{m}": f"{long} {label}" for m, label in names.items()
              for prefix, (long, _) in SPLIT_PREFIXES.items()}
    pairs = [m for m in names if {f"val_{m}", f"test_{m}"} <= available]
    singles = [c for c in labels if c in available]
    if name in pairs:
        return MetricChoice(name, (f"val_{name}", f"test_{name}"), names[name])
    if name in singles:
        return MetricChoice(name, (name,), labels[name])
    raise ConfigError(f"--metric {name!r}: not a metric of this run's results.csv; valid: "
                      f"{', '.join(pairs + singles)}")


# ---------------------------------------------------------------- Tables 1-3

def variant_table(results: pd.DataFrame, study: dict[str, Any], table: dict[str, Any],
                  metrics: Sequence[str] = ("val_f1", "test_f1")) -> pd.DataFrame:
    """Numeric Tables 1-3 frame: reference rows, then one row per variant of `table`, in study order.

    Args:
        results: rows of RESULTS_COLUMNS (val_f1, test_f1 in %).
        study: the study.json dict.
        table: one entry of study["tables"] (name, caption, variants).
        metrics: the results.csv columns shown (MetricChoice.columns); the reference rows (the teacher)
            have event F1 only, and NaN for the other metrics.

    Returns:
        columns Experiment, one per factor of the study (headed by its label: Curriculum, Pseudolabels,
        Masking, Augmentation for the paper's; study_factors), n, then <metric>_mean and
        <metric>_sd of each metric, e.g. val_f1_mean, val_f1_sd, test_f1_mean, test_f1_sd (sd with ddof 1;
        NaN where undefined). n counts the runs with a finite first metric, the runs the t-tests use.
    """
    factors_of = {v["name"]: dict(v.get("factors", {})) for v in study.get("variants", [])}
    shown = study_factors(study)
    rows: list[dict[str, Any]] = []
    for ref in study.get("reference_rows", []) or []:
        row = {"Experiment": ref["name"], **{f["label"]: DASH for f in shown}, "n": np.nan}
        for metric in metrics:
            value = ref.get(metric)
            row.update({f"{metric}_mean": np.nan if value is None else float(value), f"{metric}_sd": np.nan})
        rows.append(row)
    for name in table["variants"]:
        runs = results[results["variant"] == name] if len(results) else results
        factors = factors_of.get(name, {})
        row: dict[str, Any] = {"Experiment": name}
        for factor in shown:
            name = factor["name"]
            level = factors.get(name, runs[name].iloc[0] if len(runs) and name in runs else None)
            row[factor["label"]] = factor_label(factor, level, factors)
        row["n"] = int(np.isfinite(runs[metrics[0]].to_numpy(dtype=float)).sum()) if len(runs) else 0
        for metric in metrics:
            values = runs[metric].to_numpy(dtype=float) if len(runs) else np.empty(0)
            s = stats.summarize(values[np.isfinite(values)])
            row[f"{metric}_mean"] = s.mean if s.n else np.nan
            row[f"{metric}_sd"] = s.sd if s.n >= 2 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def display_variant_table(numeric: pd.DataFrame) -> pd.DataFrame:
    """Strings in the paper's layout: ..., n, Mean ± sd val F1, Mean ± sd test F1 (or the metrics shown)."""
    out = numeric[list(numeric.columns[: numeric.columns.get_loc("n")])].copy()  # Experiment and the factors
    out["n"] = [DASH if (isinstance(n, float) and math.isnan(n)) else str(int(n)) for n in numeric["n"]]
    for column in (c for c in numeric.columns if c.endswith("_mean")):
        metric = column[: -len("_mean")]
        out[f"Mean ± sd {SHORT_LABELS.get(metric, metric)} (%)"] = [
            fmt_mean_sd(m, s) for m, s in zip(numeric[column], numeric[f"{metric}_sd"])]
    return out.reset_index(drop=True)


# ---------------------------------------------------------------- convergence

def convergence_table(results: pd.DataFrame, verdicts: dict[str, Any], variants: Sequence[str]
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numeric, display): per variant, how many runs had converged when training ended.

    Args:
        results: rows of RESULTS_COLUMNS (job_id, variant, seed).
        verdicts: job id -> harness.report.convergence.Convergence; a job without one had no readable
            metrics.csv.
        variants: rows, in order (variants without runs are left out).

    Returns:
        numeric columns Experiment, n, runs_with_curve, converged, not_converged, undetermined,
        median_best_epoch, median_epochs, median_gain (points), median_slope (points per epoch).
    """
    from harness.report.convergence import summarize

    numeric_rows, display_rows = [], []
    for name in variants:
        runs = results[results["variant"] == name]
        if not len(runs):
            continue
        jobs = runs["job_id"].astype(str).tolist()
        seeds = runs["seed"].tolist() if "seed" in runs else list(range(len(runs)))
        got = [verdicts[j] for j in jobs if j in verdicts]
        s = summarize(got)
        numeric_rows.append({"Experiment": name, "n": len(runs), "runs_with_curve": s.runs,
                             "converged": s.converged, "not_converged": s.not_converged,
                             "undetermined": s.undetermined, "median_best_epoch": s.median_best_epoch,
                             "median_epochs": s.median_epochs, "median_gain": s.median_gain,
                             "median_slope": s.median_slope})
        late = [str(seed) for seed, j in zip(seeds, jobs) if j in verdicts and verdicts[j].status == "not converged"]
        notes = ([f"not converged: seed{'s' if len(late) > 1 else ''} {', '.join(late)}"] if late else [])
        notes += [f"{len(runs) - s.runs} run(s) without a readable metrics.csv"] if s.runs < len(runs) else []
        best = (DASH if not math.isfinite(s.median_best_epoch) else
                f"{s.median_best_epoch:g} / {s.median_epochs:g}")
        display_rows.append({"Experiment": name, "n": str(len(runs)), "Converged": f"{s.converged} / {s.runs}",
                             "Not converged": str(s.not_converged), "Undetermined": str(s.undetermined),
                             "Best epoch / epochs (median)": best,
                             "Last-quarter gain (median, points)": _num(s.median_gain, "+.2f"),
                             "Last-quarter slope (median, points/epoch)": _num(s.median_slope, "+.3f"),
                             "Note": "; ".join(notes)})
    return pd.DataFrame(numeric_rows), drop_empty_note(pd.DataFrame(display_rows))


def convergence_runs_table(results: pd.DataFrame, verdicts: dict[str, Any]) -> pd.DataFrame:
    """Numeric frame of every run's verdict: job_id, variant, seed, status, epochs, best_epoch,
    tail_epochs, gain (points), slope (points per epoch), p_trend, reason; runs without a curve
    have status "no curve"."""
    rows = []
    for job, variant, seed in zip(results["job_id"].astype(str), results["variant"],
                                  results["seed"] if "seed" in results else [np.nan] * len(results)):
        v = verdicts.get(job)
        if v is None:
            rows.append({"job_id": job, "variant": variant, "seed": seed, "status": "no curve"})
            continue
        rows.append({"job_id": job, "variant": variant, "seed": seed, "status": v.status, "epochs": v.epochs,
                     "best_epoch": v.best_epoch, "tail_epochs": v.tail_epochs,
                     "gain": np.nan if v.gain is None else v.gain, "slope": np.nan if v.slope is None else v.slope,
                     "p_trend": np.nan if v.p_trend is None else v.p_trend, "reason": v.reason})
    columns = ["job_id", "variant", "seed", "status", "epochs", "best_epoch", "tail_epochs", "gain", "slope",
               "p_trend", "reason"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- uncertainty within a run, compute

def uncertainty_table(results: pd.DataFrame, intervals: dict[str, dict[str, tuple[float, float]]],
                      variants: Sequence[str], metrics: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numeric, display): per variant and metric, the across-seed sd beside the clip-level bootstrap.

    Args:
        results: rows of RESULTS_COLUMNS.
        intervals: job id -> metric column -> (bootstrap standard error, half-width of the 95 % percentile
            interval), in points; a job or metric without one is absent.
        variants: rows, in order (variants without runs are left out).
        metrics: results.csv columns.

    Returns:
        numeric columns Experiment, n, then per metric <m>_sd_seeds, <m>_boot_runs, <m>_boot_se and
        <m>_boot_halfwidth (the means over the variant's bootstrapped runs).
    """
    numeric_rows, display_rows = [], []
    for name in variants:
        runs = results[results["variant"] == name]
        if not len(runs):
            continue
        rec: dict[str, Any] = {"Experiment": name, "n": len(runs)}
        shown: dict[str, str] = {"Experiment": name, "n": str(len(runs))}
        for metric in metrics:
            values = runs[metric].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            sd = float(np.std(values, ddof=1)) if values.size >= 2 else np.nan
            got = [intervals[j][metric] for j in runs["job_id"].astype(str) if metric in intervals.get(j, {})]
            got = [(se, hw) for se, hw in got if np.isfinite(se) and np.isfinite(hw)]
            se = float(np.mean([g[0] for g in got])) if got else np.nan
            hw = float(np.mean([g[1] for g in got])) if got else np.nan
            rec.update({f"{metric}_sd_seeds": sd, f"{metric}_boot_runs": len(got), f"{metric}_boot_se": se,
                        f"{metric}_boot_halfwidth": hw})
            short = SHORT_LABELS.get(metric, metric)
            shown.update({f"{short}: sd over seeds": _num(sd, ".2f"), f"{short}: clip bootstrap SE": _num(se, ".2f"),
                          f"{short}: 95 % clip interval ±": _num(hw, ".2f")})
        numeric_rows.append(rec)
        display_rows.append(shown)
    return pd.DataFrame(numeric_rows), pd.DataFrame(display_rows)


def fmt_count(n: float | None) -> str:
    """7124 -> "7,124"; 668165000 -> "668.2 M"; 2.1e9 -> "2.10 G" (— when unknown)."""
    if n is None or not math.isfinite(n):
        return DASH
    if n >= 1e9:
        return f"{n / 1e9:.2f} G"
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    return f"{int(round(n)):,}"


def _first_finite(x: np.ndarray) -> float:
    finite = x[np.isfinite(x)]
    return float(finite[0]) if finite.size else np.nan


def _kwh(x: float) -> str:
    return "not measured" if not math.isfinite(x) else f"{x:.3g}"


def compute_table(results: pd.DataFrame, variants: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numeric, display): per variant the student's size and the energy of its runs, then the total.

    Energy sums the runs that measured it (codecarbon); a variant none of whose runs did shows "not
    measured". Params and MACs per 10-s clip are the first run's (every run of a variant has one config).
    """
    def column(runs: pd.DataFrame, name: str) -> np.ndarray:
        return pd.to_numeric(runs[name], errors="coerce").to_numpy(dtype=float) if name in runs else np.full(
            len(runs), np.nan)

    def summed(x: np.ndarray) -> float:
        return float(np.nansum(x)) if np.isfinite(x).any() else np.nan

    numeric_rows, display_rows = [], []
    groups = [(v, results[results["variant"] == v]) for v in variants] + [("All runs", results)]
    for name, runs in groups:
        if not len(runs):
            continue
        train, evaluation = column(runs, "train_kwh"), column(runs, "eval_kwh")
        measured = int((np.isfinite(train) | np.isfinite(evaluation)).sum())
        total = summed(np.concatenate([train, evaluation]))
        params, macs = column(runs, "params"), column(runs, "macs_per_clip")
        one = name != "All runs"  # a total has no single size
        estimates = sorted({str(e) for e in runs.get("energy_estimate", pd.Series(dtype=str)).dropna()
                            if str(e) and not str(e).startswith("not measured")})
        rec = {"Experiment": name, "n": len(runs), "params": _first_finite(params) if one else np.nan,
               "macs_per_clip": _first_finite(macs) if one else np.nan,
               "train_kwh": summed(train), "eval_kwh": summed(evaluation), "runs_measured": measured,
               "kwh_per_run": total / measured if measured else np.nan, "energy_estimate": "; ".join(estimates)}
        numeric_rows.append(rec)
        display_rows.append({"Experiment": name, "n": str(len(runs)), "Params": fmt_count(rec["params"]),
                             "MACs / 10-s clip": fmt_count(rec["macs_per_clip"]),
                             "Training kWh (sum)": _kwh(rec["train_kwh"]),
                             "Evaluation kWh (sum)": _kwh(rec["eval_kwh"]),
                             "kWh per run": _kwh(rec["kwh_per_run"]),
                             "Runs measured": f"{measured} / {len(runs)}"})
    return pd.DataFrame(numeric_rows), pd.DataFrame(display_rows)


# ---------------------------------------------------------------- Table 4

def arm_scores(results: pd.DataFrame, variant: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(seeds, scores) of a variant's finished runs with a finite `metric`, in seed order, shape (n,) each."""
    if not len(results):
        return np.empty(0, dtype=int), np.empty(0)
    runs = results[results["variant"] == variant]
    x = runs[metric].to_numpy(dtype=float)
    seeds = runs["seed"].to_numpy() if "seed" in runs else np.arange(len(runs))
    keep = np.isfinite(x)
    order = np.argsort(seeds[keep], kind="stable")
    return seeds[keep][order], x[keep][order]


def comparison_scores(results: pd.DataFrame, a: str, b: str, metric: str,
                      paired: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The two arms of a comparison in seed order; paired: only the seeds both arms finished, aligned."""
    seeds_a, xa = arm_scores(results, a, metric)
    seeds_b, xb = arm_scores(results, b, metric)
    if not paired:
        return xa, xb
    common = np.intersect1d(seeds_a, seeds_b)
    return xa[np.isin(seeds_a, common)], xb[np.isin(seeds_b, common)]


def compare_variants(
    results: pd.DataFrame, study: dict[str, Any], metric: str = "val_f1",
    test: stats.TestKind = "student", alphas: tuple[float, ...] = stats.DEFAULT_ALPHAS,
    rng: np.random.Generator | None = None,
) -> list[stats.Comparison]:
    """One Comparison per study["comparisons"] entry on `metric`, Holm over the whole table.

    A comparison's `rope` (F1 points) comes from its entry, and pairing from study["paired"]
    (variants share seeds: runs are matched by seed). `rng` draws the resampling statistics, one
    spawned child generator per comparison (None: those statistics are left out).
    """
    comparisons = study.get("comparisons", [])
    paired = bool(study.get("paired", False))
    generators = rng.spawn(len(comparisons)) if rng is not None else [None] * len(comparisons)
    rows = []
    for comp, generator in zip(comparisons, generators):
        a, b = comparison_scores(results, comp["a"], comp["b"], metric, paired)
        rows.append(stats.compare(a, b, test, alphas, comp.get("label", f"{comp['a']} vs {comp['b']}"),
                                  comp["a"], comp["b"], rope=comp.get("rope"), paired=paired, rng=generator))
    return stats.with_holm(rows)


def comparison_table(rows: Sequence[stats.Comparison]) -> pd.DataFrame:
    """Numeric Table 4 frame (CSV): one row per comparison, NaN where not testable or not computed."""
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
        for i, alpha in enumerate(r.alphas):
            n = None if r.seeds_for_power_by_alpha is None else r.seeds_for_power_by_alpha[i]
            rec[f"seeds_for_80_power_{alpha:g}"] = "" if n is None else str(n)
        rec.update({"paired": "Y" if r.paired else "N", "correlation": v(r.correlation),
                    "wilcoxon_p": v(r.wilcoxon_p), "prob_improvement": v(r.prob_improvement),
                    "pi_low": v(r.pi_low), "pi_high": v(r.pi_high), "boot_low": v(r.boot_low),
                    "boot_high": v(r.boot_high), "aso_a": v(r.aso_a), "aso_b": v(r.aso_b), "rope": v(r.rope),
                    "p_a_better": v(r.p_a_better), "p_equivalent": v(r.p_equivalent),
                    "p_b_better": v(r.p_b_better)})
        records.append(rec)
    return pd.DataFrame(records)


def display_comparison_table(rows: Sequence[stats.Comparison]) -> pd.DataFrame:
    """Table 4 strings: the paper's columns (t, Y/N per alpha) and the extra ones after them.

    With paired rows, the rank test is Wilcoxon's signed-rank and a column r holds the correlation of
    the paired runs.
    """
    paired = any(r.paired for r in rows)
    records = []
    for r in rows:
        rec: dict[str, str] = {"Comparison": r.label, "t": _num(r.t, ".3f"), "df": fmt_df(r.df), "p": fmt_p(r.p)}
        for i, alpha in enumerate(r.alphas):
            rec[f"α = {alpha:g}"] = _yn(None if r.significant is None else r.significant[i])
        ci = DASH if r.diff is None else f"{r.diff:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
        rec.update({"Δ mean [95 % CI]": ci, "Hedges' g": _num(r.hedges_g, ".2f"), "Holm p": fmt_p(r.p_holm)})
        if paired:
            rec.update({"Wilcoxon p": fmt_p(r.wilcoxon_p), "r (paired runs)": _num(r.correlation, "+.2f")})
        else:
            rec["Mann–Whitney p"] = fmt_p(r.mann_whitney_p)
        rec.update({"Seeds/arm for 80 % power": DASH if r.seeds_for_power is None else str(r.seeds_for_power),
                    "Note": "" if r.testable else f"not testable: {r.reason}"})
        records.append(rec)
    return pd.DataFrame(records)


def _interval(point: float | None, low: float | None, high: float | None, fmt: str) -> str:
    if point is None or low is None or high is None:
        return DASH
    return f"{format(point, fmt)} [{format(low, fmt)}, {format(high, fmt)}]"


def display_beyond_table(rows: Sequence[stats.Comparison], superiorities: Sequence[Superiority | None] | None = None,
                         sources: Sequence[str] | None = None) -> pd.DataFrame:
    """"Beyond the t-test" strings: P(A > B), bootstrap interval, ASO, Bayesian ROPE, power per alpha.

    Columns whose statistic no row has (e.g. the resampling ones from summary statistics) are left out.

    Args:
        superiorities: per row, its harness.report.superiority.Superiority (None where a side has no run):
            P(A > B) is then shown with Newcombe's interval and Bouthillier et al.'s decision, in place of the
            percentile bootstrap interval (which collapses to [1, 1] when the runs do not overlap).
        sources: per row, the sources of randomness its runs varied (sources_varied), shown beside it.
    """
    alphas = rows[0].alphas if rows else stats.DEFAULT_ALPHAS
    power_header = "Seeds/arm for 80 % power at α = " + " / ".join(f"{a:g}" for a in alphas)
    records = []
    for i, r in enumerate(rows):
        mean_ok = r.diff is not None and r.boot_low is not None
        if superiorities is None:
            pab = {"P(A > B) [95 % CI]": (_interval(r.prob_improvement, r.pi_low, r.pi_high, ".2f")
                                          if r.pi_low is not None else _num(r.prob_improvement, ".2f"))}
        else:
            pab = _superiority_cells(superiorities[i], None if sources is None else sources[i])
        rec = {
            "Comparison": r.label,
            **pab,
            "Δ mean [95 % bootstrap CI]": (f"{r.diff:+.2f} [{r.boot_low:+.2f}, {r.boot_high:+.2f}]" if mean_ok
                                           else DASH),
            "ASO ε(A≻B) / ε(B≻A)": (DASH if r.aso_a is None or r.aso_b is None
                                    else f"{r.aso_a:.2f} / {r.aso_b:.2f}"),
            "ROPE ± (points)": _num(r.rope, "g"),
            "P(A better) / P(equiv.) / P(B better)": (
                DASH if r.p_a_better is None else f"{r.p_a_better:.3f} / {r.p_equivalent:.3f} / {r.p_b_better:.3f}"),
            power_header: (DASH if r.seeds_for_power_by_alpha is None else
                           " / ".join(DASH if n is None else str(n) for n in r.seeds_for_power_by_alpha)),
        }
        records.append(rec)
    out = pd.DataFrame(records)
    for column in ("P(A > B) [95 % CI]", "Δ mean [95 % bootstrap CI]", "ASO ε(A≻B) / ε(B≻A)"):
        if column in out and (out[column] == DASH).all():
            out = out.drop(columns=[column])
    return out


SUPERIORITY_HEADER = "P(A > B) [95 % Newcombe CI]"
DECISION_HEADER = f"Bouthillier et al. (γ = {DEFAULT_GAMMA:g})"


def superiority_decision(s: Superiority) -> str:
    """Bouthillier et al. 2021's reading of a harness.report.superiority.Superiority, in a few words."""
    if s.surely_meaningful:
        return f"meaningful (interval ≥ {s.gamma:g})"
    if s.meaningful:
        return "meaningful"
    if s.significant:
        return f"significant, below {s.gamma:g}"
    return "B better" if s.high < 0.5 else "not significant"


def _superiority_cells(s: Superiority | None, sources: str | None) -> dict[str, str]:
    cells = {SUPERIORITY_HEADER: DASH if s is None else _interval(s.estimate, s.low, s.high, ".2f"),
             DECISION_HEADER: DASH if s is None else superiority_decision(s)}
    if sources is not None:
        cells["Sources varied"] = sources
    return cells


def superiority_columns(superiorities: Sequence[Superiority | None], sources: Sequence[str]) -> pd.DataFrame:
    """The numeric columns of P(A > B) by harness.report.superiority (Newcombe's interval, Bouthillier et al.'s
    decision) and the sources each comparison's runs varied, one row per comparison (NaN, "" where a side has
    no run); the bootstrap interval of the same estimate stays in comparison_table's pi_low / pi_high."""
    def flag(s: Superiority | None, name: str) -> str:
        return "" if s is None else ("Y" if getattr(s, name) else "N")

    return pd.DataFrame([{
        "superiority": np.nan if s is None else s.estimate, "superiority_low": np.nan if s is None else s.low,
        "superiority_high": np.nan if s is None else s.high,
        "superiority_method": "" if s is None else s.method,
        "superiority_significant": flag(s, "significant"), "superiority_meaningful": flag(s, "meaningful"),
        "superiority_surely_meaningful": flag(s, "surely_meaningful"), "sources_varied": src,
    } for s, src in zip(superiorities, sources)])


def drop_empty_note(display: pd.DataFrame) -> pd.DataFrame:
    """Without the Note column when no row has a note (all comparisons testable)."""
    if "Note" in display and not display["Note"].astype(bool).any():
        return display.drop(columns=["Note"])
    return display


def summary_comparison_table(rows: Sequence[SummaryComparison]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numeric, display) Table 4 from summary statistics, with the audit of the published values:
    the published t as printed, its consistency with the rounding, and per alpha whether the
    published precision settles the decision ("?" where the rounding interval of t crosses the
    critical value)."""
    numeric = comparison_table([r.comparison for r in rows]).drop(columns=["mann_whitney_p", "wilcoxon_p",
                                                                           "prob_improvement", "pi_low", "pi_high",
                                                                           "boot_low", "boot_high", "aso_a", "aso_b",
                                                                           "correlation", "paired"])
    display = display_comparison_table([r.comparison for r in rows]).drop(columns=["Mann–Whitney p"])
    numeric["published_t"] = ["" if r.published_t_text is None else r.published_t_text for r in rows]
    numeric["t_low_rounding"] = [r.t_low for r in rows]
    numeric["t_high_rounding"] = [r.t_high for r in rows]
    numeric["consistent"] = ["" if r.consistent is None else ("Y" if r.consistent else "N") for r in rows]
    numeric["published_decisions"] = ["" if r.published_significant is None else
                                      "".join("Y" if s else "N" for s in r.published_significant) for r in rows]
    numeric["settled_by_precision"] = ["".join(r.settled) for r in rows]
    note = display.pop("Note")
    alphas = rows[0].comparison.alphas if rows else stats.DEFAULT_ALPHAS
    display["Published t"] = [DASH if r.published_t_text is None else r.published_t_text for r in rows]
    display["t range (rounding)"] = [f"[{_num(r.t_low, '.3f')}, {_num(r.t_high, '.3f')}]" for r in rows]
    display["Consistent"] = [DASH if r.consistent is None else ("yes" if r.consistent else "NO") for r in rows]
    display["Decisions at published t"] = ["" if r.published_significant is None else
                                           "/".join("Y" if s else "N" for s in r.published_significant) for r in rows]
    display["Settled by the published precision (α = " + " / ".join(f"{a:g}" for a in alphas) + ")"] = [
        "/".join(r.settled) for r in rows]
    display["Note"] = note
    return numeric, drop_empty_note(display)


def published_configuration_table(configurations: Sequence[Any]) -> pd.DataFrame:
    """The configurations of a summary file as published: name, n, "mean ± sd" with the printed decimals.

    Args:
        configurations: harness.report.summary.Configuration entries, in file order.
    """
    return pd.DataFrame([{"Experiment": c.name, "n": str(c.n), "Mean ± sd (as published)":
                          f"{c.mean.text} ± {c.sd.text}"} for c in configurations])


# ---------------------------------------------------------------- variance components, what tuning buys

def variance_table(results: Sequence[tuple[str, str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numeric, display) of variance components, one row per component of each analysed variant.

    Args:
        results: (variant, metric column, harness.report.variance.VarianceComponents), in report order.
    """
    numeric_rows, display_rows = [], []
    for variant, metric, vc in results:
        for c in vc.components:
            numeric_rows.append({
                "variant": variant, "metric": metric, "design": vc.design, "component": c.name,
                "variance": c.variance, "estimate": c.estimate, "truncated": "Y" if c.truncated else "N",
                "variance_low": c.low, "variance_high": c.high, "share": c.share, "share_low": c.share_low,
                "share_high": c.share_high, "levels": c.levels, "df": c.df, "n_runs": vc.n_runs,
                "runs_per_cell": vc.runs_per_cell, "note": c.note})
            display_rows.append({
                "Variant": variant, "Metric": SHORT_LABELS.get(metric, metric), "Component": c.name,
                "Variance (points²) [95 % CI]": _interval(c.variance, c.low, c.high, ".3f")
                                                + (" (negative estimate, set to 0)" if c.truncated else ""),
                "Share [95 % CI]": (f"{100 * c.share:.0f} % [{100 * c.share_low:.0f}, "
                                    f"{100 * c.share_high:.0f}] %"),
                "Levels": str(c.levels), "df": str(c.df), "Note": c.note})
    return pd.DataFrame(numeric_rows), pd.DataFrame(display_rows)


TUNING_KS: tuple[int, ...] = (1, 2, 3, 5, 10, 15, 20)  # the budgets the display table shows, below the grid's size


def tuning_table(curves: dict[str, Any], trial_seconds: dict[str, float], jobs_per_trial: dict[str, float]
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numeric, display) of the expected best validation score after k tuning trials, per variant.

    Numeric: the whole curve, one row per (variant, k), with its compute (k x the mean trial seconds) and band.
    Display: one row per variant, the curve at a few k and at all N trials (the best point: the one chosen).

    Args:
        curves: variant -> harness.report.tuning_curve.TuningCurve.
        trial_seconds: variant -> mean wall seconds of a trial (a grid point: its tuning jobs summed).
        jobs_per_trial: variant -> mean tuning jobs (seeds) a grid point ran.
    """
    numeric = pd.DataFrame([
        {"variant": v, "trials": c.n, "k": int(k), "compute_seconds": float(k * trial_seconds[v]),
         "expected_best": float(c.expected_max[i]), "low": float(c.low[i]), "high": float(c.high[i]),
         "estimator": c.estimator, "band": c.band}
        for v, c in curves.items() for i, k in enumerate(c.k)])
    top = max(c.n for c in curves.values())
    ks = [k for k in TUNING_KS if k < top]
    display_rows = []
    for v, c in curves.items():
        rec = {"Variant": v, "Trials": str(c.n), "Seeds a trial": f"{jobs_per_trial[v]:g}",
               "Mean trial cost": fmt_duration(trial_seconds[v])}
        for k in ks:
            rec[f"Best of {k}"] = (_interval(c.expected_max[k - 1], c.low[k - 1], c.high[k - 1], ".1f")
                                   if k <= c.n else DASH)
        rec["Best of all (chosen)"] = _interval(c.expected_max[-1], c.low[-1], c.high[-1], ".1f")
        display_rows.append(rec)
    return numeric, pd.DataFrame(display_rows)


def budget_table(entries: Sequence[tuple[str, str, str, Any, str]], compute_unit: str
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numeric, display) of what the tuning budget changes in each comparison.

    Args:
        entries: (comparison label, a, b, harness.report.tuning_curve.BudgetComparison, its budget_reading).
        compute_unit: the unit of the compute budgets ("min": job-minutes).
    """
    def joined(xs: Sequence[float]) -> str:
        return ", ".join(f"{x:g}" for x in xs)

    numeric = pd.DataFrame([
        {"comparison": label, "a": a, "b": b, "axis": bc.axis, "unit": "trials" if bc.axis == "trials" else
         f"job-{compute_unit}", "band": bc.band,
         "leader_changes_at": joined(bc.crossings), "a_ahead_at": joined(bc.a_ahead), "b_ahead_at": joined(bc.b_ahead),
         "changes_with_budget": "Y" if bc.changes_with_budget else "N", "reading": text}
        for label, a, b, bc, text in entries])
    display = pd.DataFrame([
        {"Comparison": label, "Budget": "trials" if bc.axis == "trials" else f"compute (job-{compute_unit})",
         "Order changes with the budget": ("yes: the bands separate both ways" if bc.changes_with_budget else
                                           "estimates cross, bands do not confirm" if bc.crossings else "no"),
         "Statement": text}
        for label, a, b, bc, text in entries])
    return numeric, display


# ---------------------------------------------------------------- seed planning and sequential seeds

def mean_job_seconds(results: pd.DataFrame) -> dict[str, float | None]:
    """variant -> mean wall-clock seconds of its finished jobs (None where no time is recorded)."""
    if not len(results) or "wall_seconds" not in results:
        return {}
    out: dict[str, float | None] = {}
    for variant, runs in results.groupby("variant", sort=False):
        secs = pd.to_numeric(runs["wall_seconds"], errors="coerce").to_numpy(dtype=float)
        secs = secs[np.isfinite(secs)]
        out[str(variant)] = float(secs.mean()) if secs.size else None
    return out


def seed_plan_from_results(
    results: pd.DataFrame, comparisons: Sequence[Any], metric: str = "val_f1", paired: bool = False,
    alphas: tuple[float, ...] = stats.DEFAULT_ALPHAS, power: float = 0.8,
) -> Any:
    """`power.plan_seeds` on a study's finished runs (results.csv rows).

    Args:
        comparisons: objects with label, a, b (spec or record entries) or dicts with those keys.
    Returns:
        a harness.report.power.SeedPlan.
    """
    from harness.report import power as power_mod

    def field(c: Any, key: str) -> str:
        return str(c[key] if isinstance(c, dict) else getattr(c, key))

    pilots = []
    for c in comparisons:
        a, b = field(c, "a"), field(c, "b")
        xa, xb = comparison_scores(results, a, b, metric, paired)
        pilots.append(power_mod.PilotComparison(field(c, "label"), a, b, xa, xb))
    done = {}
    for c in comparisons:
        for v in (field(c, "a"), field(c, "b")):
            done[v] = int(arm_scores(results, v, metric)[1].size)
    return power_mod.plan_seeds(pilots, mean_job_seconds(results), runs_done=done, alphas=alphas, power=power,
                                paired=paired)


def fmt_duration(seconds: float | None) -> str:
    """"42 s", "12 min", "3.4 h", "2.1 days" ("—" when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return DASH
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def seed_plan_table(plan: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(numeric, display) of a power.SeedPlan: one row per comparison, then the study's total."""
    heads = [f"{a:g}" for a in plan.alphas]
    numeric_rows, display_rows = [], []
    for c in plan.comparisons:
        rec: dict[str, Any] = {"comparison": c.label, "a": c.a, "b": c.b, "n_a": c.n_a, "n_b": c.n_b,
                               "effect": np.nan if c.effect is None else c.effect,
                               "effect_kind": "d_z" if c.paired else "hedges_g",
                               "correlation": np.nan if c.correlation is None else c.correlation}
        shown = {"Comparison": c.label, "Runs (a / b)": f"{c.n_a} / {c.n_b}",
                 ("d_z" if c.paired else "Hedges' g"): _num(c.effect, ".2f")}
        for h, n, runs, secs in zip(heads, c.seeds_per_arm, c.extra_runs, c.extra_seconds):
            rec[f"seeds_per_arm_{h}"] = "" if n is None else str(n)
            rec[f"extra_runs_{h}"] = "" if runs is None else str(runs)
            rec[f"extra_seconds_{h}"] = np.nan if secs is None else secs
            shown[f"Seeds/arm at α = {h}"] = DASH if n is None else str(n)
            shown[f"More runs, compute at α = {h}"] = DASH if runs is None else f"{runs}, {fmt_duration(secs)}"
        shown["Note"] = c.reason
        numeric_rows.append(rec)
        display_rows.append(shown)
    total = {"Comparison": "Study (each variant once)", "Runs (a / b)": "",
             ("d_z" if plan.comparisons and plan.comparisons[0].paired else "Hedges' g"): ""}
    for h, runs, secs in zip(heads, plan.extra_runs, plan.extra_seconds):
        total[f"Seeds/arm at α = {h}"] = ""
        total[f"More runs, compute at α = {h}"] = f"{runs}, {fmt_duration(secs)}"
    total["Note"] = ("" if not plan.unplanned else "leaves out " + ", ".join(plan.unplanned))
    display_rows.append(total)
    return pd.DataFrame(numeric_rows), drop_empty_note(pd.DataFrame(display_rows))


def seed_plan_text(plan: Any, metric: str = "val_f1") -> str:
    """What `harness plan FILE --power` prints: a heading line and the plan as a Markdown table."""
    _, display = seed_plan_table(plan)
    what = METRIC_LABELS.get(metric, metric)
    head = (f"Seeds per arm for {plan.power:.0%} power (two-sided t-test at each α) on {what}, from the "
            "finished runs' effect sizes; compute from the measured job times. A pilot's effect size is "
            "uncertain (3 seeds a side: by a factor of about 2), its seed counts by about 4.\n\n")
    return head + to_markdown(display)


def sequential_table(decisions: Sequence[Any], design: Any) -> pd.DataFrame:
    """Display frame of harness.report.sequential decisions: status, look, seeds used, |t| and boundary."""
    rows = []
    for d in decisions:
        last = len(d.t) - 1
        rows.append({"Comparison": d.label,
                     "Decision": {"significant": "significant", "not significant": "not significant",
                                  "continue": "open"}[d.status] + (
                         "" if d.status != "significant" else (" (A > B)" if d.direction > 0 else " (B > A)")),
                     "Seeds/arm used": DASH if d.n is None else str(d.n),
                     "Seeds/arm saved": DASH if d.n is None else str(design.looks[-1] - d.n),
                     "|t| (last look)": DASH if last < 0 else _num(abs(d.t[last]), ".2f"),
                     "Boundary |t|": DASH if last < 0 else _num(d.critical_t[last], ".2f"),
                     "Local α": f"{d.level:.4g}"})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- renderers

def to_markdown(display: pd.DataFrame) -> str:
    """A GitHub-flavoured pipe table ("|" in cells escaped)."""
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in display.columns) + " |"
    rule = "|" + "|".join(":---" if left else "---:" for left in left_aligned(display)) + "|"
    body = ["| " + " | ".join(cell(x) for x in row) + " |" for row in display.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "α": r"$\alpha$",
    "Δ": r"$\Delta$", "†": r"\textdagger{}", "—": "---", "–": "--", "−": "$-$", "∞": r"$\infty$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials (& % _ # $ { } ~ ^ \\) and map ± α Δ dashes to LaTeX."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(display: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A booktabs table environment (needs \\usepackage{booktabs})."""
    spec = "".join("l" if left else "r" for left in left_aligned(display))
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
