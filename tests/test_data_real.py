"""The real Fashion-MNIST files, where Debian's dataset-fashion-mnist package has installed them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resnet.data import load

REAL = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not (REAL / "train-images-idx3-ubyte.gz").is_file() and not (REAL / "train-images-idx3-ubyte").is_file(),
                                reason=f"real Fashion-MNIST not installed in {REAL} (apt-get install dataset-fashion-mnist)")


def test_real_fashion_mnist() -> None:
    train = load("fashion-mnist", data_dir=REAL)
    test = load("fashion-mnist", "test", data_dir=REAL)
    assert (len(train), len(test)) == (60000, 10000)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert test.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert (train.in_chans, train.image_size, train.class_names[9]) == (1, (28, 28), "Ankle boot")
    # The commonly quoted statistics of the training set.
    assert train.mean == pytest.approx((0.2860,), abs=5e-4) and train.std == pytest.approx((0.3530,), abs=5e-4)
    x, y = next(train.batches(128, shuffle=True, augment=True))
    assert x.shape == (128, 1, 28, 28) and y.shape == (128,)
