"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of the tiny synthetic DESED-format corpus (seed 0), generated once per test session."""
    from harness.data.synth import generate

    root = tmp_path_factory.mktemp("tiny_corpus")
    generate(root, "tiny", seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_study_job(tiny_corpus: Path):
    """A resolved job of the `tiny` profile on the tiny corpus (for stage and training tests)."""
    from harness.study.plan import resolve
    from harness.study.spec import parse_study

    spec = parse_study({"variant": [{"name": "base"}], "data": {"root": str(tiny_corpus)}},
                       tiny_corpus / "tiny.toml")
    from harness.study.plan import expand
    from harness.study.stages import StageKeys, read_data

    study = resolve(spec, "tiny", tiny_corpus / "cache")
    return expand(study, keys=StageKeys(read_data(study.data, tiny_corpus / "cache", 1), 0))[0]


@pytest.fixture(scope="session")
def tiny_bundle(tiny_study_job, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared-stage bundle (features, teacher, pseudolabels) of the tiny corpus, built once."""
    from harness.study.stages import prepare

    return prepare(tiny_study_job, tmp_path_factory.mktemp("cache"), jobs=1)
