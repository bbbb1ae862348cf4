"""The Python API: the same study as the command line, from a notebook's point of view."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from conftest import warm_cache
from harness import api
from harness.errors import ConfigError, DataError

STUDY = """
[study]
name = "api"
seeds = 2

[[variant]]
name = "EM"
masking = "event"

[[variant]]
name = "NM"
masking = "none"

[[comparison]]
a = "EM"
b = "NM"
"""


def test_load_plan_run_results_report(tmp_path, tiny_corpus, tiny_stages):
    warm_cache(tiny_stages, tmp_path)  # the prebuilt shared stages: the API is what this is about
    (tmp_path / "api.toml").write_text(STUDY + f'\n[data]\nroot = "{tiny_corpus}"\n')
    study = api.load(tmp_path / "api.toml", profile="tiny", overrides=["train.steps=6"],
                     cache_dir=tmp_path / "cache", runs_dir=tmp_path / "runs")
    plan = study.plan()
    assert list(plan["variant"]) == ["EM", "EM", "NM", "NM"] and set(plan["status"]) == {"pending"}
    assert list(plan["masking"]) == ["event", "event", "none", "none"]
    with pytest.raises(DataError, match="run the study first"):
        study.results()

    outcome = study.run(jobs=2)
    assert (outcome.total, outcome.ran, len(outcome.failed)) == (4, 4, 0)
    results = study.results()
    assert sorted(results["job_id"]) == sorted(plan["job_id"])  # the plan's ids are the ids that ran
    assert set(study.plan()["status"]) == {"done"}
    assert study.run(jobs=2).ran == 0  # finished jobs are never run twice

    report = study.report(tmp_path / "report")
    assert report.name == "report.md" and "## Table 4" in report.read_text()
    # the command line reads the same run folder (the API and the CLI name it alike)
    out = subprocess.run([sys.executable, "-m", "harness", "status", str(study.run_dir)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "4 done, 0 running, 0 failed" in out.stdout, out.stdout
    table = pd.read_csv(study.run_dir / "results.csv")
    assert table["val_f1"].tolist() == results["val_f1"].tolist()


def test_bad_input_raises_the_cli_errors(tmp_path):
    (tmp_path / "bad.toml").write_text(STUDY.replace('masking = "none"', 'masking = "nothing"'))
    with pytest.raises(ConfigError, match="unknown level 'nothing'"):
        api.load(tmp_path / "bad.toml", profile="tiny", cache_dir=tmp_path)
    (tmp_path / "ok.toml").write_text(STUDY)
    with pytest.raises(ConfigError, match="train.stepz"):
        api.load(tmp_path / "ok.toml", profile="tiny", overrides=["train.stepz=3"], cache_dir=tmp_path)
