"""Table 4 from published summary statistics alone (`python -m harness report --summary FILE`).

Two file formats, one metric per file (e.g. validation F1 in %):

TOML::

    metric = "validation F1 (%)"          # optional, shown in the report
    [[configuration]]
    name = "EF+SW+EM+CS"
    mean = "40.7"                         # strings keep the published decimals ("40.70" has 2)
    sd = "0.6"                            # sample sd (ddof 1)
    n = 10
    [[comparison]]
    label = "Easier first vs all"
    a = "EF+SW+EM+CS"
    b = "SW+EM+CS"
    t = "1.413"                           # optional: the published t, checked against the rounding
    rope = 0.5                            # optional: this comparison's ROPE half-width (F1 points)

A top-level `rope = 0.5` sets the ROPE of every comparison that does not set its own (default
compare.DEFAULT_ROPE).

CSV (one file, a `kind` column says what each row is; empty cells where a column does not apply)::

    kind,name,mean,sd,n,a,b,t
    configuration,EF+SW+EM+CS,40.7,0.6,10,,,
    configuration,SW+EM+CS,40.3,0.7,10,,,
    comparison,Easier first vs all,,,,EF+SW+EM+CS,SW+EM+CS,1.413

(an optional `rope` column holds a comparison's ROPE).

Decimals are inferred from the numbers as written: CSV cells are read as text; in TOML write
numbers as strings to keep trailing zeros (a TOML float 40.70 is read back as 40.7, i.e. 1
decimal). The decimals set the rounding box of `stats.t_rounding_interval`; a published t is
*consistent* when it lies in that interval widened by half a unit of its own last decimal.
"""

from __future__ import annotations

import csv
import decimal
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, not_a_file
from harness.report import stats

CSV_COLUMNS: tuple[str, ...] = ("kind", "name", "mean", "sd", "n", "a", "b", "t")  # required; `rope` optional


@dataclass(frozen=True)
class PublishedNumber:
    """A number as published: its value and how many decimals it was printed with."""

    value: float
    decimals: int

    @property
    def text(self) -> str:
        """The number as it was published, trailing zeros kept ("6.800", not "6.8")."""
        return f"{self.value:.{self.decimals}f}"


@dataclass(frozen=True)
class Configuration:
    name: str
    mean: PublishedNumber
    sd: PublishedNumber
    n: int


@dataclass(frozen=True)
class ComparisonSpec:
    label: str
    a: str
    b: str
    published_t: PublishedNumber | None
    rope: float | None = None  # ROPE half-width (F1 points); None: the file's, else the default


@dataclass(frozen=True)
class SummaryTable:
    path: Path
    metric: str
    configurations: dict[str, Configuration]
    comparisons: tuple[ComparisonSpec, ...]
    rope: float | None = None  # the file's default ROPE


@dataclass(frozen=True)
class SummaryComparison:
    """A Table 4 row from summary statistics, with the check of the published t."""

    comparison: stats.Comparison
    published_t: float | None
    t_low: float  # range of t consistent with the rounding of the published means and sds
    t_high: float
    consistent: bool | None  # published t within [t_low, t_high] (+- its own rounding); None if absent
    published_significant: tuple[bool, ...] | None  # decisions the published t implies at the same df
    published_t_text: str | None = None  # the published t as printed ("6.800")
    critical_t: tuple[float, ...] = ()  # per alpha: the two-sided critical |t| at the row's df
    settled: tuple[str, ...] = ()  # per alpha: "Y"/"N" if every t the rounding allows decides alike, else "?"


def parse_number(raw: Any, where: str) -> PublishedNumber:
    """A published number from a string ("40.70" -> 40.7 with 2 decimals) or a TOML int/float."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise ConfigError(f"{where}: expected a number (preferably a string such as \"40.7\"), got {raw!r}")
    text = raw.strip() if isinstance(raw, str) else repr(raw)
    try:
        dec = decimal.Decimal(text)
    except decimal.InvalidOperation as e:
        raise ConfigError(f"{where}: expected a number such as \"40.7\", got {raw!r}") from e
    if not dec.is_finite():
        raise ConfigError(f"{where}: expected a finite number, got {raw!r}")
    exponent = dec.as_tuple().exponent
    assert isinstance(exponent, int)  # finite decimals have an int exponent
    return PublishedNumber(value=float(dec), decimals=max(0, -exponent))


def _parse_n(raw: Any, where: str) -> int:
    try:
        n = int(str(raw).strip())
    except ValueError as e:
        raise ConfigError(f"{where}: expected an integer number of runs, got {raw!r}") from e
    if n < 2:
        raise ConfigError(f"{where}: n must be at least 2 for a t-test, got {n}")
    return n


def _configuration(row: dict[str, Any], where: str) -> Configuration:
    for key in ("name", "mean", "sd", "n"):
        if row.get(key) in (None, ""):
            raise ConfigError(f"{where}: missing {key!r}; a configuration needs name, mean, sd and n")
    sd = parse_number(row["sd"], f"{where}, key 'sd'")
    if sd.value < 0:
        raise ConfigError(f"{where}, key 'sd': a standard deviation cannot be negative, got {row['sd']!r}")
    return Configuration(name=str(row["name"]).strip(), mean=parse_number(row["mean"], f"{where}, key 'mean'"),
                         sd=sd, n=_parse_n(row["n"], f"{where}, key 'n'"))


def _comparison(row: dict[str, Any], where: str, label_key: str) -> ComparisonSpec:
    for key in (label_key, "a", "b"):
        if row.get(key) in (None, ""):
            raise ConfigError(f"{where}: missing {key!r}; a comparison needs {label_key}, a and b (t optional)")
    t_raw = row.get("t")
    t = None if t_raw in (None, "") else parse_number(t_raw, f"{where}, key 't'")
    rope_raw = row.get("rope")
    rope = None if rope_raw in (None, "") else _parse_rope(rope_raw, f"{where}, key 'rope'")
    return ComparisonSpec(label=str(row[label_key]).strip(), a=str(row["a"]).strip(), b=str(row["b"]).strip(),
                          published_t=t, rope=rope)


def _parse_rope(raw: Any, where: str) -> float:
    value = parse_number(raw, where).value
    if value < 0:
        raise ConfigError(f"{where}: a ROPE is a half-width in F1 points, >= 0 (e.g. 0.5), got {raw!r}")
    return value


def _read_toml(path: Path) -> tuple[str, list[Configuration], list[ComparisonSpec], float | None]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from e
    unknown = set(data) - {"metric", "rope", "configuration", "comparison"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; valid: metric, rope, [[configuration]], "
                          "[[comparison]]")
    for key in ("configuration", "comparison"):
        entries = data.get(key, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigError(f"{path}: {key!r} must be an array of tables written [[{key}]]")
    configs = [_configuration(r, f"{path}: [[configuration]] #{i + 1}")
               for i, r in enumerate(data.get("configuration", []))]
    comps = [_comparison(r, f"{path}: [[comparison]] #{i + 1}", "label")
             for i, r in enumerate(data.get("comparison", []))]
    rope = _parse_rope(data["rope"], f"{path}: key 'rope'") if "rope" in data else None
    return str(data.get("metric", "")), configs, comps, rope


def _read_csv(path: Path) -> tuple[str, list[Configuration], list[ComparisonSpec], float | None]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{path}: missing CSV columns {missing}; expected header {','.join(CSV_COLUMNS)}")
        configs, comps = [], []
        for line_no, row in enumerate(reader, start=2):  # line 1 is the header
            where = f"{path}: line {line_no}"
            kind = (row.get("kind") or "").strip()
            if kind == "configuration":
                configs.append(_configuration(row, where))
            elif kind == "comparison":
                comps.append(_comparison(row, where, "name"))
            else:
                raise ConfigError(f"{where}: kind must be 'configuration' or 'comparison', got {kind!r}")
    return "", configs, comps, None


def read_summary(path: Path) -> SummaryTable:
    """Read and validate a summary-statistics file (.toml or .csv; see the module docstring).

    Raises:
        ConfigError: naming the file, the row or key, and what is expected.
    """
    path = Path(path)
    if not path.is_file():
        raise not_a_file(path, "summary file", "give a .toml or .csv of summary statistics", ConfigError)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".csv"):
        raise ConfigError(f"{path}: summary file must end in .toml or .csv")
    try:
        metric, configs, comps, rope = _read_toml(path) if suffix == ".toml" else _read_csv(path)
    except UnicodeDecodeError:  # its bytes are not shown: the file may be anything
        raise ConfigError(f"{path}: not UTF-8 text; expected a summary-statistics {suffix} file") from None
    by_name: dict[str, Configuration] = {}
    for c in configs:
        if c.name in by_name:
            raise ConfigError(f"{path}: configuration {c.name!r} is given twice")
        by_name[c.name] = c
    if not comps:
        raise ConfigError(f"{path}: no comparisons; add at least one comparison (label/name, a, b)")
    for comp in comps:
        for side in (comp.a, comp.b):
            if side not in by_name:
                raise ConfigError(f"{path}: comparison {comp.label!r} names configuration {side!r}, which is not "
                                  f"defined; defined: {sorted(by_name)}")
    return SummaryTable(path=path, metric=metric, configurations=by_name, comparisons=tuple(comps), rope=rope)


def _published_consistency(t: PublishedNumber, low: float, high: float) -> bool:
    tolerance = 0.5 * 10.0 ** (-t.decimals)  # the published t is itself rounded
    return low - tolerance <= t.value <= high + tolerance


def settled_decisions(t_low: float, t_high: float, critical: tuple[float, ...]) -> tuple[str, ...]:
    """Whether the published precision settles each decision |t| > critical.

    Args:
        t_low, t_high: the range of t the rounding of the published means and sds allows.
        critical: the two-sided critical |t| per alpha.

    Returns:
        per alpha "Y" (every allowed t is significant), "N" (none is) or "?" (the rounding interval
        crosses the critical value: the published table cannot say).
    """
    if t_low <= 0.0 <= t_high:
        abs_low, abs_high = 0.0, max(abs(t_low), abs(t_high))
    else:
        abs_low, abs_high = sorted((abs(t_low), abs(t_high)))
    return tuple("Y" if abs_low > c else ("N" if abs_high <= c else "?") for c in critical)


def analyse_summary(
    table: SummaryTable, test: stats.TestKind = "student", alphas: tuple[float, ...] = stats.DEFAULT_ALPHAS
) -> list[SummaryComparison]:
    """Table 4 rows from the summary statistics, Holm over all comparisons of the file, with the audit
    of the published values (rounding interval of t, consistency of a published t, settled decisions)."""
    from scipy import stats as sps

    rows = []
    for spec in table.comparisons:
        ca, cb = table.configurations[spec.a], table.configurations[spec.b]
        sa = stats.Summary(ca.mean.value, ca.sd.value, ca.n)
        sb = stats.Summary(cb.mean.value, cb.sd.value, cb.n)
        rope = spec.rope if spec.rope is not None else table.rope
        rows.append(stats.compare_summary(sa, sb, test, alphas, spec.label, spec.a, spec.b, rope=rope))
    rows = stats.with_holm(rows)
    out = []
    for spec, row in zip(table.comparisons, rows):
        ca, cb = table.configurations[spec.a], table.configurations[spec.b]
        low, high = stats.t_rounding_interval(
            ca.mean.value, ca.sd.value, ca.n, cb.mean.value, cb.sd.value, cb.n,
            (ca.mean.decimals, cb.mean.decimals), (ca.sd.decimals, cb.sd.decimals), test)
        pub = spec.published_t
        consistent = None if pub is None else _published_consistency(pub, low, high)
        # Welch's df moves with the sds inside the rounding box; the row's df is used for the audit.
        df = row.df if row.df is not None else float(ca.n + cb.n - 2)
        critical = tuple(float(sps.t.isf(a / 2.0, df)) for a in alphas)
        decisions = None
        if pub is not None and math.isfinite(df):
            p_pub = float(2.0 * sps.t.sf(abs(pub.value), df))
            decisions = tuple(p_pub < a for a in alphas)
        out.append(SummaryComparison(comparison=row, published_t=None if pub is None else pub.value,
                                     t_low=low, t_high=high, consistent=consistent,
                                     published_significant=decisions,
                                     published_t_text=None if pub is None else pub.text,
                                     critical_t=critical, settled=settled_decisions(low, high, critical)))
    return out
