"""The student's size: trainable parameters and multiply-accumulates (MACs) per 10-s clip, counted from its config.

Counted analytically, so a report can state the size of a configuration that was never built (the paper's
h = 256 student) and a test can check the count against torch (`sum(p.numel())`).

Parameters (PyTorch's nn.LSTM keeps two bias vectors per layer, b_ih and b_hh):

    LSTM layer l:  4h (in_l + h) + 8h        in_0 = F (mel bins), in_l = h for l > 0
    two heads:     2 (h C + C)               frame head and attention head, Linear(h, C) each

MACs per frame (T frames a clip):

    LSTM layer l:  4h (in_l + h)             the gate products W_ih x_t and W_hh h_{t-1}
    two heads:     2 h C
    pooling:       C                         the attention-weighted sum of the frame outputs

Left out, as is usual for MAC counts: bias additions, the element-wise gate products (3h a frame and
layer), the sigmoids, tanh and softmax. For the paper's student (F = 20, h = 256, 3 layers, C = 10,
T = 500): 1,342,484 parameters, 668.2 million MACs a clip.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.config import FeatureConfig, StudentConfig
from harness.constants import N_CLASSES


@dataclass(frozen=True)
class ModelSize:
    """Size of one student."""

    params: int  # trainable parameters
    macs_per_frame: int  # multiply-accumulates per input frame (a model that pools time: per clip / n_frames, rounded)
    macs_per_clip: int  # per clip of n_frames frames (a 10-s clip at the config's hop)
    n_frames: int


def lstm_params(n_in: int, hidden: int, layers: int) -> int:
    """Parameters of nn.LSTM(n_in, hidden, num_layers=layers): weights and both bias vectors."""
    return sum(4 * hidden * (_layer_input(n_in, hidden, layer) + hidden) + 8 * hidden for layer in range(layers))


def lstm_macs_per_frame(n_in: int, hidden: int, layers: int) -> int:
    """MACs of one time step of the stacked LSTM: the input and recurrent matrix products of every gate."""
    return sum(4 * hidden * (_layer_input(n_in, hidden, layer) + hidden) for layer in range(layers))


def _layer_input(n_in: int, hidden: int, layer: int) -> int:
    return n_in if layer == 0 else hidden


def student_size(student: StudentConfig, features: FeatureConfig = FeatureConfig(),
                 n_classes: int = N_CLASSES) -> ModelSize:
    """Parameters and MACs of harness.model.student.Student built from these configs.

    Args:
        student: hidden units h and layers.
        features: student_mels (F, the input width) and n_frames (frames of a 10-s clip).
        n_classes: C.
    """
    return lstm_size(student, features.student_mels, n_classes, features.n_frames)


def lstm_size(student: StudentConfig, n_mels: int, n_classes: int, n_frames: int) -> ModelSize:
    """Parameters and MACs of the LSTM student (the "lstm" model's size in harness.plugins.models).

    Args:
        student: hidden units h and layers.
        n_mels: F, the input width.
        n_classes: C.
        n_frames: frames of a 10-s clip.
    """
    f, h, c = n_mels, student.hidden, n_classes
    params = lstm_params(f, h, student.layers) + 2 * (h * c + c)
    per_frame = lstm_macs_per_frame(f, h, student.layers) + 2 * h * c + c
    return ModelSize(params=params, macs_per_frame=per_frame, macs_per_clip=per_frame * n_frames, n_frames=n_frames)
