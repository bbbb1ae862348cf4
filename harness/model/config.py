"""The configs of the student models: the `student.*` keys (harness.plugins.models chooses one by `student.model`).

Torch-free, as harness.config, which re-exports them: planning a study reads them without building a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harness.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """What the config of every student model has (the `student.*` section; harness.plugins.models).

    `model` names the registered model and is read before the section's other keys, which are checked
    against that model's own config dataclass (a subclass of this one). gate_threshold lives here, not in
    one model's config, because evaluation gates the outputs of any model the same way.
    """

    model: str = "lstm"  # the registered model: "lstm" (the paper's), "crnn" (DCASE baseline) or a plugin's
    gate_threshold: float = 0.5  # clip gating at inference: frames of class c zeroed where clip_c < this


@dataclass(frozen=True)
class StudentConfig(ModelConfig):
    """The 3-layer unidirectional LSTM student with attention pooling (SPEC 2, Student S): model "lstm"."""

    model: str = "lstm"
    hidden: int = 256  # LSTM units per layer (h)
    layers: int = 3  # stacked unidirectional LSTM layers
    attention: Literal["time", "classes"] = "time"  # "time": softmax over frames; "classes": literal Eq. 1


LSTMConfig = StudentConfig  # the LSTM's config under its model's name


@dataclass(frozen=True)
class CRNNConfig(ModelConfig):
    """The DCASE 2021-2024 Task 4 baseline CRNN (harness.model.crnn): model "crnn".

    The baseline's numbers (DESED_task, recipes/dcase2021_task4_baseline/confs/sed.yaml): 7 blocks of 3x3
    conv + batch norm + GLU + dropout 0.5 + average pooling, 16, 32, 64, 128, 128, 128, 128 channels, time
    pooled 2, 2 in the first two blocks, frequency halved in every block (128 mel bins -> 1), then a 2-layer
    bidirectional GRU of 128 units. At the student's 20 mel bins frequency can be halved only 4 times (20,
    10, 5, 2, 1), so here a block halves it while more than one bin is left.
    """

    model: str = "crnn"
    cnn_channels: int = 128  # channels of the widest blocks; block i has cnn_channels / 2^(3 - i) until then
    cnn_layers: int = 7  # conv blocks
    time_pooling: tuple[int, ...] = (2, 2)  # time pooling factors of the first blocks (the others: 1)
    activation: Literal["glu", "relu"] = "glu"  # "glu": the baseline's linear(x) * sigmoid(x) over channels
    rnn_hidden: int = 128  # GRU units per direction
    rnn_layers: int = 2  # stacked bidirectional GRU layers
    dropout: float = 0.5  # after every conv block and before the heads
    # "classes" is the baseline's (softmax over classes per frame, normalised over time; literal Eq. 1 of
    # the paper); "time" is the LSTM student's default (softmax over frames).
    attention: Literal["time", "classes"] = "classes"

    def check(self, where: str) -> None:
        """Refuse keys that cannot go together (each key's own range is harness.ranges').

        Raises:
            ConfigError: more time pooling factors than conv blocks.
        """
        if len(self.time_pooling) > self.cnn_layers:
            raise ConfigError(f"{where}: student.time_pooling has {len(self.time_pooling)} factors but "
                              f"student.cnn_layers = {self.cnn_layers}; give at most one factor a block, or add blocks")
