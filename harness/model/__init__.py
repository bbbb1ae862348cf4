"""The student model (SPEC 2, Student S)."""

from harness.model.student import Student, attention_pool, gate

__all__ = ["Student", "attention_pool", "gate"]
