"""Batched augmentation and normalization with tensor ops, on whatever device holds the batch.

The paper's CIFAR recipe (He et al. 2015, sec. 4.2): pad 4 pixels, take a random crop of the
original size, flip horizontally with probability 1/2. Done here for a whole uint8 batch in one
``gather`` (crop and flip are both just a choice of source pixel), so it costs about as much as a
copy and runs on the GPU when the batch is there. The random draws are made up front for a whole
epoch on a seeded CPU generator, so they are identical on every device and resumable mid-epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def seeded_generator(*key: int) -> torch.Generator:
    """A CPU generator whose stream depends on every number in ``key`` (seed, epoch, rank, ...)."""
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@dataclass(frozen=True)
class CropFlipDraws:
    """Random crop offsets (0..2*padding) and flip flags for each position of an epoch."""

    offset_y: torch.Tensor  # int64 (N,)
    offset_x: torch.Tensor  # int64 (N,)
    flip: torch.Tensor  # bool (N,)
    padding: int

    @classmethod
    def draw(cls, n: int, padding: int, generator: torch.Generator) -> CropFlipDraws:
        offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
        flip = torch.rand(n, generator=generator) < 0.5
        return cls(offsets[0], offsets[1], flip, padding)

    def to(self, device: torch.device) -> CropFlipDraws:
        return CropFlipDraws(self.offset_y.to(device), self.offset_x.to(device), self.flip.to(device), self.padding)

    def slice(self, start: int, stop: int) -> CropFlipDraws:
        return CropFlipDraws(self.offset_y[start:stop], self.offset_x[start:stop], self.flip[start:stop], self.padding)


def random_crop_flip(images: torch.Tensor, draws: CropFlipDraws) -> torch.Tensor:
    """Zero-pad ``images`` (B, C, H, W) by ``draws.padding``, crop back to H x W at the drawn offsets, flip.

    Works on any dtype (uint8 is cheapest: do it before normalizing). Zero padding of raw pixels
    matches torchvision's ``RandomCrop(32, padding=4)`` on PIL images, i.e. the usual recipe.
    """
    b, c, h, w = images.shape
    p = draws.padding
    padded = F.pad(images, (p, p, p, p)) if p else images
    width_padded = w + 2 * p
    device = images.device
    rows = draws.offset_y[:, None] + torch.arange(h, device=device)  # (B, H)
    cols = torch.arange(w, device=device).expand(b, w)
    cols = torch.where(draws.flip[:, None], (w - 1) - cols, cols) + draws.offset_x[:, None]  # (B, W)
    source = (rows[:, :, None] * width_padded + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, source).view(b, c, h, w)


class Normalizer:
    """uint8 (B, C, H, W) -> float32, (x/255 - mean) / std per channel, optionally channels_last."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device | str) -> None:
        self.shift = torch.tensor([m * 255.0 for m in mean], dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = torch.tensor([1.0 / (s * 255.0) for s in std], dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor, *, channels_last: bool = False) -> torch.Tensor:
        if channels_last:
            # Reorder while still uint8 (4x fewer bytes); float() keeps the memory format.
            images = images.contiguous(memory_format=torch.channels_last)
        return images.float().sub_(self.shift).mul_(self.scale)


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images (N, C, H, W), in 0..1 units.

    Integer sums in chunks: exact, and memory stays at one chunk however large the set.
    """
    if images.shape[0] == 0:
        raise ValueError("no images to compute statistics on")
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].transpose(0, 1).reshape(c, -1).to(torch.int64)
        total += block.sum(1).double()
        total_sq += (block * block).sum(1).double()
    count = images.numel() // c
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0)
    return tuple(round(float(v) / 255.0, 6) for v in mean), tuple(round(max(float(v.sqrt()) / 255.0, 1e-6), 6) for v in var)
