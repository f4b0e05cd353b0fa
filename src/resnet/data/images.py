"""Decoding image files safely: every file fully decoded inside the error handler, bombs refused.

A lazy ``Image.open`` only reads the header, so a truncated or fake file would pass and then fail
mid-epoch; ``decode_image`` forces the full decode (``load``) where errors are caught. Pillow's
decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) stays on and its warning is an error.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageOps

from resnet.errors import ResNetError

if TYPE_CHECKING:
    from resnet.data.photo import PhotoTransforms

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class BadImage(Exception):
    """A file that is not a decodable image (truncated, empty, fake, a bomb)."""


def decode_image(path: str | os.PathLike[str], *, in_chans: int, image_size: tuple[int, int],
                 resize_size: int | None = None, interpolation: str = "bilinear",
                 frame_side: int | None = None) -> np.ndarray:
    """Decode ``path`` to uint8 (H, W, C): converted to gray or RGB, resized to ``image_size`` (H, W).

    With ``frame_side`` the whole frame is kept instead, its shorter side resized to ``frame_side``
    (the source of a random-resized crop; JPEGs decode at a reduced scale that still covers it).

    With ``resize_size`` it is prepared as published ImageNet weights expect instead (torchvision's
    ``Resize(resize_size)`` + ``CenterCrop``): the shorter side resized to ``resize_size`` with
    ``interpolation``, then the centre ``image_size`` cut out. Raises ``BadImage`` (with the reason)
    for anything that is not a readable image.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.format == "JPEG" and resize_size is None:  # a crop must see the full decode, as torchvision's
                    # Let libjpeg decode at 1/2..1/8 scale when that still covers the target: far cheaper.
                    side = frame_side or max(image_size)
                    img.draft(None, (side, side))
                img.load()  # the full decode, here, where a truncated file raises
                img = ImageOps.exif_transpose(img)
                img = _convert(img, in_chans)
                height, width = image_size
                if frame_side is not None:
                    img = _resize_shorter_side(img, frame_side, Image.Resampling.BILINEAR)
                elif resize_size is not None:
                    img = _resize_and_centre_crop(img, resize_size, (height, width), interpolation)
                elif img.size != (width, height):
                    img = img.resize((width, height), Image.Resampling.BILINEAR)
                array = np.array(img, dtype=np.uint8)  # a writable copy, not a view of Pillow's buffer
    except (OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        # Pillow raises a variety of types for malformed files; all mean "not a usable image".
        raise BadImage(f"{type(exc).__name__}: {exc}") from None
    return array[:, :, None] if array.ndim == 2 else array


def _resize_and_centre_crop(img: Image.Image, resize_size: int, crop: tuple[int, int], interpolation: str) -> Image.Image:
    """torchvision's Resize(int) (shorter side to ``resize_size``) then CenterCrop(crop), on a PIL image."""
    try:
        resample = Image.Resampling[interpolation.upper()]
    except KeyError:
        raise BadImage(f"unknown interpolation '{interpolation}'") from None
    img = _resize_shorter_side(img, resize_size, resample)
    size = img.size
    crop_h, crop_w = crop
    top, left = int(round((size[1] - crop_h) / 2.0)), int(round((size[0] - crop_w) / 2.0))
    return img.crop((left, top, left + crop_w, top + crop_h))


def _resize_shorter_side(img: Image.Image, side: int, resample: Image.Resampling) -> Image.Image:
    """torchvision's Resize(int): the shorter side to ``side``, the longer in proportion (truncated)."""
    width, height = img.size
    short, long = min(width, height), max(width, height)
    new_short, new_long = side, int(side * long / short)
    size = (new_short, new_long) if width <= height else (new_long, new_short)
    return img.resize(size, resample) if size != img.size else img


def _convert(img: Image.Image, in_chans: int) -> Image.Image:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # convert("L") clips 16-bit and float images; scale to 0..255 instead.
        array = np.asarray(img, dtype=np.float32)
        peak = 65535.0 if img.mode.startswith("I;16") else max(float(array.max()), 1.0)
        img = Image.fromarray(np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8), "L")
    if in_chans == 1:
        return img if img.mode == "L" else img.convert("L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # palette transparency must go through RGBA (Pillow warns otherwise)
    return img if img.mode == "RGB" else img.convert("RGB")


def peek_image(path: Path) -> tuple[tuple[int, int], str] | None:
    """(size (H, W), mode) from the header only, or None if the header is unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF rotation swaps the sides
                    width, height = height, width
                return (height, width), img.mode
    except Exception:  # header probes are best-effort; the full decode reports the reason later
        return None


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


class FileImages(torch.utils.data.Dataset):
    """Image files decoded on demand (in DataLoader workers): item = (uint8 C,H,W, index, error).

    With ``photo`` (a ``PhotoTransforms``) images are prepared as photos: a key ``(index, seed)`` is a
    training view (the frame decoded at the shorter side ``resize_size``, then the random-resized crop
    drawn under ``seed``, painted with ``fill`` where erased); a plain index the resize + centre crop.
    """

    def __init__(self, files: Sequence[Path], in_chans: int, image_size: tuple[int, int], photo: PhotoTransforms | None = None,
                 fill: tuple[int, ...] = ()) -> None:
        self.files = list(files)
        self.in_chans = in_chans
        self.image_size = image_size
        self.photo = photo
        self.fill = fill

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int, str]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        photo = self.photo
        try:
            if photo is None:
                array = decode_image(self.files[index], in_chans=self.in_chans, image_size=self.image_size)
            elif seed is None:
                array = decode_image(self.files[index], in_chans=self.in_chans, image_size=self.image_size,
                                     resize_size=photo.resize_size, interpolation=photo.interpolation)
            else:
                array = decode_image(self.files[index], in_chans=self.in_chans, image_size=self.image_size,
                                     frame_side=photo.resize_size or max(self.image_size))
        except BadImage as exc:
            return torch.zeros((self.in_chans, *self.image_size), dtype=torch.uint8), index, str(exc) or "unreadable"
        image = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
        if seed is not None:
            image = photo.train_image(image, seed, self.fill)
        return image, index, ""


def preprocess_images(
    paths: Sequence[str | os.PathLike[str]],
    *,
    in_chans: int,
    image_size: int | Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    resize_size: int | None = None,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """Images at ``paths`` as one normalized float32 batch (N, C, H, W), ready for a model.

    The same conversion as training: gray or RGB, resized to ``image_size`` (an int means square),
    ``(x/255 - mean) / std``; with ``resize_size``, the published weights' resize-then-centre-crop
    (see ``decode_image``). A file that is missing or not an image is a ``ResNetError`` naming it.
    """
    from resnet.data.augment import Normalizer

    size = (int(image_size), int(image_size)) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[-1]))
    if len(mean) != in_chans or len(std) != in_chans:
        raise ResNetError(f"mean/std have {len(mean)}/{len(std)} values but the model takes {in_chans} channels")
    if not paths:
        raise ResNetError("no image files given")
    batch = torch.empty((len(paths), in_chans, *size), dtype=torch.uint8)
    for i, path in enumerate(paths):
        if not Path(path).is_file():
            raise ResNetError(f"image not found: {path}")
        try:
            array = decode_image(path, in_chans=in_chans, image_size=size, resize_size=resize_size, interpolation=interpolation)
        except BadImage as exc:
            raise ResNetError(f"cannot read image {path}: {exc}") from None
        batch[i] = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    return Normalizer(mean, std, "cpu")(batch)
