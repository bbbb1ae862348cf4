"""Profiles and job expansion: a StudySpec + a profile -> frozen, fully resolved JobSpecs.

Order in which settings apply (later wins): MethodConfig defaults (the paper's values) -> the file's
[base] -> the profile's built-in base -> the file's [profiles.NAME.base] -> the variant's factors and
`set` -> `--set` overrides. Profiles come after [base] because a profile is a budget (steps, sizes),
which must hold whatever the file's base says.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from harness import identity, plugins, ranges
from harness.config import (
    FACTORS,
    DataConfig,
    MethodConfig,
    check_method,
    config_value,
    factor_key,
    factors_of,
    from_mapping,
    with_factors,
)
from harness.errors import ConfigError
from harness.streams import STREAMS, TRAINING_STREAMS, SeedStreams
from harness.study.spec import StreamDesign, StudySpec, Variant, _deep_merge, _seeds, nested_overrides

DESED_ROOT_ENV = "HARNESS_DESED_ROOT"

# Built-in profiles. `paper`: SPEC 2.5 on DESED. `quick`: the synthetic corpus, sized so that the README's
# main command (15 jobs) ends in under 15 minutes on 2 cores (README, "Measured"): a 32-unit student (a
# step of h = 256 costs ~20x more on a CPU); 250 frames of 40 ms a clip instead of 500 of 20 ms (an LSTM step costs in proportion to
# the frames; events last 0.3-10 s and the metric's collar is 200 ms), with the masks that count in frames
# halved so that they keep their length in seconds (segment buffer 0.24 s, standard time masks 0.32 s);
# lr 3e-3 (1e-3 does not converge in such budgets); 2-epoch generations (so that the curriculum has reached
# all of U well before the budget ends, as in the paper, where generations 1-3 are ~12 % of the steps);
# 3 seeds; a 2-CNN teacher of width 24 trained 10 epochs at lr 3e-3. Its 1,800 steps stop most students
# before validation F1 has plateaued, which the report flags (harness.report.convergence). `quick-long`:
# the same at QUICK_LONG_STEPS steps, where the event-masking students reach their plateau (segment and no
# masking still rise there; README, "The quick profiles").
# `tiny`: a smoke test of every stage in seconds; its numbers mean nothing.
QUICK_STEPS, QUICK_LONG_STEPS = 1800, 8000
_QUICK_BASE: dict[str, Any] = {
    "features": {"sample_rate": 16000, "n_fft": 1024, "hop_seconds": 0.04, "n_frames": 250},
    "student": {"hidden": 32},
    "teacher": {"n_models": 2, "channels": 24, "epochs": 10, "lr": 3e-3},
    "curriculum": {"generation_epochs": 2},
    "loss": {"segment_buffer": 6},
    "augment": {"time_mask_frames": 8},
    "train": {"steps": QUICK_STEPS, "lr": 3e-3},
}
BUILTIN_PROFILES: dict[str, dict[str, Any]] = {
    "paper": {"data": {"kind": "desed"}, "base": {}, "seeds": 10},
    "quick": {"data": {"kind": "synthetic", "synth_size": "quick"}, "base": _QUICK_BASE, "seeds": 3},
    "quick-long": {
        "data": {"kind": "synthetic", "synth_size": "quick"},
        "base": {**_QUICK_BASE, "train": {**_QUICK_BASE["train"], "steps": QUICK_LONG_STEPS}},
        "seeds": 3,
    },
    "tiny": {
        "data": {"kind": "synthetic", "synth_size": "tiny"},
        "base": {
            "features": {"sample_rate": 16000, "n_fft": 1024},
            "student": {"hidden": 16, "layers": 3},
            "teacher": {"n_models": 2, "channels": 8, "epochs": 2},
            "curriculum": {"generation_epochs": 1},
            "train": {"steps": 12},
        },
        "seeds": 2,
    },
}


@dataclass(frozen=True)
class JobSpec:
    """One training job: a fully resolved config plus a seed. Pure data; `run_job` does the work."""

    study: str
    variant: str
    seed: int
    profile: str
    config: MethodConfig
    data: DataConfig
    teacher_seed: int = 0
    phase: Literal["replicate", "tune"] = "replicate"
    bundle_key: str = ""  # content key of its shared stages (harness.identity.bundle_key); "" = not yet known
    extra_factor_names: tuple[str, ...] = ()  # the study's factors beyond the paper's four: their table columns
    plugins: tuple[str, ...] = ()  # the study's plugins (module names, absolute .py paths): loaded by every worker
    code: tuple[tuple[str, str], ...] = ()  # (plugin, code identity) of the plugins it uses (harness.plugins.code_of)
    # (stream, seed) of teacher, init, order and augment when the study varies streams or teachers (each a
    # results.csv column seed_<stream>); (): every stream follows `seed`, and `teacher_seed` is the study's.
    streams: tuple[tuple[str, int], ...] = ()

    @property
    def seed_streams(self) -> SeedStreams:
        """The seeds train_student draws from; a stream the job does not name follows `seed`."""
        given = dict(self.streams)
        return SeedStreams(**{name: given.get(name, self.seed) for name in TRAINING_STREAMS})

    @property
    def job_id(self) -> str:
        """Stable across runs and machines: see harness.identity.job_id. Streams that follow the seed add
        nothing to it, so a job of default streams keeps the id it had before streams existed."""
        return identity.job_id(self.config, self.seed, self.bundle_key, self.code,
                               self.seed_streams.differing(self.seed))

    @property
    def config_key(self) -> str:
        return identity.config_key(self.config, self.code)

    @property
    def factors(self) -> dict[str, Any]:
        """The paper's four factor levels, then the study's other factors' (as the config holds them)."""
        return {**factors_of(self.config), **self.extra_factors}

    @property
    def extra_factors(self) -> dict[str, Any]:
        # None where this job's config has no such key (a key of another student model: an empty cell)
        return {name: config_value(self.config, factor_key(name), None) for name in self.extra_factor_names}


@dataclass(frozen=True)
class ResolvedStudy:
    """A study under one profile: the base config, the data and the seeds in force."""

    spec: StudySpec
    profile: str
    base: MethodConfig
    data: DataConfig
    seeds: tuple[int, ...]
    method_overrides: Mapping[str, Any]
    override_texts: tuple[str, ...] = ()  # every --set as given (for the record and the report header)
    overrides_key: str = ""  # digest of the parsed overrides; "" when there are none
    generated_data: bool = False  # the synthetic corpus lives in the cache (not a folder the user gave)
    # The file's design of seed streams with the profile's cap applied (a reduced profile keeps each stream's
    # first seeds); None: one seed per run. With a design, `seeds` numbers the runs 0, 1, ... (study_runs).
    streams: StreamDesign | None = None

    @property
    def run_name(self) -> str:
        """<study>-<profile>, plus a short digest of the overrides when there are any."""
        name = f"{self.spec.name}-{self.profile}"
        return f"{name}-{self.overrides_key[:6]}" if self.overrides_key else name

    @property
    def data_identity(self) -> str:
        """The part of the data's resolution that a run directory keeps: a generated corpus by size and
        seed (wherever the cache lies), DESED by its folder."""
        if self.generated_data:
            return f"synthetic:{self.data.synth_size}:{self.data.synth_seed}"
        return f"{self.data.kind}:{self.data.root}"



def resolve(
    spec: StudySpec,
    profile: str,
    cache_dir: Path,
    overrides: tuple[dict[str, Any], dict[str, Any], tuple[int, ...] | None] = ({}, {}, None),
    data_root: str | None = None,
    override_texts: tuple[str, ...] = (),
) -> ResolvedStudy:
    """Apply a profile and the command line's overrides to a study.

    Raises:
        ConfigError: an unknown profile, or a DESED root that is not there (pointing to the quick profile).
    """
    if profile not in BUILTIN_PROFILES and profile not in spec.profiles:
        valid = sorted(set(BUILTIN_PROFILES) | set(spec.profiles))
        raise ConfigError(f"{spec.path}: unknown profile {profile!r}; valid profiles: {', '.join(valid)}")
    builtin = BUILTIN_PROFILES.get(profile, {"data": {}, "base": {}, "seeds": 10})
    mine = spec.profiles.get(profile, {})
    method_set, data_set, seeds_set = overrides
    base_layers = [spec.base, builtin["base"], mine.get("base", {}), method_set]
    where = f"{spec.path} (profile {profile})"
    base = MethodConfig()
    for layer in base_layers:
        layer = _for_model(layer, base) if layer is builtin["base"] else layer
        base = from_mapping(MethodConfig, layer, where, base)
    data_table = _deep_merge(_deep_merge(dict(builtin["data"]), spec.data), mine.get("data", {}))
    _deep_merge(data_table, data_set)
    if data_root is not None:
        data_table["root"] = data_root
    data = from_mapping(DataConfig, data_table, where)
    ranges.check_fields(data, where, prefix="data")
    generated = data.kind == "synthetic" and data.root is None
    data = _resolve_data(data, cache_dir, spec, profile)
    streams = _profile_streams(spec, profile, builtin, mine, seeds_set, where)
    seeds = seeds_set or _profile_seeds(spec, profile, builtin, mine, where)
    if streams is not None:
        seeds = tuple(range(len(spec.teachers) * math.prod(len(levels) for _, levels in streams.levels)))
    check_method(base, where)
    # Run-only settings (device, evaluator, ...) change no number: they never make a study another one.
    # The data's folder is compared on its own (see harness.study.rundir), whichever flag gave it. The truth of
    # the unlabeled clips is read by the report only (pseudolabel quality): it changes no job's number either.
    numbered = identity.without_run_only(method_set)
    data_numbered = {k: v for k, v in data_set.items() if k not in ("root", "unlabeled_truth_tsv")}
    has_overrides = bool(numbered or data_numbered or seeds_set)
    key = identity.digest(numbered, data_numbered, list(seeds_set or ())) if has_overrides else ""
    return ResolvedStudy(spec=spec, profile=profile, base=base, data=data, seeds=seeds,
                         method_overrides=method_set, override_texts=tuple(override_texts), overrides_key=key,
                         generated_data=generated, streams=streams)


def _for_model(profile_base: Mapping[str, Any], config: MethodConfig) -> Mapping[str, Any]:
    """A built-in profile's base for the student model chosen so far: its `student` sizes are the LSTM's,
    so another model keeps its own defaults (sized, if need be, in [profiles.NAME.base] or by --set)."""
    if config.student.model == "lstm" or "student" not in profile_base:
        return profile_base
    return {section: values for section, values in profile_base.items() if section != "student"}


def _profile_seeds(spec: StudySpec, profile: str, builtin: Mapping[str, Any], mine: Mapping[str, Any],
                   where: str) -> tuple[int, ...]:
    """[profiles.NAME] seeds, else the file's seeds; a reduced built-in profile keeps only its first few."""
    if "seeds" in mine:
        return _seeds(mine["seeds"], f"{where}: seeds")
    default = tuple(range(builtin["seeds"]))
    if profile == "paper" or profile not in BUILTIN_PROFILES:
        return spec.seeds or default
    return (spec.seeds or default)[: builtin["seeds"]]


def _profile_streams(spec: StudySpec, profile: str, builtin: Mapping[str, Any], mine: Mapping[str, Any],
                     seeds_set: tuple[int, ...] | None, where: str) -> StreamDesign | None:
    """The file's design of seed streams under a profile: a count of seeds (a reduced built-in profile's,
    [profiles.NAME] seeds, --set seeds) keeps each training stream's first seeds; teachers are never cut.

    Raises:
        ConfigError: a list of seeds where the study's seeds are streams (only a count can cut a design).
    """
    if spec.streams is None:
        return None
    cap = None
    if profile in BUILTIN_PROFILES and profile != "paper":
        cap = builtin["seeds"]
    for given, key in ((mine.get("seeds"), f"{where}: profiles.{profile}.seeds"), (seeds_set, "--set seeds")):
        if given is None:
            continue
        seeds = given if isinstance(given, tuple) else _seeds(given, key)  # --set seeds comes parsed
        if seeds != tuple(range(len(seeds))):
            raise ConfigError(f"{key}: the study's seeds are streams ({', '.join(n for n, _ in spec.streams.levels)}"
                              f"); give a count (e.g. 2), which keeps each stream's first seeds, not a list")
        cap = len(seeds)
    if cap is None:
        return spec.streams
    return dataclasses.replace(spec.streams, levels=tuple((n, levels[:cap]) for n, levels in spec.streams.levels))


@dataclass(frozen=True)
class Run:
    """One replicate of a variant: its seed (in a design of streams, its number in the design), the seed of
    the teacher it distils from, and the seeds of its streams (None: every one follows `seed`)."""

    seed: int
    teacher_seed: int
    streams: SeedStreams | None = None


def study_runs(study: ResolvedStudy) -> list[Run]:
    """The replicates every variant runs, in order; run r of each variant is the same (paired studies pair it).

    One seed per run: run r distils from teacher r mod N (balanced: the teachers' counts differ by at most one).
    A design of streams: teacher outermost, then init, order, augment, the last varying fastest; crossed, a
    stream's seeds are its levels; nested, each level of the outer streams numbers its own seeds of the next
    (seed = group x count + k), so none is shared. A training stream the design leaves out is fixed at 0.
    """
    teachers = study.spec.teachers
    if study.streams is None:
        return [Run(seed, teachers[r % len(teachers)]) for r, seed in enumerate(study.seeds)]
    axes = [("teacher", tuple(range(len(teachers)))), *study.streams.levels]
    runs = []
    for r, index in enumerate(itertools.product(*(range(len(levels)) for _, levels in axes))):
        seeds = _stream_seeds(axes, index, study.streams.design == "nested")
        runs.append(Run(seed=r, teacher_seed=teachers[index[0]],
                        streams=SeedStreams(**{name: seeds.get(name, 0) for name in TRAINING_STREAMS})))
    return runs


def _stream_seeds(axes: list[tuple[str, tuple[int, ...]]], index: tuple[int, ...], nested: bool) -> dict[str, int]:
    """The training streams' seeds of one cell of the design (axes: (stream, levels), teacher first)."""
    seeds, group = {}, index[0]
    for (name, levels), i in list(zip(axes, index))[1:]:
        seeds[name] = group * len(levels) + i if nested else levels[i]
        group = seeds[name] if nested else group
    return seeds


def _recorded_streams(study: ResolvedStudy, run: Run) -> tuple[tuple[str, int], ...]:
    """A job's streams as results.csv records them: all four when the study varies streams or teachers."""
    if study.streams is None and len(study.spec.teachers) == 1:
        return ()
    seeds = run.streams or SeedStreams.following(run.seed)
    return tuple((name, run.teacher_seed if name == "teacher" else getattr(seeds, name)) for name in STREAMS)


def _resolve_data(data: DataConfig, cache_dir: Path, spec: StudySpec, profile: str) -> DataConfig:
    if data.kind == "synthetic":
        if data.root is not None and not Path(data.root).is_dir():
            raise ConfigError(f"{spec.path} (profile {profile}): data root {data.root} does not exist; the "
                              f"{profile} profile generates its corpus inside the cache: drop --data, or give an "
                              "existing folder (empty, or holding a synthetic corpus)")
        root = data.root or str(Path(cache_dir) / "corpora" / f"synth-{data.synth_size}-{data.synth_seed}")
        return dataclasses.replace(data, root=str(Path(root).absolute()))
    root = data.root or os.environ.get(DESED_ROOT_ENV)
    hint = (
        f"pass --data ROOT, set [data] root in {spec.path}, or set ${DESED_ROOT_ENV}; "
        "to try the harness without DESED, use --profile quick (built-in synthetic corpus)"
    )
    if not root:
        raise ConfigError(f"{spec.path} (profile {profile}): no DESED root given: {hint}")
    if not Path(root).is_dir():
        raise ConfigError(f"{spec.path} (profile {profile}): DESED root {root} is not there: {hint}")
    return dataclasses.replace(data, root=str(Path(root).absolute()))


def variant_config(study: ResolvedStudy, variant: Variant, lambdas: tuple[float, float] | None = None
                   ) -> MethodConfig:
    """The resolved config of one variant; `lambdas` (from tuning) replace lambda1, lambda2."""
    where = f"{study.spec.path}: variant {variant.name!r}"
    config = with_factors(study.base, variant.factor_dict, where)
    config = from_mapping(MethodConfig, nested_overrides(variant.overrides), where, config)
    if lambdas is not None:
        config = dataclasses.replace(config, loss=dataclasses.replace(
            config.loss, lambda1=lambdas[0], lambda2=lambdas[1]))
    # --set wins over everything the file says, a variant's own `set` included.
    config = from_mapping(MethodConfig, study.method_overrides, "--set", config)
    check_method(config, where)
    return config


# (a config, where it comes from, the teacher's seed) -> the content key of its shared stages; ConfigError
# naming `where` for a config the data cannot run (harness.study.stages.StageKeys)
BundleKeys = Callable[[MethodConfig, str, int], str]


def expand(study: ResolvedStudy, lambdas: Mapping[str, tuple[float, float]] | None = None,
           keys: BundleKeys | None = None) -> list[JobSpec]:
    """Variants x runs (study_runs) -> replicate jobs, in file order (variant-major).

    `keys` gives each job its bundle key (harness.study.stages.StageKeys), one per teacher; without it the
    jobs' bundle key is "" (enough to look at a plan, not to run it: `run_job` refuses a job whose key is not
    its bundle's).
    """
    jobs, runs = [], study_runs(study)
    for variant in study.spec.variants:
        config = variant_config(study, variant, (lambdas or {}).get(variant.name))
        where = f"{study.spec.path}: variant {variant.name!r}"
        if len(study.spec.teachers) > 1 and config.teacher.source == "file":
            raise ConfigError(f"{study.spec.path}: teacher_seeds: {len(study.spec.teachers)} teachers, but variant "
                              f"{variant.name!r} reads its teacher from a file (teacher.source = \"file\"), one "
                              "teacher whatever the seed; train the teachers (teacher.source = \"train\") or keep one")
        bundles = {t: keys(config, where, t) if keys is not None else "" for t in study.spec.teachers}
        jobs.extend(_job(study, variant.name, config, run.seed, "replicate", bundles[run.teacher_seed], run)
                    for run in runs)
    return jobs


def expand_tuning(study: ResolvedStudy, keys: BundleKeys | None = None) -> list[JobSpec]:
    """The [tune] stage: every variant x lambda1 x lambda2 x tuning seed (1000, 1001, ...), every stream
    following the seed, on the study's first teacher."""
    tune = study.spec.tune
    if tune is None:
        return []
    jobs = []
    for variant in study.spec.variants:
        for l1 in tune.lambda1:
            for l2 in tune.lambda2:
                config = variant_config(study, variant, (l1, l2))
                key = (keys(config, f"{study.spec.path}: variant {variant.name!r}", study.spec.teacher_seed)
                       if keys is not None else "")
                jobs.extend(_job(study, variant.name, config, 1000 + k, "tune", key) for k in range(tune.seeds))
    return jobs


def _job(study: ResolvedStudy, variant: str, config: MethodConfig, seed: int, phase: str, key: str,
         run: Run | None = None) -> JobSpec:
    extra = tuple(n for n in study.spec.factor_specs if n not in FACTORS)
    teacher = study.spec.teacher_seed if run is None else run.teacher_seed
    return JobSpec(study=study.spec.name, variant=variant, seed=seed, profile=study.profile, config=config,
                   data=study.data, teacher_seed=teacher, phase=phase,  # type: ignore[arg-type]
                   streams=() if run is None else _recorded_streams(study, run),
                   bundle_key=key, extra_factor_names=extra, plugins=study.spec.plugins,
                   code=plugins.code_of(config.student.model))
