"""The DCASE Task 4 baseline CRNN as a student: model "crnn" (harness.plugins.models, harness.config.CRNNConfig).

The 2021-2024 baselines' network (DESED_task): conv blocks of 3x3 conv, batch norm, GLU (or ReLU), dropout and
average pooling over frequency (and over time in the first blocks), a bidirectional GRU over the pooled frames,
a sigmoid frame head and an attention-pooled clip output from a second head. Shapes as the LSTM student's:
features [B, T, F] in, frame probabilities [B, C, T] and clip probabilities [B, C] out.

Time pooling by P = prod(time_pooling) is this model's business: the input is zero-padded at its end to a
multiple of P frames (zero is the mean of the normalised features), each output of the pooled rate is
repeated P times and the result cut to T, so frame t gets the output of the input frames
[P floor(t / P), P floor(t / P) + P). The clip output pools those T frame outputs, so it stays a weighted
average of what the model returns.

Where this differs from the baseline, and why:
- batch norm keeps PyTorch's momentum 0.1: the baseline passes momentum=0.99 (a Keras convention), which in
  PyTorch makes the running statistics nearly those of the last training batch;
- frequency is halved in a block only while more than one bin is left (the student's 20 bins allow 4
  halvings, the baseline's 128 bins its 7);
- the frame outputs are upsampled to the input's frame rate (the baseline scores its pooled frames).

Size (`crnn_size`), counted like harness.model.size counts the LSTM's: parameters exactly (conv weights and
biases, batch norm's scale and shift, the GLU's channel mixing, the GRU's weights and both bias vectors per
direction, two heads); MACs per clip of the matrix products only, a conv counted over its whole 3x3 kernel at
every output position of the padded input:

    conv block i:  9 c_in c_out t_i f_i            t_i x f_i: frames x bins entering block i
    GLU of block i:  c_out^2 t_i f_i              its 1x1 channel mixing
    GRU layer l:   2 directions x 3h (in_l + h) per pooled frame    in_0 = c_last f_last, in_l = 2h
    two heads:     2 x 2h C per pooled frame
    pooling:       C per output frame (the attention-weighted sum over the T frames)

Left out: biases, batch norm, the sigmoids and element-wise products, the average pooling's additions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from harness.config import CRNNConfig
from harness.constants import N_CLASSES
from harness.errors import ConfigError
from harness.model.size import ModelSize
from harness.model.student import ATTENTION_KINDS, attention_pool

KERNEL = 3  # 3x3 convolutions, padding 1: a block keeps its input's frames and bins until its pooling
FIRST_WIDTH_SHIFT = 3  # block 0 has cnn_channels / 2^3 channels (the baseline: 16 of 128), doubling per block


@dataclass(frozen=True)
class Block:
    """One conv block's geometry: channels in and out, bins entering it, and its pooling (time, frequency)."""

    c_in: int
    c_out: int
    bins: int
    time_pool: int
    freq_pool: int


def layout(cfg: CRNNConfig, n_mels: int) -> tuple[Block, ...]:
    """The conv blocks of a CRNN on n_mels bins: widths doubling up to cnn_channels, frequency halved while
    more than one bin is left, time pooled by time_pooling in the first blocks."""
    blocks, c_in, bins = [], 1, n_mels
    for i in range(cfg.cnn_layers):
        c_out = max(1, cfg.cnn_channels >> max(0, FIRST_WIDTH_SHIFT - i))
        time_pool = cfg.time_pooling[i] if i < len(cfg.time_pooling) else 1
        freq_pool = 2 if bins >= 2 else 1
        blocks.append(Block(c_in=c_in, c_out=c_out, bins=bins, time_pool=time_pool, freq_pool=freq_pool))
        c_in, bins = c_out, bins // freq_pool
    return tuple(blocks)


def time_pool(cfg: CRNNConfig) -> int:
    """P: input frames per frame of the GRU."""
    return math.prod(cfg.time_pooling)


class GLU(nn.Module):
    """The baseline's gated unit: a linear mix of the channels times the sigmoid of the input (channels kept)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, c, T, F]
        return self.linear(x.movedim(1, -1)).movedim(-1, 1) * torch.sigmoid(x)


def _block(block: Block, activation: str, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(block.c_in, block.c_out, KERNEL, padding=KERNEL // 2),
        nn.BatchNorm2d(block.c_out, eps=1e-3),  # the baseline's eps
        GLU(block.c_out) if activation == "glu" else nn.ReLU(),
        nn.Dropout(dropout),
        nn.AvgPool2d((block.time_pool, block.freq_pool)),
    )


class CRNN(nn.Module):
    """Conv blocks -> bidirectional GRU -> sigmoid frame head + attention pooling head."""

    def __init__(self, n_mels: int, cfg: CRNNConfig = CRNNConfig(), n_classes: int = N_CLASSES) -> None:
        """Build the layers; parameters get PyTorch's default init (seed it with torch.manual_seed).

        Args:
            n_mels: mel bins F of the input features.
            cfg: the CRNN's keys (student.*).
            n_classes: C.
        """
        super().__init__()
        cfg.check("student")
        if cfg.attention not in ATTENTION_KINDS:
            raise ConfigError(f"student.attention: unknown kind {cfg.attention!r}; choose one of "
                              f"{', '.join(ATTENTION_KINDS)}")
        blocks = layout(cfg, n_mels)
        self.attention, self.pool = cfg.attention, time_pool(cfg)
        self.cnn = nn.Sequential(*(_block(b, cfg.activation, cfg.dropout) for b in blocks))
        last = blocks[-1]
        self.rnn = nn.GRU(last.c_out * (last.bins // last.freq_pool), cfg.rnn_hidden, num_layers=cfg.rnn_layers,
                          batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(cfg.dropout)
        self.frame_head = nn.Linear(2 * cfg.rnn_hidden, n_classes)
        self.attention_head = nn.Linear(2 * cfg.rnn_hidden, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame and clip probabilities of a batch.

        Args:
            x: features [B, T, F], any T.

        Returns:
            frame [B, C, T] and clip [B, C], float32, in [0, 1] (not clamped: the loss clamps).
        """
        n_frames = x.shape[1]
        padded = nn.functional.pad(x, (0, 0, 0, -n_frames % self.pool))  # zeros after the last frame
        hidden = self.cnn(padded.unsqueeze(1))  # [B, c, T / P, F']
        hidden, _ = self.rnn(hidden.permute(0, 2, 1, 3).flatten(2))  # [B, T / P, 2h]
        hidden = self.dropout(hidden)
        # As in the LSTM student (harness.model.student): under autocast only the convs and the GRU run in
        # bfloat16; the heads and the pooling stay float32, so probabilities keep their digits near 0 and 1.
        with torch.autocast(x.device.type, enabled=False):
            hidden = hidden.float()
            frame = self._upsample(torch.sigmoid(self.frame_head(hidden)), n_frames)  # [B, T, C]
            clip = attention_pool(frame, self._upsample(self.attention_head(hidden), n_frames), self.attention)
        return frame.transpose(1, 2), clip

    def _upsample(self, values: torch.Tensor, n_frames: int) -> torch.Tensor:
        """[B, T / P, C] at the pooled rate -> [B, T, C] at the input's: each value repeated P times, cut to T."""
        return values.repeat_interleave(self.pool, dim=1)[:, :n_frames]


def crnn_size(cfg: CRNNConfig, n_mels: int, n_classes: int, n_frames: int) -> ModelSize:
    """Parameters and MACs of CRNN(n_mels, cfg, n_classes) on clips of n_frames frames (module docstring)."""
    blocks, h, c = layout(cfg, n_mels), cfg.rnn_hidden, n_classes
    frames = math.ceil(n_frames / time_pool(cfg)) * time_pool(cfg)  # the padded input
    params = macs = 0
    for b in blocks:
        glu = b.c_out * b.c_out if cfg.activation == "glu" else 0
        params += KERNEL * KERNEL * b.c_in * b.c_out + b.c_out + 2 * b.c_out + (glu + b.c_out if glu else 0)
        macs += (KERNEL * KERNEL * b.c_in * b.c_out + glu) * frames * b.bins
        frames //= b.time_pool
    last = blocks[-1]
    for layer in range(cfg.rnn_layers):
        n_in = last.c_out * (last.bins // last.freq_pool) if layer == 0 else 2 * h
        params += 2 * (3 * h * (n_in + h) + 6 * h)  # two directions, each with b_ih and b_hh
        macs += 2 * 3 * h * (n_in + h) * frames
    params += 2 * (2 * h * c + c)
    macs += 2 * 2 * h * c * frames + c * n_frames
    return ModelSize(params=params, macs_per_frame=round(macs / n_frames), macs_per_clip=macs, n_frames=n_frames)
