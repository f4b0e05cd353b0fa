"""Fashion-MNIST in its original IDX files (gzipped or raw), as Debian's dataset-fashion-mnist ships them."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from resnet.data import locate
from resnet.data.source import Pool, Source, file_key
from resnet.errors import ResNetError

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SUBDIRS = ("", "fashion-mnist", "FashionMNIST/raw")  # the last is where torchvision downloads to
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
_UINT8 = 0x08


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file as a uint8 array, with its magic number, type and length checked."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise ResNetError(f"cannot read {path}: {exc} (the file is damaged; fetch it again)") from None
    if len(raw) < 4:
        raise ResNetError(f"{path} is not an IDX file: only {len(raw)} bytes")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ResNetError(f"{path} is not an IDX {'image' if magic == IMAGES_MAGIC else 'label'} file: magic number {found}, expected {magic}")
    ndim = raw[3]
    if raw[2] != _UINT8:
        raise ResNetError(f"{path} holds IDX type {raw[2]:#x}; only unsigned bytes (0x08) are supported")
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise ResNetError(f"{path} is truncated or padded: {len(raw)} bytes, its header {dims} says {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _complete(folder: Path) -> bool:
    return all(_file(folder, stem) for pair in FILES.values() for stem in pair)


class FashionMNIST(Source):
    name = "fashion-mnist"
    class_names = FASHION_MNIST_CLASSES
    in_chans = 1
    image_size = (28, 28)
    splits = ("train", "test")

    def __init__(self, data_dir: str | os.PathLike[str] | None, download: bool) -> None:
        roots = locate.search_roots(data_dir, self.name)
        folder = locate.find(self.name, roots, SUBDIRS, _complete, given=data_dir)
        if folder is None and download:
            locate.torchvision_download(self.name, data_dir)
            folder = locate.find(self.name, [locate.download_root(data_dir)], SUBDIRS, _complete)
        if folder is None:
            expected = ", ".join(f"{s}[.gz]" for pair in FILES.values() for s in pair)
            raise locate.not_found(self.name, roots, SUBDIRS, expected, "Install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu)")
        self.folder = folder

    def cache_key(self) -> tuple[object, ...]:
        return (self.name, *(file_key(_file(self.folder, s)) for pair in FILES.values() for s in pair))  # type: ignore[arg-type]

    def read(self, split: str) -> Pool:
        image_file, label_file = (_file(self.folder, stem) for stem in FILES[split])
        assert image_file is not None and label_file is not None
        images = read_idx(image_file, IMAGES_MAGIC)
        labels = read_idx(label_file, LABELS_MAGIC)
        if images.ndim != 3:
            raise ResNetError(f"{image_file} holds an array of shape {images.shape}; expected (N, 28, 28)")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ResNetError(f"{label_file} has {labels.shape[0]} labels but {image_file} has {images.shape[0]} images")
        if labels.size and int(labels.max()) >= len(self.class_names):
            raise ResNetError(f"{label_file} holds label {int(labels.max())}; Fashion-MNIST has classes 0..9")
        return Pool(labels=torch.from_numpy(labels.astype(np.int64)), images=torch.from_numpy(images.copy()).unsqueeze(1))
