"""Assemble reports/<study>/: report.md, a self-contained report.html, tables/ and figures/.

Entry points for the CLI:
- `build_report(run_dir, out_dir, test)`: `python -m harness report runs/<study>` (and the end of
  `harness run`).
- `build_summary_report(summary_file, out_dir, test)`: `python -m harness report --summary FILE`.
- `python -m harness report --results FILE.csv` (runs made elsewhere) is harness.report.external's, built from
  the same sections (`_variant_table_blocks`, `_comparison_blocks`, `_figure_blocks`).

The document is first a list of blocks (heading, paragraph, table, figure), rendered once to Markdown
and once to HTML, so the two never disagree. The generation time appears only in the footer; the
table files never contain one, so the same results give byte-identical tables.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from harness import __version__
from harness.errors import DataError, full_disk_named
from harness.records import RescoreRecord, StudyRecord, to_data
from harness.schema import ROW_IDENTITY_COLUMNS
from harness.report import convergence, figures, missing, sections, stats, tables
from harness.report.pseudolabels import pseudolabel_blocks
from harness.study.rundir import read_study_record
from harness.study.table import read_results
from harness.report.summary import analyse_summary, read_summary
from harness.study.rescore import EVENT_RESAMPLES, PSDS_RESAMPLES, read_rescore

HOW_TO_READ = (
    "How to read Table 4. t, df and p are the two-sample t-test of a minus b ({test}, "
    "two-sided); Y/N say whether p < alpha. Beyond the paper: Δ mean is the difference of means in F1 "
    "points with its 95 % confidence interval; Hedges' g is the standardised difference (pooled sd, "
    "small-sample corrected; 0.2 small, 0.5 medium, 0.8 large); Holm p adjusts p for the number of "
    "comparisons in the table (family-wise error); Mann–Whitney p is a rank test that does not assume "
    "normal scores; Seeds/arm for 80 % power is how many runs per configuration a t-test at alpha 0.05 "
    "would need to detect an effect of the observed size 80 % of the time (more than the runs you "
    "have means the comparison is under-powered). A comparison with fewer than 2 runs on a side or "
    "no variance on both sides is not testable."
)
ROUNDING_NOTE = (
    "t range (rounding) is the interval of t values obtainable from any means and sds that round to the "
    "published ones; a published t outside it (Consistent: NO) cannot come from the published "
    "statistics with this test. Decisions at published t are the Y/N the published t implies at the "
    "same df. Settled by the published precision says, per α, whether every t the rounding allows gives "
    "the same decision: Y (significant whatever the unrounded values), N (not significant), ? (the "
    "rounding interval of t crosses the critical value: the published table cannot decide, and neither "
    "can its reader). Published values are shown as printed."
)


METRIC_DESCRIPTIONS: dict[str, str] = {
    "f1": "the event-based macro F1",
    "segment_f1": "the segment-based macro F1 (1-s segments)",
    "psds1": "PSDS scenario 1 (DCASE 2021-2024 Task 4: dtc = gtc = 0.7, alpha_st = 1, e_max = 100; sed_scores_eval)",
    "psds2": "PSDS scenario 2 (dtc = gtc = 0.1, cttc = 0.3, alpha_ct = 0.5, alpha_st = 1, e_max = 100)",
    "intersection_f1": "the intersection-based macro F1 at threshold 0.5 (dtc = gtc = 0.5)",
    "collar_f1": "the collar-based macro F1 at threshold 0.5 of the raw frame scores (sed_scores_eval)",
}


@dataclass(frozen=True)
class Block:
    kind: str  # "h1", "h2", "p", "table", "figure"
    text: str = ""  # heading/paragraph text, table caption, figure caption
    table: pd.DataFrame | None = None
    path: Path | None = None  # figure PNG, relative to the report directory


def _full_disk_named(build):
    """A report builder whose full disk is named as one, with the report's folder (matplotlib and write_text
    say "No space left on device" without naming the file)."""

    @functools.wraps(build)
    def wrapper(source: Path, out_dir: Path, *args, **kwargs) -> Path:
        with full_disk_named(out_dir):
            return build(source, out_dir, *args, **kwargs)

    return wrapper


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "table"


def _write_table(out_dir: Path, stem: str, numeric: pd.DataFrame, display: pd.DataFrame, caption: str) -> None:
    folder = out_dir / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.csv").write_text(tables.to_csv(numeric), encoding="utf-8", newline="\n")
    (folder / f"{stem}.md").write_text(tables.to_markdown(display), encoding="utf-8", newline="\n")
    latex = tables.to_latex(display, caption=caption, label=f"tab:{stem}")
    (folder / f"{stem}.tex").write_text(latex, encoding="utf-8", newline="\n")


# ---------------------------------------------------------------- inputs

def _load_run(run_dir: Path, rescore: RescoreRecord | None = None, tables_dir: Path | None = None
              ) -> tuple[StudyRecord, dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """The run's typed record (and its mapping view for the table builders), results and per-class results.

    With a rescore, its tables (runs/<run>/rescore/<name>/) and its teacher rows replace the run's own;
    `tables_dir` holds the run's own tables when they are not in the run directory (a read-only one).
    """
    tables_dir = (tables_dir or run_dir) if rescore is None else run_dir / "rescore" / rescore.name
    results_path = tables_dir / "results.csv"
    if not results_path.is_file():
        raise DataError(f"{results_path} not found: run the study first with `python -m harness run <study.toml>`")
    study_path = run_dir / "study.json"
    if not study_path.is_file():
        raise DataError(f"{study_path} not found: {run_dir} is not a run directory written by `python -m harness run`")
    record = read_study_record(run_dir)  # a damaged one: the advice true of study.json
    try:
        results = pd.read_csv(results_path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{results_path}: not a readable table ({e}); rebuild it with `python -m harness report "
                        f"{run_dir}`") from e
    for column in ("variant", "val_f1", "test_f1", *ROW_IDENTITY_COLUMNS):
        if column not in results.columns:
            raise DataError(f"{results_path}: missing column {column!r}; was it written by this harness version?")
    _check_rows_alike(results, results_path)
    per_class_path = tables_dir / "results_per_class.csv"
    per_class = pd.read_csv(per_class_path) if per_class_path.is_file() else pd.DataFrame()
    study = to_data(record)
    if rescore is not None:
        study["reference_rows"] = to_data(rescore)["reference_rows"]
    if not study["tables"]:
        names = [v.name for v in record.variants] or sorted(results["variant"].unique())
        study["tables"] = [{"name": "Table 1", "caption": record.description, "variants": names}]
    return record, study, results, per_class


def _check_rows_alike(results: pd.DataFrame, path: Path) -> None:
    """Refuse a table row (a variant) whose runs trained on different bundles or configs.

    Raises:
        DataError: naming the variant, what differs and the values.
    """
    # Several teachers (teacher_seeds): a variant's runs distil from one bundle per teacher, by design.
    by = ["variant", "seed_teacher"] if "seed_teacher" in results.columns else ["variant"]
    for keys, runs in results.groupby(by, sort=False, dropna=False):
        variant = keys[0] if isinstance(keys, tuple) else keys
        for column in ROW_IDENTITY_COLUMNS:
            values = sorted(runs[column].dropna().astype(str).unique())
            if len(values) > 1:
                what = "shared stages (data, features, teacher)" if column == "bundle_key" else "method configs"
                raise DataError(f"{path}: the runs of variant {variant!r} come from different {what} ({column} "
                                f"{', '.join(values)}); one table row must hold runs of one configuration. Run "
                                "the study again so that every run of the variant is of its current plan")


def _header(record: StudyRecord, n_results: int, metric: tables.MetricChoice | None = None,
            rescore: RescoreRecord | None = None) -> str:
    """The resolution behind every number of the report: profile, overrides, budget, data, commit, metric."""
    r, b = record.resolution, record.budget
    overrides = ", ".join(f"`--set {o}`" for o in r.overrides) or "none"
    teacher = (f"{b.teacher_models} CNNs of width {b.teacher_channels}" if b.teacher_source == "train"
               else "predictions from a file")
    if len(record.reference_rows) > 1:  # a study of several teachers: the base's teacher is not every run's
        teacher = f"{len(record.reference_rows)} teachers (their rows in the tables)"
    student = (f"student h = {b.hidden} ({b.layers} layers" if b.student_model == "lstm"
               else f"student {b.student_model} (see each run's config")
    return (f"Profile: {r.profile}; overrides: {overrides}; budget: {b.steps:,} steps a run, {student}, "
            f"{b.precision} training steps), frames: {b.n_frames} of {b.features_hop * 1000:g} ms, "
            f"teacher: {teacher}; data: {r.data_root} (digest {r.data_digest}); seeds "
            f"{', '.join(map(str, record.seeds))}; harness commit {record.git_commit}; {n_results} finished runs. "
            + _metric_sentence(metric) + _rescore_sentence(rescore))


def _metric_sentence(metric: tables.MetricChoice | None) -> str:
    if metric is None or metric.name == "f1":
        return "F1 is the event-based macro F1 (%), mean ± sd (ddof 1) over seeds."
    what = METRIC_DESCRIPTIONS.get(metric.base, metric.label)
    return (f"Metric: {metric.label}, {what} (%), mean ± sd (ddof 1) over seeds; Table 4's differences are in "
            f"points of {metric.label} (`report --metric {metric.name}`; the default is the paper's event F1).")


def _rescore_sentence(rescore: RescoreRecord | None) -> str:
    if rescore is None:
        return ""
    settings = ", ".join(f"`{o}`" for o in rescore.overrides) or "the jobs' own settings"
    return (f" Scores are the rescore {rescore.name!r} of the runs' saved probabilities under {settings} "
            "(`harness rescore`): each run's best epoch, chosen under its own post-processing, scored again.")


def _variant_order(study: dict[str, Any], results: pd.DataFrame) -> list[str]:
    names = [v["name"] for v in study.get("variants", [])]
    for table in study["tables"]:
        names += [n for n in table["variants"] if n not in names]
    return names + sorted(n for n in results["variant"].unique() if n not in names)


def _read_curve(path: Path) -> dict[int, float] | None:
    """epoch -> val F1 (%) from a job's metrics.csv; None when the file is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        metrics = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError):
        return None
    if not {"epoch", "val_f1"} <= set(metrics.columns) or metrics.empty:
        return None
    return dict(zip(metrics["epoch"].astype(int), metrics["val_f1"].astype(float)))


def _learning_curves(
    run_dir: Path, results: pd.DataFrame, variants: Sequence[str]
) -> tuple[dict[str, np.ndarray], int]:
    """variant -> val F1 (%) of shape (n_runs, n_epochs), NaN-padded, and the number of jobs skipped
    because their metrics.csv is missing or unreadable."""
    curves: dict[str, np.ndarray] = {}
    skipped = 0
    for name in variants:
        runs = results[results["variant"] == name]
        if "seed" in runs:
            runs = runs.sort_values("seed", kind="stable")
        series = []
        for job_id in runs.get("job_id", pd.Series(dtype=str)):
            curve = _read_curve(run_dir / "jobs" / str(job_id) / "metrics.csv")
            if curve is None:
                skipped += 1
            else:
                series.append(curve)
        if not series:
            continue
        values = np.full((len(series), max(max(s) for s in series)), np.nan)
        for i, s in enumerate(series):
            for epoch, f1 in s.items():
                values[i, epoch - 1] = f1
        curves[name] = values
    return curves, skipped


def _convergence(run_dir: Path, results: pd.DataFrame) -> dict[str, convergence.Convergence]:
    """job id -> the convergence verdict of its validation curve (jobs/<id>/metrics.csv); jobs without a
    readable metrics.csv are left out."""
    if not len(results) or "job_id" not in results:
        return {}
    verdicts = {}
    for job_id in results["job_id"].astype(str):
        curve = _read_curve(run_dir / "jobs" / job_id / "metrics.csv")
        if curve is not None:
            epochs = sorted(curve)
            verdicts[job_id] = convergence.assess([curve[e] for e in epochs], epochs)
    return verdicts


def _per_class_matrix(per_class: pd.DataFrame, variants: Sequence[str], split: str
                      ) -> tuple[list[str], list[str], np.ndarray]:
    """Rows: variants with per-class results; columns: the study's classes, as the per-class table first lists
    them (the results record them in the study's order). Mean F1 (%) over runs."""
    if per_class.empty:
        return [], [], np.empty((0, 0))
    classes = [str(c) for c in dict.fromkeys(per_class["event_label"])]
    of_split = per_class[per_class["split"] == split]
    rows = [v for v in variants if (of_split["variant"] == v).any()]
    matrix = np.full((len(rows), len(classes)), np.nan)
    for i, v in enumerate(rows):
        sub = of_split[of_split["variant"] == v]
        means = sub.groupby("event_label")["f1"].mean()
        for j, c in enumerate(classes):
            if c in means.index:
                matrix[i, j] = float(means[c])
    return rows, classes, matrix


# ---------------------------------------------------------------- rendering

def _markdown(blocks: Sequence[Block]) -> str:
    parts = []
    for b in blocks:
        if b.kind == "h1":
            parts.append(f"# {b.text}\n")
        elif b.kind == "h2":
            parts.append(f"## {b.text}\n")
        elif b.kind == "p":
            parts.append(f"{b.text}\n")
        elif b.kind == "table":
            assert b.table is not None
            parts.append((f"**{b.text}**\n\n" if b.text else "") + tables.to_markdown(b.table))
        elif b.kind == "figure":
            parts.append(f"![{b.text}]({b.path.as_posix() if b.path else ''})\n\n*{b.text}*\n")
    return "\n".join(parts)


def _html(blocks: Sequence[Block], title: str, out_dir: Path) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
             "th,td{border-bottom:1px solid #ccc;padding:4px 8px;text-align:right}"
             "th:first-child,td:first-child{text-align:left}caption{font-weight:bold;text-align:left}"
             "img{max-width:100%}</style></head><body>"]
    for b in blocks:
        if b.kind in ("h1", "h2"):
            parts.append(f"<{b.kind}>{e(b.text)}</{b.kind}>")
        elif b.kind == "p":
            parts.append(f"<p>{e(b.text)}</p>")
        elif b.kind == "table":
            assert b.table is not None
            left = [' style="text-align:left"' if x else '' for x in tables.left_aligned(b.table)]
            rows = ["<tr>" + "".join(f"<th{a}>{e(str(c))}</th>" for a, c in zip(left, b.table.columns)) + "</tr>"]
            rows += ["<tr>" + "".join(f"<td{a}>{e(str(x))}</td>" for a, x in zip(left, r)) + "</tr>"
                     for r in b.table.itertuples(index=False)]
            caption = f"<caption>{e(b.text)}</caption>" if b.text else ""
            parts.append(f"<table>{caption}{''.join(rows)}</table>")
        elif b.kind == "figure" and b.path is not None:
            data = base64.b64encode((out_dir / b.path).read_bytes()).decode("ascii")
            parts.append(f'<figure><img alt="{e(b.text)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{e(b.text)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _footer() -> Block:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return Block("p", f"Generated by harness {__version__} on {now}.")


def _write_documents(blocks: list[Block], title: str, out_dir: Path) -> Path:
    blocks = [*blocks, _footer()]
    md_path = out_dir / "report.md"
    md_path.write_text(_markdown(blocks), encoding="utf-8", newline="\n")
    (out_dir / "report.html").write_text(_html(blocks, title, out_dir), encoding="utf-8", newline="\n")
    return md_path


def _figure_blocks(run_dir: Path, out_dir: Path, study: dict[str, Any], results: pd.DataFrame,
                   per_class: pd.DataFrame, metric: tables.MetricChoice | None = None) -> list[Block]:
    metric = metric or tables.MetricChoice("f1", ("val_f1", "test_f1"), "F1")
    variants = [v for v in _variant_order(study, results) if (results["variant"] == v).any()]
    blocks = [Block("h2", "Figures")]

    def scores(column: str | None) -> dict[str, np.ndarray]:
        if column is None:
            return {}
        return {v: results.loc[results["variant"] == v, column].dropna().to_numpy(dtype=float) for v in variants}

    if metric.name == "f1":
        caption, stem, ylabel = ("Validation and test F1 per variant (points: runs; box: quartiles)",
                                 "f1_distribution", "Event-based macro F1 (%)")
    else:
        caption = f"{metric.label} per variant (points: runs; box: quartiles)"
        stem, ylabel = f"{metric.name}_distribution", f"{tables.metric_names().get(metric.base, metric.label)} (%)"
    split_of = {c.split("_", 1)[0]: c for c in metric.columns}  # "val" / "test" -> column
    split_names = ("validation", "test")
    if metric.base not in tables.metric_names():  # a column of results made elsewhere: no split, no unit known
        split_of, ylabel, split_names = {"val": metric.columns[0]}, metric.label, ("", "test")
    ax = figures.plot_f1_distribution(scores(split_of.get("val")), scores(split_of.get("test")), title=caption,
                                      metric=tables.metric_names().get(metric.base, metric.label), ylabel=ylabel,
                                      split_names=split_names)
    figures.save_figure(ax.figure, out_dir / "figures" / stem)
    blocks.append(Block("figure", caption, path=Path(f"figures/{stem}.png")))
    blocks += _factor_level_blocks(out_dir, study, results, variants, metric.columns[0], ylabel)
    for split in ("validation", "test") if metric.base == "f1" else ():  # per class: event F1 only
        rows, classes, matrix = _per_class_matrix(per_class, variants, split)
        if rows:
            caption = f"Per-class {split} F1 (%), mean over runs"
            ax = figures.plot_per_class_heatmap(matrix, rows, classes, title=caption)
            figures.save_figure(ax.figure, out_dir / "figures" / f"per_class_{split}")
            blocks.append(Block("figure", caption, path=Path(f"figures/per_class_{split}.png")))
    curves, skipped = _learning_curves(run_dir, results, variants)
    if curves:
        caption = "Validation F1 (%) per epoch: mean and min-max band over seeds"
        if skipped:
            caption += f" ({skipped} job(s) without a readable metrics.csv left out)"
        ax = figures.plot_learning_curves(curves, study["generation_epochs"], title=caption)
        figures.save_figure(ax.figure, out_dir / "figures" / "learning_curves")
        blocks.append(Block("figure", caption, path=Path("figures/learning_curves.png")))
    return blocks


def _numeric_levels(results: pd.DataFrame, name: str, variants: Sequence[str]) -> dict[str, float] | None:
    """variant -> its level of factor `name` when every level is a number (not a boolean), else None."""
    if name not in results.columns:
        return None
    levels = {}
    for v in variants:
        values = results.loc[results["variant"] == v, name].dropna().unique()
        if len(values) != 1:
            continue
        value = values[0]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            return None
        levels[v] = float(value)
    return levels if len(set(levels.values())) >= 2 else None


def _factor_level_blocks(out_dir: Path, study: dict[str, Any], results: pd.DataFrame, variants: Sequence[str],
                         column: str, ylabel: str) -> list[Block]:
    """A figure per numeric factor of the study (student.hidden, train.lr, ...): the metric against its
    levels, every run and the mean with its 95 % t interval, one line per setting of the other factors."""
    blocks = []
    shown = tables.study_factors(study)
    for factor in shown:
        levels = _numeric_levels(results, factor["name"], variants)
        if levels is None:
            continue
        compared = results.loc[results["variant"].isin(list(levels))]
        others = [f for f in shown if f["name"] != factor["name"] and f["name"] in results.columns
                  and compared[f["name"]].nunique() > 1]  # the factors that set the lines apart
        groups: dict[str, list[figures.LevelPoint]] = {}
        for v, level in levels.items():
            runs = results.loc[results["variant"] == v]
            context = ", ".join(f"{o['label']} {tables.factor_label(o, runs[o['name']].iloc[0], {})}" for o in others)
            values = runs[column].dropna().to_numpy(dtype=float)
            if values.size == 0:
                continue
            low, high = stats.mean_ci(values)
            groups.setdefault(context, []).append(
                figures.LevelPoint(level, values, float(values.mean()), low, high))
        if not groups:
            continue
        label = tables.METRIC_LABELS.get(column, column)
        caption = f"{label[:1].upper() + label[1:]} against {factor['label']} (dots: runs; line: mean with its 95 % t interval)"
        stem = "factor_" + _slug(factor["name"])
        ax = figures.plot_factor_levels(groups, factor["label"], ylabel, caption)
        figures.save_figure(ax.figure, out_dir / "figures" / stem)
        blocks.append(Block("figure", caption, path=Path(f"figures/{stem}.png")))
    return blocks


@_full_disk_named
def build_report(run_dir: Path, out_dir: Path, test: stats.TestKind = "student",
                 seed: int = sections.REPORT_SEED, metric: str = "f1", rescore: str | None = None,
                 cache_dir: Path | None = None, tables_dir: Path | None = None) -> Path:
    """Build reports/<study>/ from runs/<study>/ (see the module docstring); returns report.md's path.

    Args:
        seed: seeds the resampling statistics (bootstrap, ASO, the clip-level bootstrap) and the
            sequential boundaries' simulation.
        metric: what Tables 1-4 and the figures show (tables.choose_metric): "f1", "psds1", "val_psds1", ...
        rescore: build on runs/<run>/rescore/<rescore>/ instead of the run's own tables.
        cache_dir: where the run's shared stages are (the clip-level bootstrap and the PSD-ROC need the
            reference events); default: the harness cache, then where each job read them.
        tables_dir: where the run's results.csv is, when not in run_dir (rebuilt elsewhere because run_dir is
            read-only); nothing is written into run_dir then, but for the cached intervals where it can.

    Raises:
        DataError: no results.csv or study.json in run_dir (run the study first), no such rescore.
        ConfigError: a metric that is not a column of the results (the valid ones listed).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    rescore_record = None if rescore is None else read_rescore(run_dir, rescore)
    record, study, results, per_class = _load_run(run_dir, rescore_record, tables_dir)
    choice = tables.choose_metric(metric, results.columns)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"Study {record.name}" + ("" if choice.name == "f1" else f": {choice.label}")
    blocks = [Block("h1", title)]
    if record.description:
        blocks.append(Block("p", record.description))
    blocks.append(Block("p", _header(record, len(results), choice, rescore_record)))
    blocks += _missing_blocks(run_dir, record, results, rescore_record is not None)
    verdicts = _convergence(run_dir, results)
    flagged = sections.unconverged_variants(results, verdicts)
    blocks += _variant_table_blocks(out_dir, results, study, choice, flagged)
    blocks += pseudolabel_blocks(out_dir, study)  # the teacher beside its row: its pseudolabels, where truth is known
    variants = [v for v in _variant_order(study, results) if (results["variant"] == v).any()]
    blocks += sections.convergence_blocks(out_dir, results, variants, verdicts)
    within, missing = _within_run(run_dir, results, choice, rescore_record, cache_dir, seed)
    blocks += sections.uncertainty_blocks(out_dir, results, variants, choice.columns, within, missing,
                                          EVENT_RESAMPLES, PSDS_RESAMPLES)
    blocks += sections.compute_blocks(out_dir, results, variants)
    blocks += _comparison_blocks(out_dir, results, study, choice, test, seed, flagged)
    blocks += sections.variance_blocks(out_dir, results, study, variants, choice.columns, seed)
    blocks += sections.tuning_blocks(out_dir, _tuning_records(run_dir, record), study,
                                     _variant_order(study, results), seed)
    if len(results):
        blocks += _figure_blocks(run_dir, out_dir, study, results, per_class, choice)
        blocks += sections.roc_blocks(out_dir, results, variants, within)
    return _write_documents(blocks, title, out_dir)


def _variant_table_blocks(out_dir: Path, results: pd.DataFrame, study: dict[str, Any], choice: tables.MetricChoice,
                          flagged: dict[str, tuple[int, int]]) -> list[Block]:
    """Tables 1-3 (the study's tables), one section each; shared by run reports and `report --results`."""
    blocks: list[Block] = []
    for table in study["tables"]:
        numeric = tables.variant_table(results, study, table, choice.columns)
        display, legend = sections.mark_unconverged(tables.display_variant_table(numeric), flagged)
        caption = f"{table['name']}: {table.get('caption', '')}".rstrip(": ")
        _write_table(out_dir, _slug(table["name"]), numeric, display, caption)
        blocks += [Block("h2", table["name"]), Block("table", caption, table=display), *legend]
    return blocks


def _comparison_blocks(out_dir: Path, results: pd.DataFrame, study: dict[str, Any], choice: tables.MetricChoice,
                       test: stats.TestKind, seed: int, flagged: dict[str, tuple[int, int]]) -> list[Block]:
    """Table 4 per metric column with the tables beyond it, the forest plot and the sequential decisions
    ([] without comparisons); shared by run reports and `report --results`."""
    if not study.get("comparisons"):
        return []
    blocks: list[Block] = []
    test_name = "Student's pooled t" if test == "student" else "Welch's t"
    rngs, rows_by_metric = np.random.default_rng(seed).spawn(len(choice.columns)), {}
    sources = sections.comparison_sources(results, study)
    for i, (column, rng) in enumerate(zip(choice.columns, rngs)):
        heading = _table4_heading(column, first=i == 0)
        rows = rows_by_metric[column] = tables.compare_variants(results, study, column, test, rng=rng)
        caption = f"{heading} ({test_name}, two-sided)"
        display = tables.drop_empty_note(tables.display_comparison_table(rows))
        _write_table(out_dir, f"table4_{column}", tables.comparison_table(rows), display, caption)
        warning = sections.convergence_warning(rows, flagged)
        blocks += [Block("h2", heading), *warning, Block("table", caption, table=display)]
        superior = sections.superiorities(results, study, column)
        blocks += [*warning, *sections.beyond_blocks(out_dir, rows, column, superior, sources)]
    blocks.append(Block("p", HOW_TO_READ.format(test=test_name)))
    blocks.append(Block("p", sections.HOW_TO_READ_BEYOND))
    blocks.append(Block("p", sections.randomness_note(results, _compared_variants(study))))
    blocks += sections.forest_blocks(out_dir, rows_by_metric, flagged=flagged)
    blocks += sections.sequential_blocks(out_dir, results, study, seed, metric=choice.columns[0], flagged=flagged)
    return blocks


def _compared_variants(study: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(v for c in study.get("comparisons", []) for v in (c["a"], c["b"])))


def _tuning_records(run_dir: Path, record: StudyRecord) -> list[Any]:
    """The finished tuning jobs of the current plan (phase "tune"); [] for a study without [tune]."""
    if not record.tune_jobs:
        return []
    return read_results(run_dir / "jobs", set(record.tune_jobs), phase="tune")


def _missing_blocks(run_dir: Path, record: StudyRecord, results: pd.DataFrame, rescored: bool) -> list[Block]:
    """"Missing runs": every run of the plan without a row, why (failed and its reason, not run yet, running)
    and its log; near the top, since every table below is computed without them."""
    runs = missing.missing_runs(run_dir, record, results, rescored)
    if not runs:
        return []
    return [Block("h2", "Missing runs"), Block("p", missing.summary(runs, len(record.jobs))),
            Block("table", "Runs of the plan without results", table=missing.table(runs))]


def _table4_heading(column: str, first: bool) -> str:
    """"Table 4: t-tests on validation F1, as in the paper", then "Table 4b: the same t-tests on test F1"."""
    label = tables.METRIC_LABELS.get(column, column)
    if not first:
        return f"Table 4b: the same t-tests on {label}"
    return f"Table 4: t-tests on {label}" + (", as in the paper" if column == "val_f1" else "")


def _within_run(run_dir: Path, results: pd.DataFrame, choice: tables.MetricChoice,
                rescore: RescoreRecord | None, cache_dir: Path | None, seed: int) -> tuple[dict, list[str]]:
    """Each run's clip-level bootstrap of the report's metric and its PSD-ROC (harness.study.rescore), computed
    from its saved probabilities; (job id -> UncertaintyRecord, why the others have none)."""
    from harness.study.rescore import RescoreSettings, run_uncertainty, settings_of

    if not len(results) or "job_id" not in results:
        return {}, []
    settings = RescoreSettings() if rescore is None else settings_of(rescore)
    scenario = "psds2" if choice.base == "psds2" else "psds1"
    return run_uncertainty(run_dir, list(results["job_id"].astype(str)), settings, choice.columns, scenario, seed,
                           cache_dir)


@_full_disk_named
def build_summary_report(summary_file: Path, out_dir: Path, test: stats.TestKind = "student") -> Path:
    """Table 4 from published summary statistics (harness.report.summary formats); returns report.md.

    Raises:
        ConfigError: the summary file is missing or malformed (naming file, row and key).
    """
    summary_file, out_dir = Path(summary_file), Path(out_dir)
    table = read_summary(summary_file)
    rows = analyse_summary(table, test)
    numeric, display = tables.summary_comparison_table(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    test_name = "Student's pooled t" if test == "student" else "Welch's t"
    caption = f"Table 4 from summary statistics ({test_name}, two-sided)"
    _write_table(out_dir, "table4_summary", numeric, display, caption)
    title = f"Table 4 from {summary_file.name}"
    blocks = [Block("h1", title),
              Block("p", f"Metric: {table.metric or 'as given'}; {len(table.configurations)} configurations, "
                         f"{len(rows)} comparison(s). Mann–Whitney p needs the runs and is omitted."),
              Block("table", caption, table=display),
              Block("p", HOW_TO_READ.format(test=test_name)), Block("p", ROUNDING_NOTE),
              *sections.summary_blocks(out_dir, table, rows), Block("p", sections.HOW_TO_READ_BEYOND)]
    return _write_documents(blocks, title, out_dir)
