"""harness: statistically sound ablation studies of knowledge distillation for sound event detection."""

__version__ = "0.1.0"
