"""A small student: one 1-D convolution over time (same padding), ReLU, a frame head and max pooling."""

from __future__ import annotations

from dataclasses import dataclass

from harness.model.config import ModelConfig
from harness.model.size import ModelSize


@dataclass(frozen=True)
class TinyConvConfig(ModelConfig):
    model: str = "tinyconv"
    channels: int = 16  # convolution filters
    kernel: int = 5  # frames the convolution sees (odd, so that the output keeps every frame)


def build(config: TinyConvConfig, n_mels: int, n_classes: int):
    import torch
    from torch import nn

    class TinyConv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(n_mels, config.channels, config.kernel, padding=config.kernel // 2)
            self.head = nn.Linear(config.channels, n_classes)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # [B, T, channels]
            frame = torch.sigmoid(self.head(hidden.float()))  # [B, T, C], float32 under autocast too
            return frame.transpose(1, 2), frame.max(dim=1).values  # [B, C, T], [B, C]

    return TinyConv()


def size(config: TinyConvConfig, n_mels: int, n_classes: int, n_frames: int) -> ModelSize:
    """Exact parameters; MACs of the convolution and the head per frame (biases and the max left out)."""
    params = n_mels * config.channels * config.kernel + config.channels + config.channels * n_classes + n_classes
    per_frame = n_mels * config.channels * config.kernel + config.channels * n_classes
    return ModelSize(params=params, macs_per_frame=per_frame, macs_per_clip=per_frame * n_frames, n_frames=n_frames)
