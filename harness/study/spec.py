"""Ablation files: TOML -> a validated, frozen `StudySpec`.

An ablation file names a study, a base config (every parameter of SPEC section 2, the paper's values
as defaults), the variants (an explicit list, or a factorial grid over factor levels), the seeds, the
comparisons of the report, the tables, optional per-profile settings and an optional `[tune]` stage.
See ablations/table2.toml for an annotated example.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.config import (
    FACTORS,
    DataConfig,
    MethodConfig,
    factor_levels,
    from_mapping,
    nest,
    parse_override,
    with_factors,
)
from harness.errors import ConfigError, not_a_file
from harness.study.cluster import ClusterConfig, parse_cluster

_NAME = re.compile(r"[A-Za-z0-9_.+-]+")

# Short names of factor levels, as in the paper's variant names (EF+SW+EM+CS).
ABBREVIATIONS: dict[str, dict[str, str]] = {
    "curriculum": {"easier": "EF", "harder": "HF", "all": ""},
    "pseudolabels": {"strong+weak": "SW", "weak": "W", "none": ""},
    "masking": {"event": "EM", "segment": "SM", "none": "NM"},
    "augmentation": {"custom": "CS", "standard": "SS", "none": "NS"},
}

TOP_LEVEL_KEYS = ("study", "base", "data", "seeds", "teacher_seed", "variant", "grid", "comparison",
                  "table", "profiles", "tune", "cluster")


@dataclass(frozen=True)
class Variant:
    """One configuration of the study: factor levels plus optional extra overrides."""

    name: str
    factors: tuple[tuple[str, str], ...]  # (factor, level), in FACTORS order
    overrides: tuple[tuple[str, Any], ...] = ()  # (dotted key, value) applied after the factors

    @property
    def factor_dict(self) -> dict[str, str]:
        return dict(self.factors)


@dataclass(frozen=True)
class Comparison:
    """A Table 4 row: variant a against variant b."""

    label: str
    a: str
    b: str
    rope: float | None = None  # half-width of the region of practical equivalence, F1 points (None: default)


@dataclass(frozen=True)
class Table:
    """A results table of the report (Tables 1-3 of the paper): which variants, in which order."""

    name: str
    caption: str
    variants: tuple[str, ...]


@dataclass(frozen=True)
class Tune:
    """The paper's hyperparameter stage (section 5.1): lambda1 x lambda2 with k seeds per point."""

    lambda1: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0)
    lambda2: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0)
    seeds: int = 2  # seeds per grid point; tuning seeds are 1000, 1001, ... so replicates stay independent


@dataclass(frozen=True)
class Profile:
    """How a study is run: data, budget and seeds (`paper` = SPEC 2.5 on DESED, `quick` = synthetic)."""

    name: str
    data: DataConfig
    base: Mapping[str, Any]  # method-config overrides applied on top of the file's [base]
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class StudySpec:
    """A parsed ablation file, before a profile is applied."""

    path: Path
    name: str
    description: str
    base: Mapping[str, Any]
    data: Mapping[str, Any]
    seeds: tuple[int, ...] | None
    teacher_seed: int
    variants: tuple[Variant, ...]
    comparisons: tuple[Comparison, ...]
    tables: tuple[Table, ...]
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tune: Tune | None = None
    paired: bool = False  # variants share seeds: seed s of every variant is paired with seed s of the others
    cluster: ClusterConfig = field(default_factory=ClusterConfig)  # resources on Slurm (no part of any key)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)


def load_study(path: Path) -> StudySpec:
    """Read and validate an ablation file.

    Raises:
        ConfigError: malformed TOML, an unknown key, a wrong type, an unknown factor level, a comparison
            or table naming an unknown variant; the message names the file and the key.
    """
    path = Path(path)
    if path.is_dir():
        raise not_a_file(path, "ablation file", "give a study TOML, e.g. ablations/table2.toml", ConfigError)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such ablation file") from e
    except UnicodeDecodeError:  # its bytes are not shown: the file may be anything
        raise ConfigError(f"{path}: not UTF-8 text; expected an ablation file in TOML") from None
    except tomllib.TOMLDecodeError as e:  # says where (line, column), never what is there
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    return parse_study(raw, path)


def parse_study(raw: Mapping[str, Any], path: Path) -> StudySpec:
    """Validate the data of an ablation file (see `load_study`)."""
    where = str(path)
    _reject_unknown(raw, TOP_LEVEL_KEYS, where)
    head = _table(raw.get("study", {}), f"{where}: [study]")
    _reject_unknown(head, ("name", "description", "seeds", "teacher_seed", "paired"), f"{where}: [study]")
    for key in ("seeds", "teacher_seed"):  # accepted at the top of the file or inside [study]
        if key in raw and key in head:
            raise ConfigError(f"{where}: {key!r} is given twice (top level and [study]); keep one")
        if key in raw:
            head[key] = raw[key]
    name = _study_name(head.get("name") or path.stem, where)
    base = _table(raw.get("base", {}), f"{where}: [base]")
    from_mapping(MethodConfig, base, f"{where}: base")  # validate now, apply later
    data = _table(raw.get("data", {}), f"{where}: [data]")
    from_mapping(DataConfig, data, f"{where}: data")
    variants = _variants(raw, where)
    names = [v.name for v in variants]
    comparisons = tuple(_comparison(c, i, names, where) for i, c in enumerate(raw.get("comparison", [])))
    tables = tuple(_table_spec(t, i, names, where) for i, t in enumerate(raw.get("table", [])))
    if not tables:
        tables = (Table(name=str(name), caption=head.get("description", ""), variants=tuple(names)),)
    profiles = _table(raw.get("profiles", {}), f"{where}: [profiles]")
    for pname, prof in profiles.items():
        _profile_settings(prof, f"{where}: profiles.{pname}")
    return StudySpec(
        path=path,
        name=str(name),
        description=str(head.get("description", "")),
        base=base,
        data=data,
        seeds=_seeds(head["seeds"], f"{where}: seeds") if "seeds" in head else None,
        teacher_seed=_int(head.get("teacher_seed", 0), f"{where}: teacher_seed"),
        variants=variants,
        comparisons=comparisons,
        tables=tables,
        profiles=profiles,
        tune=_tune(raw["tune"], f"{where}: [tune]") if "tune" in raw else None,
        paired=_paired(head.get("paired", False), f"{where}: [study] paired"),
        cluster=parse_cluster(_table(raw.get("cluster", {}), f"{where}: [cluster]"), where),
    )


# --------------------------------------------------------------------------- pieces


def _study_name(value: Any, where: str) -> str:
    """A study name becomes a folder under --runs and --reports: it must stay inside them."""
    name = str(value)
    if not _NAME.fullmatch(name) or name.startswith("."):
        raise ConfigError(f"{where}: [study] name {name!r} must be letters, digits, '_', '-', '+' or '.', not "
                          "starting with '.' (it names the folder runs/<name>-<profile>); e.g. name = \"table2\"")
    return name


def _reject_unknown(data: Mapping[str, Any], valid: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(valid)}")


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a table, got {value!r}")
    return dict(value)


def _int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    return value


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    """`seeds = 10` means seeds 0..9; `seeds = [3, 7]` lists them."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ConfigError(f"{where}: need at least one seed, got {value}")
        return tuple(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        if len(set(value)) != len(value):
            raise ConfigError(f"{where}: seeds repeat in {value}")
        return tuple(value)
    raise ConfigError(f"{where}: expected a count (e.g. 10) or a non-empty list of integers, got {value!r}")


def _variants(raw: Mapping[str, Any], where: str) -> tuple[Variant, ...]:
    listed = [_listed_variant(v, i, where) for i, v in enumerate(raw.get("variant", []))]
    grid = _grid_variants(raw["grid"], f"{where}: [grid]") if "grid" in raw else []
    variants = listed + grid
    if not variants:
        raise ConfigError(f"{where}: no variants; add [[variant]] tables or a [grid] of factor levels")
    seen: set[str] = set()
    for v in variants:
        if v.name in seen:
            raise ConfigError(f"{where}: variant name {v.name!r} is used twice; names must be unique")
        seen.add(v.name)
    return tuple(variants)


def _listed_variant(value: Any, index: int, where: str) -> Variant:
    here = f"{where}: variant[{index}]"
    entry = _table(value, here)
    _reject_unknown(entry, ("name", *FACTORS, "set"), here)
    factors = {k: entry[k] for k in FACTORS if k in entry}
    with_factors(MethodConfig(), factors, here)  # unknown levels fail here, with the valid ones listed
    overrides = _overrides(entry.get("set", {}), f"{here}.set")
    name = entry.get("name") or variant_name(factors)
    return Variant(name=str(name), factors=_ordered(factors), overrides=overrides)


def _grid_variants(value: Any, where: str) -> list[Variant]:
    grid = _table(value, where)
    _reject_unknown(grid, tuple(FACTORS), where)
    for factor, levels in grid.items():
        if not isinstance(levels, list) or not levels:
            raise ConfigError(f"{where}.{factor}: expected a non-empty list of levels, got {levels!r}")
    names = list(grid)
    out = []
    for combo in itertools.product(*(grid[n] for n in names)):
        factors = dict(zip(names, combo))
        with_factors(MethodConfig(), factors, where)
        out.append(Variant(name=variant_name(factors), factors=_ordered(factors)))
    return out


def _ordered(factors: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((k, factors[k]) for k in FACTORS if k in factors)


def variant_name(factors: Mapping[str, str]) -> str:
    """The paper's naming: EF+SW+EM+CS; levels that have no abbreviation (all, none) are left out."""
    parts = [ABBREVIATIONS[f][factors[f]] for f in FACTORS if f in factors]
    return "+".join(p for p in parts if p) or "base"


def _overrides(value: Any, where: str) -> tuple[tuple[str, Any], ...]:
    """A variant's `set = {"loss.lambda1" = 1.5}`: dotted method-config keys, validated now."""
    table = _table(value, where)
    for key, val in table.items():
        from_mapping(MethodConfig, nest(key.split("."), val), f"{where}")
    return tuple(sorted(table.items()))


def _comparison(value: Any, index: int, names: list[str], where: str) -> Comparison:
    here = f"{where}: comparison[{index}]"
    entry = _table(value, here)
    _reject_unknown(entry, ("label", "a", "b", "rope"), here)
    for side in ("a", "b"):
        if side not in entry:
            raise ConfigError(f"{here}: missing key {side!r} (the name of a variant)")
        if entry[side] not in names:
            raise ConfigError(f"{here}.{side}: unknown variant {entry[side]!r}; variants: {', '.join(names)}")
    if entry["a"] == entry["b"]:
        raise ConfigError(f"{here}: compares variant {entry['a']!r} with itself; name two different variants "
                          "in a and b")
    label = entry.get("label") or f"{entry['a']} vs {entry['b']}"
    rope = _rope(entry["rope"], f"{here}.rope") if "rope" in entry else None
    return Comparison(label=str(label), a=entry["a"], b=entry["b"], rope=rope)


def _rope(value: Any, where: str) -> float:
    """A comparison's ROPE: the half-width, in F1 points, of the differences that count as equivalent."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ConfigError(f"{where}: expected a number of F1 points >= 0 (e.g. rope = 0.5: differences within "
                          f"+-0.5 points are practically equivalent), got {value!r}")
    return float(value)


def _paired(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false (true: every variant runs the same seeds, so seed s "
                          f"of a is compared with seed s of b), got {value!r}")
    return value


def _table_spec(value: Any, index: int, names: list[str], where: str) -> Table:
    here = f"{where}: table[{index}]"
    entry = _table(value, here)
    _reject_unknown(entry, ("name", "caption", "variants"), here)
    variants = entry.get("variants", names)
    for v in variants:
        if v not in names:
            raise ConfigError(f"{here}.variants: unknown variant {v!r}; variants: {', '.join(names)}")
    return Table(name=str(entry.get("name", f"Table {index + 1}")), caption=str(entry.get("caption", "")),
                 variants=tuple(variants))


def _profile_settings(value: Any, where: str) -> None:
    table = _table(value, where)
    _reject_unknown(table, ("base", "data", "seeds"), where)
    from_mapping(MethodConfig, _table(table.get("base", {}), f"{where}.base"), f"{where}.base")
    from_mapping(DataConfig, _table(table.get("data", {}), f"{where}.data"), f"{where}.data")
    if "seeds" in table:
        _seeds(table["seeds"], f"{where}.seeds")


def _tune(value: Any, where: str) -> Tune:
    table = _table(value, where)
    _reject_unknown(table, ("lambda1", "lambda2", "seeds"), where)
    return from_mapping(Tune, table, where)


def split_overrides(texts: list[str]) -> tuple[dict[str, Any], dict[str, Any], tuple[int, ...] | None]:
    """`--set` strings -> (method-config overrides, data overrides, seeds or None).

    `--set train.steps=200` sets the method config; `--set data.root=/x` the data; `--set seeds=3` the seeds.
    """
    method: dict[str, Any] = {}
    data: dict[str, Any] = {}
    seeds = None
    for text in texts:
        path, value = parse_override(text)
        try:
            if path == ["seeds"]:
                seeds = _seeds(value, "seeds")
            elif path[0] == "data":
                _deep_merge(data, nest(path[1:], value))
                from_mapping(DataConfig, data, "data")
            else:
                _deep_merge(method, nest(path, value))
                from_mapping(MethodConfig, method, "config")
        except ConfigError as e:
            raise ConfigError(f"--set {text}: {e}") from e
    return method, data, seeds


def _deep_merge(into: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value
    return into


def factor_choices() -> str:
    """A one-line list of factors and their levels, for help texts."""
    return "; ".join(f"{f}: {', '.join(factor_levels(f))}" for f in FACTORS)
