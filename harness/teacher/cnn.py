"""The teacher T: an ensemble of small CNNs with attention pooling, trained on the labeled data.

The paper's teacher (six CNNs, the top DCASE 2019 Task 4 system) is not public, so the harness trains
its own once per study (SPEC 2, Teacher T). One member, on normalised 64-bin log-mel [B, T, F]:

    [B, 1, T, F] -> strided stem conv (3x7, stride time 2, freq 4)    -> [B, c, T/2, F/4]
                 -> conv block, average pool (time 2, freq 2)          -> [B, c, T/4, F/8]
                 -> conv block, frequency flattened into channels      -> [B, c * F/8, T/4]
                 -> temporal conv (kernel 5) -> frame head + attention head at T/4 frames
    frame logits are linearly interpolated back to T frames; the clip output is the time-softmax
    attention pooling of the T/4-frame outputs (what the T-frame pooling of a nearest upsampling gives).

Every convolution is followed by BatchNorm and ReLU; c = cfg.channels. Working at T/4 frames (80 ms)
and a strided stem keep a member cheap on CPU: full-resolution [c, T, F] maps made the elementwise
work of a first block dominate. 80 ms steps are finer than the shortest DESED events (Dishes, median
0.37 s); the receptive field is about 32 frames (0.64 s) in time, the attention pooling sees the clip.

Training (`train_ensemble`): member i has seed seed * 1000 + i for its init and its shuffling; loss =
BCE(clip, weak) over every item of the batch + BCE(frame, strong) over the strongly labeled items.
Members differ by init and batch order (no bootstrap resampling: with a few hundred labeled clips a
bootstrap drops a third of them from each member).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness.config import TeacherConfig
from harness.constants import N_CLASSES
from harness.errors import ConfigError, TrainingDiverged
from harness.method.losses import masked_bce
from harness.model.student import attention_pool

# on_epoch(member, epoch, mean_loss): member 0-based, epoch 1-based, mean total loss of the epoch.
EpochCallback = Callable[[int, int, float], None]


def _conv_block(c_in: int, c_out: int, pool: tuple[int, int] | None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    if pool is not None:
        layers.append(nn.AvgPool2d(pool))
    return nn.Sequential(*layers)


class TeacherCNN(nn.Module):
    """One teacher member; the same forward contract as the student: x [B,T,F] -> (frame [B,C,T], clip [B,C])."""

    def __init__(self, n_mels: int, channels: int = 32, n_classes: int = N_CLASSES) -> None:
        """Build the layers.

        Args:
            n_mels: mel bins F (64 for the teacher; at least 8).
            channels: width c of every convolution block.
            n_classes: C.
        """
        super().__init__()
        c = channels
        self.blocks = nn.Sequential(
            # A strided stem instead of a full-resolution block: elementwise work on [c, T, F] maps
            # dominated the time of a full-resolution first block on CPU.
            nn.Conv2d(1, c, (3, 7), stride=(2, 4), padding=(1, 3), bias=False),  # [B, c, T/2, F/4]
            nn.BatchNorm2d(c),
            nn.ReLU(),
            _conv_block(c, c, (2, 2)),  # [B, c, T/4, F/8]
            _conv_block(c, c, None),
        )
        if n_mels < 8:
            raise ConfigError(f"teacher: needs at least 8 mel bins, got {n_mels}; set features.teacher_mels >= 8")
        n_bins_left = ((n_mels - 1) // 4 + 1) // 2  # F/8 after the stem (stride 4) and the pooling (2)
        # The frequency axis is flattened into channels, not averaged: where in frequency a pattern
        # lies is what tells most classes apart, and the three convolutions alone cannot encode it.
        self.temporal = nn.Sequential(
            nn.Conv1d(c * n_bins_left, c, 5, padding=2, bias=False), nn.BatchNorm1d(c), nn.ReLU()
        )
        self.frame_head = nn.Linear(c, n_classes)
        self.attention_head = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame and clip probabilities.

        Args:
            x: features [B, T, F]; T divisible by 4 is not required.

        Returns:
            frame [B, C, T] and clip [B, C], probabilities.
        """
        n_frames = x.shape[1]
        h = self.blocks(x[:, None])  # [B, c, T', F']
        h = self.temporal(h.transpose(2, 3).flatten(1, 2))  # [B, c * F', T'] -> [B, c, T']
        h = h.transpose(1, 2)  # [B, T', c]
        frame_logits = self.frame_head(h)  # [B, T', C]
        clip = attention_pool(torch.sigmoid(frame_logits), self.attention_head(h), "time")
        frame_logits = F.interpolate(frame_logits.transpose(1, 2), size=n_frames, mode="linear", align_corners=False)
        return torch.sigmoid(frame_logits), clip


def member_seed(seed: int, member: int) -> int:
    """The seed of ensemble member `member` (0-based) of a teacher trained with `seed`."""
    return seed * 1000 + member


def train_ensemble(
    strong_x: np.ndarray,
    strong_y: np.ndarray,
    weak_x: np.ndarray,
    weak_y: np.ndarray,
    cfg: TeacherConfig,
    seed: int,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
) -> list[nn.Module]:
    """Train cfg.n_models CNNs on the labeled data, each from its own seed.

    Args:
        strong_x: features of L_S [Ns, T, F] float32, normalised.
        strong_y: strong labels of L_S [Ns, C, T] in {0, 1}.
        weak_x: features of L_W [Nw, T, F].
        weak_y: weak labels of L_W [Nw, C].
        cfg: channels, epochs, batch_size, lr, n_models.
        seed: the teacher's seed; member i uses seed * 1000 + i.
        device: where to train.
        on_epoch: called as on_epoch(member, epoch, mean_loss) after every epoch (e.g. to log progress).

    Returns:
        The trained members, in eval mode (BatchNorm uses its running statistics), on `device`.

    Raises:
        TrainingDiverged: a loss term became NaN or infinite (names the member, epoch and term).
    """
    data = _labeled_pool(strong_x, strong_y, weak_x, weak_y)
    return [_train_member(data, cfg, member_seed(seed, i), i, device, on_epoch) for i in range(cfg.n_models)]


def train_member(
    strong_x: np.ndarray,
    strong_y: np.ndarray,
    weak_x: np.ndarray,
    weak_y: np.ndarray,
    cfg: TeacherConfig,
    seed: int,
    member: int,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
) -> nn.Module:
    """Member `member` (0-based) of `train_ensemble`'s ensemble, alone: the same weights, since a member
    depends on its own seed only; so the members of one teacher can train in parallel, on separate workers."""
    data = _labeled_pool(strong_x, strong_y, weak_x, weak_y)
    return _train_member(data, cfg, member_seed(seed, member), member, device, on_epoch)


def new_member(n_mels: int, cfg: TeacherConfig, n_classes: int) -> nn.Module:
    """An untrained member of the right shape, to load saved weights into."""
    return TeacherCNN(n_mels, cfg.channels, n_classes)


def _labeled_pool(
    strong_x: np.ndarray, strong_y: np.ndarray, weak_x: np.ndarray, weak_y: np.ndarray
) -> dict[str, torch.Tensor]:
    """L_S and L_W as one pool: x [N,T,F], weak [N,C], strong [N,C,T] (zeros for L_W), is_strong [N]."""
    n_strong, n_weak = len(strong_x), len(weak_x)
    n_classes, n_frames = strong_y.shape[1], strong_y.shape[2]
    return {
        "x": torch.from_numpy(np.concatenate([strong_x, weak_x]).astype(np.float32, copy=False)),
        "weak": torch.from_numpy(np.concatenate([strong_y.max(axis=2), weak_y]).astype(np.float32)),
        "strong": torch.from_numpy(
            np.concatenate([strong_y, np.zeros((n_weak, n_classes, n_frames), strong_y.dtype)]).astype(np.float32)
        ),
        "is_strong": torch.from_numpy(np.arange(n_strong + n_weak) < n_strong),
    }


def _train_member(
    data: dict[str, torch.Tensor],
    cfg: TeacherConfig,
    seed: int,
    member: int,
    device: torch.device,
    on_epoch: EpochCallback | None,
) -> nn.Module:
    """Train one CNN; its init and its shuffling come from `seed` only (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TeacherCNN(data["x"].shape[2], cfg.channels, data["weak"].shape[1])
    model.to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(seed)
    n_items = len(data["x"])
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(n_items, generator=generator)
        losses = []
        for start in range(0, n_items, cfg.batch_size):
            batch = {k: v[order[start : start + cfg.batch_size]].to(device) for k, v in data.items()}
            loss = _member_loss(model, batch, member, epoch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        if on_epoch is not None:
            on_epoch(member, epoch, float(np.mean(losses)))
    return model.eval()


def _member_loss(model: nn.Module, batch: dict[str, torch.Tensor], member: int, epoch: int) -> torch.Tensor:
    """BCE(clip, weak) over the batch + BCE(frame, strong) over its strongly labeled items."""
    frame, clip = model(batch["x"])
    clip_loss = masked_bce(clip, batch["weak"], torch.ones_like(clip))
    frame_loss = masked_bce(frame, batch["strong"], batch["is_strong"][:, None, None].expand_as(frame))
    for name, value in (("clip BCE", clip_loss), ("frame BCE", frame_loss)):
        if not torch.isfinite(value):
            raise TrainingDiverged(
                f"teacher member {member}: loss term {name} is {value.item()} at epoch {epoch}: "
                "lower teacher.lr or check the labeled features for NaN"
            )
    return clip_loss + frame_loss


@torch.no_grad()
def predict_ensemble(
    models: Sequence[nn.Module], x: np.ndarray, batch_size: int = 64, device: torch.device | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble's mean frame and clip probabilities.

    Args:
        models: trained members (put in eval mode here).
        x: features [N, T, F] float32, normalised like the training data.
        batch_size: clips per forward pass.
        device: where to run; None = the device of the first member's parameters.

    Returns:
        frame [N, C, T] and clip [N, C], float32 numpy: the mean over members of their probabilities.
    """
    if device is None:
        device = next(models[0].parameters()).device
    for model in models:
        model.eval()
    if len(x) == 0:
        n_classes = models[0].frame_head.out_features  # no clip to run: C from the members' shape
        return np.zeros((0, n_classes, x.shape[1]), np.float32), np.zeros((0, n_classes), np.float32)
    frames, clips = [], []
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32)).to(device)
        outputs = [model(xb) for model in models]
        frames.append(torch.stack([f for f, _ in outputs]).mean(dim=0).cpu().numpy())
        clips.append(torch.stack([c for _, c in outputs]).mean(dim=0).cpu().numpy())
    return np.concatenate(frames).astype(np.float32), np.concatenate(clips).astype(np.float32)
