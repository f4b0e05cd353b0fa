"""CIFAR-10/100 in the official python batches, read with an unpickler that cannot run code.

The batches are pickles, and ``pickle.load`` on a tampered file runs whatever its ``__reduce__``
names. ``CifarUnpickler`` admits only the globals those files actually reference (numpy's array
and dtype reconstruction); everything else is refused before it is even imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnet.data import locate
from resnet.data.source import Pool, Source, file_key
from resnet.errors import ResNetError
from resnet.unpickle import NumpyUnpickler, RefusedGlobal, load_numpy_pickle

__all__ = ["CIFAR", "CifarUnpickler", "RefusedGlobal", "read_batch"]

LAYOUT = {
    # name: (folder, train files, test file, meta file, label key, class-names key)
    "cifar10": ("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta", "labels", "label_names"),
    "cifar100": ("cifar-100-python", ("train",), "test", "meta", "fine_labels", "fine_label_names"),
}


class CifarUnpickler(NumpyUnpickler):
    """Unpickles plain containers and numpy arrays; any other global raises ``RefusedGlobal``."""

    holds = "CIFAR batches hold only lists, strings and numpy arrays"


def read_batch(path: Path) -> dict[str, Any]:
    """One CIFAR batch file as a dict with str keys (the files, written by Python 2, have bytes keys)."""
    data = load_numpy_pickle(path, unpickler=CifarUnpickler, encoding="latin1", damaged_hint="; fetch it again")
    if not isinstance(data, dict):
        raise ResNetError(f"{path} holds a {type(data).__name__}, not a CIFAR batch dictionary")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in data.items()}


def _key(batch: dict[str, Any], key: str, path: Path) -> Any:
    if key not in batch:
        raise ResNetError(f"{path} has no key {key!r} (it has: {', '.join(sorted(batch))})")
    return batch[key]


class CIFAR(Source):
    in_chans = 3
    image_size = (32, 32)
    splits = ("train", "test")

    def __init__(self, name: str, data_dir: str | os.PathLike[str] | None, download: bool) -> None:
        self.name = name
        folder_name, self.train_files, self.test_file, self.meta_file, self.label_key, self.names_key = LAYOUT[name]
        subdirs = (folder_name, "")
        roots = locate.search_roots(data_dir, name)
        folder = locate.find(name, roots, subdirs, self._complete, given=data_dir)
        if folder is None and download:
            locate.torchvision_download(name, data_dir)
            folder = locate.find(name, [locate.download_root(data_dir)], subdirs, self._complete)
        if folder is None:
            expected = f"the python version of the batches: {folder_name}/{{{', '.join(self._all_files())}}}"
            raise locate.not_found(name, roots, subdirs, expected, "Get the python version archive from https://www.cs.toronto.edu/~kriz/cifar.html and unpack it in one of those folders")
        self.folder = folder
        meta_path = folder / self.meta_file
        names = _key(read_batch(meta_path), self.names_key, meta_path)
        self.class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    def _all_files(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file, self.meta_file)

    def _complete(self, folder: Path) -> bool:
        return all((folder / f).is_file() for f in self._all_files())

    def cache_key(self) -> tuple[object, ...]:
        return (self.name, *(file_key(self.folder / f) for f in self._all_files()))

    def read(self, split: str) -> Pool:
        files = self.train_files if split == "train" else (self.test_file,)
        images, labels = [], []
        for name in files:
            path = self.folder / name
            batch = read_batch(path)
            data = np.asarray(_key(batch, "data", path))
            batch_labels = np.asarray(_key(batch, self.label_key, path), dtype=np.int64)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                raise ResNetError(f"{path} key 'data' is {data.dtype} {data.shape}; expected uint8 (N, 3072)")
            if batch_labels.shape != (data.shape[0],):
                raise ResNetError(f"{path} has {batch_labels.size} labels under {self.label_key!r} but {data.shape[0]} images")
            if batch_labels.size and not 0 <= int(batch_labels.min()) <= int(batch_labels.max()) < len(self.class_names):
                raise ResNetError(f"{path} holds labels outside 0..{len(self.class_names) - 1}")
            images.append(data.reshape(-1, 3, 32, 32))
            labels.append(batch_labels)
        return Pool(labels=torch.from_numpy(np.concatenate(labels)), images=torch.from_numpy(np.concatenate(images)))
