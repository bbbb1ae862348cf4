"""The teacher: a trained CNN ensemble, or predictions read from a file (SPEC 2, Teacher T)."""

from harness.teacher.cnn import TeacherCNN, predict_ensemble, train_ensemble
from harness.teacher.predictions import load_predictions, save_predictions

__all__ = ["TeacherCNN", "train_ensemble", "predict_ensemble", "load_predictions", "save_predictions"]
