"""Loss masks and loss terms against hand computations."""

import math

import pytest
import torch

from harness.config import LossConfig
from harness.errors import TrainingDiverged
from harness.method.losses import Batch, LossTerms, check_finite, loss_terms, masked_bce
from harness.method.masks import event_mask, loss_mask, no_mask, segment_mask


def _active(row: torch.Tensor) -> list[int]:
    return torch.nonzero(row).flatten().tolist()


# ---------------------------------------------------------------- masks


def test_event_mask_marks_every_frame_of_present_classes():
    weak = torch.tensor([[1.0, 0.0, 1.0], [0.2, 0.5, 0.49]])
    mask = event_mask(weak, 4)
    assert mask.shape == (2, 3, 4)
    assert mask[0].tolist() == [[1] * 4, [0] * 4, [1] * 4]
    assert mask[1].tolist() == [[0] * 4, [1] * 4, [0] * 4]  # 0.5 is present, 0.49 is not


def test_segment_mask_clips_widened_runs_at_both_edges():
    strong = torch.zeros(1, 1, 40)
    strong[0, 0, 0:3] = 1  # frames 0..2
    strong[0, 0, 37:40] = 1  # frames T-3..T-1
    mask = segment_mask(strong, buffer=12)
    assert _active(mask[0, 0]) == list(range(0, 15)) + list(range(25, 40))


def test_segment_mask_widens_one_frame_event_to_25_frames():
    strong = torch.zeros(1, 2, 60)
    strong[0, 1, 30] = 1
    mask = segment_mask(strong, buffer=12)
    assert _active(mask[0, 1]) == list(range(18, 43))
    assert mask[0, 1].sum().item() == 25
    assert mask[0, 0].sum().item() == 0


def test_segment_mask_merges_overlapping_widened_runs():
    strong = torch.zeros(1, 1, 100)
    strong[0, 0, 20:22] = 1  # widened to 8..33
    strong[0, 0, 40] = 1  # widened to 28..52: overlaps the first
    strong[0, 0, 80] = 1  # widened to 68..92: separate
    mask = segment_mask(strong, buffer=12)
    assert _active(mask[0, 0]) == list(range(8, 53)) + list(range(68, 93))
    assert mask.max().item() == 1.0


def test_segment_mask_binarises_soft_teacher_targets():
    strong = torch.tensor([[[0.1, 0.6, 0.4, 0.2, 0.0, 0.0, 0.5]]])
    assert _active(segment_mask(strong, buffer=1, threshold=0.5)[0, 0]) == [0, 1, 2, 5, 6]


def test_loss_mask_dispatches_on_kind():
    cfg = LossConfig(segment_buffer=1)
    weak = torch.tensor([[1.0, 0.0]])
    strong = torch.tensor([[[0.0, 0.0, 1.0, 0.0, 0.0], [0.0] * 5]])
    assert loss_mask("event", weak, strong, cfg)[0].tolist() == [[1] * 5, [0] * 5]
    assert loss_mask("segment", weak, strong, cfg)[0].tolist() == [[0, 1, 1, 1, 0], [0] * 5]
    assert loss_mask("none", weak, strong, cfg).equal(no_mask(strong))
    assert no_mask(strong).sum().item() == 10


# ---------------------------------------------------------------- masked_bce


def test_masked_bce_matches_hand_computation():
    pred = torch.tensor([[0.9, 0.2, 0.5], [0.3, 0.6, 0.99]])
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    expected = (-math.log(0.9) - math.log(0.5) - math.log(0.6)) / 3
    assert masked_bce(pred, target, mask).item() == pytest.approx(expected, rel=1e-6)


def test_masked_bce_soft_target_and_clamping():
    pred = torch.tensor([0.0, 0.25])
    target = torch.tensor([1.0, 0.4])
    expected = (-math.log(1e-7) - (0.4 * math.log(0.25) + 0.6 * math.log(0.75))) / 2
    assert masked_bce(pred, target, torch.ones(2)).item() == pytest.approx(expected, rel=1e-5)


def test_masked_bce_with_empty_mask_is_zero_with_finite_gradient():
    pred = torch.tensor([0.0, 1.0, 0.3], requires_grad=True)
    loss = masked_bce(pred, torch.tensor([1.0, 0.0, 1.0]), torch.zeros(3))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(torch.isfinite(pred.grad)) and pred.grad.abs().sum().item() == 0.0


# ---------------------------------------------------------------- loss terms


def _bce(p: float, y: float) -> float:
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


FRAME = torch.tensor(
    [
        [[0.2, 0.3, 0.6, 0.8], [0.1, 0.2, 0.3, 0.4]],  # item 0, L_S
        [[0.5, 0.5, 0.5, 0.5], [0.6, 0.7, 0.8, 0.9]],  # item 1, L_W (frames never used)
        [[0.3, 0.7, 0.6, 0.4], [0.2, 0.5, 0.3, 0.1]],  # item 2, U
    ]
)
CLIP = torch.tensor([[0.8, 0.3], [0.4, 0.7], [0.6, 0.25]])
BATCH = Batch(
    source=torch.tensor([0, 1, 2]),
    weak=torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.2]]),
    strong=torch.tensor(
        [
            [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]],  # Y^s
            [[0.0] * 4, [0.0] * 4],  # L_W: zeros
            [[0.1, 0.6, 0.8, 0.3], [0.4, 0.55, 0.1, 0.0]],  # t^s
        ]
    ),
)
# Unmasked (class, frame) entries of the framewise BCE, per masking kind, with segment_buffer = 1:
# event: L_S class 0 (Y^w = 1); U class 0 (t^w 0.7 >= 0.5, 0.2 is not).
# segment: L_S class 0 frame 3 -> 2..3; U class 0 frames 1, 2 -> 0..3, class 1 frame 1 -> 0..2.
ENTRIES = {
    "event": ([(0, t) for t in range(4)], [(0, t) for t in range(4)]),
    "segment": ([(0, 2), (0, 3)], [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2)]),
    "none": ([(c, t) for c in range(2) for t in range(4)], [(c, t) for c in range(2) for t in range(4)]),
}


def _clip_term(item: int) -> float:
    return sum(_bce(CLIP[item, c].item(), BATCH.weak[item, c].item()) for c in range(2)) / 2


def _frame_term(item: int, entries: list[tuple[int, int]]) -> float:
    values = [_bce(FRAME[item, c, t].item(), BATCH.strong[item, c, t].item()) for c, t in entries]
    return sum(values) / len(values)


@pytest.mark.parametrize("masking", ["event", "segment", "none"])
@pytest.mark.parametrize("pseudolabels", ["strong+weak", "weak", "none"])
def test_loss_terms_match_hand_computation(masking, pseudolabels):
    cfg = LossConfig(lambda1=0.5, lambda2=2.0, masking=masking, pseudolabels=pseudolabels, segment_buffer=1)
    terms = loss_terms(FRAME, CLIP, BATCH, cfg)
    strong_entries, unlabeled_entries = ENTRIES[masking]
    expected_w = _clip_term(1)
    expected_s = 0.5 * _clip_term(0) + 2.0 * _frame_term(0, strong_entries)
    expected_u = {
        "strong+weak": 0.5 * _clip_term(2) + 2.0 * _frame_term(2, unlabeled_entries),
        "weak": 0.5 * _clip_term(2),
        "none": 0.0,
    }[pseudolabels]
    assert terms.weak.item() == pytest.approx(expected_w, rel=1e-5)
    assert terms.strong.item() == pytest.approx(expected_s, rel=1e-5)
    assert terms.unlabeled.item() == pytest.approx(expected_u, rel=1e-5, abs=1e-7)
    assert terms.total.item() == pytest.approx(expected_w + expected_s + expected_u, rel=1e-5)


def test_terms_of_absent_subsets_are_zero_and_pooled_over_items():
    # Two L_W items only: J_s = J_u = 0; J_w averages over both items and both classes.
    batch = Batch(source=torch.tensor([1, 1]), weak=torch.tensor([[1.0, 0.0], [0.0, 0.0]]), strong=torch.zeros(2, 2, 4))
    clip = torch.tensor([[0.8, 0.3], [0.4, 0.1]], requires_grad=True)
    frame = torch.full((2, 2, 4), 0.5, requires_grad=True)
    terms = loss_terms(frame, clip, batch, LossConfig())
    expected = (_bce(0.8, 1) + _bce(0.3, 0) + _bce(0.4, 0) + _bce(0.1, 0)) / 4
    assert terms.weak.item() == pytest.approx(expected, rel=1e-6)
    assert terms.strong.item() == 0.0 and terms.unlabeled.item() == 0.0
    terms.total.backward()
    assert torch.all(torch.isfinite(frame.grad)) and frame.grad.abs().sum().item() == 0.0


def test_check_finite_names_term_epoch_and_step():
    zero = torch.tensor(0.0)
    check_finite(LossTerms(zero, zero, zero), 1, 1)  # finite: no error
    with pytest.raises(TrainingDiverged, match=r"loss term J_u is nan at epoch 3, step 412: lower the learning rate"):
        check_finite(LossTerms(zero, zero, torch.tensor(float("nan"))), 3, 412)
    with pytest.raises(TrainingDiverged, match="J_s is inf"):
        check_finite(LossTerms(zero, torch.tensor(float("inf")), zero), 1, 2)
