"""The student S: stacked unidirectional LSTM, frame outputs and attention pooling (SPEC 2, Student S).

Shapes: input features x [B, T, F] (normalised log-mel, F = 20 for the student), frame outputs
[B, C, T] and clip outputs [B, C], both probabilities. C = 10 classes, T = 500 frames.

Attention pooling. Per class c the attention logits are a_c H + b_c ([B, T, C]). Two forms:

- "time" (default, SPEC): weights w_ct = softmax over t of the logits; clip_c = sum_t w_ct f_ct.
- "classes" (the literal Eq. 1 of the paper): z_ct = softmax over c of the logits at each frame t;
  clip_c = sum_t z_ct f_ct / sum_t z_ct. The division by sum_t z_ct (always > 0, softmax is positive)
  normalises over time, so the clip output is a weighted average of f_c and stays in [0, 1].

Both are weighted averages of the frame outputs over time: a constant frame output c gives clip c.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.config import StudentConfig
from harness.constants import N_CLASSES
from harness.errors import ConfigError

ATTENTION_KINDS: tuple[str, ...] = ("time", "classes")


def attention_pool(frame: torch.Tensor, logits: torch.Tensor, kind: str = "time") -> torch.Tensor:
    """Pool frame probabilities into clip probabilities with attention weights.

    Args:
        frame: frame probabilities [B, T, C] (time before classes, as the heads produce them).
        logits: attention logits [B, T, C].
        kind: "time" (softmax over frames per class) or "classes" (softmax over classes per frame,
            then normalised over time); see the module docstring.

    Returns:
        Clip probabilities [B, C].
    """
    if kind == "time":
        weights = torch.softmax(logits, dim=1)  # [B, T, C], sums to 1 over T
        return (weights * frame).sum(dim=1)
    if kind == "classes":
        z = torch.softmax(logits, dim=2)  # [B, T, C], sums to 1 over C
        return (z * frame).sum(dim=1) / z.sum(dim=1)
    raise ConfigError(f"student.attention: unknown kind {kind!r}; choose one of {', '.join(ATTENTION_KINDS)}")


class Student(nn.Module):
    """cfg.layers stacked LSTMs (cfg.hidden units) -> sigmoid frame head + attention pooling head."""

    def __init__(self, n_mels: int, cfg: StudentConfig = StudentConfig(), n_classes: int = N_CLASSES) -> None:
        """Build the layers; parameters get PyTorch's default init (seed it with torch.manual_seed).

        Args:
            n_mels: mel bins F of the input features.
            cfg: hidden size, number of layers and attention kind.
            n_classes: C.
        """
        super().__init__()
        if cfg.attention not in ATTENTION_KINDS:
            raise ConfigError(
                f"student.attention: unknown kind {cfg.attention!r}; choose one of {', '.join(ATTENTION_KINDS)}"
            )
        self.attention = cfg.attention
        self.lstm = nn.LSTM(n_mels, cfg.hidden, num_layers=cfg.layers, batch_first=True)
        self.frame_head = nn.Linear(cfg.hidden, n_classes)
        self.attention_head = nn.Linear(cfg.hidden, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame and clip probabilities of a batch.

        Args:
            x: features [B, T, F].

        Returns:
            frame [B, C, T] and clip [B, C], both in [0, 1] (not clamped: the loss clamps).
        """
        hidden, _ = self.lstm(x)  # [B, T, h]; bfloat16 under autocast (train.precision = "bf16")
        # Under autocast only the LSTM, nearly all of the step's work, runs in low precision. The heads and
        # the pooling stay float32: a bfloat16 probability has 8 significant bits, so every p > 0.998 would
        # round to 1.0, where the loss's clamp cuts its gradient, and a 500-frame softmax loses digits.
        with torch.autocast(x.device.type, enabled=False):
            hidden = hidden.float()
            frame = torch.sigmoid(self.frame_head(hidden))  # [B, T, C]
            clip = attention_pool(frame, self.attention_head(hidden), self.attention)
        return frame.transpose(1, 2), clip


def gate(frame: torch.Tensor, clip: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Clip gating at inference: zero the frames of class c wherever clip_c < threshold.

    Args:
        frame: frame probabilities [B, C, T] (torch tensor or numpy array).
        clip: clip probabilities [B, C].
        threshold: classes whose clip probability is below it are switched off for the whole clip.

    Returns:
        Gated frame probabilities [B, C, T] (a new array of the input's kind).
    """
    keep = clip >= threshold  # [B, C]
    return frame * keep[..., None]
