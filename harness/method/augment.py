"""SpecAugment without time warping (SPEC 2, Augmentation; factor "augmentation").

Each clip of a batch is augmented with probability cfg.p. Masked time frames and frequency bins are
set to 0: the features are normalised per bin, so 0 is the training data's mean of every bin.

- standard (SS): cfg.time_masks time masks of cfg.time_mask_frames frames, each starting at a uniform
  random frame in [0, T - length]; masks may overlap.
- custom (CS): noisy labels Y~ = Y + eps, eps_c ~ N(0, cfg.label_noise_var) (a variance; the noise only
  breaks ties between equal labels); for each of the cfg.top_k classes with the highest Y~, one time mask
  of round(cfg.gamma * median_frames[c]) frames (half up; at least 1, at most T) at a uniform random start.
  Y is the clip's weak label (the teacher's t^w for unlabeled clips).
- both: cfg.freq_masks frequency masks of cfg.freq_mask_bins bins at a uniform random start in [0, F - length].
- none: the input unchanged.

All randomness comes from the `generator` argument (a CPU torch.Generator). For a given batch shape,
the same random numbers are drawn whether or not a clip ends up augmented, so the same seed always
gives the same masks.
"""

from __future__ import annotations

import torch

from harness.config import AugmentConfig
from harness.errors import ConfigError

AUGMENT_KINDS: tuple[str, ...] = ("custom", "standard", "none")


def _run_mask(starts: torch.Tensor, lengths: torch.Tensor, size: int) -> torch.Tensor:
    """Union of runs [start, start + length) per row: starts, lengths [B, K] -> bool [B, size]."""
    index = torch.arange(size)  # [size]
    inside = (index >= starts[..., None]) & (index < (starts + lengths)[..., None])  # [B, K, size]
    return inside.any(dim=1)


def _uniform_starts(lengths: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A uniform random start in [0, size - length] for each length [B, K] (long)."""
    room = (size - lengths + 1).clamp_min(1)
    u = torch.rand(lengths.shape, generator=generator)
    return torch.minimum((u * room).long(), room - 1)


def _time_lengths(
    weak_targets: torch.Tensor,
    n_frames: int,
    cfg: AugmentConfig,
    median_frames: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Lengths [B, K] of the time masks of each clip (frames)."""
    batch_size, n_classes = weak_targets.shape
    if cfg.kind == "standard":
        return torch.full((batch_size, cfg.time_masks), cfg.time_mask_frames, dtype=torch.long)
    noise = torch.randn((batch_size, n_classes), generator=generator) * cfg.label_noise_var**0.5
    noisy = weak_targets.detach().cpu().float() + noise
    top = noisy.topk(min(cfg.top_k, n_classes), dim=1).indices  # [B, K] class indices
    lengths = torch.floor(cfg.gamma * median_frames[top] + 0.5).long()  # round half up (2.5 -> 3)
    return lengths.clamp(1, n_frames)


def spec_augment_masks(
    weak_targets: torch.Tensor,
    n_frames: int,
    n_bins: int,
    cfg: AugmentConfig,
    median_frames: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The time and frequency masks of a batch (True = set to 0).

    Args:
        weak_targets: [B, C] weak labels (Y^w, or t^w for unlabeled clips); used by "custom" only.
        n_frames: T.
        n_bins: F.
        cfg: kind, p and mask sizes.
        median_frames: [C] median event length of each class, in frames (from the strong training set).
        generator: CPU generator, the only source of randomness.

    Returns:
        time_mask [B, T] bool and freq_mask [B, F] bool, on the CPU; rows of clips not augmented are False.
    """
    if cfg.kind not in AUGMENT_KINDS:
        raise ConfigError(f"augment.kind: unknown kind {cfg.kind!r}; choose one of {', '.join(AUGMENT_KINDS)}")
    batch_size = weak_targets.shape[0]
    time_mask = torch.zeros((batch_size, n_frames), dtype=torch.bool)
    freq_mask = torch.zeros((batch_size, n_bins), dtype=torch.bool)
    if cfg.kind == "none":
        return time_mask, freq_mask
    augmented = torch.rand(batch_size, generator=generator) < cfg.p  # [B]
    median = torch.as_tensor(median_frames, dtype=torch.float32).cpu()
    time_lengths = _time_lengths(weak_targets, n_frames, cfg, median, generator)
    time_mask = _run_mask(_uniform_starts(time_lengths, n_frames, generator), time_lengths, n_frames)
    freq_lengths = torch.full((batch_size, cfg.freq_masks), min(cfg.freq_mask_bins, n_bins), dtype=torch.long)
    freq_mask = _run_mask(_uniform_starts(freq_lengths, n_bins, generator), freq_lengths, n_bins)
    return time_mask & augmented[:, None], freq_mask & augmented[:, None]


def spec_augment(
    x: torch.Tensor,
    weak_targets: torch.Tensor,
    cfg: AugmentConfig,
    median_frames: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """SpecAugment a batch of normalised features.

    Args:
        x: features [B, T, F].
        weak_targets: [B, C] weak labels (custom masks follow the top classes).
        cfg: augmentation settings.
        median_frames: [C] median event length per class (frames).
        generator: CPU torch.Generator.

    Returns:
        A new tensor [B, T, F]: x with the masked frames and bins set to 0.
    """
    if cfg.kind == "none":
        return x.clone()
    _, n_frames, n_bins = x.shape  # [B, T, F]
    time_mask, freq_mask = spec_augment_masks(weak_targets, n_frames, n_bins, cfg, median_frames, generator)
    masked = time_mask.to(x.device)[:, :, None] | freq_mask.to(x.device)[:, None, :]  # [B, T, F]
    return x.masked_fill(masked, 0.0)
