"""Transfer learning on the real Fashion-MNIST: does pretraining on some classes help with few images of others?

    .venv/bin/python benchmarks/bench_transfer.py                       # resnet18 at 64x64, 100 images per class
    .venv/bin/python benchmarks/bench_transfer.py --pretrain-epochs 2 --image-size 96 --seeds 1

1. Writes two image folders from the real IDX files (``/usr/share/datasets/fashion-mnist``):
   ``pretrain/`` with every training and test image of classes 0-5 (T-shirt/top ... Sandal), and
   ``finetune/`` with ``--per-class`` training images of each of classes 6-9 (Shirt, Sneaker, Bag,
   Ankle boot; the first N of each class in file order) and every test image of those classes.
2. Pretrains ``--model`` on ``pretrain/`` (`resnet train`, recipe quick at ``--pretrain-lr``, ``--image-size``).
3. Fine-tunes on ``finetune/`` with the ``finetune`` recipe and the same flags, for each of ``--seeds``
   seeds: once from the pretrained checkpoint (``--pretrained RUN/checkpoints/last.safetensors``; its
   classifier has 6 classes, so a fresh 4-class one is made) and once from random weights.

Each ``resnet train`` runs in a subprocess, as a user runs it. Prints one JSON line (also written to
``OUT/transfer.json``): every fine-tuned run's test top-1 on the 4,000 test images of classes 6-9, the
means over seeds, each run's wall time, the commands, the load average and the CPU line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CLASS_NAMES = ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot")
PRETRAIN_CLASSES, FINETUNE_CLASSES = range(0, 6), range(6, 10)


def write_folders(source: Path, dest: Path, per_class: int) -> None:
    """The two image folders (PNG files), written once; a finished folder has a ``.complete`` marker."""
    import numpy as np
    from PIL import Image

    from resnet.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx

    marker = dest / f".complete-{per_class}"
    if marker.exists():
        return

    def idx(name: str, magic: int) -> np.ndarray:
        return np.asarray(read_idx(next(p for p in (source / name, source / f"{name}.gz") if p.exists()), magic))

    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = idx(f"{prefix}-images-idx3-ubyte", IMAGES_MAGIC), idx(f"{prefix}-labels-idx1-ubyte", LABELS_MAGIC)
        images = images.reshape(len(images), 28, 28)
        for label in range(10):
            chosen = np.flatnonzero(labels == label)
            part = "pretrain" if label in PRETRAIN_CLASSES else "finetune"
            if part == "finetune" and split == "train":
                chosen = chosen[:per_class]
            folder = dest / part / split / CLASS_NAMES[label]
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(images[i], "L").save(folder / f"{i:05d}.png")
    marker.touch()


def train(args: list[str], out: Path) -> dict[str, object]:
    """Run `resnet train ... --out OUT` (or finish it: a rerun resumes) and return its figures."""
    command = [sys.executable, "-m", "resnet", "train", *args, "--out", str(out)]
    if (out / "summary.json").exists():
        summary = json.loads((out / "summary.json").read_text())
        return {"command": "resnet train " + " ".join(command[4:]), "test_top1": summary.get("test_top1"),
                "wall_seconds": summary.get("wall_seconds"), "reused": True}
    if (out / "config.json").exists():  # killed earlier: the run folder knows the rest
        command = [sys.executable, "-m", "resnet", "train", "--resume", str(out)]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = round(time.perf_counter() - start, 1)
    summary = json.loads((out / "summary.json").read_text())
    summary["wall_seconds"] = wall
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {"command": "resnet train " + " ".join(command[4:]), "test_top1": summary.get("test_top1"),
            "train_seconds": summary.get("train_seconds"), "wall_seconds": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--per-class", type=int, default=100, help="fine-tuning images per class")
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    # quick's lr 0.2 made resnet18's first epoch blow up at 64x64 (stem weights 33x their initial norm,
    # which then hardly move when fine-tuned); 0.05 trains stably and better (benchmarks/transfer.md).
    parser.add_argument("--pretrain-lr", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, default=3, help="fine-tuning runs of each kind (seeds 0..N-1)")
    parser.add_argument("--finetune-epochs", type=int, default=None, help="default: the finetune recipe's")
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", default="runs/bench-transfer")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from resnet.device import describe

    out = Path(args.out)
    load_before, started = os.getloadavg(), time.time()
    write_folders(Path(args.data_dir), out / "data", args.per_class)
    common = ["--model", args.model, "--image-size", str(args.image_size)]
    if args.threads:
        common += ["--threads", str(args.threads)]
    # The test splits are scored after the last epoch only (--test-every): the time goes to training.
    pretrain = train([*common, "--data", str(out / "data" / "pretrain"), "--epochs", str(args.pretrain_epochs),
                      "--lr", str(args.pretrain_lr), "--test-every", str(args.pretrain_epochs)], out / "pretrain")
    finetune = [*common, "--recipe", "finetune", "--data", str(out / "data" / "finetune"), "--val-fraction", "0",
                "--test-every", "5"]
    if args.finetune_epochs:
        finetune += ["--epochs", str(args.finetune_epochs)]
    checkpoint = out / "pretrain" / "checkpoints" / "last.safetensors"
    runs: dict[str, list[dict[str, object]]] = {"pretrained": [], "scratch": []}
    for seed in range(args.seeds):
        suffix = "" if seed == 0 else f"-seed{seed}"  # seed 0 keeps the folder names of earlier results
        seeded = [*finetune, "--seed", str(seed)]
        runs["pretrained"].append(train([*seeded, "--pretrained", str(checkpoint)], out / f"finetune-pretrained{suffix}"))
        runs["scratch"].append(train(seeded, out / f"finetune-scratch{suffix}"))
    means = {kind: round(sum(float(r["test_top1"]) for r in found) / len(found), 5)  # type: ignore[arg-type]
             for kind, found in runs.items()}
    result = {
        "model": args.model, "image_size": args.image_size, "per_class": args.per_class, "seeds": args.seeds,
        "pretrain": pretrain, "finetune_pretrained": runs["pretrained"], "finetune_scratch": runs["scratch"],
        "mean_test_top1": means, "gain_points": round(100 * (means["pretrained"] - means["scratch"]), 2),
        "pretrained_worst_minus_scratch_best_points": round(100 * (
            min(float(r["test_top1"]) for r in runs["pretrained"]) - max(float(r["test_top1"]) for r in runs["scratch"])), 2),  # type: ignore[arg-type]
        "total_wall_seconds": round(time.time() - started, 1),
        "loadavg_before": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "hardware": describe("cpu"),
    }
    (out / "transfer.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
