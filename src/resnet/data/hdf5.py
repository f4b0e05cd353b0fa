"""HDF5 image sets in the layout of the SIGNS set (Keras/deeplearning.ai seed): train_signs.h5 + test_signs.h5.

train file: train_set_x (N, H, W, C) uint8, train_set_y (N,) or (1, N), list_classes (K,);
test: test_set_x / test_set_y in the same file or a sibling ``test_*.h5`` (train_signs.h5 -> test_signs.h5).
Every key name can be changed (``h5_keys`` or ``file.h5?train_x=images&train_y=labels``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import torch

from resnet.data.source import Pool, Source, file_key
from resnet.errors import ResNetError

DEFAULT_KEYS = {"train_x": "train_set_x", "train_y": "train_set_y", "test_x": "test_set_x", "test_y": "test_set_y",
                "classes": "list_classes"}


def parse_keys(query: str) -> dict[str, str]:
    """``train_x=images&train_y=labels`` (the part of a spec after ``?``) as a dict; checked by ``HDF5``."""
    return dict(parse_qsl(query, keep_blank_values=False))


def _h5py():  # type: ignore[no-untyped-def]
    import h5py

    return h5py


def _open(path: Path):  # type: ignore[no-untyped-def]
    h5py = _h5py()
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ResNetError(f"cannot open {path} as HDF5: {exc}") from None


class HDF5(Source):
    def __init__(self, path: Path, keys: dict[str, str]) -> None:
        unknown = sorted(set(keys) - set(DEFAULT_KEYS))
        if unknown:
            raise ResNetError(f"unknown HDF5 key option(s) {', '.join(unknown)}; use {', '.join(DEFAULT_KEYS)}")
        self.keys = {**DEFAULT_KEYS, **keys}
        self.path = path
        self.name = path.stem
        with _open(path) as fh:
            if self.keys["train_x"] not in fh:
                raise ResNetError(f"{path} has no key {self.keys['train_x']!r} (it has: {', '.join(sorted(fh.keys()))}); "
                                  "name the image key with ?train_x=KEY")
            x = fh[self.keys["train_x"]]
            if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
                raise ResNetError(f"{path} key {self.keys['train_x']!r} has shape {x.shape}; expected (N, H, W, C) with C 1 or 3, or (N, H, W)")
            self.image_size = (int(x.shape[1]), int(x.shape[2]))
            self.in_chans = int(x.shape[3]) if x.ndim == 4 else 1
            classes = fh[self.keys["classes"]][()] if self.keys["classes"] in fh else None
        self.test_path = self._find_test()
        self.splits = ("train", "test") if self.test_path else ("train",)
        if classes is None:
            # No class list: name the classes by the label values seen.
            labels = self.read("train").labels
            count = int(labels.max()) + 1 if labels.numel() else 0
            self.class_names = [str(i) for i in range(count)]
        else:
            self.class_names = [c.decode() if isinstance(c, bytes) else str(c) for c in np.asarray(classes).reshape(-1).tolist()]

    def _find_test(self) -> Path | None:
        with _open(self.path) as fh:
            if self.keys["test_x"] in fh:
                return self.path
        candidates = []
        if "train" in self.path.name:
            candidates.append(self.path.with_name(self.path.name.replace("train", "test")))
        candidates += sorted(self.path.parent.glob("test_*.h5")) + sorted(self.path.parent.glob("test_*.hdf5"))
        for candidate in candidates:
            if candidate.is_file() and candidate != self.path:
                with _open(candidate) as fh:
                    if self.keys["test_x"] in fh:
                        return candidate
        return None

    def cache_key(self) -> tuple[object, ...]:
        test = file_key(self.test_path) if self.test_path else None
        return ("hdf5", file_key(self.path), test, tuple(sorted(self.keys.items())))

    def read(self, split: str) -> Pool:
        path = self.path if split == "train" else self.test_path
        assert path is not None
        x_key, y_key = self.keys[f"{split}_x"], self.keys[f"{split}_y"]
        with _open(path) as fh:
            for key in (x_key, y_key):
                if key not in fh:
                    raise ResNetError(f"{path} has no key {key!r} (it has: {', '.join(sorted(fh.keys()))})")
            images = np.asarray(fh[x_key][()])
            labels = np.asarray(fh[y_key][()]).reshape(-1)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[1:] != (*self.image_size, self.in_chans):
            raise ResNetError(f"{path} key {x_key!r} has shape {images.shape}; expected (N, {self.image_size[0]}, {self.image_size[1]}, {self.in_chans}) like the training images")
        if images.dtype != np.uint8:
            raise ResNetError(f"{path} key {x_key!r} holds {images.dtype}; expected uint8 pixels 0..255")
        if labels.shape[0] != images.shape[0]:
            raise ResNetError(f"{path} has {labels.shape[0]} labels under {y_key!r} but {images.shape[0]} images under {x_key!r}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise ResNetError(f"{path} key {y_key!r} holds {labels.dtype}; expected integer class indices")
        classes = getattr(self, "class_names", None)
        if labels.size and (labels.min() < 0 or (classes is not None and labels.max() >= len(classes))):
            raise ResNetError(f"{path} key {y_key!r} holds labels outside 0..{len(classes or []) - 1}")
        return Pool(labels=torch.from_numpy(labels.astype(np.int64)),
                    images=torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))))
