"""The report of results made elsewhere: `python -m harness report --results FILE.csv [--study STUDY.toml]`.

FILE is a tidy table of runs trained outside the harness (DESED_task, a published per-seed table), one
line per run::

    variant,seed,val_f1,test_f1,masking
    baseline,1,40.1,38.2,none
    baseline,2,40.9,38.0,none
    ...

- `variant` and `seed` (an integer) are required; a (variant, seed) appears once.
- Metric columns: the harness's own names (val_f1, test_psds1, ...: tables.METRIC_LABELS) are numbers per
  run (empty: missing), as is the column `--metric COLUMN` names; any other column whose every cell is a
  number may be chosen with `--metric`.
- Per-class F1: columns val_f1_<class> / test_f1_<class> (harness.constants.CLASSES) give the heatmaps.
- Factor columns: every other non-numeric column describes the variant, so it is the same on all its runs.
- The harness's bookkeeping columns (job_id, study, steps, provenance ...: schema.RESULTS_COLUMNS) are
  ignored: a results.csv of the harness itself can be read.

The report is a run report's (harness.report.build) without what needs the harness's per-epoch logs and
saved probabilities: Tables 1-3, Table 4 and the tables beyond it, the forest plot, the sequential
decisions, the score distributions (and per-class heatmaps). The comparisons come from `--study` (its
[[comparison]] and [[table]] entries, its `paired`) or, without one, are every pair of variants.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from harness import plugins
from harness.constants import CLASSES
from harness.errors import ConfigError, DataError, not_a_file
from harness.report import build, sections, stats, tables
from harness.schema import FACTOR_COLUMNS, RESULTS_COLUMNS

REQUIRED: tuple[str, ...] = ("variant", "seed")
HARNESS_METRICS: frozenset[str] = frozenset(tables.METRIC_LABELS)  # val_f1, test_psds1, ...
PER_CLASS: dict[str, tuple[str, str]] = {f"{prefix}_f1_{c}": (long, c) for prefix, (long, _) in
                                         tables.SPLIT_PREFIXES.items() for c in CLASSES}  # column -> (split, class)
# The harness's own columns that are neither metrics nor factors: one value per run (job_id) or bookkeeping.
BOOKKEEPING: frozenset[str] = frozenset(RESULTS_COLUMNS) - {*REQUIRED, *FACTOR_COLUMNS, *HARNESS_METRICS}
SAFE_NAME = re.compile(r"[A-Za-z0-9_.+-]+")  # a metric column name that can name the report's files
FIX = "one line per run with columns variant, seed and the metrics (docs/report.md, \"Results made elsewhere\")"


@dataclass(frozen=True)
class ExternalResults:
    """A results file read and checked.

    Attributes:
        results: one row per run, file order: variant (str), seed (int), the numeric columns (float, NaN where
            empty) and the factor columns (str; float where every level is a number).
        numeric: the numeric columns besides seed (the harness's metrics among them), file order: what
            `--metric` may name.
        factors: the factor columns, file order.
        ignored: the harness's bookkeeping columns and the empty ones, left out of `results`.
        per_class: the per-class columns as rows (variant, seed, split, event_label, f1); empty without them.
        first_line: variant -> the line of its first run.
    """

    path: Path
    sha256: str
    results: pd.DataFrame
    numeric: tuple[str, ...]
    factors: tuple[str, ...]
    ignored: tuple[str, ...]
    per_class: pd.DataFrame
    first_line: dict[str, int]

    @property
    def variants(self) -> list[str]:
        return list(dict.fromkeys(self.results["variant"]))

    def factor_levels(self, variant: str) -> dict[str, Any]:
        runs = self.results[self.results["variant"] == variant]
        return {c: runs[c].iloc[0] for c in self.factors}


# ---------------------------------------------------------------- reading

def read_results(path: Path, metric: str = "f1", factors: Sequence[str] = ()) -> ExternalResults:
    """Read and check a results file made elsewhere (see the module docstring).

    Args:
        metric: `--metric`; a column of that name must hold numbers, as the harness's metric columns do.
        factors: columns that are factors whatever they hold (the factors of `--study`, numbers or not).

    Raises:
        DataError: not a file, not UTF-8, not a CSV, empty, a missing `variant` or `seed` column, an empty
            variant, a seed that is not an integer, a metric cell that is not a number, a (variant, seed) given
            twice, a factor column that differs between the runs of one variant; naming the line and column.
    """
    path = Path(path)
    if not path.is_file():
        raise not_a_file(path, "results file", f"give a CSV with {FIX}")
    data = path.read_bytes()
    header, rows = _csv_rows(path, data)
    kinds = {c: _kind(c, [r[i] for _, r in rows], metric, factors) for i, c in enumerate(header) if c not in REQUIRED}
    results = _frame(path, header, rows, kinds)
    lines = [line for line, _ in rows]
    _check_runs(path, results, lines)
    factors = tuple(c for c, k in kinds.items() if k == "factor")
    _check_factors(path, results, lines, factors)
    for column in factors:  # numeric levels (a study's student.hidden) stay numbers: the factor-level figures
        levels = [_number(x) for x in results[column]]
        if all(x is not None and not math.isnan(x) for x in levels):
            results[column] = levels
    numeric = tuple(c for c, k in kinds.items() if k in ("metric", "number"))
    first = {v: lines[i] for i, v in reversed(list(enumerate(results["variant"])))}
    return ExternalResults(path, hashlib.sha256(data).hexdigest(), results, numeric, factors,
                           tuple(c for c, k in kinds.items() if k == "ignored"), _per_class(results), first)


def _csv_rows(path: Path, data: bytes) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header (stripped names) and (line, cells) of every non-blank line after it."""
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's byte-order mark is no part of the first name
    except UnicodeDecodeError:  # its bytes are not shown: the file may be anything
        raise DataError(f"{path}: not UTF-8 text; expected a CSV with {FIX}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((reader.line_num, row))
    except csv.Error as e:
        raise DataError(f"{path}: line {reader.line_num + 1}: not readable as CSV ({e}); expected {FIX}") from e
    if not rows:
        raise DataError(f"{path}: empty; expected a header line and {FIX}")
    (head_line, header), body = rows[0], rows[1:]
    header = _header(path, head_line, header)
    if not body:
        raise DataError(f"{path}: no runs, only the header (line {head_line}); add {FIX}")
    for line, row in body:
        if len(row) != len(header):
            raise DataError(f"{path}: line {line}: {len(row)} fields, but the header (line {head_line}) has "
                            f"{len(header)}; every line needs a cell per column (empty where unknown), separated "
                            "by commas")
    return header, body


def _header(path: Path, line: int, cells: list[str]) -> list[str]:
    names = [c.strip() for c in cells]
    for i, name in enumerate(names, start=1):
        if not name:
            raise DataError(f"{path}: line {line}, column {i}: no column name; name every column of the header")
        if name in names[: i - 1]:
            raise DataError(f"{path}: line {line}, column {i}: column {name!r} appears twice; rename one")
    for name in REQUIRED:
        if name not in names:
            hint = next((f" (the header looks {sep!r}-separated: write the file with commas)"
                         for sep in (";", "\t", "|") if len(names) == 1 and sep in names[0]), "")
            raise DataError(f"{path}: line {line}: no column {name!r}{hint}; the header has "
                            f"{', '.join(repr(n) for n in names)}; expected {FIX}")
    return names


def _frame(path: Path, header: list[str], rows: list[tuple[int, list[str]]], kinds: dict[str, str]
           ) -> pd.DataFrame:
    """The cells as typed columns (variant, seed, numbers, factor levels), the ignored columns left out."""
    columns: dict[str, list[Any]] = {c: [] for c in header if kinds.get(c) != "ignored"}
    for line, row in rows:
        for column, cell in zip(header, row):
            if column in columns:
                columns[column].append(_cell(path, line, column, cell, kinds.get(column, column)))
    return pd.DataFrame(columns)


def _kind(column: str, cells: list[str], metric: str, factors: Sequence[str]) -> str:
    """"number", "factor" or "ignored"; a metric column is "metric" (numbers, checked cell by cell)."""
    if column in factors or column in FACTOR_COLUMNS:
        return "factor"
    if column in HARNESS_METRICS or column in PER_CLASS or column == metric:
        return "metric"
    if column in BOOKKEEPING or not any(c.strip() for c in cells):
        return "ignored"
    return "number" if all(_number(c) is not None for c in cells if c.strip()) else "factor"


def _number(cell: str) -> float | None:
    """The cell's number; NaN when empty or "nan" (a missing value); None when it is not a finite number."""
    text = cell.strip()
    if not text:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) or math.isnan(value) else None


def _cell(path: Path, line: int, column: str, cell: str, kind: str) -> Any:
    where = f"{path}: line {line}, column {column!r}"
    if kind == "variant":
        if not cell.strip():
            raise DataError(f"{where}: empty; every run names its variant")
        return cell.strip()
    if kind == "seed":
        value = _number(cell)
        if value is None or math.isnan(value) or value != int(value):
            raise DataError(f"{where}: {cell!r} is not an integer; a seed is the run's random seed (or 1, 2, ... "
                            "numbering the runs of a variant)")
        return int(value)
    if kind in ("metric", "number"):
        value = _number(cell)
        if value is None:
            raise DataError(f"{where}: {cell!r} is not a number; a metric holds one finite number per run (an "
                            "empty cell where a run has none)")
        return value
    return cell.strip()  # a factor level


def _check_runs(path: Path, results: pd.DataFrame, lines: list[int]) -> None:
    """One line per (variant, seed)."""
    seen: dict[tuple[str, int], int] = {}
    for line, variant, seed in zip(lines, results["variant"], results["seed"]):
        if (variant, seed) in seen:
            raise DataError(f"{path}: line {line}, columns 'variant' and 'seed': variant {variant!r} seed {seed} "
                            f"is already on line {seen[variant, seed]}; one line per run (average repeated "
                            "evaluations of a run first, or give distinct runs distinct seeds)")
        seen[variant, seed] = line


def _check_factors(path: Path, results: pd.DataFrame, lines: list[int], factors: tuple[str, ...]) -> None:
    """A factor column describes the variant: one level on all its runs."""
    for column in factors:
        first: dict[str, tuple[str, int]] = {}
        for line, variant, level in zip(lines, results["variant"], results[column]):
            was, at = first.setdefault(variant, (level, line))
            if level != was:
                raise DataError(f"{path}: line {line}, column {column!r}: variant {variant!r} has {level!r} here "
                                f"but {was!r} on line {at}; a non-numeric column other than variant and seed is a "
                                "factor of the variant, the same on all its runs: correct it, or name the "
                                "variants apart")


def _per_class(results: pd.DataFrame) -> pd.DataFrame:
    """The per-class columns as the rows results_per_class.csv has (what the heatmaps read)."""
    rows = [{"variant": v, "seed": s, "split": PER_CLASS[c][0], "event_label": PER_CLASS[c][1], "f1": x}
            for c in results.columns if c in PER_CLASS
            for v, s, x in zip(results["variant"], results["seed"], results[c]) if math.isfinite(x)]
    return pd.DataFrame(rows, columns=["variant", "seed", "split", "event_label", "f1"])


# ---------------------------------------------------------------- metric and study

def choose_metric(name: str, data: ExternalResults) -> tuple[tables.MetricChoice, pd.DataFrame]:
    """The metric of the report and the results it is read from (a column whose name cannot name a file is
    renamed there to one that can; its label keeps the name).

    Raises:
        ConfigError: `name` is no metric of the file, listing the valid names.
    """
    numeric = [c for c in data.numeric if c not in PER_CLASS]
    if name in tables.METRIC_NAMES:
        found = [c for c in (f"val_{name}", f"test_{name}") if c in numeric]
        if found:
            return tables.choose_metric(name if len(found) == 2 else found[0], found), data.results
    if name in data.results.columns and name not in (*REQUIRED, *data.factors):
        if name in HARNESS_METRICS:
            return tables.choose_metric(name, [name]), data.results
        # A name the harness reads as a metric pair ("psds1") would be read as its val_/test_ columns.
        safe = name if SAFE_NAME.fullmatch(name) and name not in tables.METRIC_NAMES else _free_name(
            build._slug(name) + ("_column" if name in tables.METRIC_NAMES else ""), data.results.columns)
        return tables.MetricChoice(safe, (safe,), name), data.results.rename(columns={name: safe})
    valid = [m for m in tables.METRIC_NAMES if f"val_{m}" in numeric or f"test_{m}" in numeric] + numeric
    raise ConfigError(f"--metric {name!r}: not a metric column of {data.path}; give --metric one of: "
                      f"{', '.join(valid) or 'none (no column holds a number per run)'}")


def _free_name(name: str, taken: Any) -> str:
    while name in set(taken):
        name += "_metric"
    return name


def load_spec(study_file: Path | None) -> Any:
    """The parsed `--study` file (harness.study.spec.StudySpec), or None without one.

    Raises:
        ConfigError: the file is malformed (naming it and the key).
    """
    if study_file is None:
        return None
    from harness.study.spec import load_study

    return load_study(Path(study_file))


def study_of(data: ExternalResults, spec: Any) -> tuple[dict[str, Any], str]:
    """The study mapping the table builders read (variants with their factors, the factors' descriptions,
    tables, comparisons, paired) and a sentence on where the comparisons come from.

    Args:
        spec: the `--study` file's StudySpec (load_spec), or None: every pair of variants, unpaired.

    Raises:
        ConfigError: a table or comparison of the study names a variant without runs in the results file, or
            the study gives a variant another factor level than the file.
    """
    if spec is None:
        return _all_pairs(data)
    present = data.variants
    for where, names in [*((f"comparison {c.label!r}", (c.a, c.b)) for c in spec.comparisons),
                         *((f"table {t.name!r}", t.variants) for t in spec.tables)]:
        for name in names:
            if name not in present:
                raise ConfigError(f"{spec.path}: {where} names variant {name!r}, which has no runs in "
                                  f"{data.path}; its variants: {', '.join(present)}")
    variants = [v.name for v in spec.variants if v.name in present]
    variants += [v for v in present if v not in variants]
    listed = {v.name: v.factor_dict for v in spec.variants}
    study = {"name": spec.name, "description": spec.description, "paired": spec.paired, "reference_rows": [],
             "variants": [{"name": v, "factors": _merged_factors(data, listed.get(v, {}), v, spec.path)}
                          for v in variants],
             "factors": _factor_infos([*spec.factor_specs, *data.factors]),
             "tables": [{"name": t.name, "caption": t.caption, "variants": list(t.variants)} for t in spec.tables],
             "comparisons": [{"label": c.label, "a": c.a, "b": c.b, "rope": c.rope} for c in spec.comparisons]}
    tabled = {v for t in spec.tables for v in t.variants}
    outside = [v for v in present if v not in tabled]
    text = (f"Comparisons and tables: those of {spec.path} ({len(spec.comparisons)} [[comparison]] entries), "
            + ("seeds paired (`paired = true`)." if spec.paired else "runs unpaired."))
    if outside:
        text += f" In no table of {spec.path.name}, shown in the figures only: {', '.join(outside)}."
    return study, text


def _factor_infos(names: Sequence[str]) -> list[dict[str, Any]]:
    """The factors' descriptions the tables show (column header, level labels), as a run's study.json holds
    them: the registry's for the paper's four and registered ones, else a column headed by its name."""
    specs = [plugins.factor_spec(n) for n in dict.fromkeys(names)]
    return [{"name": f.name, "key": f.key, "label": f.label, "level_labels": dict(f.level_labels)} for f in specs]


def _merged_factors(data: ExternalResults, listed: dict[str, Any], variant: str, study_file: Path) -> dict[str, Any]:
    """The study file's factor levels of a variant and the results file's factor columns, which must agree."""
    levels = data.factor_levels(variant)
    for factor, level in listed.items():
        if factor in levels and plugins.level_text(levels[factor]) != plugins.level_text(level) \
                and _number(plugins.level_text(levels[factor])) != _number(plugins.level_text(level)):
            raise ConfigError(f"{data.path}: line {data.first_line[variant]}, column {factor!r}: variant "
                              f"{variant!r} has {levels[factor]!r}, but {study_file} says {factor} = {level!r}; "
                              "make the two files agree")
    return {**levels, **listed}


def _all_pairs(data: ExternalResults) -> tuple[dict[str, Any], str]:
    variants = data.variants
    pairs = list(itertools.combinations(variants, 2))
    study = {"name": data.path.stem, "description": "", "paired": False, "reference_rows": [],
             "variants": [{"name": v, "factors": data.factor_levels(v)} for v in variants],
             "factors": _factor_infos(data.factors),
             "tables": [{"name": "Table 1", "caption": f"Runs from {data.path.name}", "variants": variants}],
             "comparisons": [{"label": f"{a} vs {b}", "a": a, "b": b, "rope": None} for a, b in pairs]}
    text = (f"Comparisons: every pair of variants ({len(pairs)}; a is the one first in the file), runs unpaired "
            "(give `--study STUDY.toml` for its [[comparison]] entries, tables and `paired`)."
            if pairs else "One variant: nothing to compare.")
    return study, text


# ---------------------------------------------------------------- the report

def header(data: ExternalResults, choice: tables.MetricChoice, results: pd.DataFrame, comparisons: str
           ) -> list[str]:
    """The header's paragraphs: where the numbers come from (the file, its digest, the columns used), how they
    are compared, what is missing or left out."""
    variants = data.variants
    seeds = sorted(set(data.results["seed"]))
    used = [f"variant, seed; metric {', '.join(_shown(c, choice) for c in choice.columns)}",
            f"factors {', '.join(data.factors)}" if data.factors else "no factor column"]
    per_class = [c for c in data.results.columns if c in PER_CLASS]
    if per_class:
        used.append(f"{len(per_class)} per-class F1 columns")
    unused = [c for c in data.numeric if c not in choice.columns and c != choice.label and c not in PER_CLASS]
    text = (f"Results made elsewhere, not runs of this harness: {data.path} (sha256 {data.sha256}), "
            f"{len(results)} runs of {len(variants)} variants, seeds {', '.join(map(str, seeds))}. "
            f"Columns used: {'; '.join(used)}.")
    if unused:
        text += f" Not used: {', '.join(unused)} (`--metric COLUMN` builds the report on one)."
    if data.ignored:
        text += f" Ignored: {', '.join(data.ignored)} (the harness's bookkeeping, or empty)."
    return [text, f"{_metric_text(choice)} {comparisons}",
            " ".join([*_missing_text(data, choice, results), "Left out, for want of the harness's per-epoch logs and "
                      "saved probabilities: the convergence check, the clip-level bootstrap, size and energy, "
                      "learning curves and PSD-ROC."])]


def _shown(column: str, choice: tables.MetricChoice) -> str:
    """A column renamed for the report's file names (choose_metric) is shown with its name in the file."""
    renamed = column == choice.name and choice.label != column and choice.base not in tables.METRIC_NAMES
    return f"{choice.label!r} (in the tables' files: {column})" if renamed else column


def _metric_text(choice: tables.MetricChoice) -> str:
    if choice.base in tables.METRIC_NAMES:
        return build._metric_sentence(choice)
    return (f"Metric: the file's column {choice.label!r}, mean ± sd (ddof 1) over seeds; Table 4's differences "
            f"(and ROPEs, read as F1 points elsewhere in this report) are in its units.")


def _missing_text(data: ExternalResults, choice: tables.MetricChoice, results: pd.DataFrame) -> list[str]:
    """The variants with one run (no sd, nothing testable) and the runs without a value of the metric."""
    out = []
    counts = results.groupby("variant", sort=False)["seed"].size()
    single = [v for v in data.variants if counts[v] == 1]
    if single:
        out.append(f"One run only (no sd; their comparisons are not testable): "
                   f"{', '.join(f'{v} (line {data.first_line[v]})' for v in single)}.")
    for column in choice.columns:
        empty = int(results[column].isna().sum())
        if empty:
            out.append(f"{empty} run(s) have no {choice.label if column == choice.name else column} (empty cells) "
                       "and are left out of its statistics.")
    return out


@build._full_disk_named
def build_external_report(results_file: Path, out_dir: Path, test: stats.TestKind = "student",
                          seed: int = sections.REPORT_SEED, metric: str = "f1",
                          study_file: Path | None = None) -> Path:
    """The report of `results_file` (see the module docstring) in out_dir; returns report.md's path.

    Raises:
        DataError: the results file is malformed (naming the line and column).
        ConfigError: a metric that is no column of it, a study file that does not describe it.
    """
    results_file, out_dir = Path(results_file), Path(out_dir)
    spec = load_spec(study_file)
    data = read_results(results_file, metric, factors=list(spec.factor_specs) if spec else ())
    choice, results = choose_metric(metric, data)
    study, comparisons = study_of(data, spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"Results from {results_file.name}" + ("" if choice.name == "f1" else f": {choice.label}")
    blocks = [build.Block("h1", title)]
    if study["description"]:
        blocks.append(build.Block("p", study["description"]))
    blocks += [build.Block("p", text) for text in header(data, choice, results, comparisons)]
    blocks += build._variant_table_blocks(out_dir, results, study, choice, {})
    blocks += build._comparison_blocks(out_dir, results, study, choice, test, seed, {})
    blocks += build._figure_blocks(results_file.parent, out_dir, study, results, data.per_class, choice)
    return build._write_documents(blocks, title, out_dir)
