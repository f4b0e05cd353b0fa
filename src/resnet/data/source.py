"""What every dataset format provides: the splits it has on disk, as uint8 images or files, plus labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class Pool:
    """The images of one on-disk split: a uint8 tensor (N, C, H, W) or a list of files, and labels."""

    labels: torch.Tensor  # int64 (N,)
    images: torch.Tensor | None = None
    files: list[Path] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: torch.Tensor) -> Pool:
        return Pool(
            labels=self.labels[index],
            images=self.images[index] if self.images is not None else None,
            files=[self.files[i] for i in index.tolist()] if self.files is not None else None,
        )


class Source:
    """A dataset on disk. Subclasses set the attributes and implement ``read``."""

    name: str
    class_names: list[str]
    in_chans: int
    image_size: tuple[int, int]  # (H, W) of the images ``read`` returns
    splits: tuple[str, ...]  # the splits on disk: ("train", "test"), ("train", "val"), ...

    def read(self, split: str) -> Pool:
        raise NotImplementedError

    @property
    def native_size(self) -> tuple[int, int]:
        """(H, W) of the images as stored, before any resize asked for (an image folder's most common size)."""
        return self.image_size

    def cache_key(self) -> tuple[object, ...]:
        """Identifies the files read (paths, sizes, mtimes), for the in-process cache."""
        raise NotImplementedError


def file_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns
