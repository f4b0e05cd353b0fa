"""Arrays as the tutorials hold them (NHWC or NCHW, uint8 or 0..1 floats, one-hot or index labels) as DataSplits.

The conversion is exact: images become the uint8 tensors the rest of the library trains on, so
``Model.fit`` on arrays and ``resnet train`` on the same images run the very same pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from resnet.data.augment import channel_stats
from resnet.data.split import DataSplit
from resnet.errors import ResNetError

_CHANNEL_COUNTS = (1, 3, 4)


def to_numpy(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, (np.ndarray, list, tuple)):
        return np.asarray(value)
    raise ResNetError(f"{what} must be a numpy array or a torch tensor, got {type(value).__name__}")


def images_uint8_nchw(x: Any, *, layout: str = "auto") -> torch.Tensor:
    """Images (N, H, W, C), (N, C, H, W) or (N, H, W) as uint8 (N, C, H, W).

    uint8 is taken as it is; floats must be 0..1 (the tutorials' ``x / 255.``) or whole numbers in
    0..255, so that the conversion loses nothing. ``layout`` "auto" reads NHWC when the last axis
    holds 1, 3 or 4 channels and the second does not.
    """
    array = to_numpy(x, "x")
    if array.ndim == 3:
        array = array[:, None]
        layout = "nchw"
    if array.ndim != 4:
        raise ResNetError(f"x must hold a batch of images (N, H, W, C) or (N, C, H, W), got shape {array.shape}")
    if layout == "auto":
        layout = "nhwc" if array.shape[-1] in _CHANNEL_COUNTS and array.shape[1] not in _CHANNEL_COUNTS else "nchw"
    if layout not in ("nhwc", "nchw"):
        raise ResNetError(f"layout must be 'auto', 'nhwc' or 'nchw', got {layout!r}")
    if layout == "nhwc":
        array = array.transpose(0, 3, 1, 2)
    if array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array))
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise ResNetError(f"x has dtype {array.dtype}; give uint8 images or floats in 0..1")
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    scale = 255.0 if high <= 1.0 else 1.0
    scaled = array.astype(np.float64) * scale
    rounded = np.rint(scaled)
    if low < 0 or high > 255 or np.abs(scaled - rounded).max(initial=0.0) > 1e-3:
        raise ResNetError(
            f"x holds floats in [{low:.3g}, {high:.3g}] that are not whole steps of 1/255; give the images as "
            "uint8 or as floats in 0..1 (x / 255.), and let the model normalise them with the training statistics"
        )
    return torch.from_numpy(np.ascontiguousarray(rounded.astype(np.uint8)))


def labels_index(y: Any, count: int) -> tuple[torch.Tensor, int]:
    """Labels as int64 class indices, from indices (N,) / (N, 1) or one-hot (N, classes); and the class count."""
    array = to_numpy(y, "y")
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2:
        if not np.all((array == 0) | (array == 1)) or not np.all(array.sum(1) == 1):
            raise ResNetError(f"y of shape {array.shape} is neither class indices nor one-hot rows")
        classes = array.shape[1]
        array = array.argmax(1)
    elif array.ndim == 1:
        if array.size and (not np.issubdtype(array.dtype, np.number) or np.any(array < 0) or np.any(array != np.rint(array))):
            raise ResNetError("y must hold whole class indices >= 0 (or one-hot rows)")
        classes = int(array.max()) + 1 if array.size else 0
    else:
        raise ResNetError(f"y must be class indices (N,) or one-hot (N, classes), got shape {array.shape}")
    if array.shape[0] != count:
        raise ResNetError(f"x holds {count} images but y holds {array.shape[0]} labels")
    return torch.from_numpy(array.astype(np.int64)), classes


def split_from_arrays(
    x: Any,
    y: Any,
    *,
    split: str,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    layout: str = "auto",
    name: str = "arrays",
) -> DataSplit:
    """A DataSplit held in memory; ``mean``/``std`` default to these images' own (right for a training split)."""
    images = images_uint8_nchw(x, layout=layout)
    labels, found = labels_index(y, images.shape[0])
    classes = num_classes or (len(class_names) if class_names else found)
    if found > classes:
        raise ResNetError(f"y has class index {found - 1} but the model has {classes} classes")
    if mean is None or std is None:
        mean, std = channel_stats(images)
    names = list(class_names) if class_names else [str(i) for i in range(classes)]
    return DataSplit(name=name, split=split, class_names=names, in_chans=images.shape[1],
                     image_size=(images.shape[2], images.shape[3]), mean=tuple(mean), std=tuple(std),
                     labels=labels, images=images)
