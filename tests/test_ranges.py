"""Every number a user can give has its range in harness.ranges, and every command refuses values outside it."""

from __future__ import annotations

import argparse
import subprocess
import sys
import types
import typing

import pytest

from harness import plugins, ranges
from harness.cli import build_parser
from harness.config import DataConfig, MethodConfig, check_method, from_mapping, nest, parse_override
from harness.errors import ConfigError
from harness.study.cluster import ClusterConfig, parse_cluster


def _numeric(hint) -> bool:
    """int or float, also inside `X | None` and tuple[X, ...] (bool is not a number here)."""
    if hint in (int, float):
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType, tuple):
        return any(_numeric(a) for a in typing.get_args(hint) if a is not Ellipsis)
    return False


def _numeric_fields(cls, prefix: str) -> set[str]:
    return {f"{prefix}.{name}" for name, hint in typing.get_type_hints(cls).items() if _numeric(hint)}


def test_every_numeric_config_field_has_a_range():
    wanted = set()
    for section, hint in typing.get_type_hints(MethodConfig).items():
        wanted |= _numeric_fields(hint, section)
    for model in plugins.models:  # the student section holds the chosen model's keys: every model's
        wanted |= _numeric_fields(plugins.models.get(model).config, "student")
    wanted |= _numeric_fields(DataConfig, "data")
    assert wanted == set(ranges.METHOD)
    assert {k.split(".")[1] for k in _numeric_fields(ClusterConfig, "cluster")} == set(ranges.CLUSTER)


def _options(parser: argparse.ArgumentParser):
    for action in parser._actions:  # argparse keeps its actions here; there is no public listing
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _options(sub)
        else:
            yield action


def test_every_numeric_flag_has_a_range():
    numeric = [a for a in _options(build_parser()) if a.type in (int, float) or a.type.__class__ is types.FunctionType
               and a.type.__name__ in ("int", "float")]
    assert numeric, "the parser has numeric flags"
    for action in numeric:
        assert action.type not in (int, float), f"{action.option_strings}: a plain {action.type.__name__}, no range"
        assert set(action.option_strings) & set(ranges.FLAGS), action.option_strings


@pytest.mark.parametrize("bounds, inside, outside, words", [
    (ranges.POSITIVE, [1e-9, 3], [0, -1, float("nan"), float("inf")], "greater than 0"),
    (ranges.AT_LEAST_ONE, [1, 7], [0, -5], "at least 1"),
    (ranges.UNIT, [0, 0.5, 1], [-0.001, 1.001, 7], "between 0 and 1"),
    (ranges.Range(0, 1, high_open=True), [0, 0.99], [1, -1], "at least 0 and less than 1"),
])
def test_range_membership_and_words(bounds, inside, outside, words):
    assert all(v in bounds for v in inside)
    assert not any(v in bounds for v in outside)
    assert bounds.describe() == words


def _with(override: str) -> MethodConfig:
    return from_mapping(MethodConfig, nest(*parse_override(override)), "test")


@pytest.mark.parametrize("override, key", [
    ("postprocess.threshold=7", "postprocess.threshold"), ("postprocess.threshold=-1", "postprocess.threshold"),
    ("student.gate_threshold=1.5", "student.gate_threshold"), ("train.betas=[0.9, 1.0]", "train.betas"),
    ("curriculum.fractions=[0.2, 1.4]", "curriculum.fractions"), ("eval.segment_seconds=0", "eval.segment_seconds"),
    ("augment.time_masks=-1", "augment.time_masks"), ("loss.presence_threshold=2", "loss.presence_threshold"),
])
def test_check_method_names_the_key_out_of_range(override, key):
    config = _with(override)
    with pytest.raises(ConfigError, match=rf"here: {key} = .*; it must be"):
        check_method(config, "here")


def test_cross_field_limits():
    with pytest.raises(ConfigError, match="features.fmax"):
        check_method(_with("features.fmax=30000"), "here")
    with pytest.raises(ConfigError, match="longer than features.n_fft"):
        check_method(_with("features.n_fft=512"), "here")


def test_cluster_table_uses_the_same_ranges():
    with pytest.raises(ConfigError, match=r"\[cluster\] cpus = 0; it must be at least 1"):
        parse_cluster({"cpus": 0}, "s.toml")
    assert parse_cluster({"gpus": 0, "mem_gb": 2}, "s.toml").mem_gb == 2.0


def _harness(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


@pytest.mark.parametrize("flag, value", [("--threads", "0"), ("--threads", "-5"), ("--jobs", "0"),
                                         ("--retries", "-1"), ("--job-timeout", "0"), ("--jobs-per-gpu", "0")])
def test_run_refuses_a_flag_out_of_range_before_any_work(tmp_path, flag, value):
    study = tmp_path / "s.toml"
    study.write_text('[study]\nname = "s"\n\n[[variant]]\nname = "A"\n')
    out = _harness("run", str(study), "--profile", "tiny", "--runs", str(tmp_path / "runs"), "--cache",
                   str(tmp_path / "cache"), flag, value, cwd=tmp_path)
    assert out.returncode == 2
    assert f"argument {flag}: {float(value):g} is out of range: it must be" in out.stderr.replace(".0 is", " is")
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


def test_plan_and_rescore_refuse_a_threshold_out_of_range(tmp_path):
    study = tmp_path / "s.toml"
    study.write_text('[study]\nname = "s"\n\n[[variant]]\nname = "A"\n')
    out = _harness("plan", str(study), "--profile", "tiny", "--cache", str(tmp_path / "cache"), "--set",
                   "postprocess.threshold=7", cwd=tmp_path)
    assert out.returncode == 2 and "postprocess.threshold = 7.0; it must be between 0 and 1" in out.stderr
    out = _harness("rescore", str(tmp_path / "runs" / "none"), "--set", "postprocess.threshold=-1", cwd=tmp_path)
    assert out.returncode == 2 and "postprocess.threshold = -1.0; it must be between 0 and 1" in out.stderr
    assert "Traceback" not in out.stderr
