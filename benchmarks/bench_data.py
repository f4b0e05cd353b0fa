"""Input-pipeline throughput: images/s that ``DataSplit.batches`` delivers, against resnet20 training.

The pipeline alone (index-select, random crop with 4-px padding, flip, normalize) for batches of 128
at 32x32x3 and 28x28x1, shuffled and augmented, on ``--threads`` CPU threads (default 2), then a plain
resnet20 training loop (SGD, batch 128, 32x32x3) on the same threads for the ratio. Optionally an
image folder decoded per batch in DataLoader workers (``--folder-images``). Medians of ``--repeats``.

    .venv/bin/python benchmarks/bench_data.py                 # CPU, 2 threads
    .venv/bin/python benchmarks/bench_data.py --device cuda   # where there is a GPU
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from resnet import report
from resnet.data import DataSplit, load
from resnet.data.augment import channel_stats
from resnet.device import describe


def synthetic(n: int, channels: int, size: int) -> DataSplit:
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = channel_stats(images[:1000])
    return DataSplit(name=f"random {channels}x{size}x{size}", split="train", class_names=[str(i) for i in range(10)],
                     in_chans=channels, image_size=(size, size), mean=mean, std=std, labels=torch.arange(n) % 10, images=images)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pipeline_rate(split: DataSplit, batch_size: int, device: torch.device, repeats: int, num_workers: int = 0,
                  epochs_per_repeat: int = 1) -> float:
    """Median images/s over ``repeats`` timed passes (each a full shuffled, augmented epoch)."""
    def one_epoch(epoch: int) -> int:
        count = 0
        for x, y in split.batches(batch_size, shuffle=True, augment=True, epoch=epoch, device=device, drop_last=True,
                                  num_workers=num_workers):
            count += y.shape[0]
        sync(device)
        return count

    one_epoch(0)  # warm-up: first copy to the device, allocator, kernels
    rates = []
    for r in range(repeats):
        start = time.perf_counter()
        count = sum(one_epoch(1 + r * epochs_per_repeat + e) for e in range(epochs_per_repeat))
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def resnet20_train_rate(batch_size: int, device: torch.device, repeats: int, steps: int,
                        data: DataSplit | None = None) -> float:
    """Median images/s of a plain resnet20 training step (forward, backward, SGD) at 32x32x3.

    With ``data``, each step's batch comes from ``data.batches`` (shuffled, augmented): the
    end-to-end rate, which equals the model-only rate when the loader is not the bottleneck.
    """
    from resnet import create_model

    model = create_model("resnet20", num_classes=10).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    fixed = (torch.randn(batch_size, 3, 32, 32, device=device), torch.randint(0, 10, (batch_size,), device=device))
    stream = itertools.chain.from_iterable(
        data.batches(batch_size, shuffle=True, augment=True, epoch=e, device=device, drop_last=True) for e in itertools.count()
    ) if data is not None else itertools.repeat(fixed)

    def step() -> None:
        x, y = next(stream)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    sync(device)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return statistics.median(rates)


def folder_rate(count: int, batch_size: int, device: torch.device, workers: int, repeats: int) -> float:
    """Images/s of a PNG image folder (32x32 RGB) decoded per batch in ``workers`` DataLoader processes."""
    from resnet.data.testing import write_image_folder

    with tempfile.TemporaryDirectory() as tmp:
        classes = [f"c{i}" for i in range(10)]
        root = write_image_folder(Path(tmp) / "folder", classes=classes, per_class=count // 10, size=(32, 32), splits=())
        split = load(root, in_memory=False)
        return pipeline_rate(split, batch_size, device, repeats, num_workers=workers)


def thread_ab(split: DataSplit, batch_size: int, rounds: int) -> dict[str, list[float]]:
    """The raw batch ops (index_select, crop/flip, normalize) at 1 and 2 OpenMP threads, alternating.

    ``batches`` itself always runs them on one thread; this shows why.
    """
    from resnet.data.augment import CropFlipDraws, Normalizer, random_crop_flip, seeded_generator

    assert split.images is not None
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))
    draws = CropFlipDraws.draw(len(split), 4, seeded_generator(0))
    normalize = Normalizer(split.mean, split.std, "cpu")
    count = len(split) // batch_size
    rates: dict[str, list[float]] = {"1": [], "2": []}
    previous = torch.get_num_threads()
    try:
        for _ in range(rounds):
            for threads in ("1", "2"):
                torch.set_num_threads(int(threads))
                start = time.perf_counter()
                for b in range(count):
                    index = order[b * batch_size : (b + 1) * batch_size]
                    normalize(random_crop_flip(split.images.index_select(0, index), draws.slice(b * batch_size, (b + 1) * batch_size)))
                rates[threads].append(count * batch_size / (time.perf_counter() - start))
    finally:
        torch.set_num_threads(previous)
    return rates


def timed(label: str, fn: Callable[[], float]) -> float:
    report.info(f"measuring {label} ...")
    return fn()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=50000, help="images per in-memory set")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=10, help="resnet20 steps per timed repeat")
    parser.add_argument("--folder-images", type=int, default=0, help="also time an image folder of this many files")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the image folder")
    parser.add_argument("--thread-ab", type=int, default=0, metavar="ROUNDS",
                        help="also time the raw batch ops at 1 vs 2 threads, alternating, this many rounds")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    report.configure()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    fashion_dir = Path("/usr/share/datasets/fashion-mnist")
    gray = load("fashion-mnist", data_dir=fashion_dir) if fashion_dir.is_dir() else synthetic(60000, 1, 28)
    figures = {
        "device": describe(device),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "pipeline_32x32x3_images_per_s": timed("pipeline 32x32x3", lambda: pipeline_rate(synthetic(args.images, 3, 32), args.batch_size, device, args.repeats)),
        "pipeline_28x28x1_images_per_s": timed(f"pipeline 28x28x1 ({gray.name})", lambda: pipeline_rate(gray, args.batch_size, device, args.repeats)),
        "resnet20_train_images_per_s": timed("resnet20 training", lambda: resnet20_train_rate(args.batch_size, device, args.repeats, args.train_steps)),
        "resnet20_train_fed_by_pipeline_images_per_s": timed("resnet20 training fed by the pipeline", lambda: resnet20_train_rate(
            args.batch_size, device, args.repeats, args.train_steps, data=synthetic(10 * args.batch_size, 3, 32))),
    }
    if args.folder_images:
        figures["folder_png_32x32x3_images_per_s"] = timed(
            "image folder", lambda: folder_rate(args.folder_images, args.batch_size, device, args.workers, args.repeats))
        figures["folder_workers"] = args.workers
    if args.thread_ab:
        ab = thread_ab(synthetic(20000, 3, 32), args.batch_size, args.thread_ab)
        figures["raw_ops_32x32x3_1_thread_images_per_s"] = statistics.median(ab["1"])
        figures["raw_ops_32x32x3_2_threads_images_per_s"] = statistics.median(ab["2"])
        figures["raw_ops_thread_ab_rounds"] = {k: [round(v) for v in vs] for k, vs in ab.items()}
    train = figures["resnet20_train_images_per_s"]
    rows = [[k.replace("_images_per_s", ""), f"{v:,.0f}", f"{v / train:.1f}x"] for k, v in figures.items() if k.endswith("_per_s")]
    report.table(f"input pipeline vs resnet20 training, batch {args.batch_size}, {args.threads} threads, {device}",
                 ["what", "images/s", "vs resnet20 training"], rows)
    report.result(figures["device"])
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
