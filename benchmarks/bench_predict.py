"""Bulk prediction end to end: `resnet predict FOLDER` (streamed) against a plain torchvision pipeline.

A folder of JPEGs (real Fashion-MNIST test images, upscaled to 224x224 RGB, one sub-folder per class)
is classified by

- torchvision: ``ImageFolder`` + ``DataLoader`` (``--workers`` processes) + the eager fp32 model, the
  way a tutorial does it (Resize, ToTensor, Normalize);
- ours: ``resnet.train.inference.predict_stream`` (what `resnet predict` runs): ``--workers`` decoding
  threads ahead of inference, and with ``--fast`` the engine ``resnet.optimize`` picks (fp32, int8).

Both read the same checkpoint (random weights with the training metadata: speed, not accuracy, is
measured) and the clock runs from the first file to the last prediction, model loading and the fast
engine's build included. Also printed: decoding alone and inference alone, so the share of each is
known. One JSON line per row, then a Markdown table, with the CPU line.

    .venv/bin/python benchmarks/bench_predict.py                          # resnet20 (28x28x1) and resnet50 (224x224x3)
    .venv/bin/python benchmarks/bench_predict.py --models resnet20 --images 2000 --threads 2 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from resnet import report
from resnet.device import cpu_info, describe
from resnet.models import create_model, model_from_checkpoint, save_weights

FMNIST = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# What each checkpoint was "trained" at: resnet20 on Fashion-MNIST itself, resnet50 on RGB 224x224.
SETUPS = {"resnet20": (1, 28, [0.2860], [0.3530]), "resnet50": (3, 224, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])}


def write_jpegs(folder: Path, count: int) -> Path:
    """``count`` Fashion-MNIST test images as 224x224 RGB JPEGs in ``folder/<class>/``."""
    from resnet.data import load

    test = load("fashion-mnist", "test", data_dir=str(FMNIST) if FMNIST.exists() else None)
    for i in range(count):
        image, label = test.images[i % len(test)], int(test.labels[i % len(test)])
        where = folder / f"c{label}"
        where.mkdir(parents=True, exist_ok=True)
        rgb = Image.fromarray(image[0].numpy()).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
        rgb.save(where / f"{i:05d}.jpg", quality=90)
    return folder


def write_checkpoint(name: str, folder: Path) -> Path:
    in_chans, side, mean, std = SETUPS[name]
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=in_chans)
    return save_weights(model, folder / f"{name}.safetensors",
                        metadata={"image_size": [side, side], "mean": mean, "std": std, "class_names": CLASSES})


def torchvision_rate(checkpoint: Path, folder: Path, batch_size: int, workers: int) -> float:
    from torchvision import datasets, transforms

    start = time.perf_counter()
    model, meta = model_from_checkpoint(checkpoint)
    model.eval()
    side = meta["image_size"][0]
    steps = [transforms.Grayscale(1)] if meta["in_chans"] == 1 else []
    transform = transforms.Compose([*steps, transforms.Resize((side, side)), transforms.ToTensor(),
                                    transforms.Normalize(meta["mean"], meta["std"])])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(folder), transform), batch_size=batch_size,
                                         num_workers=workers)
    count = 0
    with torch.no_grad():
        for x, _ in loader:
            model(x).softmax(1).topk(5, dim=1)
            count += len(x)
    return count / (time.perf_counter() - start)


def ours_rate(checkpoint: Path, folder: Path, batch_size: int, workers: int, fast: bool, precision: str) -> float:
    from resnet.train.inference import predict_stream

    start = time.perf_counter()
    stream = predict_stream(checkpoint, [folder], batch_size=batch_size, workers=workers, fast=fast, precision=precision,
                            device="cpu")
    count = sum(1 for p in stream if p.error is None)
    return count / (time.perf_counter() - start)


def decode_rate(checkpoint: Path, folder: Path, batch_size: int, workers: int) -> float:
    """Decoding and resizing alone, as the stream does it (threads, JPEG draft mode)."""
    from resnet.models import read_metadata
    from resnet.train.inference import decoded_batches, image_files

    meta = read_metadata(checkpoint)
    side = meta["image_size"][0]
    start = time.perf_counter()
    count = sum(len(paths) for paths, _, _ in decoded_batches(image_files([folder]), in_chans=meta["in_chans"],
                                                              image_size=(side, side), batch_size=batch_size, workers=workers))
    return count / (time.perf_counter() - start)


def infer_rate(checkpoint: Path, batch_size: int, batches: int) -> float:
    """The eager fp32 model alone on ready batches."""
    model, meta = model_from_checkpoint(checkpoint)
    model.eval()
    side = meta["image_size"][0]
    x = torch.randn(batch_size, meta["in_chans"], side, side)
    with torch.no_grad():
        model(x)
        start = time.perf_counter()
        for _ in range(batches):
            model(x)
    return batch_size * batches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet20,resnet50")
    parser.add_argument("--images", type=int, default=2000, help="JPEGs in the folder (default 2000)")
    parser.add_argument("--resnet50-images", type=int, default=None, help="fewer for resnet50 on a slow machine (default: --images)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (ours) and DataLoader processes (torchvision); default: cores")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--precisions", default=None, help="--fast precisions to run, or none (default: fp32, and int8 where VNNI)")
    args = parser.parse_args()
    report.configure(quiet=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    workers = args.workers or os.cpu_count() or 1
    precisions = args.precisions.split(",") if args.precisions else ["fp32"] + (["int8"] if cpu_info().native_int8 else [])
    precisions = [p for p in precisions if p and p != "none"]
    header = {"cpu": describe(), "workers": workers, "batch_size": args.batch_size, "load_average_before": list(os.getloadavg())}
    print(json.dumps(header), flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        root = Path(tmp)
        for name in args.models.split(","):
            count = args.resnet50_images if name == "resnet50" and args.resnet50_images else args.images
            folder = write_jpegs(root / f"jpegs-{count}", count) if not (root / f"jpegs-{count}").exists() else root / f"jpegs-{count}"
            checkpoint = write_checkpoint(name, root)
            base = torchvision_rate(checkpoint, folder, args.batch_size, workers)
            row = {"model": name, "images": count, "torchvision images/s": round(base, 1)}
            row["decode only images/s"] = round(decode_rate(checkpoint, folder, args.batch_size, workers), 1)
            row["eager inference only images/s"] = round(infer_rate(checkpoint, args.batch_size, max(2, count // args.batch_size // 4)), 1)
            for fast, precision in [(False, "fp32"), *((True, p) for p in precisions)]:
                label = f"ours{' --fast ' + precision if fast else ' (eager fp32)'}"
                rate = ours_rate(checkpoint, folder, args.batch_size, workers, fast, precision)
                row[f"{label} images/s"] = round(rate, 1)
                row[f"{label} x torchvision"] = round(rate / base, 2)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(json.dumps({"load_average_after": list(os.getloadavg())}))
    for row in rows:
        print("\n| " + " | ".join(row) + " |\n|" + "---|" * len(row) + "\n| " + " | ".join(str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
