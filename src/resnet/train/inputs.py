"""What ``fit`` and ``evaluate`` accept as data: our ``DataSplit``, any torch ``Dataset`` of (image, label), or a ``DataLoader``.

Everything is seen through ``DataSplit``'s batching interface (``batches``, ``num_batches``,
``subset``, ``labels``, ``class_names``...), so the trainer has one code path. A plain Dataset is
batched in an order that is a pure function of (seed, epoch, rank), like a DataSplit, which keeps
resume exact; a DataLoader is used as it is (its own batch size, order and transforms).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from resnet.data.augment import seeded_generator
from resnet.errors import ResNetError

_SHUFFLE = 1  # the same stream id as DataSplit's shuffle
_LOADER = 4  # the global RNG's seed while a DataLoader makes a batch


def as_data(data: Any, *, num_classes: int | None = None, name: str = "data", split: str = "train") -> Any:
    """``data`` behind the DataSplit interface: a DataSplit (or look-alike) as is, a Dataset or DataLoader wrapped."""
    if isinstance(data, (Dataset, DataLoader)):
        return TorchData(data, num_classes=num_classes, name=name, split=split)
    if not hasattr(data, "batches"):
        raise ResNetError(f"cannot train or evaluate on a {type(data).__name__}: give a resnet DataSplit, "
                          "a torch Dataset of (image, label) pairs, or a DataLoader")
    return data


class TorchData:
    """A torch Dataset of (image tensor, label) or a DataLoader, batched like a DataSplit.

    Images are used as the dataset gives them (already normalized by its own transforms): no
    augmentation or normalization is added here, and the run's metadata carries no mean/std.
    """

    def __init__(self, data: Dataset | DataLoader, *, num_classes: int | None, name: str, split: str) -> None:
        self.loader = data if isinstance(data, DataLoader) else None
        self.dataset: Dataset = data.dataset if isinstance(data, DataLoader) else data
        self.name, self.split = getattr(self.dataset, "name", name), split
        try:
            first = self.dataset[0]
        except (TypeError, IndexError, NotImplementedError):
            raise ResNetError(f"{type(self.dataset).__name__} is not a map-style dataset with items; "
                              "give a Dataset whose items are (image, label) pairs") from None
        if not (isinstance(first, (tuple, list)) and len(first) >= 2 and isinstance(first[0], torch.Tensor)):
            raise ResNetError(f"items of {type(self.dataset).__name__} must be (image tensor, label) pairs, "
                              f"got {type(first).__name__}")
        image = first[0]
        if image.dim() != 3:
            raise ResNetError(f"images of {type(self.dataset).__name__} must be (channels, height, width) tensors, "
                              f"got shape {tuple(image.shape)}")
        self.in_chans, self.image_size = int(image.shape[0]), (int(image.shape[1]), int(image.shape[2]))
        classes = getattr(self.dataset, "classes", None)
        if num_classes is None:
            labels = self.labels
            num_classes = len(classes) if classes else int(labels.max()) + 1 if labels is not None else None
        if num_classes is None:
            raise ResNetError(f"cannot tell how many classes {type(self.dataset).__name__} has: give the model a "
                              "`num_classes` attribute, or the dataset a `classes` or `targets` attribute")
        self.class_names = [str(c) for c in classes] if classes and len(classes) == num_classes else [
            str(i) for i in range(num_classes)]
        self.mean: tuple[float, ...] | None = None
        self.std: tuple[float, ...] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labels(self) -> torch.Tensor | None:
        """Every label without decoding images, where the dataset allows it (else None)."""
        return labels_of(self.dataset)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def subset(self, indices: Sequence[int] | torch.Tensor) -> TorchData:
        if self.loader is not None:
            raise ResNetError("a DataLoader keeps its own sampling; give the Dataset itself to use a balanced sampler")
        return TorchData(Subset(self.dataset, torch.as_tensor(indices).tolist()), num_classes=self.num_classes,
                         name=self.name, split=self.split)

    def num_batches(self, batch_size: int, *, drop_last: bool = False, world_size: int = 1) -> int:
        if self.loader is not None:
            return len(self.loader)
        per_rank = len(self) // world_size if drop_last else math.ceil(len(self) / world_size)
        return per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)

    def batches(
        self, batch_size: int, *, shuffle: bool = False, epoch: int = 0, seed: int = 0,
        device: str | torch.device = "cpu", drop_last: bool = False, rank: int = 0, world_size: int = 1,
        channels_last: bool = False, num_workers: int = 0, start_batch: int = 0, **_: Any,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` on ``device``; augmentation options of DataSplit are ignored (the dataset's transforms apply)."""
        device = torch.device(device)
        if self.loader is not None:
            loader = self.loader
            # Replayed from its first batch, each under its own seed: the order it draws and any
            # random transforms come out the same however many batches a resume skips.
            batches: Iterator[Any] = itertools.islice(_seeded_per_batch(lambda: iter(loader), seed, epoch, 0),
                                                      start_batch, None)
        else:
            n = len(self)
            order = torch.randperm(n, generator=seeded_generator(seed, epoch, _SHUFFLE)) if shuffle else torch.arange(n)
            if world_size > 1:
                order = order[: n // world_size * world_size if drop_last else n][rank::world_size]
            if drop_last:
                order = order[: len(order) // batch_size * batch_size]
            plan = [order[s : s + batch_size].tolist() for s in range(start_batch * batch_size, len(order), batch_size)]
            batches = _seeded_per_batch(lambda: iter(DataLoader(self.dataset, batch_sampler=plan, num_workers=num_workers,
                                                                pin_memory=device.type == "cuda")),
                                        seed, epoch, start_batch)
        for x, y, *_rest in batches:
            x = x.to(device, non_blocking=True).float()
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, torch.as_tensor(y).to(device, non_blocking=True).long()


def labels_of(dataset: Dataset) -> torch.Tensor | None:
    """A dataset's labels from its tensors or ``targets`` (torchvision's name), through Subsets; else None."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].long()
    if isinstance(dataset, Subset):
        inner = labels_of(dataset.dataset)
        return inner[torch.as_tensor(dataset.indices)] if inner is not None else None
    targets = getattr(dataset, "targets", None)
    return torch.as_tensor(targets).long() if targets is not None else None


def _seeded_per_batch(make: Callable[[], Iterator[Any]], seed: int, epoch: int, first: int) -> Iterator[Any]:
    """Iterate a DataLoader with torch's global RNG seeded by (seed, epoch, batch index) for each batch.

    A DataLoader draws from the global RNG (its worker seed, a RandomSampler's order, transforms
    run in this process); here those draws are a pure function of the batch's place, and training's
    own random stream is put back untouched after each batch. (Transforms in worker processes draw
    from the workers' streams: exact only as far as those are.)
    """
    iterator: Iterator[Any] | None = None
    index = first
    while True:
        outer = torch.get_rng_state()
        try:
            if iterator is None:
                torch.set_rng_state(seeded_generator(seed, epoch, _LOADER).get_state())
                iterator = make()
            torch.set_rng_state(seeded_generator(seed, epoch, _LOADER, index).get_state())
            batch = next(iterator, None)
        finally:
            torch.set_rng_state(outer)
        if batch is None:
            return
        yield batch
        index += 1


def epoch_seed(seed: int, epoch: int) -> int:
    """The global RNG's seed at the start of an epoch (dropout, stochastic depth, mixup, a DataLoader's shuffle)."""
    return seed * 1_000_003 + epoch
