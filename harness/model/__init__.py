"""The student models (SPEC 2, Student S; harness.plugins.models).

The package itself imports no torch, so that its torch-free modules (config, size) can be read to plan a
study; the model classes are imported on first use.
"""

from typing import Any

__all__ = ["Student", "attention_pool", "gate"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from harness.model import student

        return getattr(student, name)
    raise AttributeError(f"module 'harness.model' has no attribute {name!r}")
