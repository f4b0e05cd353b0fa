"""Photo transforms: random-resized crop (+ flip, auto-augment, random erasing) to train, resize + centre crop to evaluate.

ImageNet-style preparation for folders of photos, as torchvision's references and timm do it. A
photo split keeps its images a little larger than the model's input: the shorter side resized
to ``size / crop_fraction``, in memory the centre ``stored_size`` of that, decoded from files the
whole frame. Evaluation is then the centre crop of ``size`` (torchvision's Resize + CenterCrop;
held in memory, within a pixel of it where the margins are odd) and training crops at full quality. Every training image is transformed under its own seed, a pure function of (seed, epoch,
rank, position in the epoch), so a run resumed mid-epoch draws exactly the same crops.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

PHOTO_MIN_SIDE = 64  # "auto" treats data whose native images are at least this large as photos
_SAMPLE_SEEDS = 5  # stream id of the per-image seeds (DataSplit uses 1 and 2, the balanced sampler 3)


@dataclass(frozen=True)
class PhotoTransforms:
    """How a photo split is prepared: ``size`` (H, W) is what the model sees (None: the data's own, for load_splits)."""

    size: tuple[int, int] | None
    crop_fraction: float = 0.875
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    auto_augment: str = "none"  # none, trivial, rand
    random_erasing: float = 0.0
    flip: bool = True
    interpolation: str = "bilinear"

    @property
    def target(self) -> tuple[int, int]:
        """``size``, which must be known by now (load_splits fills it in)."""
        if self.size is None:
            raise ValueError("PhotoTransforms.size is not set")
        return self.size

    @property
    def resize_size(self) -> int | None:
        """The shorter side before the centre crop (torchvision's Resize(int)); None: plain resize (fraction 1)."""
        return math.floor(max(self.target) / self.crop_fraction) if self.crop_fraction < 1 else None

    @property
    def stored_size(self) -> tuple[int, int]:
        """(H, W) that in-memory images are held at: the centre crop of ``size / crop_fraction``."""
        height, width = self.target
        if self.resize_size is None:
            return height, width
        return math.floor(height / self.crop_fraction), math.floor(width / self.crop_fraction)

    def metadata(self) -> dict[str, object]:
        """What eval/predict/serve need to prepare images as this run validated them (inference.input_preparation)."""
        return {"resize_size": self.resize_size, "crop_fraction": self.crop_fraction, "interpolation": self.interpolation}

    def sample_seeds(self, n: int, seed: int, epoch: int, rank: int) -> torch.Tensor:
        """One seed per position of an epoch (int64), from (seed, epoch, rank)."""
        from resnet.data.augment import seeded_generator

        return torch.randint(0, 2**62, (n,), generator=seeded_generator(seed, epoch, rank, _SAMPLE_SEEDS))

    def train_image(self, image: torch.Tensor, seed: int, fill: tuple[int, ...]) -> torch.Tensor:
        """A random training view (uint8 C, H, W at ``size``) of ``image`` (uint8 C, h, w), drawn under ``seed``.

        ``fill`` is the mean colour (one value per channel) that random erasing paints. torchvision's
        transforms draw from torch's global generator: it is seeded for this image and restored
        afterwards, so nothing else in training sees a different random stream.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            return _train_pipeline(self, fill)(image)

    def fill(self, mean: Sequence[float]) -> tuple[int, ...]:
        """The mean colour in uint8 units (what random erasing paints: zero once normalized)."""
        return tuple(int(round(m * 255)) for m in mean)

    def centre_crop(self, images: torch.Tensor) -> torch.Tensor:
        """The centre ``size`` of a batch (B, C, h, w), rounded as torchvision's CenterCrop."""
        h, w = images.shape[-2:]
        height, width = self.target
        if (h, w) == (height, width):
            return images
        top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
        return images[..., top : top + height, left : left + width]


@functools.lru_cache(maxsize=8)
def _train_pipeline(photo: PhotoTransforms, fill: tuple[int, ...]) -> torch.nn.Module:
    from torchvision.transforms import InterpolationMode, v2

    steps: list[torch.nn.Module] = [v2.RandomResizedCrop(photo.target, scale=photo.scale, ratio=photo.ratio,
                                                         interpolation=InterpolationMode(photo.interpolation),
                                                         antialias=True)]
    if photo.flip:
        steps.append(v2.RandomHorizontalFlip())
    if photo.auto_augment == "trivial":
        steps.append(v2.TrivialAugmentWide())
    elif photo.auto_augment == "rand":
        steps.append(v2.RandAugment())
    if photo.random_erasing > 0:
        # Erased to the mean colour, zero once normalized: torchvision's references erase after Normalize.
        steps.append(v2.RandomErasing(p=photo.random_erasing, value=list(fill)))
    return v2.Compose(steps)


def resize_centre_crop(images: torch.Tensor, resize_size: int, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, C, H, W): the shorter side to ``resize_size`` (bilinear, antialiased), then the centre ``size``."""
    from torchvision.transforms.v2 import functional as TF

    h, w = images.shape[-2:]
    short, long = min(h, w), max(h, w)
    new = (resize_size, int(resize_size * long / short))
    new_hw = new if h <= w else (new[1], new[0])
    out = torch.empty((images.shape[0], images.shape[1], *size), dtype=torch.uint8)
    for start in range(0, images.shape[0], 1024):
        block = images[start : start + 1024]
        if tuple(block.shape[-2:]) != new_hw:
            block = F.interpolate(block.float(), size=new_hw, mode="bilinear", antialias=True, align_corners=False)
            block = block.round_().clamp_(0, 255).to(torch.uint8)
        out[start : start + 1024] = TF.center_crop(block, list(size))
    return out

