"""Tiny datasets written in the exact on-disk layouts ``load`` reads, for tests (no download, ever).

Each writer makes images whose mean brightness depends on the class, so a few optimizer steps
can already learn something; ``seed`` makes them reproducible. Used by this package's tests and
available to the other areas' tests (``from resnet.data.testing import write_cifar10``).
"""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from resnet.data.idx import FILES, IMAGES_MAGIC, LABELS_MAGIC


def class_images(labels: np.ndarray, shape: Sequence[int], num_classes: int, seed: int = 0) -> np.ndarray:
    """uint8 images of ``shape`` per label: brightness rises with the class index, plus noise."""
    rng = np.random.default_rng(seed)
    base = (labels.astype(np.float32) + 0.5) * (200.0 / num_classes)
    noise = rng.normal(0.0, 20.0, size=(len(labels), *shape))
    return np.clip(base.reshape(-1, *([1] * len(shape))) + noise + 20, 0, 255).astype(np.uint8)


def _labels(n: int, num_classes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 1).permutation(np.arange(n) % num_classes).astype(np.uint8)


def write_idx(path: Path, array: np.ndarray, magic: int) -> Path:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_fashion_mnist(folder: str | Path, *, train: int = 60, test: int = 20, gz: bool = True, seed: int = 0) -> Path:
    """The four Fashion-MNIST IDX files (``.gz`` or raw) with ``train``/``test`` 28x28 images."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("test", test)):
        labels = _labels(count, 10, seed + (split == "test"))
        image_stem, label_stem = FILES[split]
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{image_stem}{suffix}", class_images(labels, (28, 28), 10, seed), IMAGES_MAGIC)
        write_idx(folder / f"{label_stem}{suffix}", labels, LABELS_MAGIC)
    return folder


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    """Pickles bytes as Python 2's str opcodes, like the original CIFAR batches (cPickle, protocol 2)."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def write_py2_pickle(path: Path, obj: Any) -> Path:
    with open(path, "wb") as fh:
        Py2Pickler(fh, protocol=2).dump(obj)
    return path


def write_cifar(folder: str | Path, name: str = "cifar10", *, per_batch: int = 20, test: int = 20, seed: int = 0) -> Path:
    """``cifar-10-batches-py/`` (5 train batches of ``per_batch``) or ``cifar-100-python/`` (train of 5*``per_batch``)."""
    folder = Path(folder)
    if name == "cifar10":
        out = folder / "cifar-10-batches-py"
        classes, label_key, names_key, meta = 10, b"labels", b"label_names", "batches.meta"
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        train_sizes = [per_batch] * 5
        test_file = "test_batch"
        names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    else:
        out = folder / "cifar-100-python"
        classes, label_key, names_key, meta = 100, b"fine_labels", b"fine_label_names", "meta"
        train_files, train_sizes, test_file = ["train"], [5 * per_batch], "test"
        names = [f"class_{i:02d}".encode() for i in range(100)]
    out.mkdir(parents=True, exist_ok=True)
    for i, (file, count) in enumerate([*zip(train_files, train_sizes), (test_file, test)]):
        labels = _labels(count, classes, seed + i)
        data = class_images(labels, (3 * 32 * 32,), classes, seed + i)
        batch = {b"batch_label": f"batch {i}".encode(), label_key: [int(v) for v in labels], b"data": data,
                 b"filenames": [f"img_{i}_{j}.png".encode() for j in range(count)]}
        if name == "cifar100":
            batch[b"coarse_labels"] = [int(v) // 5 for v in labels]
        write_py2_pickle(out / file, batch)
    write_py2_pickle(out / meta, {names_key: names, b"num_vis": 3072})
    return out


def write_signs(folder: str | Path, *, train: int = 30, test: int = 12, size: int = 64, same_file: bool = False,
                seed: int = 0) -> Path:
    """train_signs.h5 (+ test_signs.h5, or test keys in the same file) in the SIGNS layout; returns the train file."""
    import h5py

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train_path = folder / "train_signs.h5"
    test_path = train_path if same_file else folder / "test_signs.h5"
    classes = np.arange(6)
    for path, prefix, count, offset in ((train_path, "train", train, 0), (test_path, "test", test, 1)):
        labels = _labels(count, 6, seed + offset).astype(np.int64)
        with h5py.File(path, "a") as fh:
            fh[f"{prefix}_set_x"] = class_images(labels, (size, size, 3), 6, seed + offset)
            fh[f"{prefix}_set_y"] = labels
            if "list_classes" not in fh:
                fh["list_classes"] = classes
    return train_path


def write_image_folder(root: str | Path, *, classes: Sequence[str] = ("cat", "dog", "fox"), per_class: int = 4,
                       size: tuple[int, int] = (16, 16), splits: Sequence[str] = ("train", "val"), mode: str = "RGB",
                       ext: str = ".png", seed: int = 0) -> Path:
    """``root/<split>/<class>/<n><ext>`` (or ``root/<class>/...`` when ``splits`` is empty)."""
    from PIL import Image

    root = Path(root)
    channels = 1 if mode == "L" else 3
    for s, split in enumerate(splits or [""]):
        labels = np.repeat(np.arange(len(classes)), per_class)
        pixels = class_images(labels, (size[0], size[1], channels), len(classes), seed + s)
        for i, (label, array) in enumerate(zip(labels, pixels)):
            folder = root / split / classes[label] if split else root / classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array[..., 0] if channels == 1 else array, "L" if channels == 1 else "RGB").save(folder / f"{i:04d}{ext}")
    return root
