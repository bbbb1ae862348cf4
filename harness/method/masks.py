"""Loss masks M [B, C, T] of the framewise BCE (SPEC 2, Loss; factor "masking").

- event (EM): 1 on every frame of the classes present in the clip (weak target >= threshold:
  Y^w = 1 for labeled clips, t^w_c >= 0.5 for pseudolabeled ones), 0 elsewhere;
- segment (SM): 1 on the active frames of each event (strong target >= threshold: Y^s, or the teacher's
  t^s binarised), widened by `buffer` frames before and after and clipped at the clip's edges;
- none (NM): all ones.
Masked entries (0) are left out of the framewise mean (see harness.method.losses.masked_bce).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from harness.config import LossConfig
from harness.errors import ConfigError

MASK_KINDS: tuple[str, ...] = ("event", "segment", "none")


def event_mask(weak_targets: torch.Tensor, n_frames: int, threshold: float = 0.5) -> torch.Tensor:
    """Event mask: ones over the whole clip for present classes.

    Args:
        weak_targets: [B, C] weak labels or teacher clip probabilities.
        n_frames: T.
        threshold: a class is present when its weak target >= threshold.

    Returns:
        [B, C, T] float mask of 0/1.
    """
    present = (weak_targets >= threshold).to(weak_targets.dtype)  # [B, C]
    return present[..., None].expand(-1, -1, n_frames).contiguous()


def segment_mask(strong_targets: torch.Tensor, buffer: int = 12, threshold: float = 0.5) -> torch.Tensor:
    """Segment mask: active frames dilated by `buffer` frames on each side.

    Args:
        strong_targets: [B, C, T] strong labels or teacher frame probabilities.
        buffer: frames added before and after each active run (12 = 0.24 s).
        threshold: a frame is active when its strong target >= threshold.

    Returns:
        [B, C, T] float mask of 0/1; a run [a, b] becomes [max(0, a - buffer), min(T - 1, b + buffer)].
    """
    active = (strong_targets >= threshold).to(strong_targets.dtype)
    if buffer <= 0:
        return active
    # Max-pooling a 0/1 sequence with a window of 2*buffer+1 centred on each frame is a dilation;
    # max_pool1d pads with -inf, so the widened runs stop at the clip's edges.
    return F.max_pool1d(active, kernel_size=2 * buffer + 1, stride=1, padding=buffer)


def no_mask(strong_targets: torch.Tensor) -> torch.Tensor:
    """No masking: ones shaped like the strong targets [B, C, T]."""
    return torch.ones_like(strong_targets)


def loss_mask(kind: str, weak: torch.Tensor, strong: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """The mask of a batch for a masking kind.

    Args:
        kind: "event", "segment" or "none" (normally cfg.masking).
        weak: [B, C] weak targets (Y^w or t^w).
        strong: [B, C, T] strong targets (Y^s or t^s).
        cfg: cfg.presence_threshold binarises both weak and strong targets; cfg.segment_buffer widens events.

    Returns:
        [B, C, T] float mask.
    """
    if kind == "event":
        return event_mask(weak, strong.shape[-1], cfg.presence_threshold)
    if kind == "segment":
        return segment_mask(strong, cfg.segment_buffer, cfg.presence_threshold)
    if kind == "none":
        return no_mask(strong)
    raise ConfigError(f"loss.masking: unknown kind {kind!r}; choose one of {', '.join(MASK_KINDS)}")
