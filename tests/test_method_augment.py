"""SpecAugment: mask counts and lengths, probability p, determinism, zeroing."""

import dataclasses

import torch

from harness.config import AugmentConfig
from harness.method.augment import spec_augment, spec_augment_masks

MEDIAN = torch.tensor([40.0, 10.0, 6.0, 200.0, 1.0, 80.0, 20.0, 30.0, 44.0, 100.0])  # frames, per class


def _runs(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-d bool tensor."""
    padded = torch.cat([torch.tensor([0]), row.int(), torch.tensor([0])])
    edges = torch.nonzero(torch.diff(padded)).flatten()
    return (edges[1::2] - edges[0::2]).tolist()


def _masks(cfg, weak, n_frames=500, n_bins=20, seed=0):
    return spec_augment_masks(weak, n_frames, n_bins, cfg, MEDIAN, torch.Generator().manual_seed(seed))


def test_standard_masks_two_time_runs_of_16_and_one_freq_run_of_4():
    cfg = AugmentConfig(kind="standard", p=1.0)
    time_mask, freq_mask = _masks(cfg, torch.zeros(8, 10))
    assert time_mask.shape == (8, 500) and freq_mask.shape == (8, 20)
    for row in range(8):  # seed 0: no two time masks overlap or touch
        assert _runs(time_mask[row]) == [16, 16]
        assert _runs(freq_mask[row]) == [4]


def test_custom_masks_follow_top_k_classes_and_median_lengths():
    cfg = AugmentConfig(kind="custom", p=1.0, top_k=2, gamma=0.25)
    weak = torch.zeros(4, 10)
    weak[:, 3] = 1.0  # median 200 -> 50 frames
    weak[:, 0] = 0.9  # median 40 -> 10 frames
    time_mask, freq_mask = _masks(cfg, weak, seed=1)
    for row in range(4):  # seed 1: the two masks of each clip do not overlap
        assert sorted(_runs(time_mask[row])) == [10, 50]
        assert _runs(freq_mask[row]) == [4]


def test_custom_mask_length_rounds_half_up_and_is_at_least_one_frame():
    cfg = AugmentConfig(kind="custom", p=1.0, top_k=1, gamma=0.25)
    weak = torch.zeros(3, 10)
    weak[0, 1] = 1.0  # 0.25 * 10 = 2.5 -> 3
    weak[1, 2] = 1.0  # 0.25 * 6 = 1.5 -> 2
    weak[2, 4] = 1.0  # 0.25 * 1 = 0.25 -> 0 -> at least 1
    time_mask, _ = _masks(cfg, weak)
    assert [_runs(time_mask[row]) for row in range(3)] == [[3], [2], [1]]


def test_label_noise_breaks_ties_among_equal_labels():
    cfg = AugmentConfig(kind="custom", p=1.0, top_k=1, gamma=1.0, freq_masks=0)
    weak = torch.zeros(64, 10)
    time_mask, _ = _masks(cfg, weak)
    lengths = {_runs(time_mask[row])[0] for row in range(64)}
    assert len(lengths) > 3  # random classes, so several different median lengths


def test_p_zero_never_augments_and_p_one_always_does():
    x = torch.randn(16, 500, 20, generator=torch.Generator().manual_seed(3))
    weak = torch.zeros(16, 10)
    weak[:, 5] = 1
    for kind in ("standard", "custom"):
        never = spec_augment(x, weak, AugmentConfig(kind=kind, p=0.0), MEDIAN, torch.Generator().manual_seed(1))
        assert torch.equal(never, x)
        always_t, always_f = _masks(AugmentConfig(kind=kind, p=1.0), weak, seed=1)
        assert bool(always_t.any(dim=1).all()) and bool(always_f.any(dim=1).all())


def test_p_half_augments_some_clips_only():
    time_mask, freq_mask = _masks(AugmentConfig(kind="standard", p=0.5), torch.zeros(200, 10))
    augmented = time_mask.any(dim=1)
    assert torch.equal(augmented, freq_mask.any(dim=1))
    assert 70 < int(augmented.sum()) < 130


def test_masked_entries_are_zero_and_others_unchanged():
    x = torch.randn(4, 500, 20, generator=torch.Generator().manual_seed(2)) + 5.0  # no exact zeros
    weak = torch.zeros(4, 10)
    cfg = AugmentConfig(kind="standard", p=1.0)
    out = spec_augment(x, weak, cfg, MEDIAN, torch.Generator().manual_seed(7))
    time_mask, freq_mask = _masks(cfg, weak, seed=7)
    masked = time_mask[:, :, None] | freq_mask[:, None, :]
    assert torch.all(out[masked] == 0)
    assert torch.equal(out[~masked], x[~masked])
    assert out.data_ptr() != x.data_ptr()


def test_same_seed_same_output_other_seed_other_output():
    x = torch.randn(8, 500, 20, generator=torch.Generator().manual_seed(0))
    weak = torch.rand(8, 10, generator=torch.Generator().manual_seed(1))
    cfg = AugmentConfig(kind="custom", p=0.5)
    a = spec_augment(x, weak, cfg, MEDIAN, torch.Generator().manual_seed(11))
    b = spec_augment(x, weak, cfg, MEDIAN, torch.Generator().manual_seed(11))
    c = spec_augment(x, weak, cfg, MEDIAN, torch.Generator().manual_seed(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_none_is_identity():
    x = torch.randn(2, 50, 20)
    out = spec_augment(x, torch.ones(2, 10), AugmentConfig(kind="none", p=1.0), MEDIAN, torch.Generator())
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


def test_frequency_mask_count_and_time_mask_count_follow_config():
    cfg = dataclasses.replace(AugmentConfig(kind="standard", p=1.0), time_masks=1, time_mask_frames=7, freq_mask_bins=3)
    time_mask, freq_mask = _masks(cfg, torch.zeros(5, 10))
    assert time_mask.sum(dim=1).tolist() == [7] * 5
    assert freq_mask.sum(dim=1).tolist() == [3] * 5
