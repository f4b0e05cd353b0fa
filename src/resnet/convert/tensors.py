"""Small pieces every foreign-weights reader shares: numpy in, our key names and layouts out."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from resnet.errors import ResNetError


def tensor(array: np.ndarray) -> Tensor:
    """A float32 torch tensor that owns its memory (the file's buffer may be read-only)."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32).copy())


def conv_from_hwio(weight: np.ndarray) -> Tensor:
    """TensorFlow/Keras conv kernels are (kh, kw, in, out); ours are (out, in, kh, kw)."""
    return tensor(np.transpose(weight, (3, 2, 0, 1)))


def batchnorm(prefix: str, weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, var: np.ndarray) -> dict[str, Tensor]:
    """One BatchNorm2d's entries under ``prefix`` (counter at zero, so a strict load finds every key)."""
    return {
        f"{prefix}.weight": tensor(weight),
        f"{prefix}.bias": tensor(bias),
        f"{prefix}.running_mean": tensor(mean),
        f"{prefix}.running_var": tensor(var),
        f"{prefix}.num_batches_tracked": torch.zeros((), dtype=torch.long),
    }


def need(arrays: dict[str, np.ndarray], key: str, source: str, ndim: int | None = None) -> np.ndarray:
    """``arrays[key]``, or one line naming the file and the missing (or misshapen) key."""
    if key not in arrays:
        raise ResNetError(f"{source} has no {key!r}; it is not the ResNet layout this reader knows")
    value = arrays[key]
    if ndim is not None and value.ndim != ndim:
        raise ResNetError(f"{source}: {key!r} has shape {list(value.shape)}; expected {ndim} dimensions")
    return value


def count_indexed(keys: list[str], pattern: str) -> int:
    """How many consecutive indices 0.. (or 1..) the ``{}`` in ``pattern`` takes among ``keys``."""
    start = 0 if any(k.startswith(pattern.format(0)) for k in keys) else 1
    n = start
    while any(k.startswith(pattern.format(n)) for k in keys):
        n += 1
    return n - start


def imagenet_class_names(num_classes: int) -> tuple[list[str] | None, list[str]]:
    """ImageNet-1k's names (torchvision's offline copy, the standard synset order) for a 1000-class
    head, with a note saying they are assumed; (None, []) for any other head."""
    if num_classes != 1000:
        return None, []
    from torchvision.models import ResNet50_Weights

    names = list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    return names, ["class names: ImageNet-1k in the standard synset order (assumed from the 1000-class head)"]
