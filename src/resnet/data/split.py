"""``DataSplit``: one split of a dataset, and the batches a training loop consumes.

Small sets are held as one uint8 tensor (N, C, H, W); ``batches`` copies it to the training device
once, then each batch is an index-select, the batched crop/flip, and normalization, all there.
Large image folders keep file paths instead and decode in DataLoader workers. A photo split
(``photo``, see photo.py) is held a little larger than the model's input and prepared per image:
a random-resized crop to train, the centre crop to evaluate.

Batches are a pure function of (seed, epoch, rank, world_size): the order is a permutation seeded
by (seed, epoch), shared by all ranks, each rank taking every world_size-th element (disjoint
shards); the augmentation draws are seeded by (seed, epoch, rank). That makes resume exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from resnet import report
from resnet.data.augment import CropFlipDraws, Normalizer, random_crop_flip, seeded_generator
from resnet.data.photo import PhotoTransforms
from resnet.errors import ResNetError

PADDING = 4  # the paper's CIFAR augmentation: 4-pixel pad, random crop, flip
_SHUFFLE, _AUGMENT = 1, 2  # stream ids, so the two draws never share a generator


@dataclass(eq=False)
class DataSplit:
    """A split ("train", "val", "test") of a dataset: labels, class names, shape, statistics, batches."""

    name: str
    split: str
    class_names: list[str]
    in_chans: int
    image_size: tuple[int, int]  # (H, W)
    mean: tuple[float, ...]  # per channel, 0..1 units, from the training split
    std: tuple[float, ...]
    labels: torch.Tensor  # int64 (N,)
    images: torch.Tensor | None = None  # uint8 (N, C, H, W) on the CPU, when held in memory
    files: list[Path] | None = None  # otherwise: one image file per label, decoded on demand
    strict: bool = False  # a bad file mid-epoch raises instead of being skipped
    photo: PhotoTransforms | None = None  # photo preparation (images held at photo.stored_size)
    _on_device: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _bad_reported: set[int] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if (self.images is None) == (self.files is None):
            raise ValueError("a DataSplit holds either images or files")
        count = self.images.shape[0] if self.images is not None else len(self.files or [])
        if count != self.labels.shape[0]:
            raise ValueError(f"{count} images but {self.labels.shape[0]} labels")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_memory(self) -> bool:
        return self.images is not None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        h, w = self.image_size
        where = "in memory" if self.in_memory else "decoded from files"
        return f"DataSplit({self.name} {self.split}: {len(self)} images {self.in_chans}x{h}x{w}, {self.num_classes} classes, {where})"

    # -- derived splits ---------------------------------------------------------------------

    def subset(self, indices: Sequence[int] | torch.Tensor | slice) -> DataSplit:
        """The same split restricted to ``indices`` (statistics unchanged): for quick runs and tests."""
        if isinstance(indices, slice):
            indices = torch.arange(len(self))[indices]
        index = torch.as_tensor(indices, dtype=torch.int64)
        return replace(
            self,
            labels=self.labels[index],
            images=self.images[index] if self.images is not None else None,
            files=[self.files[i] for i in index.tolist()] if self.files is not None else None,
            _on_device={},
            _bad_reported=set(),
        )

    def with_normalization(self, mean: Sequence[float], std: Sequence[float]) -> DataSplit:
        """The same images normalized with other statistics (e.g. a checkpoint's)."""
        if len(mean) != self.in_chans or len(std) != self.in_chans:
            raise ResNetError(f"mean/std have {len(mean)}/{len(std)} values but {self.name} has {self.in_chans} channels")
        return replace(self, mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))

    # -- batching ---------------------------------------------------------------------------

    def num_batches(self, batch_size: int, *, drop_last: bool = False, world_size: int = 1) -> int:
        """Batches one rank gets per epoch (the largest shard's count when shards differ)."""
        _check_batching(batch_size, 0, world_size)
        per_rank = len(self) // world_size if drop_last else math.ceil(len(self) / world_size)
        return per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)

    def order(self, *, shuffle: bool, epoch: int = 0, seed: int = 0, rank: int = 0, world_size: int = 1,
              drop_last: bool = False) -> torch.Tensor:
        """The sample indices this rank visits in this epoch, in order.

        drop_last=False: shards are disjoint and together cover every sample once (right for
        evaluation). drop_last=True: the tail is cut so every rank has the same count (for DDP).
        """
        _check_batching(1, rank, world_size)
        n = len(self)
        indices = torch.randperm(n, generator=seeded_generator(seed, epoch, _SHUFFLE)) if shuffle else torch.arange(n)
        if world_size > 1:
            if drop_last:
                indices = indices[: n // world_size * world_size]
            indices = indices[rank::world_size]
        return indices

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        epoch: int = 0,
        seed: int = 0,
        device: str | torch.device = "cpu",
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        num_workers: int = 0,
        start_batch: int = 0,
        padding: int = PADDING,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)``: x float32 (B, C, H, W) normalized, y int64, both on ``device``.

        ``augment`` = random crop with ``padding``-pixel zero padding (0: no crop) + horizontal
        flip, per batch, on ``device``; for a photo split, each image's random-resized crop (and
        whatever else ``photo`` adds) under its own seed, and without ``augment`` the centre crop.
        ``start_batch`` skips the first batches exactly as if they had been consumed (for resuming
        mid-epoch). ``num_workers`` decodes image files in that many processes (unused for sets held
        in memory: their batches are already just tensor ops).
        """
        _check_batching(batch_size, rank, world_size)
        device = torch.device(device)
        order = self.order(shuffle=shuffle, epoch=epoch, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last)
        if drop_last:
            order = order[: len(order) // batch_size * batch_size]
        normalize = Normalizer(self.mean, self.std, device)
        starts = range(start_batch * batch_size, len(order), batch_size)
        if self.photo is not None:
            seeds = self.photo.sample_seeds(len(order), seed, epoch, rank) if augment else None
            if self.images is not None:
                yield from self._photo_memory_batches(order, starts, batch_size, seeds, normalize, device, channels_last)
            else:
                yield from self._file_batches(order, starts, batch_size, None, normalize, device, channels_last,
                                              num_workers, seeds)
            return
        draws = None
        if augment:  # drawn for the whole epoch at once (cheap), so start_batch lands on the same draws
            draws = CropFlipDraws.draw(len(order), padding, seeded_generator(seed, epoch, rank, _AUGMENT)).to(device)
        if self.images is not None:
            yield from self._memory_batches(order, starts, batch_size, draws, normalize, device, channels_last)
        else:
            yield from self._file_batches(order, starts, batch_size, draws, normalize, device, channels_last, num_workers)

    def _memory_batches(self, order: torch.Tensor, starts: range, batch_size: int, draws: CropFlipDraws | None,
                        normalize: Normalizer, device: torch.device, channels_last: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self._tensors_on(device)
        order = order.to(device)
        for start in starts:
            with _one_thread(device):
                index = order[start : start + batch_size]
                x = images.index_select(0, index)
                if draws is not None:
                    x = random_crop_flip(x, draws.slice(start, start + len(index)))
                batch = normalize(x, channels_last=channels_last), labels.index_select(0, index)
            yield batch

    def _photo_memory_batches(self, order: torch.Tensor, starts: range, batch_size: int, seeds: torch.Tensor | None,
                              normalize: Normalizer, device: torch.device,
                              channels_last: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Photos held in memory: each image's random view on the CPU (seeded per image), or the centre crop."""
        assert self.images is not None and self.photo is not None
        photo, fill = self.photo, self.photo.fill(self.mean)
        for start in starts:
            with _one_thread(device):
                index = order[start : start + batch_size]
                if seeds is None:
                    x = photo.centre_crop(self.images.index_select(0, index))
                else:
                    x = torch.stack([photo.train_image(self.images[i], int(s), fill)
                                     for i, s in zip(index.tolist(), seeds[start : start + len(index)].tolist())])
                x = x.to(device, non_blocking=True)
                batch = normalize(x, channels_last=channels_last), self.labels.index_select(0, index).to(device)
            yield batch

    def _tensors_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The uint8 images and labels on ``device``, copied there once and kept (a few hundred MB at most)."""
        assert self.images is not None
        key = str(device)
        if key not in self._on_device:
            if device.type == "cpu":
                self._on_device[key] = self.images
            else:
                self._on_device.clear()  # one device copy at a time
                self._on_device[key] = self.images.to(device)
        return self._on_device[key], self.labels.to(device)

    def _file_batches(self, order: torch.Tensor, starts: range, batch_size: int, draws: CropFlipDraws | None,
                      normalize: Normalizer, device: torch.device, channels_last: bool,
                      num_workers: int, seeds: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from resnet.data.images import FileImages

        assert self.files is not None
        batch_indices: list[list[int]] | list[list[tuple[int, int]]]
        batch_indices = [order[start : start + batch_size].tolist() for start in starts]
        if seeds is not None:  # photo training views: each key carries the image's seed to the worker
            batch_indices = [list(zip(keys, seeds[start : start + len(keys)].tolist()))
                             for start, keys in zip(starts, batch_indices)]
        fill = self.photo.fill(self.mean) if self.photo is not None else ()
        loader = torch.utils.data.DataLoader(
            FileImages(self.files, self.in_chans, self.image_size, self.photo, fill),
            batch_sampler=batch_indices,  # our order, so batches stay deterministic
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            # Its own generator: iterating would otherwise draw a seed from torch's global RNG, shifting
            # training's random stream (dropout, mixup) differently in a run resumed mid-epoch.
            generator=torch.Generator().manual_seed(0),
        )
        bad: list[tuple[int, str]] = []
        try:
            for start, (x, index, errors) in zip(starts, loader):
                ok = torch.tensor([not e for e in errors], dtype=torch.bool)
                if not bool(ok.all()):
                    failed = [(int(i), e) for i, e in zip(index.tolist(), errors) if e]
                    if self.strict:
                        i, reason = failed[0]
                        raise ResNetError(f"cannot read image {self.files[i]}: {reason} (drop --strict to skip unreadable files)")
                    bad.extend(failed)
                    if not bool(ok.any()):
                        continue
                with _one_thread(device):
                    x = x.to(device, non_blocking=True)
                    if draws is not None:
                        x = random_crop_flip(x, draws.slice(start, start + len(index)))
                    y = self.labels.index_select(0, index)
                    if not bool(ok.all()):
                        x, y = x[ok.to(device)], y[ok]
                    batch = normalize(x, channels_last=channels_last), y.to(device, non_blocking=True)
                yield batch
        finally:
            self._report_bad(bad)

    def _report_bad(self, bad: list[tuple[int, str]]) -> None:
        """Warn once per file about images skipped mid-epoch."""
        new = [(i, e) for i, e in bad if i not in self._bad_reported]
        if not new:
            return
        self._bad_reported.update(i for i, _ in new)
        assert self.files is not None
        first = "; ".join(f"{self.files[i]} ({e})" for i, e in new[:3])
        more = f" and {len(new) - 3} more" if len(new) > 3 else ""
        report.warn(f"skipped {len(new)} unreadable image file(s) in {self.name} {self.split}: {first}{more} "
                    "(--strict stops at the first instead)")


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Run a batch's CPU ops on one thread, restoring the caller's setting before the model runs.

    They are small and memory-bound: OpenMP's fork/join costs more than it saves, and far more
    when the cores are shared (measured: 1 thread ~95k images/s, 2 threads 2.5k-19k on a busy
    2-core machine; see benchmarks/data.md).
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _check_batching(batch_size: int, rank: int, world_size: int) -> None:
    if batch_size < 1:
        raise ResNetError(f"batch size must be at least 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ResNetError(f"rank {rank} is not within world size {world_size}")
