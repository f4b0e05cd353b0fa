"""Image-folder datasets: ``root/<class>/<image>`` trees (torchvision's ImageFolder layout).

Either ``root/train``, ``root/val`` (or ``valid``/``validation``), ``root/test`` sub-trees, or one
tree to carve a validation split from. Class names are the train tree's sub-folder names, sorted.
Every image is converted to the set's mode (gray when every sampled image is gray, else RGB) and
resized to its size (the most common among sampled images unless one is given). Unreadable files
are skipped and reported once, or fail fast with ``strict``. Sets under ~1 GiB decoded are held in
memory (decoded once, in threads); larger ones decode per batch in DataLoader workers.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from resnet import report
from resnet.data.images import GRAY_MODES, IMAGE_EXTENSIONS, BadImage, decode_image, is_image_file, peek_image
from resnet.data.source import Pool, Source
from resnet.errors import ResNetError

SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
IN_MEMORY_LIMIT = 1 << 30  # bytes of decoded uint8 pixels
SHAPE_SAMPLE = 64  # files whose headers decide the default size and mode
REPORT_FIRST = 3  # bad files named in the one warning


class ImageFolder(Source):
    def __init__(self, root: Path, *, strict: bool, image_size: tuple[int, int] | None, in_memory: bool | None,
                 num_workers: int | None) -> None:
        self.root = root
        self.name = root.resolve().name
        self.strict = strict
        self.in_memory = in_memory
        self.num_workers = num_workers or min(8, os.cpu_count() or 1)
        self.trees: dict[str, Path] = {}
        for split, names in SPLIT_FOLDERS.items():
            found = next((root / n for n in names if (root / n).is_dir()), None)
            if found is not None:
                self.trees[split] = found
        if "train" not in self.trees:
            if self.trees:
                raise ResNetError(f"{root} has {', '.join(p.name + '/' for p in self.trees.values())} but no train/ folder")
            self.trees = {"train": root}
        self.splits = tuple(self.trees)
        train = self.trees["train"]
        self.class_names = sorted(d.name for d in train.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not self.class_names:
            raise ResNetError(f"no class folders in {train}; expected {train}/<class name>/<image files> "
                              f"({', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)})")
        self._listing: dict[str, tuple[list[Path], list[int]]] = {}
        self._key: tuple[object, ...] | None = None
        files, _ = self._list("train")
        self.in_chans, self._native_size = self._sample_shape(files)
        self.image_size = image_size or self._native_size
        self.resize_size: int | None = None  # photos: shorter side to this, then the centre image_size

    @property
    def native_size(self) -> tuple[int, int]:
        return self._native_size

    def decode_at(self, image_size: tuple[int, int], resize_size: int | None) -> None:
        """Decode to ``image_size``, as the centre crop of the shorter side resized to ``resize_size`` when given."""
        if (image_size, resize_size) != (self.image_size, self.resize_size):
            self.image_size, self.resize_size, self._key = image_size, resize_size, None

    def cache_key(self) -> tuple[object, ...]:
        """Every file's path, size and mtime (hashed): a file replaced in place is read again."""
        if self._key is not None:
            return self._key
        digest = hashlib.sha1(str(self.root.resolve()).encode())
        for split in self.splits:
            for path in self._list(split)[0]:
                stat = path.stat()
                digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        self._key = ("folder", digest.hexdigest(), self.image_size, self.resize_size, self.in_chans, self.in_memory,
                     self.strict)
        return self._key

    def _list(self, split: str) -> tuple[list[Path], list[int]]:
        """(files, labels) of a split's tree, sorted; a train class with no files is an error."""
        if split in self._listing:
            return self._listing[split]
        tree = self.trees[split]
        index = {name: i for i, name in enumerate(self.class_names)}
        files: list[Path] = []
        labels: list[int] = []
        ignored: list[Path] = []
        for folder in sorted(d for d in tree.iterdir() if d.is_dir() and not d.name.startswith(".")):
            if folder.name not in index:
                raise ResNetError(f"class folder {folder} is not among the training classes in {self.trees['train']}")
            entries = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
            found = sorted(p for p in entries if is_image_file(p))
            ignored += [p for p in entries if not is_image_file(p)]
            if not found and split == "train":
                raise ResNetError(f"class folder {folder} has no image files ({', '.join(IMAGE_EXTENSIONS)}); "
                                  "add images or remove the folder")
            files += found
            labels += [index[folder.name]] * len(found)
        if not files:
            raise ResNetError(f"no image files in {tree}; expected {tree}/<class name>/<image files>")
        if ignored:
            report.info(f"ignored {len(ignored)} file(s) in {tree} that are not {'/'.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)} "
                        f"images, e.g. {ignored[0]}")
        self._listing[split] = (files, labels)
        return files, labels

    def _sample_shape(self, files: Sequence[Path]) -> tuple[int, tuple[int, int]]:
        """Channels (1 if every sampled image is gray) and the most common (H, W) among sampled headers."""
        step = max(1, len(files) // SHAPE_SAMPLE)
        headers = [h for h in (peek_image(p) for p in files[::step][:SHAPE_SAMPLE]) if h is not None]
        if not headers:  # an unlucky sample: keep looking through the rest
            headers = [h for h in (peek_image(p) for p in files) if h is not None][:1]
        if not headers:
            raise ResNetError(f"none of the {len(files)} image files in {self.trees['train']} can be read")
        in_chans = 1 if all(mode in GRAY_MODES for _, mode in headers) else 3
        return in_chans, Counter(size for size, _ in headers).most_common(1)[0][0]

    def read(self, split: str) -> Pool:
        files, labels = self._list(split)
        height, width = self.image_size
        bytes_needed = len(files) * self.in_chans * height * width
        hold = self.in_memory if self.in_memory is not None else bytes_needed <= IN_MEMORY_LIMIT
        if not hold and self.in_memory is None:
            report.info(f"{self.name} {split}: {len(files)} images ({bytes_needed / 2**30:.1f} GiB decoded) "
                        "will be decoded per batch (--num-workers N decodes them in parallel processes)")
        if not hold:
            empty = [p for p in files if _is_empty(p)]
            keep = [i for i, p in enumerate(files) if not _is_empty(p)]
            self._report(split, [(p, "empty file") for p in empty])
            return Pool(labels=torch.tensor([labels[i] for i in keep], dtype=torch.int64), files=[files[i] for i in keep])
        images = torch.empty((len(files), self.in_chans, height, width), dtype=torch.uint8)
        ok = np.ones(len(files), dtype=bool)
        bad: list[tuple[Path, str]] = []
        threads = ThreadPoolExecutor(self.num_workers)  # Pillow releases the GIL while decoding
        try:
            with report.progress(len(files), f"decoding {self.name} {split}") as bar:
                for i, (array, error) in enumerate(threads.map(self._decode, files)):
                    if error is not None:
                        if self.strict:
                            raise ResNetError(f"cannot read image {files[i]}: {error} (drop --strict to skip unreadable files)")
                        ok[i] = False
                        bad.append((files[i], error))
                    else:
                        images[i] = torch.from_numpy(array.transpose(2, 0, 1))
                    bar.advance(1)
        finally:
            threads.shutdown(cancel_futures=True)
        self._report(split, bad)
        keep = torch.from_numpy(np.flatnonzero(ok))
        label_tensor = torch.tensor(labels, dtype=torch.int64)[keep]
        if split == "train":
            empty = sorted(set(range(len(self.class_names))) - set(label_tensor.tolist()))
            if empty:
                folder = self.trees["train"] / self.class_names[empty[0]]
                raise ResNetError(f"class folder {folder} has no readable images (every file in it was skipped)")
        return Pool(labels=label_tensor, images=images[keep] if not ok.all() else images)

    def _decode(self, path: Path) -> tuple[np.ndarray | None, str | None]:
        if _is_empty(path):
            return None, "empty file"
        try:
            return decode_image(path, in_chans=self.in_chans, image_size=self.image_size, resize_size=self.resize_size), None
        except BadImage as exc:
            return None, str(exc) or "unreadable"

    def _report(self, split: str, bad: list[tuple[Path, str]]) -> None:
        if not bad:
            return
        if self.strict:
            path, reason = bad[0]
            raise ResNetError(f"cannot read image {path}: {reason} (drop --strict to skip unreadable files)")
        first = "; ".join(f"{p} ({reason})" for p, reason in bad[:REPORT_FIRST])
        more = f" and {len(bad) - REPORT_FIRST} more" if len(bad) > REPORT_FIRST else ""
        report.warn(f"skipped {len(bad)} unreadable image file(s) in {self.trees[split]}: {first}{more} "
                    "(--strict stops at the first instead)")


def sample_images(pool: Pool, count: int, in_chans: int, image_size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """Up to ``count`` images of a file-backed pool, decoded (a fixed random sample; bad files left out)."""
    assert pool.files is not None
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(pool.files), generator=generator)[:count].sort().values.tolist()
    arrays = []
    for i in chosen:
        try:
            arrays.append(decode_image(pool.files[i], in_chans=in_chans, image_size=image_size).transpose(2, 0, 1))
        except BadImage:
            continue
    if not arrays:
        raise ResNetError("none of the sampled training images can be read, so the channel statistics cannot be computed")
    return torch.from_numpy(np.stack(arrays))


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return True
