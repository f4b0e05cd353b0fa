"""Bulk prediction end to end: `resnet predict FOLDER --fast` against a plain torchvision pipeline, same run.

Run: .venv/bin/python benchmarks/bench_predict.py [--images 2000] [--models resnet20,resnet50] [--workers 2]

The folder: Fashion-MNIST test images upscaled to 224x224 RGB and saved as JPEG (quality 90), in
class sub-folders so torchvision's ImageFolder reads it too. Calibration images for int8 come from a
separate folder made the same way from the *training* images (never the ones being scored).
Checkpoints carry random weights (speed does not depend on them) with the metadata `resnet predict`
needs: resnet20 takes 1x28x28 (the Fashion-MNIST net), resnet50 3x224x224.

Contenders, each reading and decoding every JPEG, resizing, normalizing and classifying it:
  baseline:  ImageFolder + DataLoader (the same number of worker processes) + eager fp32 model;
  ours:      `resnet.train.inference.predict_stream` (decoding threads ahead of inference) plain;
  ours fast: the same with --fast, first run (the engine search counts) and second run (the choice
             remembered in the cache, built once).
The share of time spent decoding is measured by running our decoder alone over the folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from resnet.data import load
from resnet.device import describe
from resnet.models import create_model, save_weights


def make_folder(root: Path, split: str, count: int) -> Path:
    from PIL import Image

    data = load("fashion-mnist", split)
    for i in range(count):
        folder = root / data.class_names[int(data.labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(data.images[i, 0].numpy()).convert("RGB").resize((224, 224), Image.BILINEAR)
        image.save(folder / f"{split}-{i:05d}.jpg", quality=90)
    return root


def make_checkpoint(name: str, path: Path, calibration_folder: Path) -> Path:
    torch.manual_seed(0)
    gray = name == "resnet20"
    model = create_model(name, num_classes=10, in_chans=1 if gray else 3).eval()
    meta = {"class_names": load("fashion-mnist", "test").class_names, "image_size": [28, 28] if gray else [224, 224],
            "mean": [0.286] if gray else [0.286] * 3, "std": [0.353] if gray else [0.353] * 3,
            "dataset": "fashion-mnist" if gray else str(calibration_folder)}
    return save_weights(model, path, metadata=meta)


def baseline(checkpoint: Path, folder: Path, batch_size: int, workers: int) -> float:
    """torchvision's documented pipeline: ImageFolder + DataLoader + transforms + the eager fp32 model."""
    import torchvision
    from torchvision import transforms

    from resnet.models import model_from_checkpoint

    model, meta = model_from_checkpoint(checkpoint)
    model.eval()
    steps = [transforms.Resize(tuple(meta["image_size"]))]
    if len(meta["mean"]) == 1:
        steps.append(transforms.Grayscale())
    steps += [transforms.ToTensor(), transforms.Normalize(meta["mean"], meta["std"])]
    dataset = torchvision.datasets.ImageFolder(str(folder), transform=transforms.Compose(steps))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    start = time.perf_counter()
    with torch.inference_mode():
        for x, _ in loader:
            torch.softmax(model(x), 1).topk(5)
    return len(dataset) / (time.perf_counter() - start)


def ours(checkpoint: Path, folder: Path, batch_size: int, workers: int, fast: bool, out: Path) -> float:
    from resnet.train.inference import predict_stream, write_predictions

    start = time.perf_counter()
    stream = predict_stream(checkpoint, [folder], fast=fast, batch_size=batch_size, workers=workers)
    _, rows, errors = write_predictions(stream, out)
    assert errors == 0
    return rows / (time.perf_counter() - start)


def decode_only(checkpoint: Path, folder: Path, batch_size: int, workers: int) -> float:
    from resnet.models import read_metadata
    from resnet.train.inference import decoded_batches, image_files

    meta = read_metadata(checkpoint)
    size = tuple(meta["image_size"])
    start, count = time.perf_counter(), 0
    for paths, _, _ in decoded_batches(image_files([folder]), in_chans=len(meta["mean"]), image_size=size,
                                       batch_size=batch_size, workers=workers):
        count += len(paths)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--models", default="resnet20,resnet50")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--rounds", type=int, default=2, help="repeats of each contender (median reported)")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()

    from resnet import report

    report.configure()  # the engine choices, one line each, beside the figures
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-predict-"))
    os.environ["RESNET_CACHE"] = str(work / "cache")  # a fresh choice cache: the first --fast run searches
    images = work / "images"
    if not images.is_dir():
        make_folder(images, "test", args.images)
    calibration = work / "calibration"
    if not calibration.is_dir():
        make_folder(calibration / "train", "train", 256)
    print(describe())
    print(f"{args.images} JPEGs of 224x224, batch {args.batch_size}, {args.workers} decoding workers, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for name in args.models.split(","):
        checkpoint = make_checkpoint(name, work / f"{name}.safetensors", calibration)
        rows: dict[str, list[float]] = {"baseline (ImageFolder + DataLoader + eager fp32)": [], "ours plain": [],
                                        "ours --fast, first run (search)": [], "ours --fast, cached choice": []}
        for round_ in range(args.rounds):
            rows["baseline (ImageFolder + DataLoader + eager fp32)"].append(baseline(checkpoint, images, args.batch_size, args.workers))
            rows["ours plain"].append(ours(checkpoint, images, args.batch_size, args.workers, False, work / "p.csv"))
            if round_ == 0:
                rows["ours --fast, first run (search)"].append(ours(checkpoint, images, args.batch_size, args.workers, True, work / "f.csv"))
            rows["ours --fast, cached choice"].append(ours(checkpoint, images, args.batch_size, args.workers, True, work / "f.csv"))
        decode = decode_only(checkpoint, images, args.batch_size, args.workers)
        base = statistics.median(rows["baseline (ImageFolder + DataLoader + eager fp32)"])
        print(f"\n{name}: images/s end to end (median of {args.rounds}), ratio to the baseline")
        for label, speeds in rows.items():
            value = statistics.median(speeds)
            print(f"  {label:52s} {value:8.1f}  {value / base:5.2f}x")
        best = statistics.median(rows["ours --fast, cached choice"])
        print(f"  decoding alone: {decode:.1f} images/s, i.e. {min(1.0, best / decode):.0%} of the --fast run's time is decoding")


if __name__ == "__main__":
    main()
