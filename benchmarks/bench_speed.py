"""What the fast paths cost in accuracy: test top-1 of trained checkpoints, fp32 eager vs resnet.optimize.

    .venv/bin/python benchmarks/bench_speed.py RUN_OR_CHECKPOINT [...] [--data fashion-mnist]
        [--data-dir DIR] [--precision fp32,bf16,int8] [--backend auto,onnxruntime,openvino] [--json]

int8 is calibrated on training images (512 of them, shuffled with seed 0), never on the test set it
is scored on. The speed figures themselves come from `resnet bench` (see benchmarks/speed.md).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import torch

from resnet import device as hw
from resnet import report
from resnet.data import load
from resnet.speed import optimize
from resnet.train import evaluate
from resnet.train.inference import load_checkpoint, run_config_of


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="run folders or .safetensors files")
    parser.add_argument("--data", default=None, help="dataset spec (default: the run's own)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--precision", default="fp32,bf16,int8")
    parser.add_argument("--backend", default="auto", help="comma-separated: auto, torch, onnxruntime, openvino")
    parser.add_argument("--calibration-samples", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report.configure()

    rows = []
    for path in args.checkpoints:
        loaded = load_checkpoint(path, device="cpu")
        run = run_config_of(loaded.path)
        spec = args.data or run.get("data") or loaded.metadata.get("dataset")
        data_dir = args.data_dir or run.get("data_dir")
        test = load(spec, "test", data_dir=data_dir)
        train = load(spec, "train", data_dir=data_dir)
        meta = loaded.metadata
        if meta.get("mean") and meta.get("std"):
            test = test.with_normalization(meta["mean"], meta["std"])
            train = train.with_normalization(meta["mean"], meta["std"])
        batches = args.calibration_samples // 128 or 1
        calibration = [x for x, _ in itertools.islice(train.batches(128, shuffle=True, seed=0), batches)]
        example = next(test.batches(256))[0]
        name = meta.get("arch") or type(loaded.model).__name__
        reference = evaluate(loaded.model, test, batch_size=256, device="cpu")
        rows.append({"checkpoint": str(loaded.path), "model": name, "precision": "fp32", "engine": "torch eager (reference)",
                     "top1": reference.top1, "drop_points": 0.0, "test_images": reference.num_samples})
        for precision, backend in itertools.product(args.precision.split(","), args.backend.split(",")):
            start = time.perf_counter()
            try:
                fast = optimize(loaded.model, example, precision=precision, backend=backend, calibration=calibration,
                                compile=False)
            except Exception as exc:  # report and go on: one engine failing says nothing about the others
                report.warn(f"{name} {precision} {backend}: {exc}")
                continue
            result = evaluate(fast, test, batch_size=256, device="cpu")
            rows.append({"checkpoint": str(loaded.path), "model": name, "precision": precision,
                         "engine": f"optimize(backend={backend}) -> {fast.backend} {fast.variant}",
                         "top1": result.top1, "drop_points": 100 * (reference.top1 - result.top1),
                         "test_images": result.num_samples, "seconds": time.perf_counter() - start})
    if args.json:
        report.result_json({"device": hw.describe("cpu"), "rows": rows})
    else:
        report.result(hw.describe("cpu"))
        report.table("test top-1, fp32 eager vs resnet.optimize (drop in points; int8 calibrated on 512 training images)",
                     ["model", "precision", "engine", "top-1 %", "drop (points)"],
                     [[r["model"], r["precision"], r["engine"], f"{100 * r['top1']:.2f}", f"{r['drop_points']:+.2f}"]
                      for r in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
