"""Ablation files, profiles and overrides: expansion and every kind of bad input."""

import dataclasses
from pathlib import Path

import pytest

from harness.config import MethodConfig, from_mapping
from harness.errors import ConfigError
from harness.study.plan import BUILTIN_PROFILES, expand, expand_tuning, resolve
from harness.study.spec import load_study, parse_study, split_overrides, variant_name

ABLATIONS = Path(__file__).resolve().parents[1] / "ablations"

MINIMAL = """
[study]
name = "mini"
seeds = [3, 4]

[[variant]]
name = "A"
masking = "event"

[[variant]]
name = "B"
masking = "none"

[[comparison]]
a = "A"
b = "B"
"""


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_study(write(tmp_path, text))
    return str(info.value)


def test_paper_tables_expand_to_their_variants_and_comparisons():
    counts = {"table1": (4, 3), "table2": (5, 6), "table3": (3, 3), "paper": (10, 12)}
    for name, (n_variants, n_comparisons) in counts.items():
        spec = load_study(ABLATIONS / f"{name}.toml")
        assert (len(spec.variants), len(spec.comparisons)) == (n_variants, n_comparisons), name
        for variant in spec.variants:
            if variant.factor_dict["pseudolabels"] != "none":  # EM+CS drops the N/A curriculum
                assert variant.name == variant_name(variant.factor_dict), variant


def test_quick_profiles_keep_every_length_in_seconds_and_differ_only_in_steps(tmp_path):
    spec = load_study(ABLATIONS / "table2.toml")
    paper = MethodConfig()
    quick, long = (resolve(spec, name, tmp_path).base for name in ("quick", "quick-long"))
    f = quick.features
    assert f.n_frames * f.hop_seconds == pytest.approx(10.0)  # the whole 10-s clip, as in the paper
    # Masks that count frames keep the paper's length in seconds at the coarser frame rate.
    assert quick.loss.segment_buffer * f.hop_seconds == pytest.approx(paper.loss.segment_buffer * 0.02)
    assert quick.augment.time_mask_frames * f.hop_seconds == pytest.approx(paper.augment.time_mask_frames * 0.02)
    assert long.train.steps > quick.train.steps
    assert dataclasses.replace(long, train=dataclasses.replace(long.train, steps=quick.train.steps)) == quick
    assert resolve(spec, "quick-long", tmp_path).seeds == resolve(spec, "quick", tmp_path).seeds


def test_quick_profile_keeps_first_seeds_and_applies_budget(tmp_path):
    spec = load_study(ABLATIONS / "table2.toml")
    study = resolve(spec, "quick", tmp_path)
    jobs = expand(study)
    assert study.seeds == tuple(range(BUILTIN_PROFILES["quick"]["seeds"]))
    assert len(jobs) == 5 * len(study.seeds)
    assert {j.config.train.steps for j in jobs} == {BUILTIN_PROFILES["quick"]["base"]["train"]["steps"]}
    assert study.data.kind == "synthetic" and Path(study.data.root).is_relative_to(tmp_path)
    # the variant's factors reach the config
    by_name = {j.variant: j for j in jobs}
    assert by_name["EF+SW+NM+CS"].config.loss.masking == "none"
    assert by_name["EF+SW+EM+SS"].config.augment.kind == "standard"


def test_job_ids_are_stable_and_distinct(tmp_path):
    spec = load_study(ABLATIONS / "table2.toml")
    ids1 = [j.job_id for j in expand(resolve(spec, "quick", tmp_path))]
    ids2 = [j.job_id for j in expand(resolve(spec, "quick", tmp_path / "elsewhere"))]
    assert ids1 == ids2  # moving the cache does not change the jobs
    assert len(set(ids1)) == len(ids1)
    changed = expand(resolve(spec, "quick", tmp_path, split_overrides(["train.steps=10"])))
    assert not set(ids1) & {j.job_id for j in changed}


def test_overrides_reach_every_layer(tmp_path):
    spec = load_study(write(tmp_path, MINIMAL + '\n[profiles.quick]\nseeds = 1\nbase.train.steps = 33\n'))
    study = resolve(spec, "quick", tmp_path)
    assert study.seeds == (0,) and study.base.train.steps == 33
    study = resolve(spec, "quick", tmp_path, split_overrides(["seeds=[7, 8]", "loss.lambda1=1.5"]))
    assert study.seeds == (7, 8) and study.base.loss.lambda1 == 1.5
    assert {j.config.loss.lambda1 for j in expand(study)} == {1.5}


def test_grid_variants_expand_factorially(tmp_path):
    spec = load_study(write(tmp_path, """
[study]
name = "grid"
[grid]
masking = ["event", "none"]
augmentation = ["custom", "standard", "none"]
"""))
    names = [v.name for v in spec.variants]
    assert names == ["EM+CS", "EM+SS", "EM+NS", "NM+CS", "NM+SS", "NM+NS"]


def test_tuning_expands_grid_times_seeds(tmp_path):
    spec = load_study(write(tmp_path, MINIMAL + "\n[tune]\nlambda1 = [0.5, 1.0]\nlambda2 = [2.0]\nseeds = 3\n"))
    jobs = expand_tuning(resolve(spec, "tiny", tmp_path))
    assert len(jobs) == 2 * 2 * 1 * 3
    assert {j.seed for j in jobs} == {1000, 1001, 1002}
    assert {(j.config.loss.lambda1, j.config.loss.lambda2) for j in jobs} == {(0.5, 2.0), (1.0, 2.0)}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[study\nname=1", "not valid TOML"),
        (MINIMAL + "\n[base]\ntrain.stepz = 3\n", "unknown key 'stepz'; valid keys: batch_size, lr"),
        (MINIMAL + "\n[base]\ntrain.steps = 'many'\n", "base.train.steps: expected int"),
        (MINIMAL + "\n[base]\ntrain.steps = true\n", "base.train.steps: expected int"),
        (MINIMAL.replace('masking = "none"', 'masking = "partial"'),
         "unknown level 'partial'; valid levels: event, segment, none"),
        (MINIMAL.replace('masking = "none"', 'mask = "none"'), "unknown key 'mask'"),
        (MINIMAL.replace('b = "B"', 'b = "C"'), "comparison[0].b: unknown variant 'C'; variants: A, B"),
        (MINIMAL + "\n[colour]\nx = 1\n", "unknown key 'colour'"),
        (MINIMAL.replace('name = "B"', 'name = "A"'), "variant name 'A' is used twice"),
        (MINIMAL.replace("seeds = [3, 4]", "seeds = 0"), "need at least one seed"),
        (MINIMAL + "\n[profiles.quick]\nbudget = 3\n", "profiles.quick: unknown key 'budget'"),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path, text, expected):
    message = error_of(tmp_path, text)
    assert "study.toml" in message
    assert expected in message


def test_missing_file_and_unknown_profile(tmp_path):
    with pytest.raises(ConfigError, match="no such ablation file"):
        load_study(tmp_path / "nope.toml")
    spec = load_study(write(tmp_path, MINIMAL))
    with pytest.raises(ConfigError, match="unknown profile 'fast'; valid profiles: paper, quick, quick-long, tiny"):
        resolve(spec, "fast", tmp_path)


def test_missing_desed_root_points_to_quick_profile(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_DESED_ROOT", raising=False)
    spec = load_study(write(tmp_path, MINIMAL))
    with pytest.raises(ConfigError, match="no DESED root given.*--profile quick"):
        resolve(spec, "paper", tmp_path)
    with pytest.raises(ConfigError, match="DESED root /does/not/exist is not there.*--profile quick"):
        resolve(spec, "paper", tmp_path, data_root="/does/not/exist")
    monkeypatch.setenv("HARNESS_DESED_ROOT", str(tmp_path))
    assert resolve(spec, "paper", tmp_path).data.root == str(tmp_path)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.steps", "expected dotted.key=value"),
        ("train.stepz=3", "unknown key 'stepz'"),
        ("loss.masking=partial", "'partial' is not valid; choose one of 'event', 'segment', 'none'"),
        ("seeds=-1", "need at least one seed"),
        ("data.kind=cloud", "'cloud' is not valid"),
    ],
)
def test_bad_overrides(override, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        split_overrides([override])


def test_from_mapping_converts_tuples_and_optional():
    config = from_mapping(MethodConfig, {"train": {"betas": [0.8, 0.9], "epoch_steps": 5},
                                         "curriculum": {"fractions": [0.1, 0.3, 0.6]}}, "x")
    assert config.train.betas == (0.8, 0.9) and config.train.epoch_steps == 5
    assert config.curriculum.fractions == (0.1, 0.3, 0.6)
    with pytest.raises(ConfigError, match="expected a list of 2 values"):
        from_mapping(MethodConfig, {"train": {"betas": [0.8]}}, "x")


def test_parse_study_defaults_name_and_table(tmp_path):
    spec = parse_study({"variant": [{"masking": "event"}, {"masking": "none"}]}, tmp_path / "s.toml")
    assert spec.name == "s"
    assert [v.name for v in spec.variants] == ["EM", "NM"]
    assert spec.tables[0].variants == ("EM", "NM")
