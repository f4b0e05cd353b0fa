"""The Keras SIGNS tutorial's program (examples/keras_signs.py) on a SIGNS-layout set made from real data.

Run: .venv/bin/python benchmarks/bench_keras_signs.py [--out /tmp/signs-fmnist] [--epochs 2]

The SIGNS photos are not shipped anywhere we can read offline, so the set is made in their exact
layout from the real Fashion-MNIST: 6 classes (0-5), 1080 training and 120 test images (180 and 20
per class, the first ones of each class in the official train / test files), resized to 64x64 and
repeated to 3 channels, uint8 NHWC, written as train_signs.h5 / test_signs.h5. Then the tutorial's
program runs unchanged and its printed test accuracy and the wall time are reported beside what the
tutorial printed after its 2 epochs (Test Accuracy = 0.19166666666666668, before it loads its
pretrained ResNet50.h5).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from resnet.data import load
from resnet.device import describe

ROOT = Path(__file__).resolve().parent.parent


def make_signs(out: Path, per_class_train: int = 180, per_class_test: int = 20, size: int = 64) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for split, per_class, name in (("train", per_class_train, "train"), ("test", per_class_test, "test")):
        data = load("fashion-mnist", split)
        picks = torch.cat([torch.nonzero(data.labels == c).flatten()[:per_class] for c in range(6)])
        images = F.interpolate(data.images[picks].float(), size=(size, size), mode="bilinear", align_corners=False)
        images = images.round().clamp(0, 255).to(torch.uint8).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()
        with h5py.File(out / f"{name}_signs.h5", "w") as fh:
            fh[f"{name}_set_x"] = images
            fh[f"{name}_set_y"] = data.labels[picks].numpy().astype(np.int64)
            fh["list_classes"] = np.arange(6)
    return out / "train_signs.h5"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/signs-fmnist"))
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    train_h5 = make_signs(args.out)
    print(describe())
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "keras_signs.py"), str(train_h5), "--epochs", str(args.epochs),
                           "--plot", str(args.out / "model.svg")], capture_output=True, text=True, cwd=args.out)
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(done.stderr[-2000:])
    accuracy = [line for line in done.stdout.splitlines() if line.startswith(("Loss = ", "Test Accuracy = "))]
    print("\n".join(accuracy))
    print(f"wall time: {wall:.0f} s for the whole program ({args.epochs} epochs, 1080 training images, 64x64x3)")
    print("the tutorial printed after its 2 epochs: Test Accuracy = 0.19166666666666668")


if __name__ == "__main__":
    main()
