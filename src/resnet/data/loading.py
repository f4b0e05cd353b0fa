"""``load``: one name for a dataset everywhere (``--data NAME_OR_PATH``), one ``DataSplit`` back."""

from __future__ import annotations

import difflib
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from resnet import report
from resnet.data.augment import channel_stats
from resnet.data.photo import PhotoTransforms, resize_centre_crop
from resnet.data.source import Pool, Source
from resnet.data.split import DataSplit
from resnet.errors import ResNetError

NAMED = ("fashion-mnist", "cifar10", "cifar100")
_ALIASES = {"fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar10": "cifar10", "cifar100": "cifar100"}
SPLITS = ("train", "val", "test")
STATS_SAMPLE = 2048  # images decoded for the statistics of a folder too large to hold in memory

# Decoded splits and statistics, kept for the process: "train" then "val" then "test" of the same
# set read and decode the files once. The oldest entries go first past a few entries or ~2 GiB.
_CACHE: OrderedDict[tuple[object, ...], object] = OrderedDict()
_CACHE_ENTRIES = 8
_CACHE_BYTES = 2 << 30


def load(
    spec: str | os.PathLike[str] | Source,
    split: str = "train",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    val_fraction: float | None = None,
    val_size: int | None = None,
    seed: int = 0,
    download: bool = False,
    strict: bool = False,
    image_size: int | Sequence[int] | None = None,
    in_memory: bool | None = None,
    num_workers: int | None = None,
    h5_keys: Mapping[str, str] | None = None,
    photo: PhotoTransforms | None = None,
) -> DataSplit:
    """One split of a dataset: ``fashion-mnist``, ``cifar10``, ``cifar100``, an image folder, or an .h5 file.

    ``split`` is "train", "val" or "test". A validation split is either the dataset's own (an
    image folder's val/) or, when ``val_fraction`` or ``val_size`` is given, carved from train with
    ``seed`` (the paper's CIFAR-10 45k/5k split: ``val_size=5000``); pass the same values for the
    "train" call so the two are disjoint. ``mean``/``std`` always come from the training split.
    ``image_size`` (int or (H, W)) resizes; an image folder's default is its most common size.
    ``strict`` turns a skipped unreadable image into an error. ``in_memory`` forces (or forbids)
    holding an image folder in memory; by default folders under ~1 GiB decoded are held.
    ``h5_keys`` renames the HDF5 keys (train_x, train_y, test_x, test_y, classes); the same can be
    written in the spec as ``file.h5?train_x=X&train_y=Y``. ``spec`` may also be an opened ``Source``
    (see ``load_splits``), which is then read as it was opened. ``photo`` prepares the split as
    photos (``resnet.data.photo``): held at ``photo.stored_size``, its ``size`` the model's input (when
    None: ``image_size``, else the data's own).
    """
    if split not in SPLITS:
        raise ResNetError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    size = _size(image_size)
    carve = _carve_request(val_fraction, val_size)
    source = _open(spec, data_dir=data_dir, download=download, strict=strict, image_size=size, in_memory=in_memory,
                   num_workers=num_workers, h5_keys=h5_keys)
    prepared = size
    if photo is not None:
        photo = replace(photo, size=photo.size or size or source.native_size)
        size, prepared = photo.target, photo.stored_size
        _decode_as_photos(source, photo)

    if split == "test":
        part = "test" if "test" in source.splits else "val" if "val" in source.splits else None
        if part is None:
            raise ResNetError(f"{source.name} has no test split (it has {', '.join(source.splits)}); "
                              "evaluate on the validation split instead (split 'val' with a validation fraction)")
        if part == "val":
            report.info(f"{source.name}: no test/ folder, using val/ as the test split")
        pool = _read(source, part, prepared, photo)
    elif split == "val" and carve is None:
        if "val" not in source.splits:
            raise ResNetError(f"{source.name} has no validation split of its own; carve one from train with "
                              "--val-fraction F or --val-size N (val_fraction=, val_size=), or evaluate on split 'test'")
        pool = _read(source, "val", prepared, photo)
    else:
        pool = _read(source, "train", prepared, photo)
        if carve is not None:
            if "val" in source.splits:
                report.debug(f"{source.name}: validation carved from train as asked; its own val/ folder is not used")
            train_index, val_index = _carve(len(pool), carve, seed, source.name)
            pool = pool.take(val_index if split == "val" else train_index)

    mean, std = _train_stats(source, prepared, carve, seed, photo)
    height, width = size or source.image_size
    return DataSplit(
        name=source.name,
        split=split,
        class_names=list(source.class_names),
        in_chans=source.in_chans,
        image_size=(height, width),
        mean=mean,
        std=std,
        labels=pool.labels,
        images=pool.images,
        files=pool.files,
        strict=strict,
        photo=photo,
    )


def available_splits(spec: str | os.PathLike[str], *, data_dir: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """The splits a dataset has on disk, e.g. ("train", "test"); "val" can always be carved from train."""
    return _open(spec, data_dir=data_dir, download=False, strict=False, image_size=None, in_memory=None,
                 num_workers=None, h5_keys=None).splits


def _open(spec: str | os.PathLike[str] | Source, *, data_dir: str | os.PathLike[str] | None, download: bool, strict: bool,
          image_size: tuple[int, int] | None, in_memory: bool | None, num_workers: int | None,
          h5_keys: Mapping[str, str] | None) -> Source:
    if isinstance(spec, Source):
        return spec  # already opened (load_splits): its files are not listed again
    text = os.fspath(spec)
    name = _ALIASES.get(text.lower().replace("-", "").replace("_", ""))
    if name == "fashion-mnist":
        from resnet.data.idx import FashionMNIST

        return FashionMNIST(data_dir, download)
    if name in ("cifar10", "cifar100"):
        from resnet.data.cifar import CIFAR

        return CIFAR(name, data_dir, download)
    path_text, _, query = text.partition("?")
    path = Path(path_text).expanduser()
    if path.suffix.lower() in (".h5", ".hdf5"):
        from resnet.data.hdf5 import HDF5, parse_keys

        if not path.is_file():
            raise ResNetError(f"HDF5 file not found: {path}")
        return HDF5(path, {**parse_keys(query), **(h5_keys or {})})
    if path.is_dir():
        from resnet.data.folder import ImageFolder

        return ImageFolder(path, strict=strict, image_size=image_size, in_memory=in_memory, num_workers=num_workers)
    if path.exists():
        raise ResNetError(f"{path} is neither an image folder nor an .h5 file")
    close = difflib.get_close_matches(text.lower(), NAMED, n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ResNetError(f"unknown dataset {text!r}: not one of {', '.join(NAMED)}, and no such folder or .h5 file{hint}")


@dataclass
class DataSplits:
    """A dataset opened once: train, val and test splits, all normalized with the training split's statistics.

    Iterates as ``(train, val, test)``; ``val``/``test`` are None where the data has none.
    ``own_val``: val is the dataset's own split rather than carved from train.
    """

    train: DataSplit
    val: DataSplit | None
    test: DataSplit | None
    own_val: bool = False

    def __iter__(self) -> Iterator[DataSplit | None]:
        return iter((self.train, self.val, self.test))


def load_splits(
    spec: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    val_fraction: float | None = None,
    val_size: int | None = None,
    prefer_own_val: bool = False,
    seed: int = 0,
    download: bool = False,
    strict: bool = False,
    image_size: int | Sequence[int] | None = None,
    in_memory: bool | None = None,
    num_workers: int | None = None,
    h5_keys: Mapping[str, str] | None = None,
    photo: PhotoTransforms | None = None,
    photo_if_native: int | None = None,
) -> DataSplits:
    """Open ``spec`` once and load its train, val and test splits (arguments as for ``load``).

    ``prefer_own_val``: a dataset with a val split of its own validates on it and the carve
    (``val_fraction``/``val_size``) is dropped, as a recipe's default carve should be. ``photo``
    prepares every split as photos; with ``photo_if_native`` only when the data's own images are
    at least that many pixels on their shorter side (train_crop "auto"; ``train.photo`` then says).
    """
    source = _open(spec, data_dir=data_dir, download=download, strict=strict, image_size=_size(image_size),
                   in_memory=in_memory, num_workers=num_workers, h5_keys=h5_keys)
    carving = val_fraction is not None or val_size is not None
    own_val = "val" in source.splits and (prefer_own_val or not carving)
    if own_val and carving:
        report.info(f"{source.name}: using its own val split (pass --val-fraction or --val-size to carve from train instead)")
        val_fraction = val_size = None
    if photo is not None and photo_if_native is not None and min(source.native_size) < photo_if_native:
        photo = None
    common = {"seed": seed, "strict": strict, "image_size": image_size, "photo": photo}
    train = load(source, "train", val_fraction=val_fraction, val_size=val_size, **common)
    val = load(source, "val", val_fraction=val_fraction, val_size=val_size, **common) if carving or own_val else None
    test = load(source, "test", **common) if "test" in source.splits else None
    # Validation and test images are normalized with the training statistics (train minus val).
    return DataSplits(
        train=train,
        val=val.with_normalization(train.mean, train.std) if val is not None else None,
        test=test.with_normalization(train.mean, train.std) if test is not None else None,
        own_val=own_val,
    )


def _decode_as_photos(source: Source, photo: PhotoTransforms) -> None:
    """An image folder decodes straight to the photo geometry (tensor sources are resized in ``_read``)."""
    from resnet.data.folder import ImageFolder

    if isinstance(source, ImageFolder):
        source.decode_at(photo.stored_size, photo.resize_size)


def _read(source: Source, part: str, size: tuple[int, int] | None, photo: PhotoTransforms | None = None) -> Pool:
    resize_size = photo.resize_size if photo is not None else None
    key = ("pool", *source.cache_key(), part, size, resize_size)
    if key not in _CACHE:
        pool = source.read(part)
        if pool.images is not None and size is not None and tuple(pool.images.shape[-2:]) != size:
            images = (resize_centre_crop(pool.images, resize_size, size) if resize_size is not None
                      else resize_uint8(pool.images, size))
            pool = Pool(labels=pool.labels, images=images)
        _remember(key, pool)
    _CACHE.move_to_end(key)
    return _CACHE[key]  # type: ignore[return-value]


def _train_stats(source: Source, size: tuple[int, int] | None, carve: tuple[str, float] | None,
                 seed: int, photo: PhotoTransforms | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of the training split (after carving out validation), cached."""
    key = ("stats", *source.cache_key(), size, carve, seed if carve else None, photo and photo.resize_size)
    if key not in _CACHE:
        pool = _read(source, "train", size, photo)
        if carve is not None:
            pool = pool.take(_carve(len(pool), carve, seed, source.name)[0])
        if pool.images is None:
            from resnet.data.folder import sample_images

            images = sample_images(pool, STATS_SAMPLE, source.in_chans, size or source.image_size)
        else:
            images = pool.images
        _remember(key, channel_stats(images))
    return _CACHE[key]  # type: ignore[return-value]


def _remember(key: tuple[object, ...], value: object) -> None:
    _CACHE[key] = value
    while len(_CACHE) > 1 and (len(_CACHE) > _CACHE_ENTRIES or sum(map(_nbytes, _CACHE.values())) > _CACHE_BYTES):
        _CACHE.popitem(last=False)


def _nbytes(value: object) -> int:
    images = getattr(value, "images", None)
    return images.numel() if images is not None else 0


def _carve_request(val_fraction: float | None, val_size: int | None) -> tuple[str, float] | None:
    if val_fraction is not None and val_size is not None:
        raise ResNetError("give either a validation fraction or a validation size, not both")
    if val_fraction is not None:
        if not 0.0 < val_fraction < 1.0:
            raise ResNetError(f"validation fraction must be between 0 and 1 (exclusive), got {val_fraction}")
        return ("fraction", float(val_fraction))
    if val_size is not None:
        if val_size < 1:
            raise ResNetError(f"validation size must be at least 1, got {val_size}")
        return ("size", int(val_size))
    return None


def _carve(n: int, carve: tuple[str, float], seed: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices), each sorted: a seeded random split of range(n)."""
    kind, amount = carve
    n_val = int(amount) if kind == "size" else round(n * amount)
    if not 0 < n_val < n:
        raise ResNetError(f"cannot carve a validation split of {n_val} images from the {n} training images of {name}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def _size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (int(image_size), int(image_size)) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ResNetError(f"image size must be one positive number or (height, width), got {image_size}")
    return size  # type: ignore[return-value]


def resize_uint8(images: torch.Tensor, size: tuple[int, int], chunk: int = 2048) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) images (bilinear, antialiased when shrinking), in chunks."""
    out = torch.empty((images.shape[0], images.shape[1], *size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        block = F.interpolate(images[start : start + chunk].float(), size=size, mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = block.round_().clamp_(0, 255).to(torch.uint8)
    return out
