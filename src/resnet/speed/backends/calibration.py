"""Calibration batches for int8: validated once, before any engine quantizes with them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from resnet.errors import ResNetError

# Enough samples to set int8 ranges well (NNCF's default subset is 300); more only costs time.
MAX_CALIBRATION_SAMPLES = 512


def check_calibration(calibration: Iterable[Any], sample_shape: tuple[int | None, ...], *,
                      limit: int = MAX_CALIBRATION_SAMPLES) -> list[torch.Tensor]:
    """Validate calibration batches against the model's per-sample input shape ``(C, H, W)``.

    Accepts an iterable of tensors (or numpy arrays, or ``(x, y)`` pairs as ``DataSplit.batches``
    yields), or one 4-D tensor. Returns CPU float32 batches holding at most ``limit`` samples.
    Raises ``ResNetError`` naming the first bad batch (wrong shape, dtype, NaN/inf) or an empty set.
    """
    if isinstance(calibration, (torch.Tensor, np.ndarray)) and calibration.ndim == 4:
        calibration = [calibration]
    try:
        iterator = iter(calibration)
    except TypeError:
        raise ResNetError(f"calibration must be an iterable of input batches (N, C, H, W), got {type(calibration).__name__}") from None
    expected = "(N, " + ", ".join("?" if d is None else str(d) for d in sample_shape) + ")"
    batches: list[torch.Tensor] = []
    total = 0
    index = 0
    while total < limit:
        try:
            item = next(iterator)
        except StopIteration:
            break
        except ResNetError:
            raise
        except Exception as exc:  # a broken loader or generator: say where it broke
            raise ResNetError(f"reading calibration batch {index} failed: {type(exc).__name__}: {exc}") from None
        if isinstance(item, (tuple, list)) and item:
            item = item[0]  # (x, y) from a data loader
        if isinstance(item, np.ndarray):
            item = torch.from_numpy(item)
        if not isinstance(item, torch.Tensor):
            raise ResNetError(f"calibration batch {index} is a {type(item).__name__}, not a tensor of images {expected}")
        if not item.is_floating_point():
            raise ResNetError(f"calibration batch {index} has dtype {item.dtype}; give float images normalized "
                              f"exactly like the model's input")
        shape = tuple(item.shape)
        if len(shape) != len(sample_shape) + 1 or any(e is not None and s != e for s, e in zip(shape[1:], sample_shape)):
            raise ResNetError(f"calibration batch {index} has shape {shape}, but the model takes {expected}")
        if shape[0] == 0:
            raise ResNetError(f"calibration batch {index} is empty")
        item = item.detach().to("cpu", torch.float32)[: limit - total].contiguous()
        if not torch.isfinite(item).all():
            raise ResNetError(f"calibration batch {index} holds NaN or infinite values (corrupt data?)")
        batches.append(item)
        total += item.shape[0]
        index += 1
    if not batches:
        raise ResNetError("calibration is empty: give at least one batch of inputs")
    if all(float(b.amin()) == float(b.amax()) == float(batches[0].flatten()[0]) for b in batches):
        raise ResNetError("calibration batches are all one constant value; int8 ranges need real inputs")
    return batches
