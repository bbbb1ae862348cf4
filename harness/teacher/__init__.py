"""The teacher: a trained CNN ensemble, or predictions read from a file (SPEC 2, Teacher T).

The package imports no torch itself: planning a study reads a teacher predictions file (predictions.py)
without it; the CNN is imported on first use.
"""

from typing import Any

__all__ = ["TeacherCNN", "train_ensemble", "predict_ensemble", "load_predictions", "save_predictions"]


def __getattr__(name: str) -> Any:
    if name in ("TeacherCNN", "train_ensemble", "predict_ensemble"):
        from harness.teacher import cnn

        return getattr(cnn, name)
    if name in ("load_predictions", "save_predictions"):
        from harness.teacher import predictions

        return getattr(predictions, name)
    raise AttributeError(f"module 'harness.teacher' has no attribute {name!r}")
