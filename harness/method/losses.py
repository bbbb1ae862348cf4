"""The student's loss J = J_w + J_s(l1, l2, M) + J_u(l1, l2, M) (SPEC 2, Loss).

A batch mixes three sources, marked per item in `Batch.source`:
    0 = L_S (strong synthetic: targets Y^w, Y^s), 1 = L_W (weak real: Y^w; strong targets unused),
    2 = U (unlabeled real: the teacher's t^w, t^s).

- J_w = BCE(clip, Y^w), averaged over the classes and the L_W items of the batch.
- J_s = l1 * BCE(clip, Y^w) + l2 * masked framewise BCE(frame, Y^s, M), over the L_S items.
- J_u = the same as J_s over the U items with t^w, t^s; pseudolabels "weak" keeps only its l1 term,
  "none" makes it 0.
The framewise mean is pooled over the subset's items in the batch: sum of BCE over unmasked entries
divided by the number of unmasked entries. A term whose subset has no item in the batch is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.config import LossConfig
from harness.errors import ConfigError, TrainingDiverged
from harness.method.masks import loss_mask

SOURCE_STRONG, SOURCE_WEAK, SOURCE_UNLABELED = 0, 1, 2
PSEUDOLABEL_KINDS: tuple[str, ...] = ("strong+weak", "weak", "none")
EPS = 1e-7  # predictions are clamped to [EPS, 1 - EPS] so log() stays finite


@dataclass(frozen=True)
class Batch:
    """Targets of one training batch (features are passed to the model separately).

    Attributes:
        source: [B] int tensor: 0 = L_S, 1 = L_W, 2 = U.
        weak: [B, C] float: Y^w for L_S and L_W, t^w for U.
        strong: [B, C, T] float: Y^s for L_S, t^s for U, zeros for L_W.
    """

    source: torch.Tensor
    weak: torch.Tensor
    strong: torch.Tensor


@dataclass(frozen=True)
class LossTerms:
    """The three terms of J, each a scalar tensor (0 when its subset is absent from the batch)."""

    weak: torch.Tensor  # J_w
    strong: torch.Tensor  # J_s
    unlabeled: torch.Tensor  # J_u

    @property
    def total(self) -> torch.Tensor:
        """J = J_w + J_s + J_u, the scalar to back-propagate."""
        return self.weak + self.strong + self.unlabeled


def masked_bce(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the unmasked entries.

    Args:
        pred: probabilities, any shape; clamped to [1e-7, 1 - 1e-7].
        target: targets in [0, 1], same shape.
        mask: 0/1 weights, same shape (or broadcastable); 1 = counted.

    Returns:
        Scalar: sum(mask * BCE) / sum(mask); 0 (with a zero, finite gradient) when nothing is unmasked.
    """
    p = pred.clamp(EPS, 1 - EPS)
    bce = -(target * torch.log(p) + (1 - target) * torch.log1p(-p))
    mask = mask.expand_as(bce).to(bce.dtype)
    # clamp_min(1) keeps the division finite when the mask is empty; the numerator is then 0.
    return (bce * mask).sum() / mask.sum().clamp_min(1.0)


def _clip_bce(clip: torch.Tensor, weak: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """BCE over the classes of the selected items: clip [B,C], weak [B,C], items [B] bool."""
    return masked_bce(clip, weak, items[:, None].expand_as(clip))


def _frame_bce(frame: torch.Tensor, batch: Batch, items: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Masked framewise BCE of the selected items: frame [B,C,T] against batch.strong."""
    mask = loss_mask(cfg.masking, batch.weak, batch.strong, cfg) * items[:, None, None]
    return masked_bce(frame, batch.strong, mask)


def loss_terms(frame: torch.Tensor, clip: torch.Tensor, batch: Batch, cfg: LossConfig) -> LossTerms:
    """J_w, J_s and J_u of a batch.

    Args:
        frame: student frame probabilities [B, C, T].
        clip: student clip probabilities [B, C].
        batch: the sources and targets of the batch items.
        cfg: lambda1, lambda2, masking, pseudolabels, segment_buffer, presence_threshold.

    Returns:
        The three terms; `.total` is their sum.
    """
    if cfg.pseudolabels not in PSEUDOLABEL_KINDS:
        raise ConfigError(
            f"loss.pseudolabels: unknown kind {cfg.pseudolabels!r}; choose one of {', '.join(PSEUDOLABEL_KINDS)}"
        )
    is_strong = batch.source == SOURCE_STRONG
    is_weak = batch.source == SOURCE_WEAK
    is_unlabeled = batch.source == SOURCE_UNLABELED
    j_w = _clip_bce(clip, batch.weak, is_weak)
    j_s = cfg.lambda1 * _clip_bce(clip, batch.weak, is_strong) + cfg.lambda2 * _frame_bce(
        frame, batch, is_strong, cfg
    )
    j_u = clip.new_zeros(())
    if cfg.pseudolabels != "none":
        j_u = cfg.lambda1 * _clip_bce(clip, batch.weak, is_unlabeled)
    if cfg.pseudolabels == "strong+weak":
        j_u = j_u + cfg.lambda2 * _frame_bce(frame, batch, is_unlabeled, cfg)
    return LossTerms(weak=j_w, strong=j_s, unlabeled=j_u)


def check_finite(terms: LossTerms, epoch: int, step: int) -> None:
    """Raise TrainingDiverged if a loss term is NaN or infinite.

    Args:
        terms: the batch's loss terms.
        epoch: 1-based epoch, for the message.
        step: optimiser step, for the message.
    """
    for name, value in (("J_w", terms.weak), ("J_s", terms.strong), ("J_u", terms.unlabeled)):
        if not bool(torch.isfinite(value)):
            raise TrainingDiverged(
                f"loss term {name} is {value.item()} at epoch {epoch}, step {step}: "
                "lower the learning rate or check the teacher predictions"
            )
