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
from typing import Any, Iterable, Mapping

from harness import plugins
from harness.config import (
    FACTORS,
    DataConfig,
    check_factor_key,
    MethodConfig,
    config_value,
    factor_key,
    from_mapping,
    nest,
    parse_override,
    with_factors,
)
from harness.errors import ConfigError, not_a_file
from harness.plugins import FactorSpec, level_text
from harness.streams import DESIGNS, STREAMS, TRAINING_STREAMS, Design
from harness.study.cluster import ClusterConfig, parse_cluster

_NAME = re.compile(r"[A-Za-z0-9_.+-]+")

TOP_LEVEL_KEYS = ("study", "base", "data", "seeds", "teacher_seed", "teacher_seeds", "variant", "grid", "factor",
                  "comparison", "comparisons", "table", "profiles", "tune", "cluster")


@dataclass(frozen=True)
class Variant:
    """One configuration of the study: factor levels plus optional extra overrides."""

    name: str
    # (factor name, level): the paper's four first, in their order, then others as the file gives them. A
    # level is the config's value (64, 0.001, "event"), so 1 and 1.0 of a float key are one level.
    factors: tuple[tuple[str, Any], ...]
    overrides: tuple[tuple[str, Any], ...] = ()  # (dotted key, value) applied after the factors

    @property
    def factor_dict(self) -> dict[str, Any]:
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
class StreamDesign:
    """`[study] seeds = { init = 3, order = 3 }`: the seed streams a study varies (harness.streams), and how.

    crossed: a run per combination of the streams' seeds and the teachers. nested: outer to inner (teacher,
    init, order, augment), every level of a stream holds `count` seeds of the next of its own, so no seed of an
    inner stream is shared by two levels of an outer one (harness.study.plan.study_runs numbers them). A
    training stream the table leaves out is fixed at seed 0 in every run.
    """

    design: Design
    # (stream, its seeds), outer first, of the training streams the table names; nested: range(count)
    levels: tuple[tuple[str, tuple[int, ...]], ...]


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
    # The study's factors (those its variants set), by name, in column order: the registry's descriptions
    # with the file's [factor."key"] tables applied.
    factor_specs: Mapping[str, FactorSpec] = field(default_factory=dict)
    # [study] plugins, as every process loads them: module names, and .py files as absolute paths.
    plugins: tuple[str, ...] = ()
    streams: StreamDesign | None = None  # a table of seed streams as `seeds`; None: one seed per run
    # The seeds of the study's teachers (`teacher_seeds`), each its own cached stage and bundle; (): one
    # teacher, `teacher_seed`.
    teacher_seeds: tuple[int, ...] = ()

    @property
    def teachers(self) -> tuple[int, ...]:
        """The seeds of the study's teachers, the first being the one [tune] distils from."""
        return self.teacher_seeds or (self.teacher_seed,)

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
    _reject_unknown(head, ("name", "description", "seeds", "teacher_seed", "teacher_seeds", "streams", "paired",
                           "plugins"), f"{where}: [study]")
    loaded = _plugins(head.get("plugins", []), path, f"{where}: [study] plugins")
    for key in ("seeds", "teacher_seed", "teacher_seeds"):  # accepted at the top of the file or inside [study]
        if key in raw and key in head:
            raise ConfigError(f"{where}: {key!r} is given twice (top level and [study]); keep one")
        if key in raw:
            head[key] = raw[key]
    name = _study_name(head.get("name") or path.stem, where)
    base = _table(raw.get("base", {}), f"{where}: [base]")
    from_mapping(MethodConfig, base, f"{where}: base")  # validate now, apply later
    data = _table(raw.get("data", {}), f"{where}: [data]")
    from_mapping(DataConfig, data, f"{where}: data")
    described = _factor_tables(raw.get("factor", {}), f"{where}: [factor]")
    variants = _variants(raw, where, described)
    names = [v.name for v in variants]
    factor_specs = _study_factors(variants, described)
    comparisons = tuple(_comparison(c, i, names, where) for i, c in enumerate(raw.get("comparison", [])))
    comparisons += _generated_comparisons(raw.get("comparisons", []), variants, factor_specs, comparisons, where)
    tables = tuple(_table_spec(t, i, names, where) for i, t in enumerate(raw.get("table", [])))
    if not tables:
        tables = (Table(name=str(name), caption=head.get("description", ""), variants=tuple(names)),)
    streams, teachers = _seed_design(head, where)
    profiles = _table(raw.get("profiles", {}), f"{where}: [profiles]")
    for pname, prof in profiles.items():
        _profile_settings(prof, f"{where}: profiles.{pname}")
    return StudySpec(
        path=path,
        name=str(name),
        description=str(head.get("description", "")),
        base=base,
        data=data,
        seeds=None if "seeds" not in head or streams is not None else _seeds(head["seeds"], f"{where}: seeds"),
        teacher_seed=teachers[0] if teachers else _int(head.get("teacher_seed", 0), f"{where}: teacher_seed"),
        teacher_seeds=teachers if len(teachers) > 1 else (),
        streams=streams,
        variants=variants,
        comparisons=comparisons,
        tables=tables,
        profiles=profiles,
        tune=_tune(raw["tune"], f"{where}: [tune]") if "tune" in raw else None,
        paired=_paired(head.get("paired", False), f"{where}: [study] paired"),
        cluster=parse_cluster(_table(raw.get("cluster", {}), f"{where}: [cluster]"), where),
        factor_specs=factor_specs,
        plugins=loaded,
    )


# --------------------------------------------------------------------------- pieces


def _plugins(value: Any, path: Path, where: str) -> tuple[str, ...]:
    """Load the installed plugins (entry points) and the study's own, before anything reads a name they
    declare; returns the study's as every worker loads them again (files by absolute path)."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f'{where}: expected a list of module names or .py files, e.g. plugins = ["mypkg.models", '
                          f'"./my_model.py"], got {value!r}')
    plugins.load_entry_points()
    loaded = plugins.load_plugins(value, path.parent, where)
    return tuple(p.path if p.ref != p.module else p.ref for p in loaded)


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


def _seed_design(head: Mapping[str, Any], where: str) -> tuple[StreamDesign | None, tuple[int, ...]]:
    """[study] seeds as a table of streams, `streams` and `teacher_seeds` -> (the design or None, the teachers'
    seeds; () for the one teacher of `teacher_seed`)."""
    teacher_seed = _int(head.get("teacher_seed", 0), f"{where}: teacher_seed")
    teachers = (_teacher_seeds(head["teacher_seeds"], teacher_seed, "teacher_seed" in head, f"{where}: teacher_seeds")
                if "teacher_seeds" in head else ())
    design = head.get("streams")
    if design is not None and design not in DESIGNS:
        raise ConfigError(f'{where}: [study] streams: expected "crossed" or "nested", got {design!r}')
    table = head.get("seeds")
    if not isinstance(table, Mapping):
        if design is not None:
            raise ConfigError(f"{where}: [study] streams = {design!r} needs seeds as a table of streams, e.g. "
                              "seeds = { init = 3, order = 3 }; streams: " + ", ".join(STREAMS))
        return None, teachers
    unknown = sorted(set(table) - set(STREAMS))
    if unknown or not table:
        what = f"unknown stream {unknown[0]!r}" if unknown else "names no stream"
        raise ConfigError(f"{where}: seeds: {what}; streams: {', '.join(STREAMS)} (e.g. seeds = {{ init = 3, "
                          "order = 3 }})")
    if "teacher" in table:
        named = _teacher_seeds(table["teacher"], teacher_seed, "teacher_seed" in head, f"{where}: seeds.teacher")
        if teachers and named != teachers:
            raise ConfigError(f"{where}: seeds.teacher {table['teacher']!r} and teacher_seeds "
                              f"{head['teacher_seeds']!r} name different teachers; keep one")
        teachers = named
    levels = tuple((name, _stream_levels(table[name], design or "crossed", f"{where}: seeds.{name}"))
                   for name in TRAINING_STREAMS if name in table)
    return StreamDesign(design=design or "crossed", levels=levels), teachers


def _stream_levels(value: Any, design: str, where: str) -> tuple[int, ...]:
    """A stream's seeds: a count or a list (crossed), a count (nested: each outer level numbers its own)."""
    if design == "nested" and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ConfigError(f"{where}: a nested design takes a count of seeds per level of the outer streams, "
                          f"e.g. 3, got {value!r}")
    return _seeds(value, where)


def _teacher_seeds(value: Any, teacher_seed: int, seed_given: bool, where: str) -> tuple[int, ...]:
    """`N`: N teachers of seeds teacher_seed, teacher_seed + 1, ...; a list: the teachers' seeds."""
    if isinstance(value, list) and seed_given:
        raise ConfigError(f"{where}: a list of teacher seeds leaves no role to teacher_seed; give teacher_seed "
                          "with a count (teachers teacher_seed, teacher_seed + 1, ...) or the list alone")
    if isinstance(value, list):
        return _seeds(value, where)
    return tuple(teacher_seed + s for s in _seeds(value, where))


def _variants(raw: Mapping[str, Any], where: str, described: Mapping[str, FactorSpec]) -> tuple[Variant, ...]:
    listed = [_listed_variant(v, i, where, described) for i, v in enumerate(raw.get("variant", []))]
    grid = _grid_variants(raw["grid"], f"{where}: [grid]", described) if "grid" in raw else []
    variants = listed + grid
    if not variants:
        raise ConfigError(f"{where}: no variants; add [[variant]] tables or a [grid] of factor levels")
    seen: set[str] = set()
    for v in variants:
        if v.name in seen:
            raise ConfigError(f"{where}: variant name {v.name!r} is used twice; names must be unique")
        seen.add(v.name)
    return tuple(variants)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"student": {"hidden": [64]}} -> {"student.hidden": [64]}: an unquoted dotted TOML key is a nested table."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def canonical_factor(name: str) -> str:
    """A factor's name as the study records it: the paper's short name for its keys ("loss.masking" ->
    "masking"), a registered factor's name, else the dotted key itself."""
    return plugins.factor_spec(name).name


def _factor_levels(entries: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Factor keys of a [[variant]] or of one grid point -> {canonical name: level}, checked together (so that
    "student.model" chooses the model whose keys the others are) and read back as the config holds them
    (1 -> 1.0 for a float key)."""
    given: dict[str, Any] = {}
    for name, level in entries.items():
        canonical = canonical_factor(name)
        if canonical in given:
            raise ConfigError(f"{where}: factor {canonical!r} is given twice (as {name!r}); keep one")
        given[canonical] = tuple(level) if isinstance(level, list) else level
    config = with_factors(MethodConfig(), given, where)
    out = {}
    for name in given:
        value = config_value(config, factor_key(name))
        out[name] = tuple(value) if isinstance(value, list) else value
    return out


def _matching_level(levels: list[Any], wanted: Any) -> Any:
    """The level among `levels` that `wanted` (as a TOML value) names: equal, or the same number."""
    for level in levels:
        if level == wanted or level_text(level) == level_text(wanted):
            return level
        if isinstance(level, (int, float)) and isinstance(wanted, (int, float)) and float(level) == float(wanted):
            return level
    return None


def _listed_variant(value: Any, index: int, where: str, described: Mapping[str, FactorSpec]) -> Variant:
    here = f"{where}: variant[{index}]"
    entry = _table(value, here)
    overrides = _overrides(entry.pop("set", {}), f"{here}.set")
    name = entry.pop("name", None)
    factors = _factor_levels(_flatten(entry), here)
    name = name or variant_name(factors, described)
    return Variant(name=str(name), factors=_ordered(factors), overrides=overrides)


def _grid_variants(value: Any, where: str, described: Mapping[str, FactorSpec]) -> list[Variant]:
    grid = _flatten(_table(value, where))
    for factor, levels in grid.items():
        if not isinstance(levels, list) or not levels:
            raise ConfigError(f"{where}.{factor}: expected a non-empty list of levels, got {levels!r}")
    names = list(grid)
    out = []
    for combo in itertools.product(*(grid[n] for n in names)):
        factors = _factor_levels(dict(zip(names, combo)), where)
        out.append(Variant(name=variant_name(factors, described), factors=_ordered(factors)))
    return out


def _ordered(factors: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The paper's four first (in their order, as its names spell them), then any other as given."""
    paper = [(k, factors[k]) for k in FACTORS if k in factors]
    return tuple(paper + [(k, v) for k, v in factors.items() if k not in FACTORS])


def describe(name: str, described: Mapping[str, FactorSpec]) -> FactorSpec:
    """A factor's description: the file's [factor."key"] table, else the registry's, else a plain one."""
    return described.get(name) or plugins.factor_spec(name)


def variant_name(factors: Mapping[str, Any], described: Mapping[str, FactorSpec] | None = None) -> str:
    """A generated variant name: each factor's abbreviation of its level (the paper's EF+SW+EM+CS; levels
    whose abbreviation is "" are left out), or `key=level` for a level without one; "base" when empty."""
    parts = [describe(name, described or {}).abbreviation(level) for name, level in _ordered(factors)]
    return "+".join(p for p in parts if p) or "base"


def _factor_tables(value: Any, where: str) -> dict[str, FactorSpec]:
    """[factor."student.hidden"] label = "...", abbreviations = {64 = "H64"}, level_labels = {64 = "64 units"}."""
    out = {}
    path = where[: -len(": [factor]")]
    for name, entry in _flatten_factor_tables(_table(value, where)).items():
        here = f'{path}: [factor."{name}"]'
        _reject_unknown(entry, ("label", "abbreviations", "level_labels"), here)
        canonical = canonical_factor(name)
        check_factor_key(canonical, here)
        base = plugins.factor_spec(canonical)
        texts = {}
        for key in ("abbreviations", "level_labels"):
            table = _table(entry.get(key, {}), f"{here}.{key}")
            bad = [k for k, v in table.items() if not isinstance(v, str)]
            if bad:
                raise ConfigError(f"{here}.{key}.{bad[0]}: expected a string, got {table[bad[0]]!r}")
            texts[key] = {str(k): v for k, v in table.items()}
        label = entry.get("label", base.label)
        if not isinstance(label, str):
            raise ConfigError(f"{here}.label: expected a string, got {label!r}")
        out[canonical] = FactorSpec(
            key=base.key, name=canonical, label=label,
            abbreviations={**base.abbreviations, **texts["abbreviations"]},
            level_labels={**base.level_labels, **{k.lower(): v for k, v in texts["level_labels"].items()}})
    return out


def _flatten_factor_tables(table: Mapping[str, Any], prefix: str = "") -> dict[str, Mapping[str, Any]]:
    """[factor.student.hidden] (unquoted: nested tables) and [factor."student.hidden"] -> {"student.hidden": {...}}:
    nested tables are followed until their dotted path names a factor."""
    out: dict[str, Mapping[str, Any]] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not _is_factor(name) and all(isinstance(v, Mapping) for v in value.values()):
            out.update(_flatten_factor_tables(value, f"{name}."))
        else:
            out[name] = value
    return out


def _is_factor(name: str) -> bool:
    try:
        check_factor_key(canonical_factor(name), "")
    except ConfigError:
        return False
    return True


def _study_factors(variants: tuple[Variant, ...], described: Mapping[str, FactorSpec]) -> dict[str, FactorSpec]:
    """The factors the variants set, in column order, each with its description."""
    names: list[str] = []
    for v in variants:
        names.extend(n for n, _ in v.factors if n not in names)
    ordered = [n for n in FACTORS if n in names] + [n for n in names if n not in FACTORS]
    return {n: describe(n, described) for n in ordered}


def _overrides(value: Any, where: str) -> tuple[tuple[str, Any], ...]:
    """A variant's `set = {"loss.lambda1" = 1.5}`: dotted method-config keys, validated now."""
    table = _table(value, where)
    merged = nested_overrides(table.items())  # as one: student.model first, then that model's keys
    try:
        from_mapping(MethodConfig, merged, where)
    except ConfigError:
        # student keys without student.model belong to the model [base] or a profile chooses, known only once
        # the study is resolved (harness.study.plan.variant_config checks them there): here, to any model
        student = merged.get("student")
        if not isinstance(student, Mapping) or "model" in student or not any(
                _fits({**merged, "student": {**student, "model": name}}) for name in plugins.models):
            raise
    return tuple(sorted(table.items()))


def _fits(overrides: Mapping[str, Any]) -> bool:
    try:
        from_mapping(MethodConfig, overrides, "")
    except ConfigError:
        return False
    return True


def nested_overrides(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """(dotted key, value) pairs as one nested table, so that a section's keys apply together: a
    `student.model` is then read before the keys of that model, whatever their order."""
    merged: dict[str, Any] = {}
    for key, val in items:
        _deep_merge(merged, nest(key.split("."), val))
    return merged


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


def _generated_comparisons(value: Any, variants: tuple[Variant, ...], factor_specs: Mapping[str, FactorSpec],
                           written: tuple[Comparison, ...], where: str) -> tuple[Comparison, ...]:
    """[[comparisons]] tables: every level of a factor against a reference level, or all pairs of its levels.

    Two variants are compared when they differ in that factor only (every other factor and `set` alike), so
    in a grid of hidden x lr each hidden size is compared with the reference at the same lr. Comparisons
    already written as [[comparison]] are not repeated.
    """
    if not isinstance(value, list):
        raise ConfigError(f"{where}: [[comparisons]] must be an array of tables ([[comparisons]], not [comparisons])")
    seen = {(c.a, c.b) for c in written}
    out: list[Comparison] = []
    for index, entry in enumerate(value):
        here = f"{where}: comparisons[{index}]"
        for c in _comparisons_of(_table(entry, here), variants, factor_specs, here):
            if (c.a, c.b) not in seen and (c.b, c.a) not in seen:
                seen.add((c.a, c.b))
                out.append(c)
    return tuple(out)


def _comparisons_of(entry: Mapping[str, Any], variants: tuple[Variant, ...],
                    factor_specs: Mapping[str, FactorSpec], here: str) -> list[Comparison]:
    _reject_unknown(entry, ("factor", "against", "pairs", "rope"), here)
    if "factor" not in entry:
        raise ConfigError(f'{here}: missing key \'factor\' (e.g. factor = "student.hidden")')
    name = canonical_factor(str(entry["factor"]))
    if name not in factor_specs:
        raise ConfigError(f"{here}.factor: {entry['factor']!r} is not a factor of this study's variants; its factors: "
                          f"{', '.join(factor_specs) or 'none'}")
    if ("against" in entry) == ("pairs" in entry):
        raise ConfigError(f'{here}: give either against = LEVEL (every level against that one) or pairs = "all" '
                          "(every pair of levels)")
    if "pairs" in entry and entry["pairs"] != "all":
        raise ConfigError(f'{here}.pairs: expected "all", got {entry["pairs"]!r}')
    rope = _rope(entry["rope"], f"{here}.rope") if "rope" in entry else None
    spec = factor_specs[name]
    groups = _groups_without(variants, name, factor_specs)
    levels = list(dict.fromkeys(v.factor_dict[name] for v in variants if name in v.factor_dict))
    if "against" in entry:
        against = _matching_level(levels, entry["against"])
        if against is None:
            raise ConfigError(f"{here}.against: {entry['against']!r} is not a level of {name!r} in the variants; levels: "
                              f"{', '.join(level_text(x) for x in levels)}")
        pairs = [(a, against) for a in levels if a != against]
    else:
        pairs = list(itertools.combinations(levels, 2))
    out = []
    for context, members in groups.items():
        for a, b in pairs:
            if a in members and b in members:
                label = f"{spec.label} {spec.display(a)} vs {spec.display(b)}" + (f" ({context})" if context else "")
                out.append(Comparison(label=label, a=members[a].name, b=members[b].name, rope=rope))
    if not out:
        raise ConfigError(f"{here}: no two variants differ in {name!r} alone; add variants that share every other "
                          "factor (a [grid] does), or write the comparisons as [[comparison]] tables")
    return out


def _groups_without(variants: tuple[Variant, ...], name: str, factor_specs: Mapping[str, FactorSpec]
                    ) -> dict[str, dict[Any, Variant]]:
    """Variants that set `name`, grouped by everything else they set: {context label: {level: variant}}."""
    groups: dict[tuple, dict[Any, Variant]] = {}
    labels: dict[tuple, str] = {}
    for v in variants:
        if name not in v.factor_dict:
            continue
        rest = tuple((k, x) for k, x in v.factors if k != name)
        key = (rest, v.overrides)
        groups.setdefault(key, {}).setdefault(v.factor_dict[name], v)
        labels[key] = variant_name(dict(rest), factor_specs) if rest else ""
        if v.overrides:
            labels[key] = "+".join(filter(None, [labels[key], *(f"{k}={level_text(x)}" for k, x in v.overrides)]))
    return {labels[k]: members for k, members in groups.items()}


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


