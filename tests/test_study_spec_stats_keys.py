"""The statistics keys of an ablation file: [study] paired and a comparison's rope."""

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.study.spec import parse_study

BASE = {"variant": [{"name": "A", "masking": "event"}, {"name": "B", "masking": "none"}]}


def study(head=None, comparison=None):
    raw = {**BASE, "comparison": [{"label": "A vs B", "a": "A", "b": "B", **(comparison or {})}]}
    if head is not None:
        raw["study"] = {"name": "s", **head}
    return parse_study(raw, Path("s.toml"))


def test_defaults():
    spec = study()
    assert spec.paired is False and spec.comparisons[0].rope is None


def test_paired_and_rope():
    spec = study({"paired": True}, {"rope": 1})
    assert spec.paired is True and spec.comparisons[0].rope == 1.0
    assert study(comparison={"rope": 0.25}).comparisons[0].rope == 0.25


@pytest.mark.parametrize("head,comparison,needle", [
    ({"paired": "yes"}, None, "s.toml: [study] paired: expected true or false"),
    (None, {"rope": -0.5}, "s.toml: comparison[0].rope: expected a number of F1 points >= 0"),
    (None, {"rope": "0.5"}, "comparison[0].rope: expected a number"),
    (None, {"rope": True}, "comparison[0].rope: expected a number"),
    (None, {"rope": float("inf")}, "comparison[0].rope: expected a number"),
    (None, {"ropes": 0.5}, "unknown key 'ropes'; valid keys: label, a, b, rope"),
])
def test_bad_values_name_the_key(head, comparison, needle):
    with pytest.raises(ConfigError) as info:
        study(head, comparison)
    assert needle in str(info.value)
