"""Student shapes and ranges, attention pooling against hand computations, clip gating."""

import math

import numpy as np
import pytest
import torch

from harness.config import StudentConfig
from harness.errors import ConfigError
from harness.model.student import Student, attention_pool, gate


@pytest.mark.parametrize("attention", ["time", "classes"])
def test_student_output_shapes_and_ranges(attention):
    torch.manual_seed(0)
    model = Student(20, StudentConfig(hidden=16, layers=2, attention=attention))
    frame, clip = model(torch.randn(3, 50, 20) * 3)
    assert frame.shape == (3, 10, 50)
    assert clip.shape == (3, 10)
    for out in (frame, clip):
        assert torch.all((out >= 0) & (out <= 1))
    # The clip output is a weighted average of the frame outputs over time.
    assert torch.all(clip >= frame.min(dim=2).values - 1e-6)
    assert torch.all(clip <= frame.max(dim=2).values + 1e-6)


def test_student_has_three_lstm_layers_by_default():
    model = Student(20)
    assert model.lstm.num_layers == 3 and model.lstm.hidden_size == 256
    assert not model.lstm.bidirectional


def test_time_attention_matches_hand_computation():
    # B=1, T=2, C=1: logits 0 and log(3) -> weights 1/4, 3/4; frames 0.2 and 0.6.
    frame = torch.tensor([[[0.2], [0.6]]])
    logits = torch.tensor([[[0.0], [math.log(3.0)]]])
    clip = attention_pool(frame, logits, "time")
    assert clip.item() == pytest.approx(0.25 * 0.2 + 0.75 * 0.6)


def test_class_attention_is_literal_eq1_normalised_over_time():
    # B=1, T=2, C=2. Frame 0 logits (0, 0) -> z = (1/2, 1/2); frame 1 logits (log 3, 0) -> z = (3/4, 1/4).
    frame = torch.tensor([[[0.2, 0.9], [0.6, 0.1]]])  # [B, T, C]
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])
    clip = attention_pool(frame, logits, "classes")
    expected_c0 = (0.5 * 0.2 + 0.75 * 0.6) / (0.5 + 0.75)
    expected_c1 = (0.5 * 0.9 + 0.25 * 0.1) / (0.5 + 0.25)
    assert clip[0].tolist() == pytest.approx([expected_c0, expected_c1])


@pytest.mark.parametrize("attention", ["time", "classes"])
def test_constant_frame_output_gives_same_clip_output(attention):
    frame = torch.full((2, 7, 3), 0.3)
    logits = torch.randn(2, 7, 3, generator=torch.Generator().manual_seed(1)) * 5
    assert torch.allclose(attention_pool(frame, logits, attention), torch.full((2, 3), 0.3))


def test_student_clip_is_hand_weighted_average_with_set_weights():
    torch.manual_seed(0)
    model = Student(4, StudentConfig(hidden=3, layers=1, attention="time"), n_classes=1)
    x = torch.randn(1, 5, 4)
    with torch.no_grad():
        model.attention_head.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
        model.attention_head.bias.fill_(0.3)
        hidden, _ = model.lstm(x)  # [1, 5, 3]
        frame, clip = model(x)
    h = hidden[0].numpy().astype(np.float64)
    f = 1 / (1 + np.exp(-(h @ model.frame_head.weight.detach().numpy().T[:, 0] + model.frame_head.bias.item())))
    a = h @ np.array([1.0, -2.0, 0.5]) + 0.3
    w = np.exp(a) / np.exp(a).sum()
    assert frame[0, 0].numpy() == pytest.approx(f, abs=1e-6)
    assert clip.item() == pytest.approx(float((w * f).sum()), abs=1e-6)


def test_unknown_attention_kind_raises():
    with pytest.raises(ConfigError, match="time, classes"):
        attention_pool(torch.zeros(1, 2, 1), torch.zeros(1, 2, 1), "frames")


def test_gate_zeroes_classes_below_threshold():
    frame = torch.tensor([[[0.9, 0.8], [0.7, 0.6], [0.1, 0.2]]])  # [1, 3, 2]
    clip = torch.tensor([[0.6, 0.4, 0.5]])
    gated = gate(frame, clip, 0.5)
    assert torch.equal(gated, torch.tensor([[[0.9, 0.8], [0.0, 0.0], [0.1, 0.2]]]))
    gated_np = gate(frame.numpy(), clip.numpy(), 0.5)
    assert np.allclose(gated_np, gated.numpy())
