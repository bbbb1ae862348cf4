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
